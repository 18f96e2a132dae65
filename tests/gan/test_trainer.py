"""The training loop end to end on tiny models: outputs, bit-exact resume, NaN stop."""
import json
import os

import numpy as np
import pytest

import needle as ndl
from gan import Adversarial, RunFolderError, Trainer, TrainerConfig, TrainingDiverged
from gan.checkpoint import latest_checkpoint
from gan.models.dcgan import Discriminator, Generator
from gan.objectives import NonSaturating

IMAGES = np.random.RandomState(0).uniform(-1, 1, (48, 1, 28, 28)).astype(np.float32)


def make_trainer(out_dir, objective=None, **config):
    np.random.seed(0)
    G, D = Generator(latent_dim=8, width=4), Discriminator(width=4)
    adv = Adversarial(D, objective or NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3))
    settings = dict(out_dir=str(out_dir), epochs=2, batch_size=8, latent_dim=8,
                    checkpoint_every=2, log_every=1, num_samples=16, progress=False)
    settings.update(config)
    return Trainer(G, adv, ndl.optim.Adam(G.parameters(), lr=1e-3), IMAGES,
                   TrainerConfig(**settings))


def read_metrics(out_dir, drop=("time",)):
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def final_weights(out_dir):
    return ndl.load(latest_checkpoint(os.path.join(out_dir, "checkpoints")))


def test_tiny_run_writes_grid_plot_metrics_and_checkpoint(tmp_path):
    record = make_trainer(tmp_path, epochs=1).train()
    assert record["step"] == 6 and np.isfinite(record["d_loss"])
    assert (tmp_path / "samples" / "step_00000006.png").exists()
    assert (tmp_path / "losses.png").exists()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records if "d_loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if "sample_diversity" in r] == [6]  # epoch end
    assert json.loads((tmp_path / "run.json").read_text())["config"]["batch_size"] == 8
    assert latest_checkpoint(str(tmp_path / "checkpoints")).endswith("step_00000006.safetensors")


def test_resume_continues_bit_exactly(tmp_path):
    """Stop after 4 steps (mid-epoch 1), resume to the end: same weights as a straight run."""
    make_trainer(tmp_path / "straight").train()
    make_trainer(tmp_path / "split", max_steps=4).train()
    make_trainer(tmp_path / "split", resume=True).train()
    straight, split = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert straight.keys() == split.keys()
    for key in straight:
        np.testing.assert_array_equal(straight[key], split[key], err_msg=key)
    # the logged figures match too (the split run adds a grid record where it stopped)
    split_losses, straight_losses = [[r for r in read_metrics(tmp_path / run) if "d_loss" in r]
                                     for run in ("split", "straight")]
    assert split_losses == straight_losses
    assert [r["step"] for r in split_losses] == list(range(1, 13))


class NaNAfter(NonSaturating):
    """D's loss turns NaN at the given call: a stand-in for a diverging run."""

    def __init__(self, calls):
        self.calls = calls

    def discriminator_loss(self, real, fake):
        self.calls -= 1
        loss = super().discriminator_loss(real, fake)
        return loss * float("nan") if self.calls < 0 else loss


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, objective=NaNAfter(calls=5))
    with pytest.raises(TrainingDiverged, match=r"step 6: d_loss is nan; last good checkpoint: "
                                               r".*step_00000004\.safetensors"):
        trainer.train()
    path = latest_checkpoint(str(tmp_path / "checkpoints"))
    assert path.endswith("step_00000004.safetensors")
    assert all(np.isfinite(v).all() for v in ndl.load(path).values())


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(RunFolderError, match="nothing to resume in .*: it holds no run"):
        make_trainer(tmp_path, resume=True).train()


def test_health_warnings_go_to_metrics_and_console_once(tmp_path, capsys):
    """Thresholds no run can meet: every interval warns; the console shows the onset once."""
    from gan.health import HealthThresholds

    thresholds = HealthThresholds(g_grad_low=1e9, diversity_low=1e9, diversity_warmup_steps=0)
    make_trainer(tmp_path, epochs=1, health_thresholds=thresholds).train()
    records = read_metrics(tmp_path)
    intervals = [r for r in records if "d_loss" in r]
    assert all(r["g_grad_norm"] > 0 for r in intervals)  # logged with every G step
    assert all(w.startswith("[g_grad_vanished] step ") for r in intervals
               for w in r["warnings"])
    assert len(intervals) == 6 and all(len(r["warnings"]) == 1 for r in intervals)
    (epoch_end,) = [r for r in records if "sample_diversity" in r]
    assert epoch_end["warnings"][0].startswith("[mode_collapse] step 6")
    console = capsys.readouterr().err
    assert console.count("health: [g_grad_vanished]") == 1
    assert console.count("health: [mode_collapse]") == 1


def test_health_off_writes_no_warnings(tmp_path):
    from gan.health import HealthThresholds

    make_trainer(tmp_path, epochs=1, health=False,
                 health_thresholds=HealthThresholds(g_grad_low=1e9)).train()
    records = read_metrics(tmp_path)
    assert not any("warnings" in r or "sample_diversity" in r for r in records)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]


def test_more_epochs_extends_the_target_bit_exactly(tmp_path):
    """epochs=1, then more_epochs=1: the same run as epochs=2, without arithmetic."""
    make_trainer(tmp_path / "straight").train()  # 2 epochs
    make_trainer(tmp_path / "extended", epochs=1).train()
    record = make_trainer(tmp_path / "extended", epochs=None, more_epochs=1).train()
    assert record["step"] == 12
    straight, extended = final_weights(tmp_path / "straight"), \
        final_weights(tmp_path / "extended")
    for key in straight:
        np.testing.assert_array_equal(straight[key], extended[key], err_msg=key)
    # a plain resume of a finished run goes to the run's own (extended) target: no steps
    assert make_trainer(tmp_path / "extended", epochs=None, resume=True).train()["step"] == 12


def test_run_json_is_a_manifest_with_checkpoint_hashes(tmp_path):
    import hashlib

    make_trainer(tmp_path, max_steps=4).train()
    make_trainer(tmp_path, resume=True).train()
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["seed"] == 0 and manifest["config"]["epochs"] == 2
    assert manifest["versions"]["numpy"] == np.__version__
    assert manifest["versions"]["needle"] == ndl.__version__ and "cupy" in manifest["versions"]
    assert manifest["backend"] == ndl.backend_selection.BACKEND and manifest["device"]
    assert "pytest" in manifest["command"] or "python" in manifest["command"]
    assert [r["from_step"] for r in manifest["resumes"]] == [4]
    steps = [c["step"] for c in manifest["checkpoints"]]
    assert steps == [2, 4, 6, 8, 10, 12]
    for entry in manifest["checkpoints"]:
        path = tmp_path / entry["file"]
        if path.exists():  # the two newest are kept
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert sum((tmp_path / c["file"]).exists() for c in manifest["checkpoints"]) == 2


def test_sample_grids_carry_the_step_in_name_and_png_metadata(tmp_path):
    from PIL import Image

    make_trainer(tmp_path).train()  # 2 epochs of 6 steps
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["step_00000006.png", "step_00000012.png"]
    for name, step, epoch in (("step_00000006.png", 6, 1), ("step_00000012.png", 12, 2)):
        with Image.open(tmp_path / "samples" / name) as grid:
            assert grid.text["step"] == str(step) and grid.text["epoch"] == str(epoch)


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    make_trainer(tmp_path, max_steps=2).train()
    folder = tmp_path / "checkpoints"
    dead_pid = 2 ** 22 + 12345  # above Linux's pid_max default: no such process
    stale = folder / f".step_00000004.safetensors.{dead_pid}.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    (tmp_path / "samples" / f"step_00000004.png.{dead_pid}.tmp").write_bytes(b"half")
    assert latest_checkpoint(str(folder)).endswith("step_00000002.safetensors")
    make_trainer(tmp_path, max_steps=4, resume=True).train()
    assert not stale.exists()
    assert not list((tmp_path / "samples").glob("*.tmp"))


def test_resume_can_replace_the_learning_rates(tmp_path):
    """Acting on a health warning: resume from the last checkpoint with lower rates."""
    make_trainer(tmp_path, max_steps=2).train()
    make_trainer(tmp_path, resume=True, max_steps=4, resume_d_lr=1e-5, resume_g_lr=2e-5).train()
    state = final_weights(tmp_path)
    assert state["adversarial.optimizer.lr"] == 1e-5 and state["g_optimizer.lr"] == 2e-5


def test_time_limit_stops_after_the_step_that_spends_it_and_resumes_bit_exactly(tmp_path):
    """time_limit=0: the first step spends the budget, the run stops as for a Ctrl-C with a
    checkpoint at step 1; a resume (the limit is this invocation's, not the run's) ends
    where a straight run does."""
    from gan import TrainingInterrupted

    make_trainer(tmp_path / "straight").train()
    with pytest.raises(TrainingInterrupted) as stop:
        make_trainer(tmp_path / "split", time_limit=0.0).train()
    assert stop.value.signal_name == "time limit" and stop.value.step == 1
    assert stop.value.checkpoint.endswith("step_00000001.safetensors")
    manifest = json.loads((tmp_path / "split" / "run.json").read_text())
    assert manifest["status"] == "interrupted" and "time_limit" not in manifest["config"]
    make_trainer(tmp_path / "split", resume=True).train()
    straight, split = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    for key in straight:
        np.testing.assert_array_equal(straight[key], split[key], err_msg=key)


def test_a_generous_time_limit_changes_nothing(tmp_path):
    record = make_trainer(tmp_path, epochs=1, time_limit=3600.0).train()
    assert record["step"] == 6

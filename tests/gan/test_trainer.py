"""The training loop end to end on tiny models: outputs, bit-exact resume, NaN stop."""
import json
import os

import numpy as np
import pytest

import needle as ndl
from gan import Adversarial, Trainer, TrainerConfig, TrainingDiverged
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


def final_weights(out_dir):
    return ndl.load(latest_checkpoint(os.path.join(out_dir, "checkpoints")))


def test_tiny_run_writes_grid_plot_metrics_and_checkpoint(tmp_path):
    record = make_trainer(tmp_path, epochs=1).train()
    assert record["step"] == 6 and np.isfinite(record["d_loss"])
    assert (tmp_path / "samples" / "step_00000006.png").exists()
    assert (tmp_path / "losses.png").exists()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
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
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 13))


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
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make_trainer(tmp_path, resume=True).train()

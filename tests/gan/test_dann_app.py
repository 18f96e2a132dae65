"""apps.train_dann: a dry run of each mode, and a run interrupted and resumed bit for bit
(the pattern of tests/gan/test_kill_resume.py's other image trainers)."""
import gzip
import json
import os
import signal

import numpy as np
import pytest

import needle as ndl
from apps import train_dann
from gan.checkpoint import latest_checkpoint
from gan.recipes.dann import DANNRecipe
from needle.data import read_idx

MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "data", "mnist")
TINY = ["--width", "2", "--hidden", "6", "--no_progress", "--log_every", "1"]


def write_tiny_mnist(folder, count=48):
    """The first `count` MNIST training and test digits (random ones without data/mnist) as
    the four IDX .gz files."""
    folder.mkdir()
    for split in ("train", "t10k"):
        try:
            images = read_idx(os.path.join(MNIST, f"{split}-images-idx3-ubyte.gz"), 3)[:count]
            labels = read_idx(os.path.join(MNIST, f"{split}-labels-idx1-ubyte.gz"), 1)[:count]
        except (FileNotFoundError, ValueError):
            rng = np.random.RandomState(len(split))
            images = rng.randint(0, 256, (count, 28, 28)).astype(np.uint8)
            labels = rng.randint(0, 10, count).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(
                int(n).to_bytes(4, "big") for n in array.shape)
            (folder / f"{split}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(header + array.tobytes(), mtime=0))
    return str(folder)


def final_state(run):
    return ndl.load(latest_checkpoint(str(run / "checkpoints")))


@pytest.mark.parametrize("mode", [[], ["--source_only"]])
def test_a_dry_run_trains_and_writes_the_run_folder(tmp_path, mode):
    out = tmp_path / "dry"
    record = train_dann.main(["--dry_run", "--out_dir", str(out), *TINY, *mode])
    assert record["step"] == 3
    assert {"source_accuracy", "target_accuracy", "class_loss"} <= set(record)
    assert ("d_loss" in record) == (not mode) and ("lambda" in record) == (not mode)
    for name in ("run.json", "metrics.jsonl", "report.html", "losses.png"):
        assert (out / name).exists(), name
    assert os.listdir(out / "samples")
    keys = final_state(out).keys()
    assert any(k.startswith("adversarial.discriminator.") for k in keys) == (not mode)
    assert any(k.startswith("features.") for k in keys)


def test_an_interrupted_run_resumes_bit_exactly_and_reports_the_accuracies(
        tmp_path, capsys, monkeypatch):
    """SIGINT during step 5 of 10, then --resume: the state of a straight run of 10 steps
    (the schedules follow the run's target, so both runs have the same one)."""
    data_dir = write_tiny_mnist(tmp_path / "data")
    base = ["--data_dir", data_dir, "--limit", "32", "--batch_size", "8", "--eval_samples",
            "16", "--num_samples", "4", "--checkpoint_every", "4", "--epochs", "3",
            "--max_steps", "10", *TINY]
    train_dann.main(base + ["--out_dir", str(tmp_path / "straight")])
    step = DANNRecipe.step

    def interrupted_at_the_fifth(recipe, batch, number):
        if number == 4:
            os.kill(os.getpid(), signal.SIGINT)  # the engine finishes the step, then stops
        return step(recipe, batch, number)

    monkeypatch.setattr(DANNRecipe, "step", interrupted_at_the_fifth)
    with pytest.raises(SystemExit) as stop:
        train_dann.main(base + ["--out_dir", str(tmp_path / "split")])
    assert stop.value.code == 130
    monkeypatch.setattr(DANNRecipe, "step", step)
    record = train_dann.main(["--out_dir", str(tmp_path / "split"), "--resume",
                              "--no_progress"])
    expected, got = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    assert expected.keys() == got.keys()
    assert any(k.startswith("adversarial.discriminator.") for k in expected)
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    manifests = [json.loads((tmp_path / name / "run.json").read_text())
                 for name in ("straight", "split")]
    assert [sorted(c["step"] for c in m["checkpoints"]) for m in manifests] == \
        [[4, 8, 10], [4, 5, 8, 10]]
    assert [r["from_step"] for r in manifests[1]["resumes"]] == [5]
    assert record["step"] == 10
    assert 0 <= record["target_accuracy"] <= 1 and 0 <= record["source_accuracy"] <= 1
    assert "target accuracy" in capsys.readouterr().out.splitlines()[-1]


def test_a_missing_mnist_folder_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_dann.main(["--data_dir", str(tmp_path / "none"), "--out_dir",
                         str(tmp_path / "run"), *TINY])
    assert "no MNIST folder" in str(stop.value) and "\n" not in str(stop.value)

"""Kill-safety for real: SIGKILL a running `python -m apps.train_dcgan` again and again, resume.

The run under test is killed at random moments and, on purpose, while a checkpoint is being
written (the kill lands as soon as the checkpoint's temporary file appears). After each kill:
every step_*.safetensors present must load and verify (never half-written), and run.json
must parse. Then the run resumes (or restarts when no checkpoint exists yet). At the end:

  * the final weights (and optimizer state, RNG, data order) equal those of an uninterrupted
    run bit for bit;
  * every checkpoint the killed run recorded in run.json has the training-state SHA-256 of
    the uninterrupted run's checkpoint of the same step (the files themselves differ in their
    run ids): each resumed segment was bit-exact, not just the end;
  * no temporary file is left behind.

The figures (kills tried, kills during a checkpoint write, resumes, resumes bit-exact) are
printed and attached to the test report (`record_property`).
"""
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import needle as ndl
from gan.checkpoint import checkpoint_info, latest_checkpoint
from needle.data import read_idx

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MNIST = os.path.join(REPO, "data", "mnist")
IMAGES = 256
ARGS = ["--limit", str(IMAGES), "--batch_size", "16", "--width", "4", "--latent_dim", "16",
        "--checkpoint_every", "2", "--log_every", "2", "--no_progress", "--out_dir", "run"]
EPOCHS = 3  # 16 steps per epoch: 48 steps, 24 checkpoints
# what each kill waits for: a random delay (0 to 0.5 s) once the process is training, or the
# temporary file of its n-th checkpoint write (n = 1..3, so most segments make progress)
PLAN = ["write", "random", "write", "random", "write", "write", "random", "write"]


def write_tiny_mnist(folder):
    """256 MNIST training images (or random digits without data/mnist), as IDX .gz files: a
    process reads them in milliseconds, so the run's time goes to training."""
    folder.mkdir()
    try:
        images = read_idx(os.path.join(MNIST, "train-images-idx3-ubyte.gz"), 3)[:IMAGES]
        labels = read_idx(os.path.join(MNIST, "train-labels-idx1-ubyte.gz"), 1)[:IMAGES]
    except (FileNotFoundError, ValueError):
        rng = np.random.RandomState(0)
        images = rng.randint(0, 256, (IMAGES, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, IMAGES).astype(np.uint8)
    for name, array in (("train-images-idx3-ubyte.gz", images),
                        ("train-labels-idx1-ubyte.gz", labels)):
        header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(
            int(n).to_bytes(4, "big") for n in array.shape)
        (folder / name).write_bytes(gzip.compress(header + array.tobytes(), mtime=0))
    return str(folder)


def start(cwd, data_dir, *extra):
    """The app in its own process; its stderr goes to cwd/stderr.txt (appended)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(os.path.join(cwd, "stderr.txt"), "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "apps.train_dcgan", *ARGS,
                                 "--data_dir", data_dir, *extra], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=log)


def finish(proc, cwd):
    proc.wait(timeout=120)
    assert proc.returncode == 0, (cwd / "stderr.txt").read_text()[-3000:]


def temp_files(folder):
    return {n for n in os.listdir(folder) if n.endswith(".tmp")} if os.path.isdir(folder) \
        else set()


def kill_when(proc, mode, checkpoints, rng):
    """SIGKILL `proc` at the moment `mode` asks for; False if it finished first."""
    if mode == "random":  # a random moment once training is under way (a new metrics line)
        metrics = os.path.join(os.path.dirname(checkpoints), "metrics.jsonl")
        size = os.path.getsize(metrics) if os.path.exists(metrics) else -1
        while not os.path.exists(metrics) or os.path.getsize(metrics) == size:
            if proc.poll() is not None:
                return False
            time.sleep(0.002)
        deadline = time.monotonic() + rng.uniform(0.0, 0.5)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            time.sleep(0.002)
    else:
        skip, seen = rng.randint(0, 3), temp_files(checkpoints)  # ignore leftovers
        while True:
            if proc.poll() is not None:
                return False
            new = temp_files(checkpoints) - seen
            if new:
                if skip == 0:
                    break
                skip, seen = skip - 1, seen | new
            time.sleep(0.0002)
    proc.kill()
    proc.wait()
    return True


def verify_run_folder(run):
    """Every checkpoint file present loads and verifies; run.json parses. Returns the count."""
    folder = run / "checkpoints"
    paths = sorted(folder.glob("step_*.safetensors")) if folder.exists() else []
    for path in paths:
        ndl.load(str(path))            # raises CheckpointError if damaged in any way
        checkpoint_info(str(path))     # the JSON state parses and is complete
    if (run / "run.json").exists():
        json.loads((run / "run.json").read_text())
    if (run / "metrics.jsonl").exists():  # at most the last line may be cut short
        for line in (run / "metrics.jsonl").read_text().splitlines()[:-1]:
            json.loads(line)
    return len(paths)


def final_state(run):
    return ndl.load(latest_checkpoint(str(run / "checkpoints")))


def hashes(run):
    manifest = json.loads((run / "run.json").read_text())
    return {c["step"]: c["state_sha256"] for c in manifest["checkpoints"]}, manifest


def test_sigkill_at_random_moments_and_mid_write_then_resume_is_bit_exact(
        tmp_path, record_property):
    data_dir = write_tiny_mnist(tmp_path / "data")
    (tmp_path / "straight").mkdir()
    (tmp_path / "killed").mkdir()
    straight = start(tmp_path / "straight", data_dir, "--epochs", str(EPOCHS))
    rng = np.random.RandomState(1234)
    run = tmp_path / "killed" / "run"
    checkpoints = str(run / "checkpoints")
    kills = during_write = verified = restarts = 0
    left_behind = set()
    proc = start(tmp_path / "killed", data_dir, "--epochs", str(EPOCHS))
    for mode in PLAN:
        if not kill_when(proc, mode, checkpoints, rng):
            break
        kills += 1
        new_temps = temp_files(checkpoints) - left_behind
        during_write += bool(new_temps)  # killed between the temp file's creation and rename
        left_behind |= new_temps
        verified += verify_run_folder(run)
        resume = latest_checkpoint(checkpoints) is not None
        restarts += resume
        proc = start(tmp_path / "killed", data_dir,  # no checkpoint yet: start it afresh
                     *(["--resume"] if resume else ["--epochs", str(EPOCHS), "--overwrite"]))
    finish(proc, tmp_path / "killed")
    finish(straight, tmp_path / "straight")

    expected, got = final_state(tmp_path / "straight" / "run"), final_state(run)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    assert int(checkpoint_info(latest_checkpoint(checkpoints))["step"]) == EPOCHS * 16

    reference, _ = hashes(tmp_path / "straight" / "run")
    recorded, manifest = hashes(run)
    assert set(recorded) <= set(reference) and max(recorded) == EPOCHS * 16
    mismatched = [step for step in recorded if recorded[step] != reference[step]]
    assert mismatched == []
    resumes = manifest["resumes"]
    exact = sum(all(recorded[s] == reference[s] for s in recorded if s > r["from_step"])
                for r in resumes)
    assert not temp_files(checkpoints)  # a killed writer's temp files are cleaned up
    assert kills >= 4 and during_write >= 1 and len(resumes) >= 3
    figures = {"kills": kills, "kills_during_checkpoint_write": during_write,
               "restarts_with_resume": restarts,
               "resumes_that_reached_training": len(resumes), "resumes_bit_exact": exact,
               "checkpoint_files_verified_after_kills": verified,
               "checkpoints_hash_checked": len(recorded)}
    for name, value in figures.items():
        record_property(name, value)
    print("kill/resume:", json.dumps(figures))
    assert exact == len(resumes)


@pytest.mark.parametrize("app, extra", [
    ("train_cgan", ["--num_classes", "3", "--num_samples", "6"]),
    ("train_wgan_gp", ["--data", "mnist", "--n_critic", "2"]),
])
def test_the_other_image_trainers_resume_bit_exactly(tmp_path, app, extra):
    """cGAN and WGAN-GP on MNIST share gan.Trainer: stop after 3 steps, resume to 8."""
    import importlib

    module = importlib.import_module(f"apps.{app}")
    data_dir = write_tiny_mnist(tmp_path / "data")
    base = ["--data_dir", data_dir, "--limit", "160", "--batch_size", "8", "--width", "4",
            "--latent_dim", "8", "--checkpoint_every", "3", "--log_every", "1",
            "--no_progress", "--epochs", "1", *extra]
    module.main(base + ["--out_dir", str(tmp_path / "straight"), "--max_steps", "8"])
    module.main(base + ["--out_dir", str(tmp_path / "split"), "--max_steps", "3"])
    module.main(base + ["--out_dir", str(tmp_path / "split"), "--max_steps", "8", "--resume"])
    expected, got = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    reference, _ = hashes(tmp_path / "straight")
    recorded, manifest = hashes(tmp_path / "split")
    # (the hashes differ: each checkpoint's config names its own out_dir and max_steps)
    assert set(recorded) == set(reference) and 3 in recorded
    assert [r["from_step"] for r in manifest["resumes"]] == [3]


def test_wgan_gp_points_resume_bit_exactly(tmp_path):
    """The 2-D mixture recipe on gan.Trainer: stop at 20 steps, resume to 40."""
    from apps import train_wgan_gp

    base = ["--data", "ring8", "--hidden", "8", "--layers", "1", "--batch_size", "16",
            "--n_critic", "2", "--eval_samples", "64", "--checkpoint_every", "10",
            "--log_every", "5", "--no_progress", "--epochs", "1"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    train_wgan_gp.main(base + ["--out_dir", straight, "--max_steps", "40"])
    train_wgan_gp.main(base + ["--out_dir", split, "--max_steps", "20"])
    train_wgan_gp.main(base + ["--out_dir", split, "--max_steps", "40", "--resume"])
    expected, got = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    _, manifest = hashes(tmp_path / "split")
    assert [r["from_step"] for r in manifest["resumes"]] == [20]


def test_more_epochs_on_the_command_line_needs_no_arithmetic(tmp_path):
    """train_dcgan --epochs 1, then --more_epochs 1: the run of --epochs 2, bit for bit."""
    from apps import train_dcgan

    data_dir = write_tiny_mnist(tmp_path / "data")
    base = ["--data_dir", data_dir, "--limit", "32", "--batch_size", "8", "--width", "4",
            "--latent_dim", "8", "--checkpoint_every", "100", "--no_progress"]
    straight, extended = str(tmp_path / "straight"), str(tmp_path / "extended")
    train_dcgan.main(base + ["--out_dir", straight, "--epochs", "2"])
    train_dcgan.main(base + ["--out_dir", extended, "--epochs", "1"])
    record = train_dcgan.main(base + ["--out_dir", extended, "--more_epochs", "1"])
    assert record["step"] == 8 and record["epoch"] == 2
    expected, got = final_state(tmp_path / "straight"), final_state(tmp_path / "extended")
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    # --resume alone continues to the run's own target (now 2): nothing left to do
    assert train_dcgan.main(base + ["--out_dir", extended, "--resume"])["step"] == 8
    parser = train_dcgan.build_parser()
    with pytest.raises(SystemExit):  # the total or the extension, not both
        parser.parse_args(base + ["--out_dir", extended, "--more_epochs", "1", "--epochs", "3"])
    with pytest.raises(SystemExit, match="train_dcgan: nothing to resume in .*none"):
        train_dcgan.main(base + ["--out_dir", str(tmp_path / "none"), "--more_epochs", "1"])

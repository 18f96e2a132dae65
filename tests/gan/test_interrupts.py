"""Ctrl-C for real: SIGINT or SIGTERM a running `python -m apps.train_dcgan`.

The first signal lets the step finish, writes a checkpoint, prints one line saying how to
continue and exits 130; resuming with that very command ends on the weights of an
uninterrupted run, bit for bit. A second signal stops at once (exit 130) and leaves every
checkpoint whole and no temporary file behind.
"""
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import needle as ndl
from gan.checkpoint import checkpoint_info, latest_checkpoint
from tests.gan.test_kill_resume import write_tiny_mnist

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = ["--limit", "64", "--batch_size", "8", "--width", "4", "--latent_dim", "8",
        "--checkpoint_every", "1000", "--log_every", "1", "--no_progress", "--epochs", "3"]


def command(data_dir, *extra):
    return [sys.executable, "-m", "apps.train_dcgan", *ARGS, "--data_dir", data_dir, *extra]


def environment():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NEEDLE_BACKEND", None)  # the apps run on the NDArray flavour
    return env


def run(cwd, argv):
    return subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=300)


def start_and_wait_for_training(cwd, argv):
    """The app in its own process, once its first metrics line is written."""
    proc = subprocess.Popen(argv, cwd=cwd, env=environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(cwd, "run", "metrics.jsonl")
    deadline = time.monotonic() + 120
    while not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.005)
    return proc


def final_state(run_dir):
    return ndl.load(latest_checkpoint(os.path.join(run_dir, "checkpoints")))


@pytest.mark.parametrize("which", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_checkpoints_the_step_and_the_printed_command_resumes_bit_exactly(
        tmp_path, which):
    data_dir = write_tiny_mnist(tmp_path / "data")
    (tmp_path / "straight").mkdir()
    (tmp_path / "stopped").mkdir()
    straight = run(tmp_path / "straight", command(data_dir, "--out_dir", "run"))
    assert straight.returncode == 0, straight.stderr

    proc = start_and_wait_for_training(tmp_path / "stopped", command(data_dir, "--out_dir",
                                                                      "run"))
    proc.send_signal(which)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    prefix, _, resume = lines[0].partition("; continue with: ")
    assert prefix.startswith("train_dcgan: interrupted at step ")
    step = int(prefix.rsplit(" ", 1)[1])
    assert 1 <= step < 24 and resume == "python -m apps.train_dcgan --resume --out_dir run"
    checkpoints = tmp_path / "stopped" / "run" / "checkpoints"
    path = latest_checkpoint(str(checkpoints))  # written by the interrupt (every 1000 steps)
    assert path.endswith(f"step_{step:08d}.safetensors")
    assert checkpoint_info(path)["step"] == step

    argv = shlex.split(resume)
    resumed = run(tmp_path / "stopped", [sys.executable, *argv[1:], "--data_dir", data_dir])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run " in resumed.stderr and f"from step {step} of 24" in resumed.stderr
    expected, got = final_state(tmp_path / "straight" / "run"), \
        final_state(tmp_path / "stopped" / "run")
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    data_dir = write_tiny_mnist(tmp_path / "data")
    # the default width and batch 32: a step takes about 0.2 s, so the second signal, 50 ms
    # after the first, lands in the step the first one lets finish
    proc = start_and_wait_for_training(
        tmp_path, command(data_dir, "--out_dir", "run", "--checkpoint_every", "2", "--width",
                          "64", "--batch_size", "32"))
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train_dcgan: stopped at once during step ")
    assert "is intact" in lines[0]
    folder = tmp_path / "run" / "checkpoints"
    for path in folder.glob("step_*.safetensors"):  # every checkpoint there is whole
        ndl.load(str(path))
        checkpoint_info(str(path))
    leftovers = [p.name for p in (tmp_path / "run").rglob("*") if ".tmp" in p.name]
    assert leftovers == []

"""`mpiexec -n 2 python -m apps.train_dcgan --distributed`: the engine on two ranks.

Dry runs (random images, tiny models) so that each launch takes seconds:

  * the first step of 2 ranks (SyncBatchNorm) logs the figures one process logs on the
    whole batch: the ranks took the two halves of the same images and noise;
  * rank 0 alone writes and speaks; run.json and the checkpoints record the world size;
  * a 2-rank run killed with SIGKILL (mpiexec and both ranks) after a few checkpoints and
    resumed ends with the training state of an uninterrupted run, bit for bit, checkpoint by
    checkpoint (the state digests in run.json);
  * resuming it on one process is refused in one line that gives the command to use.

Skipped without mpi4py (an error under CI=true).
"""
import json
import os
import subprocess
import sys
import time

import pytest

from gan.checkpoint import latest_checkpoint, state_digest
from tests.distributed.launch import ROOT, run_ranks, start_ranks, stop

TINY = ["--dry_run", "--width", "4", "--latent_dim", "16", "--batch_size", "16",
        "--num_samples", "16", "--sample_every", "1000", "--no_progress", "--no_health"]


def _train(out_dir, *extra, ranks=2, timeout=240, cwd=ROOT):
    code, out, err, _ = run_ranks("apps.train_dcgan", "--distributed", "--out_dir", out_dir,
                                  *TINY, *extra, ranks=ranks, timeout=timeout, cwd=cwd)
    assert code == 0, err[-3000:]
    return out


def _records(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _digests(out_dir):
    with open(os.path.join(out_dir, "run.json")) as f:
        manifest = json.load(f)
    return {c["step"]: c["state_sha256"] for c in manifest["checkpoints"]}, manifest


def test_two_ranks_take_the_first_step_of_one_process_and_rank_0_alone_writes(tmp_path):
    two, one = str(tmp_path / "two"), str(tmp_path / "one")
    out = _train(two, "--sync_bn", "--max_steps", 2, "--log_every", 1)
    single = subprocess.run([sys.executable, "-m", "apps.train_dcgan", "--out_dir", one, *TINY,
                             "--max_steps", "2", "--log_every", "1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    first_two, first_one = _records(two)[0], _records(one)[0]
    for name in ("d_loss", "d_real", "d_fake", "g_loss"):
        assert first_two[name] == pytest.approx(first_one[name], rel=1e-5), name
    assert out.count("train_dcgan: done in") == 1  # rank 0 speaks, rank 1 is silent
    digests, manifest = _digests(two)
    assert manifest["world_size"] == 2 and manifest["args"]["sync_bn"] is True
    assert sorted(digests) == [2]
    assert sorted(os.listdir(tmp_path)) == ["one", "two"]


def test_a_killed_two_rank_run_resumes_bit_for_bit(tmp_path):
    # Both runs in a folder named "run" (the options, out_dir included, are in the digest).
    steps = ["--epochs", 100, "--max_steps", 48, "--checkpoint_every", 4, "--log_every", 4]
    (tmp_path / "whole").mkdir(), (tmp_path / "killed").mkdir()
    whole, killed = str(tmp_path / "whole" / "run"), str(tmp_path / "killed" / "run")
    _train("run", "--sync_bn", *steps, cwd=str(tmp_path / "whole"))
    process = start_ranks("apps.train_dcgan", "--distributed", "--out_dir", "run", *TINY,
                          "--sync_bn", *steps, cwd=str(tmp_path / "killed"))
    checkpoints, deadline = os.path.join(killed, "checkpoints"), time.monotonic() + 180
    while True:  # a kill at the 4th checkpoint or later, mid-run
        newest = latest_checkpoint(checkpoints) if os.path.isdir(checkpoints) else None
        if newest is not None and int(newest[-20:-12]) >= 16:
            break
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.005)
    stop(process)
    assert process.returncode != 0
    before, manifest = _digests(killed)
    assert manifest["status"] == "running" and max(before) < 48  # cut short, not finished
    _train("run", "--sync_bn", "--resume", *steps, cwd=str(tmp_path / "killed"))
    after, manifest = _digests(killed)
    reference, _ = _digests(whole)
    assert manifest["status"] == "finished" and len(manifest["resumes"]) == 1
    assert max(after) == 48
    for step, digest in after.items():
        assert digest == reference[step], f"checkpoint {step} differs from the whole run's"
    assert state_digest(latest_checkpoint(checkpoints)) == \
        state_digest(latest_checkpoint(os.path.join(whole, "checkpoints")))


def test_a_two_rank_run_is_not_resumed_on_one_process(tmp_path):
    run = str(tmp_path / "run")
    _train(run, "--max_steps", 2)
    resumed = subprocess.run([sys.executable, "-m", "apps.train_dcgan", "--resume",
                              "--out_dir", run, *TINY, "--max_steps", "4"], cwd=ROOT,
                             capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 1
    line = resumed.stderr.strip().splitlines()[-1]
    assert line.startswith("train_dcgan: ") and "was written by a run on 2 rank(s) and " \
        "this one has 1; resume it on 2: mpiexec -n 2 python -m apps.train_dcgan --resume " \
        f"--out_dir {run} --distributed" in line
    assert sorted(_digests(run)[0]) == [2]  # nothing written

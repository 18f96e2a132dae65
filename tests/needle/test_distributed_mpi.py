"""needle.distributed across processes: `mpiexec -n 2` runs of the rank-side scripts in
tests/distributed/ (each checks its results on the ranks and prints one line per rank).

Skipped without mpi4py (an error under CI=true, whose .ci/run installs mpich and mpi4py).
"""
import re

from tests.distributed.launch import run_ranks


def _passed(module, *args, timeout=180):
    code, out, err, _ = run_ranks(module, *args, timeout=timeout)
    assert code == 0, f"{module} failed (exit {code}):\n{err[-3000:]}"
    return out


def test_gradient_all_reduce_and_parameter_broadcast_against_hand_computed_averages():
    out = _passed("tests.distributed.collectives")
    assert sorted(re.findall(r"rank \d/2: collectives ok", out)) == [
        "rank 0/2: collectives ok", "rank 1/2: collectives ok"], out


def test_two_ranks_with_sync_batch_norm_take_the_steps_of_one_process_with_both_batches():
    out = _passed("tests.distributed.dcgan_steps", "--steps", 5, "--batch", 32)
    assert "rank 0/2: dcgan ok: largest difference " in out, out


def test_a_rank_raising_mid_step_ends_the_run_naming_the_error():
    code, out, err, seconds = run_ranks("tests.distributed.failures", "--mode", "raise",
                                        timeout=120)
    assert code != 0 and seconds < 60
    assert "rank 1: ValueError: injected failure on rank 1 at step 3\n" in err, err
    assert "finished all steps" not in out


def test_a_rank_that_stops_answering_times_out_the_others():
    code, out, err, seconds = run_ranks("tests.distributed.failures", "--mode", "hang",
                                        "--timeout", 3, timeout=120)
    assert code != 0 and seconds < 60
    assert ("rank 0: CollectiveTimeout: needle.distributed: rank 0: gradient all-reduce did "
            "not complete on every rank within 3 s") in err, err
    assert "finished all steps" not in out


def test_a_rank_killed_mid_step_ends_the_run():
    code, out, _, seconds = run_ranks("tests.distributed.failures", "--mode", "die",
                                      "--timeout", 30, timeout=120)
    assert code != 0 and seconds < 60
    assert "finished all steps" not in out

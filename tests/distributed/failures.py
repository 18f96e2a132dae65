"""Rank side of test_distributed_mpi.py's failure tests (mpiexec -n 2): rank 1 fails in the
middle of a training step while rank 0 goes on into the gradient all-reduce.

    --mode raise   rank 1 raises ValueError after its backward pass
    --mode hang    rank 1 stops answering (sleeps); rank 0's all-reduce times out
    --mode die     rank 1 is killed by SIGKILL (no Python cleanup at all)

Each run must end, with a non-zero status and (raise, hang) a line naming the error, long
before the pytest side's deadline.
"""
import argparse
import os
import signal
import time

import numpy as np

import needle as ndl
import needle.distributed as dist
from needle import nn


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("raise", "hang", "die"), required=True)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    group = dist.init(timeout=args.timeout)
    with dist.abort_on_error():
        np.random.seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
        dist.broadcast_parameters(model)
        opt = dist.average_gradients(ndl.optim.SGD(model.parameters(), lr=0.1))
        for step in range(1, 6):
            x = ndl.Tensor(np.random.randn(4, 8).astype(np.float32), requires_grad=False)
            opt.reset_grad()
            model(x).sum().backward()
            if group.rank == 1 and step == 3:
                if args.mode == "raise":
                    raise ValueError(f"injected failure on rank 1 at step {step}")
                if args.mode == "hang":
                    time.sleep(600)
                os.kill(os.getpid(), signal.SIGKILL)
            opt.step()
        print(f"rank {group.rank}: finished all steps (the failure did not stop the run)",
              flush=True)


if __name__ == "__main__":
    main()

"""What the rank-side scripts share: the line each rank prints when its checks pass."""
import sys

import needle.distributed as dist

__all__ = ["report"]


def report(message):
    """`rank R/W: message` on stdout, which the pytest side looks for on every rank; one
    write, so that mpiexec does not splice another rank's output into the line."""
    sys.stdout.write(f"rank {dist.rank()}/{dist.world_size()}: {message}\n")
    sys.stdout.flush()

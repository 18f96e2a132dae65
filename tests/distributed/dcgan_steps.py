"""Rank side of test_distributed_mpi.py::test_sync_batch_norm_dcgan (mpiexec -n 2).

Two ranks of batch B with norm="syncbatch", gradients averaged by
`distributed.average_gradients`, against one process of batch 2B with plain BatchNorm (run
on rank 0 after the distributed steps): after `--steps` DCGAN steps (D then G, Adam) every
parameter and running statistic agrees to `--atol`. Both draw the same global noise and
images, and rank r takes its slice of each, as DataLoader(shard=...) does for data.

float64 by default, so that the comparison measures the distributed algebra: Adam's first
updates are +-lr for every gradient entry above eps, so in float32 an entry within rounding
of zero can flip its update by 2*lr, and reductions over a different split of the batch
round differently.
"""
import argparse

import numpy as np

import needle as ndl
import needle.distributed as dist
from gan import Adversarial
from gan.models.dcgan import Discriminator, Generator
from gan.objectives import NonSaturating

from .common import report

LATENT = 16


def build(norm, width, dtype):
    np.random.seed(0)  # the same initial weights in every build
    G = Generator(LATENT, channels=1, image_size=28, width=width, norm=norm, dtype=dtype)
    D = Discriminator(channels=1, image_size=28, width=width, norm=norm, dtype=dtype)
    g_opt = ndl.optim.Adam(G.parameters(), lr=2e-4, beta1=0.5)
    d_opt = ndl.optim.Adam(D.parameters(), lr=2e-4, beta1=0.5)
    return G, Adversarial(D, NonSaturating(), d_opt, generator=G), g_opt


def train(G, adversarial, g_opt, steps, batch, rank, world, dtype):
    """`steps` D+G steps; each step's global batch of world*batch images and noise is drawn
    from one seeded stream and rank `rank` takes rows [rank*batch, (rank+1)*batch)."""
    data = np.random.RandomState(1)
    mine = slice(rank * batch, (rank + 1) * batch)
    for _ in range(steps):
        images = data.uniform(-1, 1, (world * batch, 1, 28, 28)).astype(dtype)
        noise = data.randn(world * batch, LATENT).astype(dtype)
        real = ndl.Tensor(images[mine], dtype=dtype, requires_grad=False)
        fake = G(ndl.Tensor(noise[mine], dtype=dtype, requires_grad=False))
        adversarial.discriminator_step(real, fake)
        g_loss = adversarial.generator_loss(fake)
        g_opt.reset_grad()
        g_loss.backward(create_graph=False)
        g_opt.step()
    return {**{f"G.{k}": v for k, v in G.state_dict().items()},
            **{f"D.{k}": v for k, v in adversarial.discriminator.state_dict().items()}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--dtype", default="float64")
    args = parser.parse_args()
    group = dist.init(timeout=120)
    with dist.abort_on_error():
        synced = distributed_run("syncbatch", args, group)
        local = distributed_run("batch", args, group)  # each rank normalises its own slice
        if group.rank == 0:
            reference = train(*build("batch", args.width, args.dtype), args.steps,
                              args.batch * group.size, 0, 1, args.dtype)
            start = build_state(args.width, args.dtype)
            worst = largest_difference(reference, synced)
            moved = largest_difference(reference, start, parameters_only=True)
            apart = largest_difference(reference, local, parameters_only=True)
            assert worst <= args.atol, f"largest difference {worst:.3g} > {args.atol:g}"
            assert moved > 10 * args.atol, f"the parameters barely moved ({moved:.3g})"
            assert apart > 10 * args.atol, \
                f"plain BatchNorm on 2 ranks also matched ({apart:.3g}): the check is blind"
            report(f"dcgan ok: largest difference {worst:.3g} over {len(synced)} tensors "
                   f"(parameters moved up to {moved:.3g}; per-rank BatchNorm differs by "
                   f"{apart:.3g})")
        group.barrier()


def distributed_run(norm, args, group):
    """Both ranks train; rank 0 gets the state after checking that the ranks agree (on the
    parameters; with plain BatchNorm each rank's running statistics are its slice's)."""
    G, adversarial, g_opt = build(norm, args.width, args.dtype)
    dist.average_gradients(adversarial.optimizer)
    dist.average_gradients(g_opt)
    state = train(G, adversarial, g_opt, args.steps, args.batch, group.rank, group.size,
                  args.dtype)
    states = group.comm.gather(state, root=0)
    if group.rank == 0:
        for name, value in states[1].items():
            if norm == "syncbatch" or ".running_" not in name:
                np.testing.assert_array_equal(value, state[name], err_msg=f"ranks differ: {name}")
    return state


def largest_difference(a, b, parameters_only=False):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a
               if not (parameters_only and ".running_" in k))


def build_state(width, dtype):
    G, adversarial, _ = build("batch", width, dtype)
    return {**{f"G.{k}": v for k, v in G.state_dict().items()},
            **{f"D.{k}": v for k, v in adversarial.discriminator.state_dict().items()}}


if __name__ == "__main__":
    main()

"""The WGAN-GP critic step, needle beside PyTorch: where the gradient penalty's cost goes.

    python -m benchmarks.critic_step                 # batch 64, 15 interleaved repeats
    python -m benchmarks.critic_step --batch 32 --repeat 9

One critic step of apps.train_wgan_gp on MNIST: the DCGAN critic without BatchNorm
(1-64-128-1 convs, LeakyReLU 0.2), Wasserstein loss on a real and a fake batch, gradient
penalty of weight 10 on x_hat = eps real + (1 - eps) fake, backward through the penalty
(double backward) and one Adam step. Both frameworks start from the same weights (needle's,
copied into PyTorch) and get the same batches and eps; PyTorch's penalty uses
`torch.autograd.grad(create_graph=True)`, needle's `ndl.grad(create_graph=True)` inside
gan.penalties.GradientPenalty. The fake batch is a fixed array for both (no generator
forward); both return the same logged figures (loss, mean scores, penalty, D's gradient
norm), so both pay the same host syncs. Also timed: the penalty's gradient alone (`grad` of D's output with respect to
x_hat, which needs no weight gradients). Prints JSON: median ms per call.
"""
import argparse
import json

import numpy as np

import needle as ndl
from benchmarks.dcgan_vs_torch import copy_weights, mnist
from benchmarks.timing import CLOCKS, interleaved_medians, machine, try_import_torch
from gan import Adversarial
from gan.models.dcgan import Discriminator
from gan.objectives import Wasserstein
from gan.penalties import GradientPenalty


class NeedleCritic:
    def __init__(self, seed):
        np.random.seed(seed)
        self.D = Discriminator(width=64, norm="none")
        self.adv = Adversarial(self.D, Wasserstein(), ndl.optim.Adam(
            self.D.parameters(), lr=1e-4, beta1=0.5, beta2=0.9),
            penalties=[GradientPenalty(10.0)])

    def step(self, real, fake, eps):
        np.random.set_state(eps)  # GradientPenalty draws its eps from NumPy's global RNG
        self.adv.discriminator_step(ndl.Tensor(real, requires_grad=False),
                                    ndl.Tensor(fake, requires_grad=False))

    def penalty_gradient(self, x_hat):
        x = ndl.Tensor(x_hat, requires_grad=True)
        (gx,) = ndl.grad([self.D(x).sum()], [x], create_graph=True)
        return gx


class TorchCritic:
    def __init__(self, torch, twin):
        nn = torch.nn
        self.torch = torch
        self.D = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Conv2d(128, 1, 7, bias=False))
        copy_weights(torch, twin.D, self.D)
        self.opt = torch.optim.Adam(self.D.parameters(), lr=1e-4, betas=(0.5, 0.9))

    def step(self, real, fake, eps):
        torch = self.torch
        np.random.set_state(eps)
        alpha = torch.from_numpy(np.random.rand(len(real), 1, 1, 1).astype(np.float32))
        real, fake = torch.from_numpy(real), torch.from_numpy(fake)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (gx,) = torch.autograd.grad(self.D(x_hat).sum(), x_hat, create_graph=True)
        norms = torch.sqrt(gx.pow(2).sum(dim=(1, 2, 3)) + 1e-12)
        penalty = 10.0 * ((norms - 1) ** 2).mean()
        real_scores, fake_scores = self.D(real), self.D(fake)
        loss = fake_scores.mean() - real_scores.mean() + penalty
        self.opt.zero_grad()
        loss.backward()
        # the figures needle's discriminator_step returns (the same host syncs)
        grad_norm = sum(float(p.grad.pow(2).sum()) for p in self.D.parameters()) ** 0.5
        figures = (loss.item(), real_scores.mean().item(), fake_scores.mean().item(),
                   penalty.item(), grad_norm)
        self.opt.step()
        return figures

    def penalty_gradient(self, x_hat):
        x = self.torch.from_numpy(x_hat).requires_grad_(True)
        (gx,) = self.torch.autograd.grad(self.D(x).sum(), x, create_graph=True)
        return gx


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.critic_step",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="images per batch")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per framework")
    parser.add_argument("--seed", type=int, default=0, help="weights and batches")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or process CPU time (for one-thread runs)")
    args = parser.parse_args(argv)
    torch = try_import_torch()
    rng = np.random.RandomState(args.seed)
    images = mnist(train=False)
    real = images[rng.randint(0, len(images), args.batch)]
    fake = np.tanh(rng.randn(*real.shape)).astype(np.float32)
    x_hat = (0.5 * real + 0.5 * fake).astype(np.float32)
    eps = np.random.RandomState(args.seed + 1).get_state()
    needle_critic = NeedleCritic(args.seed)
    rows = {"needle": needle_critic}
    if torch is not None:
        torch.set_num_threads(torch.get_num_threads())
        rows["torch"] = TorchCritic(torch, needle_critic)
    clock = CLOCKS[args.clock]
    step_times = interleaved_medians([lambda m=m: m.step(real, fake, eps)
                                      for m in rows.values()], repeat=args.repeat, clock=clock)
    grad_times = interleaved_medians([lambda m=m: m.penalty_gradient(x_hat)
                                      for m in rows.values()], repeat=args.repeat, clock=clock)
    result = {"benchmark": "wgan_gp_critic_step", "batch": args.batch, "clock": args.clock,
              "machine": machine(),
              "ms_per_critic_step": {k: round(t * 1e3, 2) for k, t in zip(rows, step_times)},
              "ms_per_penalty_gradient": {k: round(t * 1e3, 2)
                                          for k, t in zip(rows, grad_times)}}
    if torch is not None:
        result["ratio_critic_step"] = round(step_times[0] / step_times[1], 3)
        result["ratio_penalty_gradient"] = round(grad_times[0] / grad_times[1], 3)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

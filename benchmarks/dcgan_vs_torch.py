"""The same DCGAN trained with needle and with PyTorch: speed, memory and sample quality.

    python -m benchmarks.dcgan_vs_torch                  # timing: 20 interleaved steps each
    python -m benchmarks.dcgan_vs_torch --epochs 1       # also train 1 epoch each and score
    python -m benchmarks.dcgan_vs_torch --device cuda --batch 64 128 512   # GPU mode

Both frameworks get the 28x28 DCGAN of apps.train_dcgan (G 100-256-128-1, D 1-64-128-1), the
same initial weights (needle's, copied into PyTorch), the same batches, noise, Adam settings
and non-saturating loss; G's step computes G's gradients alone (backward(inputs=G's
parameters) in both). Each step logs the same figures in both, as a training loop does:
D's loss, D(x), D(G(z)), the norm of D's gradient (each gradient copied to the host, as
gan.Adversarial does) and G's loss, so both pay the same host syncs. `--device cuda` runs
needle on CuPy and PyTorch on CUDA (each step ends with a device synchronize, batches are
copied from the host every step for both).
Timing alternates needle and PyTorch steps in this process (medians);
peak RSS comes from one subprocess per framework running the same steps alone. With
--epochs, each framework trains in its own subprocess and both generators are scored by
gan.metrics (FID in the shipped MNIST classifier's feature space, digits covered).
Prints JSON.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

import needle as ndl
from benchmarks.timing import (CLOCKS, interleaved_medians, machine, peak_rss_mb,
                               try_import_torch)
from gan import Adversarial
from gan.adversarial import backward_into
from gan.models.dcgan import Discriminator, Generator
from gan.objectives import NonSaturating

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENT = 100
#: What each framework's step returns (and a training loop logs): D's loss, D(x) and D(G(z))
#: as mean probabilities, the global norm of D's gradient, G's loss.
FIGURES = ("d_loss", "d_real", "d_fake", "d_grad_norm", "g_loss")


def mnist(train=True):
    """MNIST as NCHW in [-1, 1]; timing runs use the 10000 test images (less to load)."""
    from needle.data import load_mnist
    data = load_mnist(os.path.join(ROOT, "data", "mnist"), train=train)
    return (data.images.reshape(-1, 1, 28, 28) * 2 - 1).astype(np.float32)


class NeedleDCGAN:
    def __init__(self, width, device=None):
        self.device = device
        self.G = Generator(LATENT, width=width, device=device)
        self.D = Discriminator(width=width, device=device)
        adam = dict(lr=2e-4, beta1=0.5, beta2=0.999)
        self.adv = Adversarial(self.D, NonSaturating(), ndl.optim.Adam(self.D.parameters(),
                                                                       **adam))
        self.opt_G = ndl.optim.Adam(self.G.parameters(), **adam)

    def step(self, real, z):
        """One D step and one G step; returns the logged figures (FIGURES), as floats."""
        fake = self.G(ndl.Tensor(z, device=self.device, requires_grad=False))
        figures = self.adv.discriminator_step(
            ndl.Tensor(real, device=self.device, requires_grad=False), fake)
        loss = self.adv.generator_loss(fake)
        self.opt_G.reset_grad()
        backward_into(loss, self.opt_G)  # G's gradients alone, as the gan recipes do
        self.opt_G.step()
        figures["g_loss"] = float(loss.numpy())
        return {name: figures[name] for name in FIGURES}

    def sample(self, z):
        self.G.eval()
        with ndl.no_grad():
            images = self.G(ndl.Tensor(z, device=self.device, requires_grad=False)).numpy()
        self.G.train()
        return images

    def synchronize(self):
        if self.device.name == "cuda":
            self.device.xp.cuda.runtime.deviceSynchronize()

    def gpu_memory_mb(self):
        """Bytes CuPy's memory pool holds (needle allocates through it)."""
        return self.device.xp.get_default_memory_pool().total_bytes() / 2 ** 20


class TorchDCGAN:
    """PyTorch twin: same layers, weights copied from a NeedleDCGAN (layout converted)."""

    def __init__(self, torch, twin, device="cpu"):
        nn = torch.nn
        self.torch, self.device = torch, device
        self.G = nn.Sequential(
            nn.ConvTranspose2d(LATENT, 256, 7, bias=False), nn.BatchNorm2d(256), nn.ReLU(),
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
            nn.ConvTranspose2d(128, 1, 4, 2, 1, bias=False), nn.Tanh())
        self.D = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
            nn.Conv2d(128, 1, 7, bias=False))
        copy_weights(torch, twin.G, self.G)
        copy_weights(torch, twin.D, self.D)
        self.G.to(device)
        self.D.to(device)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.softplus = torch.nn.functional.softplus

    def step(self, real, z):
        torch = self.torch
        fake = self.G(torch.from_numpy(z).to(self.device).view(-1, LATENT, 1, 1))
        real_logits = self.D(torch.from_numpy(real).to(self.device)).view(-1)
        fake_logits = self.D(fake.detach()).view(-1)
        d_loss = self.softplus(-real_logits).mean() + self.softplus(fake_logits).mean()
        self.opt_D.zero_grad()
        d_loss.backward()
        grads = [p.grad.detach().cpu().numpy() for p in self.D.parameters() if p.grad is not None]
        d_grad_norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
        self.opt_D.step()
        figures = {"d_loss": d_loss.item(), "d_real": torch.sigmoid(real_logits).mean().item(),
                   "d_fake": torch.sigmoid(fake_logits).mean().item(),
                   "d_grad_norm": d_grad_norm}
        g_loss = self.softplus(-self.D(fake).view(-1)).mean()
        self.opt_G.zero_grad()
        g_loss.backward(inputs=list(self.G.parameters()))  # G's alone, as needle's twin
        self.opt_G.step()
        figures["g_loss"] = g_loss.item()
        return figures

    def sample(self, z):
        self.G.eval()
        with self.torch.no_grad():
            images = self.G(self.torch.from_numpy(z).to(self.device).view(-1, LATENT, 1, 1))
        self.G.train()
        return images.cpu().numpy()

    def synchronize(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def gpu_memory_mb(self):
        """Peak bytes PyTorch's caching allocator held."""
        return self.torch.cuda.max_memory_reserved() / 2 ** 20


def copy_weights(torch, needle_model, torch_model):
    """needle conv weights -> torch: (3, 2, 0, 1) maps Conv2d's (K, K, Cin, Cout) and
    ConvTranspose2d's (K, K, Cout, Cin) to torch's (Cout, Cin, K, K) / (Cin, Cout, K, K)."""
    state = needle_model.state_dict()
    needle_weights = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
    norm_state = [v for k, v in state.items() if v.ndim == 1]
    convs = [m for m in torch_model if isinstance(m, (torch.nn.Conv2d,
                                                       torch.nn.ConvTranspose2d))]
    norms = [m for m in torch_model if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for module, weight in zip(convs, needle_weights):
            module.weight.copy_(torch.from_numpy(weight.transpose(3, 2, 0, 1).copy()))
        for module, index in zip(norms, range(0, len(norm_state), 4)):
            module.weight.copy_(torch.from_numpy(norm_state[index]))
            module.bias.copy_(torch.from_numpy(norm_state[index + 1]))


def batches(images, batch, steps, seed):
    rng = np.random.RandomState(seed)
    for _ in range(steps):
        index = rng.randint(0, len(images), batch)
        yield images[index], rng.randn(batch, LATENT).astype(np.float32)


def make_models(framework, width, seed, device="cpu"):
    """Both frameworks start from needle's initial weights for `seed` (drawn on the host)."""
    np.random.seed(seed)
    if framework == "needle":
        return NeedleDCGAN(width, ndl.cuda() if device == "cuda" else ndl.cpu_numpy())
    torch = try_import_torch()
    torch.manual_seed(seed)
    return TorchDCGAN(torch, NeedleDCGAN(width, ndl.cpu_numpy()), device)


def worker(args):
    """One framework alone: peak RSS after `steps` steps, or a trained generator's samples."""
    images = mnist(train=bool(args.epochs))
    model = make_models(args.worker, args.width, args.seed, args.device)
    batch = args.batch[0]
    steps = args.steps if not args.epochs else args.epochs * (len(images) // batch)
    start = time.perf_counter()
    for real, z in batches(images, batch, steps, args.seed):
        model.step(real, z)
    model.synchronize()
    elapsed = time.perf_counter() - start
    result = {"steps": steps, "seconds": elapsed,
              "peak_rss_mb": peak_rss_mb()}
    if args.device == "cuda":
        result["gpu_pool_mb"] = model.gpu_memory_mb()
    if args.epochs:
        z = np.random.RandomState(12345).randn(args.samples, LATENT).astype(np.float32)
        np.save(args.samples_out, model.sample(z))
    print(json.dumps(result))


def run_worker(framework, args, extra=()):
    command = [sys.executable, "-m", "benchmarks.dcgan_vs_torch", "--worker", framework,
               "--batch", str(args.batch[0]), "--width", str(args.width), "--seed",
               str(args.seed), "--steps", str(args.steps), "--device", args.device, *extra]
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def timing(args, torch, batch):
    images = mnist(train=False)
    models = [make_models("needle", args.width, args.seed, args.device)]
    if torch is not None:
        models.append(make_models("torch", args.width, args.seed, args.device))
    feed = list(batches(images, batch, 2 * args.steps + 2, args.seed))  # settle + timed
    cursors = [iter(feed) for _ in models]

    def stepper(model, cursor):
        def step():
            model.step(*next(cursor))
            model.synchronize()
        return step

    medians = interleaved_medians([stepper(m, c) for m, c in zip(models, cursors)],
                                  repeat=args.steps, warmup=2, clock=CLOCKS[args.clock])
    result = {"batch": batch, "needle_ms_per_step": medians[0] * 1e3,
              "needle_images_per_s": batch / medians[0]}
    if torch is not None:
        result.update({"torch_ms_per_step": medians[1] * 1e3,
                       "torch_images_per_s": batch / medians[1],
                       "ratio_step_time": medians[0] / medians[1],
                       "throughput_vs_torch": medians[1] / medians[0]})
    return result


def quality(args, torch):
    from gan.metrics import Evaluator, load_classifier
    evaluator = Evaluator(load_classifier(), mnist(train=False))
    scores = {}
    for framework in ["needle"] + (["torch"] if torch is not None else []):
        runs = []
        for seed in args.quality_seeds or [args.seed]:
            path = os.path.join("/tmp", f"dcgan_bench_{framework}_{os.getpid()}.npy")
            run = run_worker(framework, args, ["--epochs", str(args.epochs), "--samples-out",
                                               path, "--samples", str(args.samples),
                                               "--seed", str(seed)])
            metrics = evaluator.evaluate(np.load(path))
            os.remove(path)
            runs.append({"seed": seed, "train_seconds": run["seconds"], "fid": metrics["fid"],
                         "digits_covered": metrics["digits_covered"],
                         "confident": metrics["confident"]})
        scores[framework] = {"runs": runs,
                             "mean_fid": float(np.mean([r["fid"] for r in runs])),
                             "min_digits_covered": min(r["digits_covered"] for r in runs)}
    if torch is not None:
        scores["fid_ratio_needle_vs_torch"] = (scores["needle"]["mean_fid"]
                                               / scores["torch"]["mean_fid"])
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[64],
                        help="batch sizes timed (memory and quality use the first)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: needle on CuPy beside PyTorch on CUDA")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per framework")
    parser.add_argument("--epochs", type=int, default=0, help="train and score (0: skip)")
    parser.add_argument("--samples", type=int, default=2000, help="images scored per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality_seeds", "--quality-seeds", type=int, nargs="+",
                        help="with --epochs: train and score once per seed (default: --seed)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: process CPU time; use with one thread on a busy machine")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS subprocesses")
    parser.add_argument("--worker", choices=["needle", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--samples-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    torch = try_import_torch()
    if args.device == "cuda":
        if not ndl.cuda().enabled():
            parser.error("--device cuda: needle's cuda() is not available (CuPy and a GPU)")
        if torch is not None and not torch.cuda.is_available():
            torch = None  # a CPU-only PyTorch cannot be the GPU comparison
    report = {"benchmark": "dcgan_vs_torch", "machine": machine(), "device": args.device,
              "clock": args.clock, "width": args.width,
              "torch": None if torch is None else torch.__version__,
              "timing": [timing(args, torch, batch) for batch in args.batch]}
    if not args.no_memory:
        runs = {framework: run_worker(framework, args)
                for framework in ["needle"] + (["torch"] if torch else [])}
        report["memory"] = {framework: {key: value for key, value in run.items()
                                        if key.endswith("_mb")}
                            for framework, run in runs.items()}
    if args.epochs:
        report["quality"] = quality(args, torch)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Train a WGAN-GP: python -m apps.train_wgan_gp --help

Gulrajani et al. (2017): a Wasserstein critic with the gradient penalty 10 * E[(||grad D||-1)^2]
(eq. 3), 5 critic steps per generator step, Adam with lr 1e-4 and betas (0.5, 0.9).

--data ring8 | grid25: the 2-D Gaussian mixtures of gan.mixtures (8 on a ring, 25 on a grid),
  MLP generator and critic, fresh samples every step; an epoch is 1,000 critic steps
  (default 20 epochs). Writes samples/step_*.png (generated points over the mode centres),
  losses.png, metrics.jsonl (with modes covered and the high-quality share at each epoch end),
  run.json and checkpoints/, and prints the final mode metrics.
--data mnist: the DCGAN models with no batch norm in the critic (a gradient penalty needs
  per-sample gradients), trained by gan.Trainer like train_dcgan (default 1 epoch).
"""
import json
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

import needle as ndl
from gan import Adversarial, Trainer, TrainerConfig, TrainingDiverged
from gan.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from gan.mixtures import MIXTURES
from gan.models.dcgan import Discriminator, Generator
from gan.models.mlp import MLPCritic, MLPGenerator
from gan.objectives import Wasserstein
from gan.penalties import GradientPenalty
from gan.plots import plot_history, save_figure
from gan.runfiles import RunManifest, clean_stale_temp_files, read_history

from .common import (add_common_options, make_parser, mnist_images, resolve_device,
                     run_training)

POINT_STEPS_PER_EPOCH = 1000
DEFAULT_EPOCHS = {"mnist": 1, "ring8": 20, "grid25": 20}
DEFAULT_LATENT = {"mnist": 100, "ring8": 2, "grid25": 2}


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    add_common_options(parser, out_dir="runs/wgan_gp", epochs=None)
    add = parser.add_argument
    add("--data", choices=["ring8", "grid25", "mnist"], default="ring8",
        help="2-D Gaussian mixture (ring8, grid25) or MNIST images")
    add("--lr", type=float, default=1e-4, help="Adam learning rate of the critic (and G)")
    add("--g_lr", "--g-lr", type=float, default=None,
        help="Adam learning rate of G when it should differ from --lr")
    add("--beta1", type=float, default=0.5, help="Adam beta1")
    add("--beta2", type=float, default=0.9, help="Adam beta2")
    add("--n_critic", "--n-critic", type=int, default=5, help="critic steps per G step")
    add("--gp_weight", "--gp-weight", type=float, default=10.0,
        help="lambda of the gradient penalty")
    add("--latent_dim", "--latent-dim", type=int, default=None,
        help="size of z; when not given, 2 for 2-D data and 100 for MNIST")
    add("--width", type=int, default=64, help="MNIST: channel width unit of G and D")
    add("--hidden", type=int, default=128, help="2-D data: hidden units per MLP layer")
    add("--layers", type=int, default=3, help="2-D data: hidden layers of G and D")
    add("--lr_decay", "--lr-decay", action="store_true",
        help="2-D data: decay both learning rates linearly to 0 over the run (as Gulrajani "
             "et al. do on CIFAR-10); short runs then end concentrated on the modes")
    add("--eval_samples", "--eval-samples", type=int, default=2500,
        help="2-D data: generated points for the mode metrics and the scatter plot")
    parser.epilog = (f"--epochs, when not given: {DEFAULT_EPOCHS['mnist']} for MNIST, "
                     f"{DEFAULT_EPOCHS['ring8']} for 2-D data, where an epoch is "
                     f"{POINT_STEPS_PER_EPOCH} critic steps on fresh samples of the mixture.")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS[args.data]
    if args.latent_dim is None:
        args.latent_dim = DEFAULT_LATENT[args.data]
    if args.g_lr is None:
        args.g_lr = args.lr
    if args.lr_decay and args.data == "mnist":
        parser.error("--lr_decay applies to the 2-D data only (gan.Trainer keeps lr fixed)")
    device = resolve_device(args.device)
    train = _train_mnist if args.data == "mnist" else _train_points
    return run_training("train_wgan_gp", lambda: train(args, device), args.out_dir)


def _models(generator, critic, args):
    """(Adversarial for the critic, G's optimizer): Wasserstein + GP, Adam on both."""
    betas = dict(beta1=args.beta1, beta2=args.beta2)
    adversarial = Adversarial(critic, Wasserstein(),
                              ndl.optim.Adam(critic.parameters(), lr=args.lr, **betas),
                              penalties=[GradientPenalty(args.gp_weight)],
                              n_critic=args.n_critic)
    return adversarial, ndl.optim.Adam(generator.parameters(), lr=args.g_lr, **betas)


def _train_mnist(args, device):
    images, _ = mnist_images(args)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    generator = Generator(args.latent_dim, channels=1, width=args.width, device=device)
    critic = Discriminator(channels=1, width=args.width, norm="none", device=device)
    adversarial, g_optimizer = _models(generator, critic, args)
    config = TrainerConfig(out_dir=args.out_dir, epochs=args.epochs, batch_size=args.batch_size,
                           latent_dim=args.latent_dim, seed=args.seed,
                           checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                           max_steps=args.n_critic if args.dry_run else args.max_steps,
                           resume=args.resume, progress=not args.no_progress,
                           health=not args.no_health, debug=args.debug)
    trainer = Trainer(generator, adversarial, g_optimizer, images, config, device=device,
                      run_info={"app": "train_wgan_gp", "args": vars(args)})
    return trainer.train()


# ---- 2-D mixtures: a compact loop (gan.Trainer is for NCHW images) ----------------------
def _train_points(args, device):
    mixture = MIXTURES[args.data]()
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    generator = MLPGenerator(args.latent_dim, 2, hidden=args.hidden, layers=args.layers,
                             device=device)
    critic = MLPCritic(2, hidden=args.hidden, layers=args.layers, device=device)
    adversarial, g_optimizer = _models(generator, critic, args)
    adversarial.watch(generator).debug = args.debug  # graph-hygiene checks (gan.Adversarial)
    loop = PointsLoop(generator, adversarial, g_optimizer, mixture, args, device)
    return loop.train()


class PointsLoop:
    """D step on a fresh batch of mixture samples every step, G step every n_critic steps.

    Mirrors gan.Trainer's outputs and resume rule: NumPy's global RNG draws the data and the
    noise and is saved in each checkpoint, so a resumed run continues bit for bit.
    """

    def __init__(self, generator, adversarial, g_optimizer, mixture, args, device):
        self.generator, self.adversarial, self.g_optimizer = generator, adversarial, g_optimizer
        self.mixture, self.args, self.device = mixture, args, device
        self.total_steps = args.epochs * POINT_STEPS_PER_EPOCH
        if args.dry_run:
            self.total_steps = 2 * args.n_critic
        elif args.max_steps is not None:
            self.total_steps = min(self.total_steps, args.max_steps)
        self.checkpoint_dir = os.path.join(args.out_dir, "checkpoints")
        self.metrics_path = os.path.join(args.out_dir, "metrics.jsonl")
        # Evaluation noise from its own RNG: evaluating never moves the training stream.
        self.eval_noise = np.random.RandomState(args.seed + 1).randn(
            args.eval_samples, args.latent_dim).astype(np.float32)
        self.history = []
        self.last_evaluation = None

    def _components(self):
        return {"generator": self.generator, "adversarial": self.adversarial,
                "g_optimizer": self.g_optimizer}

    def train(self):
        args = self.args
        os.makedirs(args.out_dir, exist_ok=True)
        step = self._start()
        # run.json: versions, command, checkpoint hashes; rewritten atomically (gan.runfiles)
        self.manifest = RunManifest(args.out_dir, vars(args), args.seed, self.device,
                                    app="train_wgan_gp", args=vars(args))
        self.manifest.start(self.resumed_from)
        interval = []
        bar = tqdm(total=self.total_steps, initial=step, desc=f"wgan-gp {args.data}",
                   disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)
        with bar:
            while step < self.total_steps:
                interval.append(self._step(step))
                step += 1
                bar.update(1)
                if step % args.log_every == 0:
                    self._log(step, interval)
                    interval = []
                if step % POINT_STEPS_PER_EPOCH == 0:
                    self._evaluate(step)
                if step % args.checkpoint_every == 0:
                    self._checkpoint(step)
        if interval:
            self._log(step, interval)
        if self.last_evaluation is None or self.last_evaluation["step"] != step:
            self._evaluate(step)
        self._checkpoint(step)
        return self.last_evaluation

    def _start(self):
        self.resumed_from = None
        clean_stale_temp_files(self.checkpoint_dir)  # a killed writer's leftovers
        if not self.args.resume:
            np.random.seed(self.args.seed)
            open(self.metrics_path, "w").close()
            return 0
        path = latest_checkpoint(self.checkpoint_dir)
        if path is None:
            raise FileNotFoundError(f"resume: no checkpoint in {self.checkpoint_dir}")
        info, _ = load_checkpoint(path, self._components())
        # tolerant of a line cut short by a kill; rewritten atomically
        self.history = read_history(self.metrics_path, info["step"])
        self.resumed_from = (info["step"], path)
        return info["step"]

    def _step(self, step):
        args = self.args
        if args.lr_decay:
            scale = 1 - step / self.total_steps
            self.adversarial.optimizer.lr = args.lr * scale
            self.g_optimizer.lr = args.g_lr * scale
        real = ndl.Tensor(self.mixture.sample(args.batch_size, np.random), device=self.device)
        z = ndl.init.randn(args.batch_size, args.latent_dim, device=self.device)
        fake = self.generator(z)
        figures = self.adversarial.discriminator_step(real, fake)
        if (step + 1) % self.adversarial.n_critic == 0:
            g_loss = self.adversarial.generator_loss(fake)
            self.g_optimizer.reset_grad()
            g_loss.backward(create_graph=False)
            figures["g_loss"] = float(g_loss.numpy())
            self.g_optimizer.step()
        for name, value in figures.items():
            if not math.isfinite(value):
                last = latest_checkpoint(self.checkpoint_dir)
                raise TrainingDiverged(f"training stopped at step {step + 1}: {name} is "
                                       f"{value}; last good checkpoint: {last}")
        return figures

    def _record(self, record):
        self.history.append(record)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _log(self, step, interval):
        record = {"step": step, "time": time.time()}
        for key in interval[-1]:
            record[key] = float(np.mean([f[key] for f in interval if key in f]))
        self._record(record)

    def sample(self):
        """Points from the fixed evaluation noise, as a NumPy (eval_samples, 2) array."""
        self.generator.eval()
        try:
            with ndl.no_grad():
                z = ndl.Tensor(self.eval_noise, device=self.device, requires_grad=False)
                return self.generator(z).numpy()
        finally:
            self.generator.train()

    def _evaluate(self, step):
        """Mode metrics on the fixed-noise samples, a scatter plot and the loss curves."""
        points = self.sample()
        scores = self.mixture.mode_metrics(points)
        record = {"step": step, "modes_covered": scores["modes_covered"],
                  "n_modes": scores["n_modes"], "high_quality": scores["high_quality"]}
        self._record(record)
        self.last_evaluation = record
        path = os.path.join(self.args.out_dir, "samples", f"step_{step:08d}.png")
        plot_points(points, self.mixture, path,
                    title=f"{self.args.data}, step {step}: {record['modes_covered']}/"
                          f"{record['n_modes']} modes, "
                          f"{100 * record['high_quality']:.1f}% high quality")
        plot_history(self.history, os.path.join(self.args.out_dir, "losses.png"),
                     title=f"WGAN-GP on {self.args.data}")
        return record

    def _checkpoint(self, step):
        info = {"epoch": step // POINT_STEPS_PER_EPOCH, "position": 0,
                "args": {k: v for k, v in vars(self.args).items()
                         if isinstance(v, (int, float, str, bool, type(None)))}}
        path = save_checkpoint(self.checkpoint_dir, step, self._components(), info)
        self.manifest.add_checkpoint(path, step)
        return path


def plot_points(points, mixture, path, title=""):
    """Scatter generated points over the mode centres (with 3-std circles); atomic PNG."""
    from gan.plots import plt  # matplotlib with the Agg backend, imported on first use
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, label="generated")
    axes.scatter(mixture.centres[:, 0], mixture.centres[:, 1], marker="x", c="red", s=30,
                 label="mode centres")
    for x, y in mixture.centres:
        axes.add_patch(plt.Circle((x, y), 3 * mixture.std, fill=False, color="red", lw=0.5))
    reach = np.abs(mixture.centres).max() * 1.5 + 0.5
    axes.set_xlim(-reach, reach)
    axes.set_ylim(-reach, reach)
    axes.set_aspect("equal")
    axes.legend(loc="upper right", fontsize=7)
    axes.set_title(title, fontsize=9)
    return save_figure(figure, path)


if __name__ == "__main__":
    main()

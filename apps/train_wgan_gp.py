"""Train a WGAN-GP on 2-D Gaussian mixtures or MNIST.

Gulrajani et al. (2017): a Wasserstein critic with the gradient penalty 10 * E[(||grad D||-1)^2]
(eq. 3), 5 critic steps per generator step, Adam with lr 1e-4 and betas (0.5, 0.9). Every step
is one critic step; every --n_critic-th step is also a G step.

--data ring8 | grid25: the 2-D Gaussian mixtures of gan.mixtures (8 on a ring, 25 on a grid),
  MLP generator and critic, fresh samples every step; an epoch is 1,000 critic steps
  (default 20 epochs). Each epoch end scores --eval_samples generated points (modes covered,
  high-quality share) and draws --num_samples of them over the mode centres.
--data mnist: the DCGAN models with no batch norm in the critic (a gradient penalty needs
  per-sample gradients), default 1 epoch; --evaluate scores FID as train_dcgan does.

Outputs (run folder --out_dir, default runs/wgan_gp): report.html, samples/step_*.png,
losses.png, metrics.jsonl, run.json, checkpoints/. Modes of a run folder: (none) a new run,
refused if --out_dir holds one; --resume, --more_epochs N, --overwrite, --dry_run (a few
steps in a temporary folder), as in train_dcgan. Ctrl-C writes a checkpoint and says how to
continue.
"""
import numpy as np

import needle as ndl
from gan import Trainer
from gan.batches import Sampled, Shuffled
from gan.mixtures import MIXTURES
from gan.models.dcgan import Discriminator, Generator
from gan.models.mlp import MLPCritic, MLPGenerator
from gan.objectives import Wasserstein
from gan.penalties import GradientPenalty
from gan.recipes import GANRecipe
from gan.samples import PointCloud

from .cli import AppParser, finish, nonnegative_float, positive_int
from .common import (adam, add_adam_options, add_common_options, mnist_evaluator,
                     mnist_images, resolve_device, saved_args, trainer_config)
from .techniques import (add_technique_options, build_adversarial, build_ema,
                         resolve_techniques)

APP = "train_wgan_gp"
POINT_STEPS_PER_EPOCH = 1000
DEFAULTS = {  # per --data: epochs, latent_dim, num_samples, eval_samples, sample_every
    "mnist": dict(epochs=1, latent_dim=100, num_samples=64, eval_samples=1000,
                  sample_every=120),
    "points": dict(epochs=20, latent_dim=2, num_samples=2500, eval_samples=2500,
                   sample_every=None),
}


def build_parser():
    parser = AppParser(APP, __doc__)
    add_common_options(parser, "wgan_gp", epochs=None, sample_every=None)
    add_adam_options(parser, lr=1e-4, beta1=0.5, beta2=0.9)
    add = parser.add_argument
    add("--data", choices=["ring8", "grid25", "mnist"], default="ring8",
        help="2-D Gaussian mixture (ring8, grid25) or MNIST images")
    add("--n_critic", "--n-critic", type=positive_int, default=5, help="critic steps per G step")
    add("--gp_weight", "--gp-weight", type=nonnegative_float, default=10.0,
        help="lambda of the gradient penalty (>= 0)")
    add("--latent_dim", "--latent-dim", type=positive_int, default=None,
        help="size of z (default: 2 for 2-D data, 100 for MNIST)%(default).0s")
    add("--width", type=positive_int, default=64, help="MNIST: channel width unit of G and D")
    add("--hidden", type=positive_int, default=128, help="2-D data: hidden units per MLP layer")
    add("--layers", type=positive_int, default=3, help="2-D data: hidden layers of G and D")
    add("--lr_decay", "--lr-decay", action="store_true",
        help="decay both learning rates linearly to 0 over the run (as Gulrajani et al. do "
             "on CIFAR-10); short runs then end concentrated on the modes")
    add("--num_samples", "--num-samples", type=positive_int, default=None,
        help="generated samples in each picture (default: 2500 points for 2-D data, a "
             "64-image grid for MNIST)%(default).0s")
    add("--evaluate", action="store_true",
        help="MNIST: score G at each epoch end with the shipped classifier (FID, ...); 2-D "
             "data are always scored (modes covered, high-quality share)")
    add("--eval_samples", "--eval-samples", type=positive_int, default=None,
        help="generated samples per evaluation (default: 2500 points for 2-D data, 1000 for "
             "MNIST)%(default).0s")
    parser.epilog = (
        f"Defaults that follow --data: --epochs {DEFAULTS['mnist']['epochs']} for MNIST, "
        f"{DEFAULTS['points']['epochs']} for 2-D data\n(an epoch is {POINT_STEPS_PER_EPOCH} "
        f"critic steps on fresh samples); --sample_every "
        f"{DEFAULTS['mnist']['sample_every']} for MNIST,\neach epoch end for 2-D data.")
    add_technique_options(parser, models=False)
    return parser


def main(argv=None):
    parser = build_parser()
    args = resolve_techniques(parser, parser.parse_args(argv))
    if args.data != "mnist" and (args.diffaugment or args.spectral_norm):
        parser.error(f"--diffaugment and --spectral_norm are for images and convolutional "
                     f"critics; --data {args.data} trains MLPs on 2-D points")
    defaults = DEFAULTS["mnist" if args.data == "mnist" else "points"]
    args.default_epochs = defaults["epochs"]
    for name in ("latent_dim", "num_samples", "eval_samples", "sample_every"):
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    return finish(APP, lambda: train(args), args.out_dir, debug=args.debug)


def train(args):
    device = resolve_device(args.device)
    if args.data == "mnist":
        images, _ = mnist_images(args)
        data = Shuffled(images, batch_size=args.batch_size)
    else:
        mixture = MIXTURES[args.data]()
        data = Sampled(mixture.sample, args.batch_size, POINT_STEPS_PER_EPOCH)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    if args.data == "mnist":
        generator = Generator(args.latent_dim, channels=1, width=args.width, device=device)
        critic = Discriminator(channels=1, width=args.width, norm="none", device=device)
    else:
        generator = MLPGenerator(args.latent_dim, 2, hidden=args.hidden, layers=args.layers,
                                 device=device)
        critic = MLPCritic(2, hidden=args.hidden, layers=args.layers, device=device)
    adversarial = build_adversarial(
        args, critic, Wasserstein(), adam(args, critic, "d"),
        penalties=[GradientPenalty(args.gp_weight, every=args.lazy_every)],
        n_critic=args.n_critic)
    g_optimizer = adam(args, generator, "g")
    if args.data == "mnist":
        evaluate, picture = mnist_evaluator(args), None
    else:
        evaluate = ModeScores(mixture, args.eval_samples, args.latent_dim, args.seed, device)
        picture = lambda points: PointCloud(points, mixture)  # noqa: E731
    recipe = GANRecipe(generator, adversarial, g_optimizer, args.latent_dim,
                       num_samples=args.num_samples, seed=args.seed, device=device,
                       evaluate=evaluate, lr_decay=args.lr_decay, picture=picture,
                       ema=build_ema(args, generator))
    dry_run_steps = args.n_critic if args.data == "mnist" else 2 * args.n_critic
    config = trainer_config(args, APP, latent_dim=args.latent_dim, num_samples=args.num_samples,
                            dry_run_steps=dry_run_steps)
    return Trainer(recipe, data, config, run_info={"args": saved_args(args)}).train()


class ModeScores:
    """Modes covered and the high-quality share of G's points on fixed noise (their own
    RNG, so scoring never moves the training stream); gan.mixtures.mode_metrics."""

    def __init__(self, mixture, count, latent_dim, seed, device):
        self.mixture, self.device = mixture, device
        self.noise = np.random.RandomState(seed + 1).randn(count, latent_dim).astype(
            np.float32)

    def __call__(self, generator):
        generator.eval()
        try:
            with ndl.no_grad():
                z = ndl.Tensor(self.noise, device=self.device, requires_grad=False)
                points = generator(z).numpy()
        finally:
            generator.train()
        scores = self.mixture.mode_metrics(points)
        return {"modes_covered": scores["modes_covered"], "n_modes": scores["n_modes"],
                "high_quality": scores["high_quality"]}


if __name__ == "__main__":
    main()

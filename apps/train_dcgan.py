"""Train a DCGAN on MNIST (the main job).

The default run trains the pytorch/examples-style 28x28 DCGAN (G 100-256-128-1, D 1-64-128-1)
for one epoch on the bundled data/mnist (937 steps, about 4 minutes on two CPU cores) and
writes into the run folder (--out_dir, default runs/dcgan):

  report.html                 the page to watch: latest grid, grids over time, curves,
                              scores, health warnings, configuration (reloads while it runs)
  samples/step_XXXXXXXX.png   a grid from fixed noise every --sample_every steps (about every
                              30 s) and at each epoch end
  losses.png, metrics.jsonl   D/G losses, D(x), D(G(z)), gradient norms, health warnings
  run.json, checkpoints/      the run's id, options and checkpoint hashes; the checkpoints

Modes of a run folder:
  (none)           a new run; refused if --out_dir already holds one
  --resume         continue that run bit for bit from its newest intact checkpoint, to its
                   own target, with its own options (give options again to change them)
  --more_epochs N  resume and train N epochs past the run's target
  --overwrite      move the run in --out_dir aside (OUT_DIR.old-<time>) and start afresh
  --dry_run        3 steps on random images in a temporary folder: checks the wiring

Ctrl-C (or SIGTERM) finishes the step, writes a checkpoint and prints how to continue; a
second Ctrl-C stops at once. --evaluate scores G at each epoch end with the shipped MNIST
classifier (FID, KID, precision/recall, digits covered; gan.metrics).

--recipe classic (the default) is pytorch/examples' recipe; --recipe modern adds the toolkit
techniques benchmarks/techniques.py measured best (apps/techniques.py), and each technique
has its own flag (--spectral_norm, --ema, --diffaugment, --ada, --r1, --lazy_every,
--label_smoothing, --feature_matching, --minibatch_std, --objective rpgan, --d_lr/--g_lr).
"""
import numpy as np

from gan import Trainer
from gan.batches import Shuffled
from gan.models.dcgan import Discriminator, Generator
from gan.objectives import get_objective
from gan.recipes import GANRecipe

from .cli import AppParser, finish
from .common import (adam, add_adam_options, add_common_options, add_dcgan_options,
                     mnist_evaluator, mnist_images, resolve_device, saved_args,
                     trainer_config)
from .techniques import (add_technique_options, build_adversarial, build_ema,
                         discriminator_norm, resolve_techniques)

APP = "train_dcgan"


def build_parser():
    parser = AppParser(APP, __doc__)
    add_common_options(parser, "dcgan", epochs=1)
    add_adam_options(parser)
    add_dcgan_options(parser, 64, "images in each sample grid", "FID, digits_covered, ...")
    parser.add_argument(
        "--sync_bn", "--sync-bn", action="store_true",
        help="BatchNorm over the whole global batch (nn.SyncBatchNorm) in G and D; without "
             "it, with --distributed each rank normalises over its own slice")
    add_technique_options(parser, recipes=True)
    return parser


def main(argv=None):
    parser = build_parser()
    args = resolve_techniques(parser, parser.parse_args(argv))
    return finish(APP, lambda: train(args), args.out_dir, debug=args.debug)


def train(args):
    recipe, data = build(args)
    config = trainer_config(args, APP, latent_dim=args.latent_dim, num_samples=args.num_samples)
    return Trainer(recipe, data, config, run_info={"args": saved_args(args)}).train()


def build(args):
    """(the GANRecipe, the batches) that the options describe (benchmarks time its step)."""
    device = resolve_device(args.device)
    images, _ = mnist_images(args, args.image_size)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    norm = "syncbatch" if args.sync_bn else "batch"
    generator = Generator(args.latent_dim, channels=1, image_size=args.image_size,
                          width=args.width, device=device, norm=norm)
    discriminator = Discriminator(channels=1, image_size=args.image_size, width=args.width,
                                  norm=discriminator_norm(args, norm), device=device,
                                  minibatch_std=args.minibatch_std)
    adversarial = build_adversarial(args, discriminator,
                                    get_objective(args.objective, args.label_smoothing),
                                    adam(args, discriminator, "d"))
    g_optimizer = adam(args, generator, "g")
    evaluate = mnist_evaluator(args)
    recipe = GANRecipe(generator, adversarial, g_optimizer, args.latent_dim,
                       num_samples=args.num_samples, seed=args.seed, device=device,
                       evaluate=evaluate, ema=build_ema(args, generator))
    return recipe, Shuffled(images, batch_size=args.batch_size)


if __name__ == "__main__":
    main()

"""Train a class-conditional DCGAN on MNIST.

G(z, y) scales z by a learned embedding of the digit y before the DCGAN generator; D(x, y) is a
projection discriminator (Miyato & Koyama 2018). Writes into the run folder (--out_dir,
default runs/cgan) the same outputs as train_dcgan: report.html, samples/*.png, losses.png,
metrics.jsonl, run.json, checkpoints/. Each sample grid has one row per digit, 0 at the top,
labelled. With --num_classes k < 10 it trains on the digits 0..k-1 only.

Modes of a run folder: (none) a new run, refused if --out_dir holds one; --resume continue it
with its own options and target; --more_epochs N resume and train N epochs more; --overwrite
move the old run aside and start afresh; --dry_run 3 steps on random images in a temporary
folder. Ctrl-C writes a checkpoint and prints how to continue.
"""
import numpy as np

from gan import Trainer
from gan.batches import Shuffled
from gan.models.conditional import ConditionalDiscriminator, ConditionalGenerator
from gan.objectives import get_objective
from gan.recipes import GANRecipe

from .cli import AppParser, finish, int_in
from .common import (adam, add_adam_options, add_common_options, add_dcgan_options,
                     mnist_evaluator, mnist_images, resolve_device, saved_args,
                     trainer_config)
from .techniques import (add_technique_options, build_adversarial, build_ema,
                         discriminator_norm, resolve_techniques)

APP = "train_cgan"


def build_parser():
    parser = AppParser(APP, __doc__)
    add_common_options(parser, "cgan", epochs=1)
    add_adam_options(parser)
    add = parser.add_argument
    add("--num_classes", "--num-classes", type=int_in(2, 10), default=10,
        help="number of digit classes (2..10); trains on digits 0..num_classes-1")
    add_dcgan_options(parser, 80,
                      "images in each sample grid: num_samples // num_classes per digit row",
                      "FID, label kept, per digit")
    add_technique_options(parser, models=False)
    return parser


def main(argv=None):
    parser = build_parser()
    args = resolve_techniques(parser, parser.parse_args(argv))
    return finish(APP, lambda: train(args), args.out_dir, debug=args.debug)


def train(args):
    device = resolve_device(args.device)
    images, labels = mnist_images(args, args.image_size)
    keep = labels < args.num_classes
    images, labels = images[keep], labels[keep].astype(np.float32)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    generator = ConditionalGenerator(args.num_classes, args.latent_dim, channels=1,
                                     image_size=args.image_size, width=args.width,
                                     device=device)
    discriminator = ConditionalDiscriminator(args.num_classes, channels=1,
                                             image_size=args.image_size, width=args.width,
                                             norm=discriminator_norm(args), device=device)
    adversarial = build_adversarial(args, discriminator,
                                    get_objective(args.objective, args.label_smoothing),
                                    adam(args, discriminator, "d"))
    g_optimizer = adam(args, generator, "g")
    evaluate = mnist_evaluator(args)
    recipe = GANRecipe(generator, adversarial, g_optimizer, args.latent_dim,
                       num_samples=args.num_samples, num_classes=args.num_classes,
                       seed=args.seed, device=device, evaluate=evaluate,
                       ema=build_ema(args, generator))
    data = Shuffled(images, labels, batch_size=args.batch_size)
    config = trainer_config(args, APP, latent_dim=args.latent_dim, num_samples=args.num_samples)
    return Trainer(recipe, data, config, run_info={"args": saved_args(args)}).train()


if __name__ == "__main__":
    main()

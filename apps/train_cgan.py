"""Train a class-conditional DCGAN on MNIST: python -m apps.train_cgan --help

G(z, y) scales z by a learned embedding of the digit y before the DCGAN generator; D(x, y) is a
projection discriminator (Miyato & Koyama 2018). Writes, under --out_dir, the same outputs as
train_dcgan (samples/*.png, losses.png, metrics.jsonl, run.json, checkpoints/); each sample
grid has one row per digit, 0 at the top. With --num_classes k < 10 it trains on the digits
0..k-1 only.
"""
import numpy as np

import needle as ndl
from gan import Adversarial, Trainer, TrainerConfig
from gan.models.conditional import ConditionalDiscriminator, ConditionalGenerator
from gan.models.dcgan import SUPPORTED_SIZES
from gan.objectives import OBJECTIVES, get_objective

from .common import (add_common_options, make_parser, mnist_images, resolve_device,
                     run_training)


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    add_common_options(parser, out_dir="runs/cgan", epochs=1)
    add = parser.add_argument
    add("--num_classes", "--num-classes", type=int, default=10,
        help="number of digit classes (2..10); trains on digits 0..num_classes-1")
    add("--lr", type=float, default=2e-4, help="Adam learning rate of G and D")
    add("--beta1", type=float, default=0.5, help="Adam beta1")
    add("--beta2", type=float, default=0.999, help="Adam beta2")
    add("--latent_dim", "--latent-dim", type=int, default=100, help="size of z")
    add("--width", type=int, default=64, help="channel width unit of G and D")
    add("--image_size", "--image-size", type=int, choices=SUPPORTED_SIZES, default=28)
    add("--objective", choices=sorted(OBJECTIVES), default="non-saturating")
    add("--samples_per_class", "--samples-per-class", type=int, default=8,
        help="columns of the sample grid (one row per class)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 2 <= args.num_classes <= 10:
        parser.error(f"--num_classes must be in 2..10 for MNIST, got {args.num_classes}")
    device = resolve_device(args.device)
    images, labels = mnist_images(args, args.image_size)
    keep = labels < args.num_classes
    images, labels = images[keep], labels[keep].astype(np.float32)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    ndl_kw = dict(device=device)
    generator = ConditionalGenerator(args.num_classes, args.latent_dim, channels=1,
                                     image_size=args.image_size, width=args.width, **ndl_kw)
    discriminator = ConditionalDiscriminator(args.num_classes, channels=1,
                                             image_size=args.image_size, width=args.width,
                                             **ndl_kw)
    adam = dict(lr=args.lr, beta1=args.beta1, beta2=args.beta2)
    adversarial = Adversarial(discriminator, get_objective(args.objective),
                              ndl.optim.Adam(discriminator.parameters(), **adam))
    config = TrainerConfig(out_dir=args.out_dir, epochs=args.epochs, batch_size=args.batch_size,
                           latent_dim=args.latent_dim, seed=args.seed,
                           checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                           num_samples=args.num_classes * args.samples_per_class,
                           max_steps=3 if args.dry_run else args.max_steps, resume=args.resume,
                           progress=not args.no_progress, health=not args.no_health,
                           debug=args.debug)
    trainer = Trainer(generator, adversarial, ndl.optim.Adam(generator.parameters(), **adam),
                      images, config, labels=labels, device=device,
                      run_info={"app": "train_cgan", "args": vars(args)})
    return run_training("train_cgan", trainer.train, args.out_dir)


if __name__ == "__main__":
    main()

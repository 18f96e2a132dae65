"""Train a DCGAN on MNIST (the main job): python -m apps.train_dcgan --help

The default run trains the pytorch/examples-style 28x28 DCGAN (G 100-256-128-1, D 1-64-128-1)
for one epoch on the bundled data/mnist and writes, under --out_dir: samples/*.png grids,
losses.png, metrics.jsonl (with health warnings), run.json and checkpoints/. A killed run
continues bit for bit with --resume; --more_epochs N trains N epochs past its target.
"""
import numpy as np

import needle as ndl
from gan import Adversarial, Trainer, TrainerConfig
from gan.models.dcgan import SUPPORTED_SIZES, Discriminator, Generator
from gan.objectives import OBJECTIVES, get_objective

from .common import (add_common_options, make_parser, mnist_images, resolve_device,
                     run_training)


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    add_common_options(parser, out_dir="runs/dcgan", epochs=1)
    add = parser.add_argument
    add("--lr", type=float, default=2e-4, help="Adam learning rate of G and D")
    add("--d_lr", "--d-lr", type=float, default=None,
        help="D's learning rate (default: --lr); with --resume, replaces the saved one")
    add("--g_lr", "--g-lr", type=float, default=None,
        help="G's learning rate (default: --lr); with --resume, replaces the saved one")
    add("--beta1", type=float, default=0.5, help="Adam beta1")
    add("--beta2", type=float, default=0.999, help="Adam beta2")
    add("--latent_dim", "--latent-dim", type=int, default=100, help="size of z")
    add("--width", type=int, default=64, help="channel width unit of G and D")
    add("--image_size", "--image-size", type=int, choices=SUPPORTED_SIZES, default=28)
    add("--objective", choices=sorted(OBJECTIVES), default="non-saturating")
    add("--evaluate", action="store_true",
        help="score G at each epoch end with the shipped MNIST classifier (FID, "
             "digits_covered, ...; gan.metrics) on --eval_samples samples")
    add("--eval_samples", "--eval-samples", type=int, default=1000,
        help="samples per evaluation (with --evaluate)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    images, _ = mnist_images(args, args.image_size)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    ndl_kw = dict(device=device)
    generator = Generator(args.latent_dim, channels=1, image_size=args.image_size,
                          width=args.width, **ndl_kw)
    discriminator = Discriminator(channels=1, image_size=args.image_size, width=args.width,
                                  **ndl_kw)
    betas = dict(beta1=args.beta1, beta2=args.beta2)
    d_lr = args.lr if args.d_lr is None else args.d_lr
    g_lr = args.lr if args.g_lr is None else args.g_lr
    adversarial = Adversarial(discriminator, get_objective(args.objective),
                              ndl.optim.Adam(discriminator.parameters(), lr=d_lr, **betas),
                              generator=generator, debug=args.debug)
    config = TrainerConfig(out_dir=args.out_dir, epochs=args.epochs, batch_size=args.batch_size,
                           latent_dim=args.latent_dim, seed=args.seed,
                           checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                           max_steps=3 if args.dry_run else args.max_steps, resume=args.resume,
                           progress=not args.no_progress, health=not args.no_health,
                           debug=args.debug, resume_d_lr=args.d_lr, resume_g_lr=args.g_lr)
    evaluate = None
    if args.evaluate:
        from gan.metrics import Evaluator
        evaluate = Evaluator.from_mnist(args.data_dir, num_samples=args.eval_samples)
    trainer = Trainer(generator, adversarial,
                      ndl.optim.Adam(generator.parameters(), lr=g_lr, **betas),
                      images, config, device=device, evaluate=evaluate,
                      run_info={"app": "train_dcgan", "args": vars(args)})
    return run_training("train_dcgan", trainer.train, args.out_dir)


if __name__ == "__main__":
    main()

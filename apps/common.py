"""Pieces the training apps share: device and data options, MNIST as GAN images.

Run length on resume: `--resume` continues to the target the run was started with (its
`--epochs`, read from the newest checkpoint) unless `--epochs` is given; `--more_epochs N`
resumes and trains N epochs past that target. The parser resolves both, so every app gets a
plain `args.epochs` and `args.resume`.
"""
import argparse
import os
import sys

import numpy as np

import needle as ndl
from gan import TrainingDiverged
from needle.data import load_mnist

__all__ = ["make_parser", "add_common_options", "resolve_device", "mnist_images",
           "resolve_run_length", "run_training", "DEFAULT_DATA_DIR"]

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "data", "mnist")
DEVICES = {"cpu_numpy": ndl.cpu_numpy, "cpu": ndl.cpu, "cuda": ndl.cuda}


class TrainingParser(argparse.ArgumentParser):
    """An ArgumentParser that resolves --resume / --more_epochs / --epochs after parsing."""

    fresh_epochs = None

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        if hasattr(parsed, "more_epochs"):
            resolve_run_length(self, parsed)
        return parsed


def make_parser(description):
    return TrainingParser(description=description,
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def _target_epochs(out_dir):
    """The epochs target saved in the newest checkpoint under out_dir, or None."""
    from gan.checkpoint import checkpoint_info, latest_checkpoint

    path = latest_checkpoint(os.path.join(out_dir, "checkpoints"))
    if path is None:
        return None
    info = checkpoint_info(path)
    settings = info.get("config") or info.get("args") or {}
    return settings.get("epochs")


def resolve_run_length(parser, args):
    """Set args.epochs and args.resume from --epochs, --resume and --more_epochs."""
    if args.more_epochs is not None:
        if args.more_epochs < 1:
            parser.error(f"--more_epochs must be >= 1, got {args.more_epochs}")
        if args.epochs is not None:
            parser.error("give --epochs (the total) or --more_epochs (beyond the run's "
                         "target), not both")
        target = _target_epochs(args.out_dir)
        if target is None:
            parser.error(f"--more_epochs: no checkpoint with a target in "
                         f"{os.path.join(args.out_dir, 'checkpoints')} to extend")
        args.resume, args.epochs = True, target + args.more_epochs
    elif args.epochs is None:
        target = _target_epochs(args.out_dir) if args.resume else None
        args.epochs = target if target is not None else parser.fresh_epochs
    return args


def add_common_options(parser, out_dir, epochs, checkpoint_every=500):
    """Options every GAN trainer has; flags accept snake_case and kebab-case.

    `epochs` is the default for a new run (None: the app resolves it); on --resume the
    default is the run's own target."""
    parser.fresh_epochs = epochs
    add = parser.add_argument
    add("--data_dir", "--data-dir", default=DEFAULT_DATA_DIR,
        help="folder with the four MNIST .gz files")
    add("--out_dir", "--out-dir", default=out_dir, help="run folder for all outputs")
    fresh = f"{epochs} for a new run" if epochs is not None else "see below"
    add("--epochs", type=int, default=None,
        help=f"passes over the training images ({fresh}; with --resume: the run's own "
             "target)%(default).0s")
    add("--max_steps", "--max-steps", type=int, default=None,
        help="stop after this many D steps (overrides epochs)")
    add("--batch_size", "--batch-size", type=int, default=64)
    add("--seed", type=int, default=0, help="seed of NumPy's global RNG")
    add("--device", choices=sorted(DEVICES), default="cpu_numpy",
        help="cpu_numpy: NumPy; cpu: the course's flat-memory device; cuda: CuPy on a GPU")
    add("--checkpoint_every", "--checkpoint-every", type=int, default=checkpoint_every,
        help="steps between checkpoints")
    add("--log_every", "--log-every", type=int, default=50, help="steps per metrics line")
    add("--limit", type=int, default=None, help="use only the first N training images")
    add("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    add("--more_epochs", "--more-epochs", type=int, default=None, metavar="N",
        help="resume and train N epochs past the run's target (implies --resume)")
    add("--no_health", "--no-health", action="store_true",
        help="turn off the training-health warnings (gan.health)")
    add("--debug", action="store_true",
        help="check the D/G graph boundary at every step, not just the first (slower)")
    add("--no_progress", "--no-progress", action="store_true", help="no progress bar")
    add("--dry_run", "--dry-run", action="store_true",
        help="a few steps on random images: checks the wiring in seconds")


def resolve_device(name):
    device = DEVICES[name]()
    if not device.enabled():
        raise SystemExit(f"--device {name}: not available on this machine. "
                         "For cuda, install CuPy matching your CUDA version "
                         "(e.g. pip install cupy-cuda12x) on a machine with an NVIDIA GPU.")
    return device


def run_training(app, train, out_dir):
    """Run `train()` and print where the outputs are; returns its final record. A diverged
    run (NaN/Inf loss, last good checkpoint kept) exits with the app's name and the reason."""
    try:
        record = train()
    except TrainingDiverged as error:
        sys.exit(f"{app}: {error}")
    print(f"{app}: done; outputs in {out_dir}: {record}")
    return record


def mnist_images(args, image_size=28):
    """(images NCHW float32 in [-1, 1], labels int64) for the training set.

    --dry_run gives 256 random images instead, so the wiring runs without the files.
    28x28 is MNIST's size; 32 pads with the background value, 64 then doubles each pixel.
    """
    if args.dry_run:
        rng = np.random.RandomState(args.seed)
        images = rng.uniform(-1, 1, (256, 1, 28, 28)).astype(np.float32)
        labels = rng.randint(0, 10, 256)
    else:
        dataset = load_mnist(args.data_dir, train=True)
        count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
        images = dataset.images[:count].reshape(count, 1, 28, 28) * 2 - 1
        labels = dataset.labels[:count].astype(np.int64)
    if image_size in (32, 64):
        images = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-1)
    if image_size == 64:
        images = images.repeat(2, axis=2).repeat(2, axis=3)
    return np.ascontiguousarray(images, dtype=np.float32), labels

"""Pieces the training apps share: device and data options, MNIST as GAN images."""
import argparse
import os

import numpy as np

import needle as ndl
from needle.data import load_mnist

__all__ = ["make_parser", "add_common_options", "resolve_device", "mnist_images",
           "DEFAULT_DATA_DIR"]

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "data", "mnist")
DEVICES = {"cpu_numpy": ndl.cpu_numpy, "cpu": ndl.cpu, "cuda": ndl.cuda}


def make_parser(description):
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_common_options(parser, out_dir, epochs, checkpoint_every=500):
    """Options every GAN trainer has; flags accept snake_case and kebab-case."""
    add = parser.add_argument
    add("--data_dir", "--data-dir", default=DEFAULT_DATA_DIR,
        help="folder with the four MNIST .gz files")
    add("--out_dir", "--out-dir", default=out_dir, help="run folder for all outputs")
    add("--epochs", type=int, default=epochs, help="passes over the training images")
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

"""Train CycleGAN on unpaired images.

Default task: thin <-> thick MNIST strokes, unpaired. Domain A is MNIST's own digits from the
first half of the training set; domain B is the second half (disjoint, so no digit appears
in both domains and the pairs are never seen), thickened by a 3x3 max filter (grey
dilation) applied to images in [-1, 1], where the background is -1 and ink is +1, so every
stroke grows by one pixel on each side. G: A -> B learns to thicken, F: B -> A to thin.
With `--domain_a PATH --domain_b PATH`, the domains are two folders of images instead
(read with Pillow as grayscale, resized to --image_size).

Writes into the run folder (--out_dir, default runs/cyclegan), as the other apps:
  report.html, run.json, metrics.jsonl (means every --log_every steps with the learning rates;
  per epoch, on MNIST with --evaluate, the share of translated digits that keep their label),
  losses.png, samples/step_XXXXXXXX.png (rows A, G(A), F(G(A)), B, F(B), G(F(B)) on fixed
  test images, every --sample_every steps and at each epoch end),
  checkpoints/step_XXXXXXXX.safetensors.

Modes of a run folder: (none) a new run, refused if --out_dir holds one; --resume continue it
bit for bit with its own options and target; --more_epochs N; --overwrite move the old run
aside and start afresh; --dry_run 3 steps on random images in a temporary folder. Ctrl-C
writes a checkpoint and prints how to continue.

Batch size: the paper uses 1; the default here is 4. Instance norm normalises each image on
its own, so the batch size changes only how many images one update averages, not the layers'
numerics. On a 2-core CPU a step at batch 1 is mostly per-op Python overhead: measured time
per step at the default model size was about 0.3 s at batch 1, 0.45 s at batch 4 and 0.7 s
at batch 8, so batch 4 sees about 2.7 times the images per second of batch 1 while still
making one update per 4 images. Use --batch_size 1 for the paper's setting. The default
--limit of 6000 images per domain and 2 epochs is 3000 steps (about 25 minutes).

Learning rate: constant for the first half of the run's steps (its --epochs, or --max_steps
when that ends it sooner), then linearly to 0, the paper's schedule (100 epochs constant, 100
decaying). The paper moves it once per epoch; with the few epochs a CPU run affords (with 2,
an epoch-wise decay would never leave the base rate before training ends), it moves after
every step: the same line, at a finer grain.
"""
import argparse
import os
import sys
import warnings

import numpy as np

import needle as ndl
from gan import Adversarial, Trainer
from gan.batches import Unpaired
from gan.cyclegan import CycleGAN
from gan.models.cyclegan import PatchDiscriminator, ResnetGenerator
from gan.objectives import LeastSquares
from gan.recipes import CycleGANRecipe
from gan.recipes.cyclegan import round_trip
from needle.data.idx import DataFileError

from .cli import (AppParser, finish, folder, multiple_of, nonnegative_float, nonnegative_int,
                  positive_int)
from .common import (add_adam_options, add_common_options, load_mnist_named, resolve_device,
                     saved_args, trainer_config)

__all__ = ["build_parser", "main", "thicken", "load_image_folder", "mnist_domains",
           "folder_domains"]

APP = "train_cyclegan"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".pgm", ".ppm")


def build_parser():
    parser = AppParser(APP, __doc__)
    add_common_options(parser, "cyclegan", epochs=2, checkpoint_every=1000, sample_every=60)
    add_adam_options(parser)
    parser.set_defaults(batch_size=4, limit=6000)
    add = parser.add_argument
    add("--domain_a", "--domain-a", type=folder, default=None,
        help="folder of domain-A images (default: thin MNIST digits)%(default).0s")
    add("--domain_b", "--domain-b", type=folder, default=None,
        help="folder of domain-B images (default: thick MNIST digits; --limit applies "
             "to each domain)%(default).0s")
    add("--image_size", "--image-size", type=multiple_of(4), default=28,
        help="side of the square images; a multiple of 4 (folders are resized to it)")
    add("--width", type=positive_int, default=16, help="generators' channel unit (paper: 64)")
    add("--n_blocks", "--n-blocks", type=positive_int, default=3,
        help="residual blocks per generator (paper: 9 at 256x256)")
    add("--d_width", "--d-width", type=positive_int, default=16,
        help="discriminators' channel unit (paper: 64)")
    add("--n_layers", "--n-layers", type=positive_int, default=2,
        help="stride-2 layers of the PatchGAN discriminators (paper: 3, 70x70 patches)")
    add("--cycle_weight", "--cycle-weight", type=nonnegative_float, default=10.0,
        help="lambda (eq. 3)")
    add("--identity_weight", "--identity-weight", type=nonnegative_float, default=0.5,
        help="identity loss weight relative to --cycle_weight (0 turns it off)")
    add("--pool_size", "--pool-size", type=nonnegative_int, default=50,
        help="images kept in each domain's pool of generated images for D (0: none)")
    add("--num_samples", "--num-samples", type=positive_int, default=8,
        help="test images per domain in each sample grid (its columns)")
    add("--evaluate", action=argparse.BooleanOptionalAction, default=True,
        help="MNIST: at each epoch end, the share of translated test digits that keep "
             "their label (the shipped classifier)")
    add("--eval_samples", "--eval-samples", type=positive_int, default=500,
        help="test digits per domain for the label-kept score")
    parser.after_parsing.insert(0, check_domains)  # before the run folder is settled
    return parser


# ---- data ------------------------------------------------------------------------------
def thicken(images):
    """3x3 grey dilation (a max filter) of NCHW images in [-1, 1]; outside counts as -1.

    The same as scipy.ndimage.grey_dilation(images, size=(1, 1, 3, 3), mode="constant",
    cval=-1), written as a max over the 9 shifted copies of the padded batch.
    """
    images = np.asarray(images, dtype=np.float32)
    h, w = images.shape[2:]
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-1)
    out = np.full_like(images, -1)
    for dy in range(3):  # kernel offsets only: 9 vectorised maxima over the whole batch
        for dx in range(3):
            np.maximum(out, padded[:, :, dy:dy + h, dx:dx + w], out=out)
    return out


def _mnist_as_images(dataset, index):
    return dataset.images[index].reshape(-1, 1, 28, 28) * 2 - 1


def mnist_domains(args):
    """Domain A (thin) and B (thick) from disjoint halves of MNIST's training set, and the
    test images: ((train_A, train_B), (test_A, labels_A), (test_B, labels_B))."""
    train = load_mnist_named(args.data_dir, train=True)
    half = len(train) // 2
    count = half if args.limit is None else min(args.limit, half)
    train_A = _mnist_as_images(train, np.arange(count))
    train_B = thicken(_mnist_as_images(train, np.arange(half, half + count)))
    test = load_mnist_named(args.data_dir, train=False)
    n = max(args.num_samples, args.eval_samples)
    n = min(n, len(test) // 2)
    index_A, index_B = np.arange(n), np.arange(len(test) // 2, len(test) // 2 + n)
    test_A = _mnist_as_images(test, index_A)
    test_B = thicken(_mnist_as_images(test, index_B))
    return ((train_A, train_B), (test_A, test.labels[index_A].astype(np.int64)),
            (test_B, test.labels[index_B].astype(np.int64)))


MAX_IMAGE_PIXELS = 8192 * 8192  # larger claims are taken for a corrupt header


def load_image_folder(path, image_size, channels=1):
    """Every image file in `path` (sorted by name) as NCHW float32 in [-1, 1].

    Files are read with Pillow, converted to grayscale ("L"; RGB with channels=3) and
    resized to image_size x image_size (bilinear). Files whose extension is not an image
    extension are skipped. Raises needle's DataFileError (a ValueError) naming the file or
    folder: a folder that is missing, unreadable or without images; an image file that is
    unreadable, corrupt, truncated or claims more than MAX_IMAGE_PIXELS pixels.
    """
    from PIL import Image

    if not os.path.isdir(path):
        raise DataFileError(f"image folder {path!r} does not exist or is not a folder")
    try:
        listing = os.listdir(path)
    except OSError as error:
        raise DataFileError(f"image folder {path!r} cannot be read: "
                            f"{error.strerror or error}") from error
    names = sorted(name for name in listing
                   if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."))
    if not names:
        raise DataFileError(f"image folder {path!r} has no image files (looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)})")
    mode = {1: "L", 3: "RGB"}[channels]
    images = np.empty((len(names), image_size, image_size, channels), dtype=np.float32)
    for i, name in enumerate(names):  # one decode per file: the reading itself is the cost
        file = os.path.join(path, name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(file) as picture:
                    width, height = picture.size
                    if width * height > MAX_IMAGE_PIXELS or min(width, height) < 1:
                        raise ValueError(f"its header claims {width} x {height} pixels")
                    picture = picture.convert(mode).resize((image_size, image_size),
                                                           Image.BILINEAR)
                    images[i] = np.asarray(picture, dtype=np.float32).reshape(
                        image_size, image_size, channels)
        except Exception as error:  # untrusted bytes: any decoder failure is a bad file
            reason = f"{type(error).__name__}: {error}" if str(error) else \
                type(error).__name__
            raise DataFileError(f"cannot read image {file!r} ({os.path.getsize(file)} "
                                f"bytes): {reason}") from error
    return images.transpose(0, 3, 1, 2) / 127.5 - 1


def folder_domains(args):
    """Domains from --domain_a/--domain_b; the grid shows the first images of each folder
    (there is no held-out split and no labels)."""
    domains = []
    for option, path in (("--domain_a", args.domain_a), ("--domain_b", args.domain_b)):
        try:
            images = load_image_folder(path, args.image_size)
        except DataFileError as error:
            raise DataFileError(f"{option}: {error}") from error
        if args.limit is not None:
            images = images[:args.limit]
        domains.append(np.ascontiguousarray(images, dtype=np.float32))
    n = args.num_samples
    return (tuple(domains), (domains[0][:n], None), (domains[1][:n], None))


def dry_run_domains(args):
    """16 random 28x28 images per domain (B thickened), test rows from the same RNG."""
    rng = np.random.RandomState(args.seed)
    count = 16 if args.limit is None else min(args.limit, 16)
    train_A = rng.uniform(-1, 1, (count, 1, 28, 28)).astype(np.float32)
    train_B = thicken(rng.uniform(-1, 1, (count, 1, 28, 28)))
    test_A = rng.uniform(-1, 1, (args.num_samples, 1, 28, 28)).astype(np.float32)
    test_B = thicken(rng.uniform(-1, 1, (args.num_samples, 1, 28, 28)))
    return (train_A, train_B), (test_A, None), (test_B, None)


def load_domains(args):
    if args.dry_run:
        return dry_run_domains(args)
    if args.domain_a is not None:
        return folder_domains(args)
    return mnist_domains(args)


# ---- evaluation hook -------------------------------------------------------------------
def label_kept_evaluator(device, test_A, labels_A, test_B, labels_B):
    """A function (model) -> {name: share}, or None without the shipped classifier.

    Uses gan.metrics.label_kept(classifier, images, labels) with load_classifier(): the
    share of translated digits the MNIST classifier still gives their source label to.
    """
    from gan.metrics import label_kept, load_classifier
    try:
        classifier = load_classifier(device=device)
    except FileNotFoundError as error:  # no shipped weights: train without the score
        print(f"{APP}: no label-kept score: {error}", file=sys.stderr)
        return None

    def evaluate(model):
        fake_B = round_trip(model.G, model.F, test_A, device)[0]
        fake_A = round_trip(model.F, model.G, test_B, device)[0]
        return {"label_kept_G": float(label_kept(classifier, fake_B, labels_A)),
                "label_kept_F": float(label_kept(classifier, fake_A, labels_B)),
                # the classifier on the untranslated images: the ceiling of the two above
                "label_kept_real_A": float(label_kept(classifier, test_A, labels_A)),
                "label_kept_real_B": float(label_kept(classifier, test_B, labels_B))}
    return evaluate


# ---- wiring ----------------------------------------------------------------------------
def build_model(args, device):
    """G, F, D_A, D_B, their Adam optimizers and pools, as a gan.cyclegan.CycleGAN."""
    kw = dict(device=device)
    G = ResnetGenerator(1, args.width, args.n_blocks, **kw)   # A -> B
    F = ResnetGenerator(1, args.width, args.n_blocks, **kw)   # B -> A
    D_A = PatchDiscriminator(1, args.d_width, args.n_layers, **kw)  # real A vs F(B)
    D_B = PatchDiscriminator(1, args.d_width, args.n_layers, **kw)  # real B vs G(A)
    betas = dict(beta1=args.beta1, beta2=args.beta2)
    d_lr, g_lr = args.d_lr or args.lr, args.g_lr or args.lr
    adv_A = Adversarial(D_A, LeastSquares(), ndl.optim.Adam(D_A.parameters(), lr=d_lr, **betas))
    adv_B = Adversarial(D_B, LeastSquares(), ndl.optim.Adam(D_B.parameters(), lr=d_lr, **betas))
    for adversarial, generator in ((adv_A, F), (adv_B, G)):  # graph-hygiene checks
        adversarial.watch(generator)
    return CycleGAN(G, F, adv_A, adv_B, ndl.optim.Adam(G.parameters(), lr=g_lr, **betas),
                    ndl.optim.Adam(F.parameters(), lr=g_lr, **betas),
                    cycle_weight=args.cycle_weight, identity_weight=args.identity_weight,
                    pool_size=args.pool_size)


def check_domains(parser, args, argv):
    if (args.domain_a is None) != (args.domain_b is None):
        parser.error("give both --domain_a and --domain_b, or neither")
    if args.domain_a is None and not args.dry_run and args.image_size != 28:
        parser.error("the MNIST domains are 28x28: use --image_size 28, or --domain_a and "
                     "--domain_b folders")


def main(argv=None):
    args = build_parser().parse_args(argv)
    return finish(APP, lambda: train(args), args.out_dir, debug=args.debug)


def train(args):
    device = resolve_device(args.device)
    (train_A, train_B), (test_A, labels_A), (test_B, labels_B) = load_domains(args)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    model = build_model(args, device)
    evaluate = None
    if args.evaluate and labels_A is not None:
        n = args.eval_samples
        evaluate = label_kept_evaluator(device, test_A[:n], labels_A[:n], test_B[:n],
                                        labels_B[:n])
    recipe = CycleGANRecipe(model, test_A, test_B, device=device, evaluate=evaluate,
                            num_samples=args.num_samples)
    data = Unpaired(train_A, train_B, args.batch_size)
    config = trainer_config(args, APP, num_samples=args.num_samples)
    run_info = {"args": saved_args(args), "label_kept": evaluate is not None}
    return Trainer(recipe, data, config, run_info=run_info).train()


if __name__ == "__main__":
    main()

"""Train CycleGAN on unpaired images.

Default task: thin <-> thick MNIST strokes, unpaired. Domain A is MNIST's own digits from the
first half of the training set; domain B is the second half (disjoint, so no digit appears
in both domains and the pairs are never seen), thickened by a 3x3 max filter (grey
dilation) applied to images in [-1, 1], where the background is -1 and ink is +1, so every
stroke grows by one pixel on each side. G: A -> B learns to thicken, F: B -> A to thin.
With `--domain_a PATH --domain_b PATH`, the domains are two folders of images instead, read
by needle.data.ImageFolder as pytorch-CycleGAN-and-pix2pix prepares them: each training
image resized (aspect ratio kept) so its shorter side is --load_size (default
round(image_size * 286 / 256), their 286 for a 256 crop), then at every batch a random
--image_size crop, flipped left-right with probability 1/2 (drawn from NumPy's global RNG,
which checkpoints save: a resume draws the same crops). --num_samples images of each folder,
spread over its sorted names, are held out of training, centre-cropped, and are the grid's
columns. --channels 3 trains on RGB, 1 on grayscale (colour taken to its luma); by default
the images decide: 1 if every image of both folders is grayscale, else 3 (run.json records
the value used).

Writes into the run folder (--out_dir, default runs/cyclegan), as the other apps:
  report.html, run.json, metrics.jsonl (means every --log_every steps with the learning rates;
  per epoch, on MNIST with --evaluate, the share of translated digits that keep their label),
  losses.png, samples/step_XXXXXXXX.png (rows A, G(A), F(G(A)), B, F(B), G(F(B)) on fixed
  test images or the held-out images of the folders, every --sample_every steps and at each
  epoch end),
  checkpoints/step_XXXXXXXX.safetensors.

Modes of a run folder: (none) a new run, refused if --out_dir holds one; --resume continue it
bit for bit with its own options and target; --more_epochs N; --overwrite move the old run
aside and start afresh; --dry_run 3 steps on random images (--image_size, --channels) in a
temporary folder. Ctrl-C
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
import sys

import numpy as np

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
from .common import (adam, add_adam_options, add_common_options, load_mnist_named,
                     resolve_device, saved_args, trainer_config)

__all__ = ["build_parser", "main", "thicken", "mnist_domains", "folder_domains"]

APP = "train_cyclegan"


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
        help="side of the square images; a multiple of 4 (folders: the crop's side)")
    add("--load_size", "--load-size", type=positive_int, default=None,
        help="folders: training images are resized (aspect ratio kept) so their shorter side "
             "is this, then randomly cropped to --image_size and flipped (default: "
             "round(image_size * 286 / 256), pytorch-CycleGAN's 286 for 256)%(default).0s")
    add("--channels", type=int, choices=(1, 3), default=None,
        help="folders: 1 (grayscale) or 3 (RGB) (default: follow the images, 1 if every "
             "image of both folders is grayscale, else 3)%(default).0s")
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
        help="test images per domain in each sample grid (its columns); folders hold "
             "this many images out of training for it")
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
    args.channels = 1
    return ((train_A, train_B), (test_A, test.labels[index_A].astype(np.int64)),
            (test_B, test.labels[index_B].astype(np.int64)))


def folder_domains(args):
    """The --domain_a/--domain_b folders as needle.data.ImageFolder datasets (training: random
    crop of --image_size from the --load_size resize, and flip), each holding out
    --num_samples images (centre-cropped, never trained on) as its `held_out`, for the grid.
    Channels: --channels, or following the images (1 if both folders are grayscale)."""
    from needle.data import ImageFolder
    from needle.data.image_folder import match_channels

    domains = []
    for option, path in (("--domain_a", args.domain_a), ("--domain_b", args.domain_b)):
        try:
            domains.append(ImageFolder(path, args.image_size, channels=args.channels,
                                       load_size=args.load_size, hold_out=args.num_samples,
                                       limit=args.limit))
        except DataFileError as error:
            raise DataFileError(f"{option}: {error}") from error
    args.channels = match_channels(*domains)  # run.json records the resolved layout
    args.load_size = domains[0].load_size
    return tuple(domains), (domains[0].held_out, None), (domains[1].held_out, None)


def dry_run_domains(args):
    """16 random images per domain (B thickened) at --image_size with --channels (default
    1), test rows from the same RNG."""
    rng = np.random.RandomState(args.seed)
    args.channels = args.channels or 1
    count = 16 if args.limit is None else min(args.limit, 16)
    shape = (args.channels, args.image_size, args.image_size)
    train_A = rng.uniform(-1, 1, (count, *shape)).astype(np.float32)
    train_B = thicken(rng.uniform(-1, 1, (count, *shape)))
    test_A = rng.uniform(-1, 1, (args.num_samples, *shape)).astype(np.float32)
    test_B = thicken(rng.uniform(-1, 1, (args.num_samples, *shape)))
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
    """G, F, D_A, D_B, their Adam optimizers and pools, as a gan.cyclegan.CycleGAN, for
    images of args.channels channels (resolved by load_domains)."""
    kw, channels = dict(device=device), args.channels
    G = ResnetGenerator(channels, args.width, args.n_blocks, **kw)   # A -> B
    F = ResnetGenerator(channels, args.width, args.n_blocks, **kw)   # B -> A
    D_A = PatchDiscriminator(channels, args.d_width, args.n_layers, **kw)  # real A vs F(B)
    D_B = PatchDiscriminator(channels, args.d_width, args.n_layers, **kw)  # real B vs G(A)
    adv_A = Adversarial(D_A, LeastSquares(), adam(args, D_A, "d"))
    adv_B = Adversarial(D_B, LeastSquares(), adam(args, D_B, "d"))
    for adversarial, generator in ((adv_A, F), (adv_B, G)):  # graph-hygiene checks
        adversarial.watch(generator)
    return CycleGAN(G, F, adv_A, adv_B, adam(args, G, "g"), adam(args, F, "g"),
                    cycle_weight=args.cycle_weight, identity_weight=args.identity_weight,
                    pool_size=args.pool_size)


def check_domains(parser, args, argv):
    if (args.domain_a is None) != (args.domain_b is None):
        parser.error("give both --domain_a and --domain_b, or neither")
    if args.domain_a is None and not args.dry_run:
        if args.image_size != 28:
            parser.error("the MNIST domains are 28x28: use --image_size 28, or --domain_a "
                         "and --domain_b folders")
        if args.channels == 3:
            parser.error("the MNIST domains are grayscale: --channels 3 takes --domain_a "
                         "and --domain_b folders of colour images")
        if args.load_size is not None:
            parser.error("--load_size resizes the --domain_a and --domain_b folders; the "
                         "MNIST domains are not cropped")
    if args.load_size is not None and args.load_size < args.image_size:
        parser.error(f"--load_size {args.load_size} is smaller than --image_size "
                     f"{args.image_size}: the training crops are taken from the "
                     "--load_size resize")


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

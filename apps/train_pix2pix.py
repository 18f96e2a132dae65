"""Train pix2pix (Isola et al. 2017) on paired images: a U-Net G: A -> B against a conditional
PatchGAN D(A, B), plus 100 times the L1 distance to the target.

Default task: MNIST edge maps -> digits. A is a digit's outline (the one-pixel contour just
outside the stroke: the thresholded 3x3 external morphological gradient, gan.paired.edge_map,
deterministic, documented there), B the digit.
Training pairs come from the first --limit MNIST training digits; the held-out pairs are the
first --eval_samples MNIST test digits, never trained on. With --paired_dir DIR, the pairs
are the files of DIR with A and B side by side (split at the middle), pytorch-CycleGAN-and-
pix2pix's aligned layout; with --dir_a DIR --dir_b DIR, two folders paired by file name.
Folder images are resized (aspect ratio kept) so their shorter side is --load_size, then
every batch takes a random --image_size crop, flipped left-right with probability 1/2, the
same for both images of a pair (the paper's random jitter; drawn from NumPy's global RNG,
which checkpoints save). --hold_out pairs spread over the sorted names are held out,
centre-cropped. Channels follow the images (1 if every image of a side is grayscale).

Models (gan.models.unet): G is the paper's U-Net scaled down, --depth stride-2 layers of
--width units (paper: 8 and 64) with skips by channel concatenation and Dropout(0.5) on
the first --dropout_layers decoder layers as the noise; any image size works, odd ones too.
D is CycleGAN's PatchGAN on the (input, output) pair concatenated. --no_adversarial trains
G on the L1 term alone (the paper's "L1" baseline, to show what the adversarial term adds).
--adaptive_weight scales the adversarial term by ||grad L1|| / ||grad L_adv|| at G's last
layer (taming-transformers; gan.loss_balance) times --adaptive_base, after --warmup_steps
steps of L1 alone.

Writes into the run folder (--out_dir, default runs/pix2pix), as the other apps:
  report.html, run.json, metrics.jsonl (means every --log_every steps: l1, gan_G, g_loss,
  d_loss, D(x), D(G(z)), adaptive_weight; at each epoch end, with --evaluate, on the
  held-out pairs: l1, psnr and, on MNIST, label_kept (the share of outputs the shipped
  classifier labels as the source digit), label_kept_target (its share on the targets) and
  fid (classifier features of the outputs against the targets')),
  losses.png, samples/step_XXXXXXXX.png (rows input, output, target on the first
  --num_samples held-out pairs, every --sample_every steps and at each epoch end),
  checkpoints/step_XXXXXXXX.safetensors.

Modes of a run folder: (none) a new run, refused if --out_dir holds one; --resume continue it
bit for bit with its own options and target; --more_epochs N; --overwrite move the old run
aside and start afresh; --dry_run 3 steps on random pairs (--image_size) in a temporary
folder. Ctrl-C writes a checkpoint and prints how to continue.

The default run: 1 epoch of the first 12000 training pairs at batch 16 (750 steps), Adam
at a learning rate of 1e-3 for G and D (beta1 0.5). The paper's 2e-4 is for some 10^5 steps
at batch 1; in 300 steps here it left the held-out L1 at 0.23, about a blank canvas's 0.24,
where 1e-3 reached 0.069 (measured, one seed).

Measured (seed 0, 1000 held-out test digits, two CPU cores shared with other jobs at a load
average of about 8, OPENBLAS_NUM_THREADS=1), held-out L1 / PSNR / label_kept / FID:
  default                         6 min 49 s (68 s CPU)  0.0466  22.59 dB  98.1%  0.33
  --no_adversarial (L1 alone)     3 min 24 s (33 s CPU)  0.0481  22.45 dB  97.5%  0.40
  --adaptive_weight --warmup_steps 100                     0.0472  22.70 dB  97.2%  0.41
    (7 min 20 s, 74 s CPU; the weight, logged every 50 steps, between 0.96 and 5.7)
The targets themselves: label_kept 98.6%. After 300 steps the adversarial term's lead is
wider: FID 2.1 vs 5.6 and label_kept 93.5% vs 87.8% for L1 alone; by 750 steps on this
nearly deterministic task (an outline fixes its digit) L1 alone has almost caught up.
"""
import argparse

import numpy as np

from gan import Adversarial, Trainer
from gan.batches import Shuffled
from gan.loss_balance import AdaptiveWeight
from gan.models.unet import NORMS, PairDiscriminator, UnetGenerator
from gan.objectives import OBJECTIVES, get_objective
from gan.paired import PairedBatches, PairedFolder, mnist_pairs
from gan.recipes.pix2pix import PairedScores, Pix2PixRecipe
from needle.data.idx import DataFileError

from .cli import (AppParser, finish, folder, nonnegative_float, nonnegative_int, positive_int)
from .common import (adam, add_adam_options, add_common_options, load_mnist_named,
                     resolve_device, saved_args, trainer_config)

__all__ = ["build_parser", "main", "load_pairs"]

APP = "train_pix2pix"
# every objective but the Wasserstein one, which needs a penalty this app does not offer
OBJECTIVE_CHOICES = sorted(set(OBJECTIVES) - {"wasserstein"})


def build_parser():
    parser = AppParser(APP, __doc__)
    add_common_options(parser, "pix2pix", epochs=1, checkpoint_every=250, sample_every=150)
    add_adam_options(parser, lr=1e-3)
    parser.set_defaults(batch_size=16, limit=12000)
    add = parser.add_argument
    add("--paired_dir", "--paired-dir", type=folder, default=None,
        help="folder of side-by-side A | B images (default: MNIST edge maps -> digits)"
             "%(default).0s")
    add("--dir_a", "--dir-a", type=folder, default=None,
        help="folder of A images, paired by file name with --dir_b (default: not "
             "given)%(default).0s")
    add("--dir_b", "--dir-b", type=folder, default=None,
        help="folder of B images (default: not given)%(default).0s")
    add("--image_size", "--image-size", type=positive_int, default=28,
        help="side of the square images (folders: the crop's side; any size >= 2^depth)")
    add("--load_size", "--load-size", type=positive_int, default=None,
        help="folders: training images are resized (aspect ratio kept) so their shorter side "
             "is this, then randomly cropped to --image_size and flipped (default: "
             "round(image_size * 286 / 256))%(default).0s")
    add("--hold_out", "--hold-out", type=positive_int, default=8,
        help="folders: pairs held out of training for the picture and the held-out scores")
    add("--width", type=positive_int, default=16, help="G's channel unit (paper: 64)")
    add("--depth", type=int, choices=range(2, 9), default=4, metavar="{2..8}",
        help="G's encoder layers, each halving the side (paper: 8 at 256x256)")
    add("--dropout_layers", "--dropout-layers", type=nonnegative_int, default=3,
        help="G's innermost decoder layers with Dropout(0.5), the noise (paper: 3); at most "
             "depth - 1")
    add("--norm", choices=sorted(NORMS), default="batch", help="G's normalisation")
    add("--d_width", "--d-width", type=positive_int, default=16,
        help="D's channel unit (paper: 64)")
    add("--n_layers", "--n-layers", type=positive_int, default=2,
        help="stride-2 layers of the PatchGAN (paper: 3, 70x70 patches)")
    add("--objective", choices=OBJECTIVE_CHOICES, default="non-saturating",
        help="the GAN objective (the paper's: non-saturating)")
    add("--l1_weight", "--l1-weight", type=nonnegative_float, default=100.0,
        help="lambda, the L1 term's weight (eq. 4)")
    add("--no_adversarial", "--no-adversarial", action="store_true",
        help="train G on the L1 term alone (no D)")
    add("--adaptive_weight", "--adaptive-weight", action="store_true",
        help="scale the adversarial term by the gradient-norm ratio at G's last layer "
             "(gan.loss_balance)")
    add("--adaptive_base", "--adaptive-base", type=nonnegative_float, default=1.0,
        help="with --adaptive_weight: the base weight the ratio multiplies")
    add("--warmup_steps", "--warmup-steps", type=nonnegative_int, default=0,
        help="with --adaptive_weight: steps of L1 alone (no D step) before the adversarial "
             "term starts")
    add("--num_samples", "--num-samples", type=positive_int, default=8,
        help="held-out pairs in each picture (its columns)")
    add("--evaluate", action=argparse.BooleanOptionalAction, default=True,
        help="at each epoch end, score G on the held-out pairs (L1, PSNR; on MNIST also "
             "label_kept and FID with the shipped classifier)")
    add("--eval_samples", "--eval-samples", type=positive_int, default=1000,
        help="MNIST: held-out test digits (the scores' pairs; the first --num_samples are "
             "the picture's)")
    parser.after_parsing.insert(0, check_options)  # before the run folder is settled
    return parser


def check_options(parser, args, argv):
    if args.paired_dir is not None and (args.dir_a is not None or args.dir_b is not None):
        parser.error("give --paired_dir (side-by-side pairs) or --dir_a and --dir_b, not both")
    if (args.dir_a is None) != (args.dir_b is None):
        parser.error("give both --dir_a and --dir_b, or neither")
    folders = args.paired_dir is not None or args.dir_a is not None
    if not folders and not args.dry_run:
        if args.image_size != 28:
            parser.error("the MNIST pairs are 28x28: use --image_size 28, or --paired_dir / "
                         "--dir_a and --dir_b folders")
        if args.load_size is not None:
            parser.error("--load_size resizes folder images; the MNIST pairs are not "
                         "cropped")
    if args.load_size is not None and args.load_size < args.image_size:
        parser.error(f"--load_size {args.load_size} is smaller than --image_size "
                     f"{args.image_size}: the training crops are taken from the --load_size "
                     "resize")
    if args.image_size < 2 ** args.depth:
        parser.error(f"--image_size {args.image_size} is smaller than 2^depth = "
                     f"{2 ** args.depth} (--depth {args.depth}): give a smaller --depth")
    if args.dropout_layers >= args.depth:
        parser.error(f"--dropout_layers {args.dropout_layers}: G has {args.depth - 1} decoder "
                     f"layers before its last at --depth {args.depth}")
    if args.no_adversarial and args.adaptive_weight:
        parser.error("--adaptive_weight balances the adversarial term, which "
                     "--no_adversarial leaves out: give one of them")
    if args.warmup_steps and not args.adaptive_weight:
        parser.error("--warmup_steps is the warm-up of --adaptive_weight: give both")


# ---- data ------------------------------------------------------------------------------
def load_pairs(args):
    """(the batch source, held-out A, held-out B, held-out labels or None); sets
    args.channels_a / channels_b (run.json records them)."""
    if args.dry_run:
        rng = np.random.RandomState(args.seed)
        count = 3 * args.batch_size  # one epoch: the 3 steps of a dry run
        shape = (count + args.num_samples, 1, args.image_size, args.image_size)
        A = rng.uniform(-1, 1, shape).astype(np.float32)
        B = rng.uniform(-1, 1, shape).astype(np.float32)
        args.channels_a = args.channels_b = 1
        return (Shuffled(A[:count], B[:count], batch_size=args.batch_size), A[count:],
                B[count:], None)
    if args.paired_dir is None and args.dir_a is None:
        train = load_mnist_named(args.data_dir, train=True)
        test = load_mnist_named(args.data_dir, train=False)
        (A, B), (test_A, test_B, labels) = mnist_pairs(train, test, args.limit,
                                                        max(args.eval_samples, args.num_samples))
        args.channels_a = args.channels_b = 1
        return Shuffled(A, B, batch_size=args.batch_size), test_A, test_B, labels
    options = dict(image_size=args.image_size, load_size=args.load_size,
                   hold_out=args.hold_out, limit=args.limit)
    try:
        if args.paired_dir is not None:
            pairs = PairedFolder.side_by_side(args.paired_dir, **options)
        else:
            pairs = PairedFolder.two_folders(args.dir_a, args.dir_b, **options)
    except DataFileError as error:
        option = "--paired_dir" if args.paired_dir is not None else "--dir_a/--dir_b"
        raise DataFileError(f"{option}: {error}") from error
    args.channels_a, args.channels_b = pairs.channels
    args.load_size = pairs.load_size
    return (PairedBatches(pairs, args.batch_size), pairs.held_out_A, pairs.held_out_B, None)


def scores(args, device, test_A, test_B, labels):
    """With --evaluate, the held-out scorer: L1 and PSNR on every held-out pair, and on
    MNIST, on the first --eval_samples, also the shipped classifier's label_kept and FID
    (gan.metrics.load_classifier)."""
    if not args.evaluate:
        return None
    if labels is None:
        return PairedScores(test_A, test_B, device=device)
    from gan.metrics import load_classifier

    n = args.eval_samples
    return PairedScores(test_A[:n], test_B[:n], device=device, labels=labels[:n],
                        classifier=load_classifier(device=device))


# ---- wiring ----------------------------------------------------------------------------
def build_recipe(args, device, test_A, test_B, labels):
    """G, D (unless --no_adversarial), their optimizers and the adaptive weight, as a
    Pix2PixRecipe for images of args.channels_a -> args.channels_b channels."""
    kw = dict(device=device)
    G = UnetGenerator(args.channels_a, args.channels_b, args.width, args.depth,
                      args.dropout_layers, args.norm, **kw)
    adversarial = balance = None
    if not args.no_adversarial:
        D = PairDiscriminator(args.channels_a, args.channels_b, args.d_width, args.n_layers,
                              **kw)
        adversarial = Adversarial(D, get_objective(args.objective), adam(args, D, "d"),
                                  generator=G)
    if args.adaptive_weight:
        balance = AdaptiveWeight(args.adaptive_base, args.warmup_steps)
    return Pix2PixRecipe(G, adam(args, G, "g"), test_A, test_B, adversarial=adversarial,
                         l1_weight=args.l1_weight, balance=balance, device=device,
                         num_samples=args.num_samples,
                         evaluate=scores(args, device, test_A, test_B, labels))


def main(argv=None):
    args = build_parser().parse_args(argv)
    return finish(APP, lambda: train(args), args.out_dir, debug=args.debug)


def train(args):
    device = resolve_device(args.device)
    data, test_A, test_B, labels = load_pairs(args)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    recipe = build_recipe(args, device, test_A, test_B, labels)
    config = trainer_config(args, APP)
    return Trainer(recipe, data, config, run_info={"args": saved_args(args)}).train()


if __name__ == "__main__":
    main()

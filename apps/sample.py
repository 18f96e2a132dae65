"""Pictures from a trained generator: python -m apps.sample --checkpoint RUN_DIR --help

Loads the generator of a train_dcgan, train_cgan or train_wgan_gp --data mnist run
(apps.run_models: run.json's "app" and "args" say which model to build; the weights are the
"generator." entries of the newest intact checkpoints/step_*.safetensors, or of the
checkpoint file given) and writes one picture (PNG, or JPEG for --out x.jpg), titled with
the app, the checkpoint's step and epoch, and the mode:

  grid         --n samples G(z), z ~ N(0, I) from RandomState(--seed), row-major (a
               conditional generator gets one row per digit instead, labelled with it).
  interpolate  --rows random pairs (z0, z1); for each pair a row of linear interpolations
               (1 - t) z0 + t z1 ("lerp") and, under it, a row of spherical ones ("slerp",
               Shoemake 1985; White 2016 argues it stays on the shell where Gaussian z live).
  arithmetic   latent vector arithmetic as in Radford et al. (2016), fig. 7: three groups
               of three samples; each group's z are averaged, and A - B + C is decoded, with
               three more decodings of it plus U(-0.25, 0.25) noise. Rows "A", "B", "C":
               the group's three samples, then (column "mean") the decoded mean; row
               "A - B + C": the three noisy variants, then (column "mean") the exact
               mean(A) - mean(B) + mean(C).

There are no attribute labels (no "smiling woman"), so the groups are picked by index from
the same seeded batch that `--mode grid` draws: run grid first with the same --seed and --n,
note the positions (row-major, counting from 0) of samples that share a trait (say, three
slanted 7s), and pass them as --groups "i,j,k;l,m,n;o,p,q". By default the groups are 0-2,
3-5 and 6-8. For a train_cgan generator every arithmetic image gets the digit --label, so
the grid's position i has the same z but, in general, another digit.

A CycleGAN run has no generator of noise: apps.translate applies it to a folder of images.
A train_wgan_gp run on 2-D points has no images: its samples are drawn in the run's grids
and apps.evaluate scores them. Mistakes (no such run, no intact checkpoint, --groups out of
range) end in one line; --debug shows the traceback.
"""
import argparse
import os
import sys

import numpy as np

import needle as ndl
from gan import RunFolderError
from gan.checkpoint import checkpoint_info
from gan.images import image_format, save_grid
from gan.models.conditional import ConditionalGenerator

from .cli import USER_ERRORS, AppParser, nonnegative_int, one_line, positive_int
from .common import DEVICES, resolve_device
from .run_models import WEIGHTS, load_generator, open_run

__all__ = ["build_parser", "main", "lerp", "slerp", "picture"]

APP = "sample"
MODES = ("grid", "interpolate", "arithmetic")


def picture_path(text):
    """argparse type of --out: a file name whose extension names a format we write."""
    try:
        image_format(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def groups_option(text):
    """argparse type of --groups: "i,j,k;l,m,n;o,p,q", three groups of three indices."""
    try:
        groups = [[int(i) for i in part.split(",")] for part in text.split(";")]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected "0,1,2;3,4,5;6,7,8", got {text!r}') \
            from None
    if len(groups) != 3 or any(len(g) != 3 for g in groups):
        raise argparse.ArgumentTypeError(f"expected three groups of three indices, got "
                                         f"{text!r}")
    return groups


def build_parser():
    parser = AppParser(APP, __doc__)
    add = parser.add_argument
    add("--checkpoint", required=True,
        help="a run folder of train_dcgan, train_cgan or train_wgan_gp --data mnist (its "
             "newest intact checkpoint), or one checkpoint file")
    add("--mode", choices=MODES, default="grid", help="which picture (see above)")
    add("--out", type=picture_path, default=None,
        help="picture to write, .png or .jpg/.jpeg (default: RUN_DIR/sample_<mode>.png)"
             "%(default).0s")
    add("--n", type=positive_int, default=64, help="samples in the grid / the seeded batch")
    add("--seed", type=nonnegative_int, default=0, help="seed of the latent vectors")
    add("--weights", choices=sorted(WEIGHTS), default="auto",
        help="auto: the EMA of G's weights when the run kept one (--ema), else G; g: G "
             "itself; ema: the EMA")
    add("--rows", type=positive_int, default=4, help="interpolate: pairs of latent vectors")
    add("--steps", type=positive_int, default=10,
        help="interpolate: images per row, ends included")
    add("--groups", type=groups_option, default="0,1,2;3,4,5;6,7,8",
        help='arithmetic: indices into the seeded batch, "A;B;C", three per group')
    add("--label", type=nonnegative_int, default=None,
        help="conditional generators: digit for interpolate/arithmetic (default: the row's "
             "index modulo the classes for interpolate, 0 for arithmetic)%(default).0s")
    add("--device", choices=sorted(DEVICES), default="cpu_numpy",
        help="cpu_numpy: NumPy; cpu: the course's flat-memory device; cuda: CuPy on a GPU")
    add("--debug", action="store_true", help="show the traceback of an error")
    parser.after_parsing.append(check_groups)
    return parser


def check_groups(parser, args, argv):
    indices = [i for group in args.groups for i in group]
    if args.mode == "arithmetic" and not all(0 <= i < args.n for i in indices):
        parser.error(f"argument --groups: indices must be in [0, --n) = [0, {args.n}), got "
                     f"{';'.join(','.join(map(str, g)) for g in args.groups)}")


def open_generator(path, device=None, weights="auto"):
    """(Run, its generator in eval mode) for a run folder or checkpoint of an image GAN;
    `weights` as apps.run_models.load_generator."""
    run = open_run(path)
    if run.is_points:
        raise RunFolderError(f"{run.folder} is a train_wgan_gp run on 2-D points "
                             f"({run.args['data']}), not images: its grids are in "
                             f"{os.path.join(run.folder, 'samples')} and apps.evaluate "
                             "scores its modes")
    return run, load_generator(run, device, weights=weights)


# ---- latent paths ----------------------------------------------------------------------
def lerp(z0, z1, t):
    """(1 - t) z0 + t z1 for each t: (len(t), D)."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    return (1 - t) * z0[None] + t * z1[None]


def slerp(z0, z1, t):
    """Spherical interpolation: sin((1-t) w)/sin(w) z0 + sin(t w)/sin(w) z1, w the angle
    between z0 and z1; linear when they are (anti)parallel within 1e-7."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    cos = np.dot(z0, z1) / (np.linalg.norm(z0) * np.linalg.norm(z1))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-7:
        return lerp(z0, z1, t[:, 0])
    return (np.sin((1 - t) * omega) * z0[None] + np.sin(t * omega) * z1[None]) / np.sin(omega)


# ---- pictures --------------------------------------------------------------------------
def _decode(generator, z, labels, device):
    with ndl.no_grad():
        z = ndl.Tensor(np.asarray(z, dtype=np.float32), device=device, requires_grad=False)
        if isinstance(generator, ConditionalGenerator):
            y = ndl.Tensor(np.asarray(labels, dtype=np.float32), device=device,
                           requires_grad=False)
            return generator(z, y).numpy()
        return generator(z).numpy()


def picture(generator, mode, args, device):
    """(NCHW images, layout) for `mode`; layout holds save_grid's rows, row_labels,
    col_labels and metadata."""
    latent_dim = generator.latent_dim
    rng = np.random.RandomState(args.seed)
    conditional = isinstance(generator, ConditionalGenerator)
    classes = generator.num_classes if conditional else 1
    if mode == "grid":
        if conditional:
            per_class = max(1, args.n // classes)
            labels = np.repeat(np.arange(classes), per_class)
            z = rng.randn(len(labels), latent_dim)
            return _decode(generator, z, labels, device), dict(
                rows=classes, row_labels=[str(digit) for digit in range(classes)])
        z = rng.randn(args.n, latent_dim)
        return _decode(generator, z, None, device), {}
    if mode == "interpolate":
        pairs = rng.randn(args.rows, 2, latent_dim)
        t = np.linspace(0, 1, args.steps)
        z, labels, names = [], [], []
        for row, (z0, z1) in enumerate(pairs):
            label = row % classes if args.label is None else args.label
            z += [lerp(z0, z1, t), slerp(z0, z1, t)]
            labels += [label] * (2 * args.steps)
            digit = f" {label}" if conditional else ""
            names += [f"lerp{digit}", f"slerp{digit}"]
        images = _decode(generator, np.concatenate(z), labels, device)
        return images, dict(rows=2 * args.rows, row_labels=names,
                            metadata={"rows": "per pair: linear, then spherical"})
    groups = args.groups
    batch = rng.randn(args.n, latent_dim)  # the same batch --mode grid decodes
    means = [batch[g].mean(axis=0) for g in groups]
    result = means[0] - means[1] + means[2]
    noise = np.random.RandomState(args.seed + 1).uniform(-0.25, 0.25, (3, latent_dim))
    z = []
    for group, mean in zip(groups, means):
        z += [batch[i] for i in group] + [mean]
    z += [result + e for e in noise] + [result]
    label = 0 if args.label is None else args.label
    images = _decode(generator, np.stack(z), [label] * len(z), device)
    return images, dict(
        rows=4, row_labels=["A", "B", "C", "A - B + C"], col_labels=["", "", "", "mean"],
        metadata={"rows": "A x3 + mean(A); B x3 + mean(B); C x3 + mean(C); 3 noisy "
                          "variants of A - B + C, then mean(A) - mean(B) + mean(C)",
                  "groups": ";".join(",".join(map(str, g)) for g in groups)})


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        run, generator = open_generator(args.checkpoint, device, args.weights)
        if isinstance(generator, ConditionalGenerator) and args.label is not None and \
                args.label >= generator.num_classes:
            raise RunFolderError(f"--label {args.label} is not one of the "
                                 f"{generator.num_classes} classes of {run.folder}")
        images, layout = picture(generator, args.mode, args, device)
        out = args.out or os.path.join(run.folder, f"sample_{args.mode}.png")
        epoch = checkpoint_info(run.checkpoint).get("epoch")
        title = f"{run.app}  step {run.step}  epoch {epoch}  {args.mode}"
        metadata = dict(layout.pop("metadata", {}), mode=args.mode, seed=args.seed,
                        app=run.app, checkpoint=os.path.basename(run.checkpoint))
        save_grid(images, out, title=title, metadata=metadata, **layout)
    except USER_ERRORS as error:
        if args.debug:
            raise
        sys.exit(f"{APP}: {one_line(error)}")
    print(f"sample: wrote {out} ({args.mode} of {run.app} step {run.step})")
    return out


if __name__ == "__main__":
    main()

"""Pictures from a trained generator: python -m apps.sample --checkpoint RUN_DIR --help

Loads the generator of a train_dcgan or train_cgan run (run.json's "app" and "args" say
which model to build; the weights are the "generator." entries of the newest verified
checkpoints/step_*.safetensors) and writes one picture (PNG, or JPEG for --out x.jpg),
titled with the app, the checkpoint's step and epoch, and the mode:

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
"""
import argparse
import json
import os

import numpy as np

import needle as ndl
from gan.checkpoint import checkpoint_info, latest_checkpoint
from gan.images import image_format, save_grid
from gan.models.conditional import ConditionalGenerator
from gan.models.dcgan import Generator

from .common import DEVICES, make_parser, resolve_device

__all__ = ["build_parser", "main", "load_generator", "lerp", "slerp", "picture"]

MODES = ("grid", "interpolate", "arithmetic")


def picture_path(text):
    """argparse type of --out: a file name whose extension names a format we write."""
    try:
        image_format(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", required=True,
        help="run folder of train_dcgan / train_cgan (or one of its checkpoint files)")
    add("--mode", choices=MODES, default="grid", help="which picture (see above)")
    add("--out", type=picture_path, default=None,
        help="picture to write, .png or .jpg/.jpeg; none: RUN_DIR/sample_<mode>.png")
    add("--n", type=int, default=64, help="samples in the grid / the seeded batch")
    add("--seed", type=int, default=0, help="seed of the latent vectors")
    add("--rows", type=int, default=4, help="interpolate: pairs of latent vectors")
    add("--steps", type=int, default=10, help="interpolate: images per row, ends included")
    add("--groups", default="0,1,2;3,4,5;6,7,8",
        help='arithmetic: indices into the seeded batch, "A;B;C", three per group')
    add("--label", type=int, default=None,
        help="conditional generators: digit for interpolate/arithmetic; none: the row's "
             "index modulo the classes for interpolate, 0 for arithmetic")
    add("--device", choices=sorted(DEVICES), default="cpu_numpy")
    return parser


# ---- loading ---------------------------------------------------------------------------
def _run_files(path):
    """(run folder, checkpoint file) for a run folder or a checkpoint inside one."""
    if os.path.isfile(path):
        return os.path.dirname(os.path.dirname(os.path.abspath(path))), path
    if not os.path.isdir(path):
        raise SystemExit(f"sample: {path!r} is neither a run folder nor a checkpoint file")
    checkpoint = latest_checkpoint(os.path.join(path, "checkpoints"))
    if checkpoint is None:
        raise SystemExit(f"sample: no readable checkpoint in {os.path.join(path, 'checkpoints')}")
    return path, checkpoint


def load_generator(path, device=None):
    """(generator in eval mode, run.json's info, checkpoint path) for a run folder."""
    run_dir, checkpoint = _run_files(path)
    info_path = os.path.join(run_dir, "run.json")
    if not os.path.exists(info_path):
        raise SystemExit(f"sample: {info_path} is missing: cannot tell which model was "
                         "trained")
    with open(info_path) as f:
        info = json.load(f)
    app, args = info.get("app"), info.get("args", {})
    kw = dict(channels=1, image_size=args.get("image_size", 28),
              width=args.get("width", 64), device=device)
    latent_dim = args.get("latent_dim", 100)
    if app == "train_dcgan":
        generator = Generator(latent_dim, **kw)
    elif app == "train_cgan":
        generator = ConditionalGenerator(args.get("num_classes", 10), latent_dim, **kw)
    else:
        raise SystemExit(f"sample: {run_dir} was made by {app!r}; this app samples "
                         "train_dcgan and train_cgan runs")
    prefix = "generator."
    state = {key[len(prefix):]: value for key, value in ndl.load(checkpoint).items()
             if key.startswith(prefix)}
    generator.load_state_dict(state)
    return generator.eval(), info, checkpoint


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


def _parse_groups(text):
    try:
        groups = [[int(i) for i in part.split(",")] for part in text.split(";")]
    except ValueError:
        raise SystemExit(f'sample: --groups must look like "0,1,2;3,4,5;6,7,8", got {text!r}')
    if len(groups) != 3 or any(len(g) != 3 for g in groups):
        raise SystemExit(f"sample: --groups needs three groups of three indices, got {text!r}")
    return groups


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
    groups = _parse_groups(args.groups)
    if max(max(g) for g in groups) >= args.n or min(min(g) for g in groups) < 0:
        raise SystemExit(f"sample: --groups indices must be in [0, --n) = [0, {args.n})")
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
                  "groups": args.groups})


def main(argv=None):
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    generator, info, checkpoint = load_generator(args.checkpoint, device)
    images, layout = picture(generator, args.mode, args, device)
    run_dir = _run_files(args.checkpoint)[0]
    out = args.out or os.path.join(run_dir, f"sample_{args.mode}.png")
    saved = checkpoint_info(checkpoint)
    app = info.get("app")
    title = f"{app}  step {saved.get('step')}  epoch {saved.get('epoch')}  {args.mode}"
    metadata = dict(layout.pop("metadata", {}), mode=args.mode, seed=args.seed, app=app,
                    checkpoint=os.path.basename(checkpoint))
    save_grid(images, out, title=title, metadata=metadata, **layout)
    print(f"sample: wrote {out}")
    return out


if __name__ == "__main__":
    main()

"""Train CycleGAN on unpaired images: python -m apps.train_cyclegan --help

Default task: thin <-> thick MNIST strokes, unpaired. Domain A is MNIST's own digits from the
first half of the training set; domain B is the second half (disjoint, so no digit appears
in both domains and the pairs are never seen), thickened by a 3x3 max filter (grey
dilation) applied to images in [-1, 1], where the background is -1 and ink is +1, so every
stroke grows by one pixel on each side. G: A -> B learns to thicken, F: B -> A to thin.
With `--domain_a PATH --domain_b PATH`, the domains are two folders of images instead
(read with Pillow as grayscale, resized to --image_size).

Writes under --out_dir, as the other apps:
  run.json, metrics.jsonl (means every --log_every steps with the learning rates; per epoch,
  on MNIST, the share of translated digits that keep their label), losses.png,
  samples/step_XXXXXXXX.png (rows A, G(A), F(G(A)), B, F(B), G(F(B)) on fixed test images),
  checkpoints/step_XXXXXXXX.safetensors (resume bit for bit with --resume).

Batch size: the paper uses 1; the default here is 4. Instance norm normalises each image on
its own, so the batch size changes only how many images one update averages, not the layers'
numerics. On a 2-core CPU a step at batch 1 is mostly per-op Python overhead: measured time
per step at the default model size was about 0.3 s at batch 1, 0.45 s at batch 4 and 0.7 s
at batch 8, so batch 4 sees about 2.7 times the images per second of batch 1 while still
making one update per 4 images. Use --batch_size 1 for the paper's setting. The default
--limit of 6000 images per domain and 2 epochs is 3000 steps (about 25 minutes).

Learning rate: constant for the first half of the steps, then linearly to 0, the paper's
schedule (100 epochs constant, 100 decaying). The paper moves it once per epoch; with the
few epochs a CPU run affords (with 2, an epoch-wise decay would never leave the base rate
before training ends), it moves after every step: the same line, at a finer grain.
"""
import math
import os
import sys
import time
import warnings

import numpy as np
from tqdm import tqdm

import needle as ndl
from gan import Adversarial, TrainingDiverged
from gan.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from gan.cyclegan import CycleGAN
from gan.images import save_grid
from gan.models.cyclegan import PatchDiscriminator, ResnetGenerator
from gan.objectives import LeastSquares
from gan.runfiles import RunManifest, append_record, clean_stale_temp_files, read_history
from needle.data import load_mnist
from needle.data.idx import DataFileError

from .common import add_common_options, make_parser, resolve_device, run_training

__all__ = ["build_parser", "main", "thicken", "load_image_folder", "mnist_domains",
           "folder_domains"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".pgm", ".ppm")


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    add_common_options(parser, out_dir="runs/cyclegan", epochs=2, checkpoint_every=1000)
    add = parser.add_argument
    parser.set_defaults(batch_size=4, limit=6000)
    add("--domain_a", "--domain-a", default=None,
        help="folder of domain-A images; none: thin MNIST digits")
    add("--domain_b", "--domain-b", default=None,
        help="folder of domain-B images; none: thick MNIST digits (--limit applies "
             "to each domain)")
    add("--image_size", "--image-size", type=int, default=28,
        help="side of the square images; a multiple of 4 (folders are resized to it)")
    add("--lr", type=float, default=2e-4, help="Adam learning rate of G, F, D_A and D_B")
    add("--beta1", type=float, default=0.5, help="Adam beta1")
    add("--beta2", type=float, default=0.999, help="Adam beta2")
    add("--width", type=int, default=16, help="generators' channel unit (paper: 64)")
    add("--n_blocks", "--n-blocks", type=int, default=3,
        help="residual blocks per generator (paper: 9 at 256x256)")
    add("--d_width", "--d-width", type=int, default=16,
        help="discriminators' channel unit (paper: 64)")
    add("--n_layers", "--n-layers", type=int, default=2,
        help="stride-2 layers of the PatchGAN discriminators (paper: 3, 70x70 patches)")
    add("--cycle_weight", "--cycle-weight", type=float, default=10.0, help="lambda (eq. 3)")
    add("--identity_weight", "--identity-weight", type=float, default=0.5,
        help="identity loss weight relative to --cycle_weight (0 turns it off)")
    add("--pool_size", "--pool-size", type=int, default=50,
        help="images kept in each domain's pool of generated images for D")
    add("--num_samples", "--num-samples", type=int, default=8,
        help="test images per row of the sample grid")
    add("--eval_images", "--eval-images", type=int, default=500,
        help="test digits per domain for the label-kept score (MNIST only; 0 turns it off)")
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
    if args.image_size != 28:
        raise SystemExit("train_cyclegan: the MNIST domains are 28x28; use --image_size 28 "
                         "or --domain_a/--domain_b folders")
    train = load_mnist(args.data_dir, train=True)
    half = len(train) // 2
    count = half if args.limit is None else min(args.limit, half)
    train_A = _mnist_as_images(train, np.arange(count))
    train_B = thicken(_mnist_as_images(train, np.arange(half, half + count)))
    test = load_mnist(args.data_dir, train=False)
    n = max(args.num_samples, args.eval_images)
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
    if args.image_size % 4:
        raise SystemExit(f"train_cyclegan: --image_size must be a multiple of 4, "
                         f"got {args.image_size}")
    domains = []
    for path in (args.domain_a, args.domain_b):
        images = load_image_folder(path, args.image_size)
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
    if (args.domain_a is None) != (args.domain_b is None):
        raise SystemExit("train_cyclegan: give both --domain_a and --domain_b, or neither")
    if args.dry_run:
        return dry_run_domains(args)
    if args.domain_a is not None:
        return folder_domains(args)
    return mnist_domains(args)


# ---- evaluation hook -------------------------------------------------------------------
def label_kept_evaluator(device):
    """A function (model, test_A, labels_A, test_B, labels_B) -> {name: share}, or None.

    Uses gan.metrics.label_kept(classifier, images, labels) with load_classifier(): the
    share of translated digits the MNIST classifier still gives their source label to.
    """
    from gan.metrics import label_kept, load_classifier
    try:
        classifier = load_classifier(device=device)
    except FileNotFoundError as error:  # no shipped weights: train without the score
        print(f"train_cyclegan: no label-kept score: {error}", file=sys.stderr)
        return None

    def evaluate(model, test_A, labels_A, test_B, labels_B):
        fake_B = _round_trip(model.G, model.F, test_A, device)[0]
        fake_A = _round_trip(model.F, model.G, test_B, device)[0]
        return {"label_kept_G": float(label_kept(classifier, fake_B, labels_A)),
                "label_kept_F": float(label_kept(classifier, fake_A, labels_B)),
                # the classifier on the untranslated images: the ceiling of the two above
                "label_kept_real_A": float(label_kept(classifier, test_A, labels_A)),
                "label_kept_real_B": float(label_kept(classifier, test_B, labels_B))}
    return evaluate


def _round_trip(first, second, images, device, chunk=100):
    """(first(x), second(first(x))) as NumPy arrays, `chunk` images at a time, no graph."""
    outputs, returns = [], []
    with ndl.no_grad():
        for start in range(0, len(images), chunk):
            x = ndl.Tensor(images[start:start + chunk], device=device, requires_grad=False)
            y = first(x)
            outputs.append(y.numpy())
            returns.append(second(y).numpy())
    return np.concatenate(outputs), np.concatenate(returns)


# ---- the loop --------------------------------------------------------------------------
def steps_per_epoch(train, batch_size):
    """Batches per epoch: each epoch shuffles both domains and pairs them up to the smaller."""
    count = min(len(images) for images in train)
    if count < batch_size:
        raise SystemExit(f"train_cyclegan: {count} images is fewer than one batch of "
                         f"{batch_size}")
    return count // batch_size


class CycleGANRun:
    """Epochs over the two shuffled domains, logs, grids, checkpoints and resume."""

    def __init__(self, args, model, train, test_A, test_B, device, evaluate=None):
        self.args, self.model, self.device, self.evaluate = args, model, device, evaluate
        self.train_A, self.train_B = train
        self.test_A, self.test_B = test_A, test_B
        self.steps_per_epoch = steps_per_epoch(train, args.batch_size)
        self.checkpoint_dir = os.path.join(args.out_dir, "checkpoints")
        self.metrics_path = os.path.join(args.out_dir, "metrics.jsonl")
        self.history = []

    def _tensor(self, array):
        return ndl.Tensor(array, device=self.device, requires_grad=False)

    def train(self, max_steps):
        args = self.args
        state = self._start()
        total = args.epochs * self.steps_per_epoch
        total = total if max_steps is None else min(total, max_steps)
        interval = state.pop("interval")
        while state["step"] < total:
            if state["position"] == 0:
                state["order_A"] = np.random.permutation(len(self.train_A))
                state["order_B"] = np.random.permutation(len(self.train_B))
            bar = tqdm(total=self.steps_per_epoch, initial=state["position"],
                       desc=f"epoch {state['epoch'] + 1}/{args.epochs}", file=sys.stderr,
                       disable=args.no_progress, dynamic_ncols=True)
            with bar:
                while state["step"] < total:
                    figures = self._step(state)
                    interval.append(figures)
                    state["position"] += 1
                    state["step"] += 1
                    bar.update(1)
                    bar.set_postfix(d=f"{figures['d_loss']:.3f}", g=f"{figures['g_loss']:.3f}",
                                    refresh=False)
                    epoch_done = state["position"] == self.steps_per_epoch
                    if state["step"] % args.log_every == 0 or (epoch_done and interval):
                        self._log(state, interval)
                        interval = []
                    # everything of this step is written before its checkpoint, so a resume
                    # from it never writes a record twice
                    if epoch_done:
                        state["epoch"] += 1
                        state["position"] = 0
                        self._outputs(state)
                    if state["step"] % args.checkpoint_every == 0:
                        self._checkpoint(state, interval)
                    if epoch_done:
                        break
        if interval:
            self._log(state, interval)
        if state["position"]:  # stopped inside an epoch (max_steps)
            self._outputs(state)
        self._checkpoint(state, [])
        record = next((dict(r) for r in reversed(self.history) if "g_loss" in r), {})
        scores = [r for r in self.history if "label_kept_G" in r]
        if scores:
            record.update({k: v for k, v in scores[-1].items() if k.startswith("label_kept")})
        return record

    def _start(self):
        state = {"step": 0, "epoch": 0, "position": 0, "order_A": None, "order_B": None,
                 "interval": []}
        resumed_from = None
        for folder in (self.args.out_dir, self.checkpoint_dir,
                       os.path.join(self.args.out_dir, "samples")):
            clean_stale_temp_files(folder)  # left by a killed writer
        if self.args.resume:
            path = latest_checkpoint(self.checkpoint_dir)
            if path is None:
                raise SystemExit(f"train_cyclegan: --resume: no checkpoint in "
                                 f"{self.checkpoint_dir}")
            info, arrays = load_checkpoint(path, self.model.components())
            state.update(step=info["step"], epoch=info["epoch"], position=info["position"],
                         order_A=arrays.get("order_A"), order_B=arrays.get("order_B"),
                         interval=list(info.get("interval", [])))
            if state["position"] >= self.steps_per_epoch:  # older checkpoints
                state["epoch"], state["position"] = state["epoch"] + 1, 0
            self.history = read_history(self.metrics_path, info["step"])
            resumed_from = (info["step"], path)
        else:
            open(self.metrics_path, "w").close()
        self.manifest = RunManifest(self.args.out_dir, vars(self.args), self.args.seed,
                                    self.device, app="train_cyclegan", args=vars(self.args),
                                    label_kept=self.evaluate is not None)
        self.manifest.start(resumed_from)
        return state

    def _step(self, state):
        size, position = self.args.batch_size, state["position"]
        batch = slice(position * size, (position + 1) * size)
        real_A = self._tensor(self.train_A[state["order_A"][batch]])
        real_B = self._tensor(self.train_B[state["order_B"][batch]])
        figures = self.model.step(real_A, real_B)
        self.model.schedule_step()
        for name, value in figures.items():
            if not math.isfinite(value):
                last = latest_checkpoint(self.checkpoint_dir)
                where = (f"last good checkpoint: {last} (resume with --resume)" if last
                         else "no checkpoint was written yet")
                raise TrainingDiverged(f"training stopped at step {state['step'] + 1}: "
                                       f"{name} is {value}; {where}. Try a lower --lr.")
        return figures

    def _append(self, record):
        self.history.append(record)
        append_record(self.metrics_path, record)

    def _log(self, state, interval):
        record = {"step": state["step"], "epoch": state["epoch"], "time": time.time()}
        for key in interval[-1]:
            record[key] = float(np.mean([f[key] for f in interval if key in f]))
        record.update(self.model.learning_rates())
        self._append(record)

    def _checkpoint(self, state, interval):
        info = {"epoch": state["epoch"], "position": state["position"],
                "args": vars(self.args), "interval": interval}
        arrays = {name: state[name] for name in ("order_A", "order_B")
                  if state[name] is not None}
        path = save_checkpoint(self.checkpoint_dir, state["step"], self.model.components(),
                               info, arrays)
        self.manifest.add_checkpoint(path, state["step"])
        return path

    def _outputs(self, state):
        """The sample grid, the loss plot and (on MNIST) the label-kept score."""
        test_A, labels_A = self.test_A
        test_B, labels_B = self.test_B
        step, n = state["step"], min(self.args.num_samples, len(test_A), len(test_B))
        a, b = test_A[:n], test_B[:n]
        fake_B, rec_A = _round_trip(self.model.G, self.model.F, a, self.device)
        fake_A, rec_B = _round_trip(self.model.F, self.model.G, b, self.device)
        rows = [a, fake_B, rec_A, b, fake_A, rec_B]  # A, G(A), F(G(A)), B, F(B), G(F(B))
        save_grid(np.concatenate(rows), os.path.join(self.args.out_dir, "samples",
                                                     f"step_{step:08d}.png"),
                  rows=len(rows), metadata={"step": step, "epoch": state["epoch"],
                                            "rows": "A, G(A), F(G(A)), B, F(B), G(F(B))"})
        if self.history:
            plot_cyclegan_history(self.history, os.path.join(self.args.out_dir, "losses.png"))
        if self.evaluate is not None and labels_A is not None:
            scores = self.evaluate(self.model, test_A, labels_A, test_B, labels_B)
            self._append(dict(scores, step=step, epoch=state["epoch"]))


def plot_cyclegan_history(history, path):
    """D losses, G's loss terms and D's mean outputs against the step, in three panels."""
    from gan.plots import plot_series, plt, save_figure  # matplotlib, Agg backend

    panels = [("D loss", ("d_A_loss", "d_B_loss")),
              ("G terms", ("gan_G", "gan_F", "cycle_A", "cycle_B", "idt_G", "idt_F")),
              ("D output", ("d_A_real", "d_A_fake", "d_B_real", "d_B_fake"))]
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 8), sharex=True)
    for ax, (label, keys) in zip(axes, panels):
        for key in keys:
            if any(key in r for r in history):
                plot_series(ax, history, key, key)
        ax.set_ylabel(label)
        ax.legend(fontsize="small", ncol=3)
    axes[0].set_title("CycleGAN")
    axes[-1].set_xlabel("step")
    return save_figure(figure, path)


# ---- wiring ----------------------------------------------------------------------------
def build_model(args, device, total_steps):
    """G, F, D_A, D_B, their Adam optimizers and pools, as a gan.cyclegan.CycleGAN."""
    kw = dict(device=device)
    G = ResnetGenerator(1, args.width, args.n_blocks, **kw)   # A -> B
    F = ResnetGenerator(1, args.width, args.n_blocks, **kw)   # B -> A
    D_A = PatchDiscriminator(1, args.d_width, args.n_layers, **kw)  # real A vs F(B)
    D_B = PatchDiscriminator(1, args.d_width, args.n_layers, **kw)  # real B vs G(A)
    adam = dict(lr=args.lr, beta1=args.beta1, beta2=args.beta2)
    adv_A = Adversarial(D_A, LeastSquares(), ndl.optim.Adam(D_A.parameters(), **adam))
    adv_B = Adversarial(D_B, LeastSquares(), ndl.optim.Adam(D_B.parameters(), **adam))
    for adversarial, generator in ((adv_A, F), (adv_B, G)):  # graph-hygiene checks
        adversarial.watch(generator).debug = getattr(args, "debug", False)
    model = CycleGAN(G, F, adv_A, adv_B, ndl.optim.Adam(G.parameters(), **adam),
                     ndl.optim.Adam(F.parameters(), **adam), cycle_weight=args.cycle_weight,
                     identity_weight=args.identity_weight, pool_size=args.pool_size)
    return model.schedule(total_steps)  # over the configured run, whatever --max_steps


def main(argv=None):
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    train, test_A, test_B = load_domains(args)
    os.makedirs(args.out_dir, exist_ok=True)
    np.random.seed(args.seed)  # weights and data order; a resume restores the RNG anyway
    model = build_model(args, device, args.epochs * steps_per_epoch(train, args.batch_size))
    evaluate = None
    if test_A[1] is not None and args.eval_images > 0:
        evaluate = label_kept_evaluator(device)
    run = CycleGANRun(args, model, train, test_A, test_B, device, evaluate)
    max_steps = args.max_steps if args.max_steps is not None or not args.dry_run else 3
    return run_training("train_cyclegan", lambda: run.train(max_steps), args.out_dir)


if __name__ == "__main__":
    main()

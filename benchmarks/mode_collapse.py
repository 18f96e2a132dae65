"""Mode collapse on the published protocols: the 2-D ring and grid, and Stacked MNIST.

    python -m benchmarks.mode_collapse                       # all three parts, defaults below
    python -m benchmarks.mode_collapse --only ring --seeds 10 --steps 2000
    python -m benchmarks.mode_collapse --only stacked --seeds 2 --steps 1000
    python -m benchmarks.mode_collapse --only grid --methods gan pacgan2 --seeds 3 --out runs/mc
    python -m benchmarks.mode_collapse --table ring.json grid.json   # the README's table

Run it one process at a time with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 (the figures
below are one thread's CPU time per step).

Every run trains through the one engine, gan.Trainer with gan.recipes.GANRecipe (2-D points
from gan.batches.Sampled, Stacked MNIST from gan.batches.Shuffled), then scores the final
generator. Prints JSON: per part and method the mean and standard error over seeds (standard
deviation / sqrt(seeds), as PacGAN reports) of the modes covered and the high-quality share
(2-D) or the KL divergence to uniform (Stacked MNIST), every run's figures and seconds, the
published figures beside them, and which of the aims were met.

2-D ring and grid (gan.mixtures; VEEGAN sec. 5.1, PacGAN sec. 4 and appendix, the
architectures and settings of the PacGAN authors' code, fjxmlzn/PacGAN
synthetic_data_experiments/*/pacgan_task.py and config.py):
  G: z ~ N(0, I_2) -> 4 x (Linear 400, no bias; BatchNorm; ReLU) -> Linear 2.
  D: 3 maxout layers of 200 units x 5 pieces -> Linear 1 (input 2 m for packs of m).
  Weights N(0, 0.02^2), biases 0. Batch: 100 packs (100 m points of each kind).
  Adam lr 1e-4, beta1 0.8; one D and one G step per batch; 400 epochs of 1,000 batches
  (400,000 steps). Scoring: 2,500 samples of G (eval mode, z from RandomState(seed + 1)),
  gan.mixtures.mode_metrics.
  Methods: gan (non-saturating loss, PacGAN's GAN), pacgan2 / pacgan3 / pacgan4 (the same
  with gan.packing.Packed, m = 2, 3, 4), wgan_gp (Gulrajani et al. 2017: the Wasserstein
  critic with the gradient penalty of weight 10, 5 critic steps per G step, Adam betas
  (0.5, 0.9); the same G and D, D as a critic), pacwgan_gp2 (WGAN-GP with m = 2 and the
  penalty on packs), rpgan and pacrpgan2 (the relativistic pairing loss of gan.objectives,
  RpGAN, in place of the non-saturating one, unpacked and with m = 2).
Stacked MNIST (gan.stacked_mnist; PacGAN Table 2, the VEEGAN setting of its code,
fjxmlzn/PacGAN stacked_MNIST_experiments/VEEGAN_experiment):
  128,000 stacked images; batch 64 packs; Adam lr 2e-4, beta1 0.5; 50 epochs; 26,000
  samples scored by the shipped classifier. Methods: dcgan and pacdcgan2, the DCGAN of
  gan.models.dcgan at 28 x 28 with channels=3 (G 100-256-128-3, D 3-64-128-1 with
  BatchNorm; D's input is 6 channels for packs of 2), non-saturating loss.

What differs from the published protocol, and why (the JSON repeats it under "protocol"):
  * Training length. A protocol run is 400,000 steps on the 2-D data and 50 epochs =
    100,000 steps on Stacked MNIST. Measured here (one thread's CPU time per step): 58 ms
    (gan), 90 ms (pacgan2), 75 ms (wgan_gp, per D step) on 2-D, 0.79 s (dcgan) and 1.37 s
    (pacdcgan2) on Stacked MNIST: one protocol run would take 6-10 hours (2-D) and 22-38
    hours (Stacked MNIST), the 60 2-D runs about 500 hours. --steps sets the length (default
    2000 on 2-D, 1000 on Stacked MNIST); every step is one D step, and one G step (WGAN-GP:
    every 5th), so a method's runs cost about the same. To make up for the shorter runs the
    rates start --lr_scale times the protocol's (default 10 on 2-D, 1 on Stacked MNIST) and
    fall linearly to 0 over the run (GANRecipe's lr_decay), so that short runs end
    concentrated on the modes they found; --lr_scale 1 --no_lr_decay gives the protocol's
    constant rates.
  * Fresh points every step (gan.batches.Sampled, from the mixture itself) where the
    protocol draws a fixed set of 100,000 points once and shuffles it every epoch.
  * Stacked MNIST: z ~ N(0, I) instead of U(-1, 1) and one G step per D step (the DCGAN
    code PacGAN builds on takes two); the models are this project's 28 x 28 DCGAN, smaller
    than that code's (4 conv layers in D, a linear projection in G).
"""
import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import needle as ndl
from needle import init, nn, ops

from benchmarks.timing import machine

PARTS = ("ring", "grid", "stacked")
MIXTURE_METHODS = ("gan", "wgan_gp", "pacgan2", "pacgan3", "pacgan4", "pacwgan_gp2", "rpgan",
                   "pacrpgan2")
STACKED_METHODS = ("dcgan", "pacdcgan2")
DEFAULT_METHODS = {"ring": ("gan", "wgan_gp", "pacgan2"), "grid": ("gan", "wgan_gp", "pacgan2"),
                   "stacked": STACKED_METHODS}
DEFAULT_STEPS = {"ring": 2000, "grid": 2000, "stacked": 1000}
DEFAULT_SEEDS = {"ring": 10, "grid": 10, "stacked": 2}
DEFAULT_LR_SCALE = {"ring": 10.0, "grid": 10.0, "stacked": 1.0}
PROTOCOL_STEPS = {"ring": 400_000, "grid": 400_000, "stacked": 100_000}

# The published figures, as printed in the papers' tables (means; "se": standard error).
PUBLISHED = {
    "ring": {
        "gan": {"modes_covered": 1.0, "high_quality": 0.993,
                "source": "VEEGAN Table 1 (5 runs)"},
        "gan_pacgan_runs": {"modes_covered": 6.3, "modes_se": 0.5, "high_quality": 0.982,
                            "high_quality_se": 0.002, "source": "PacGAN Table 1 (10 runs)"},
        "wgan_gp": {"modes_covered": 6.8, "high_quality": 0.596,
                    "source": "GDPP (Elfeki et al. 2019) Table 1"},
        "veegan": {"modes_covered": 8.0, "high_quality": 0.529, "source": "VEEGAN Table 1"},
        "pacgan2": {"modes_covered": 7.9, "modes_se": 0.1, "high_quality": 0.956,
                    "high_quality_se": 0.020, "source": "PacGAN Table 1 (10 runs)"},
        "pacgan4": {"modes_covered": 7.8, "modes_se": 0.1, "high_quality": 0.959,
                    "high_quality_se": 0.014, "source": "PacGAN Table 1 (10 runs)"},
    },
    "grid": {
        "gan": {"modes_covered": 3.3, "high_quality": 0.005,
                "source": "VEEGAN Table 1 (5 runs)"},
        "gan_pacgan_runs": {"modes_covered": 17.3, "modes_se": 0.8, "high_quality": 0.948,
                            "high_quality_se": 0.007, "source": "PacGAN Table 1 (10 runs)"},
        "wgan_gp": {"modes_covered": 24.2, "high_quality": 0.287,
                    "source": "GDPP (Elfeki et al. 2019) Table 1"},
        "veegan": {"modes_covered": 24.6, "high_quality": 0.400, "source": "VEEGAN Table 1"},
        "pacgan2": {"modes_covered": 23.8, "modes_se": 0.7, "high_quality": 0.913,
                    "high_quality_se": 0.008, "source": "PacGAN Table 1 (10 runs)"},
        "pacgan4": {"modes_covered": 24.8, "modes_se": 0.2, "high_quality": 0.936,
                    "high_quality_se": 0.006, "source": "PacGAN Table 1 (10 runs)"},
    },
    "stacked": {
        "dcgan": {"modes_covered": 99.0, "kl_to_uniform": 3.40,
                  "source": "VEEGAN Table 2 (as PacGAN Table 2 quotes it)"},
        "dcgan_pacgan_runs": {"modes_covered": 78.9, "modes_se": 6.46, "kl_to_uniform": 4.50,
                              "kl_se": 0.127, "source": "PacGAN Table 2 (10 runs)"},
        "pacdcgan2": {"modes_covered": 1000.0, "modes_se": 0.0, "kl_to_uniform": 0.06,
                      "kl_se": 0.003, "source": "PacGAN Table 2 (10 runs)"},
    },
}
AIMS = {"ring": {"modes_covered": 8.0, "high_quality": 0.95},
        "grid": {"modes_covered": 24.5, "high_quality": 0.90},
        "stacked": {"modes_covered": 990}}


# ---- the 2-D protocol's networks ----------------------------------------------------------
class Maxout(nn.Module):
    """Linear to `units * pieces` outputs, then the largest of each unit's `pieces`
    (Goodfellow et al. 2013): (N, in_features) -> (N, units)."""

    def __init__(self, in_features, units, pieces, device=None):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces, device=device)

    def forward(self, x):
        y = ops.reshape(self.linear(x), (x.shape[0], self.pieces, self.units))
        pieces = ops.split(y, 1).tuple()
        out = pieces[0]
        for piece in pieces[1:]:
            out = ops.maximum(out, piece)
        return out


class ProtocolDiscriminator(nn.Module):
    """PacGAN's 2-D D: 3 maxout layers of 200 units x 5 pieces, then a linear score:
    (N, in_features) -> (N,)."""

    def __init__(self, in_features=2, units=200, pieces=5, layers=3, device=None):
        super().__init__()
        self.in_features = in_features
        blocks = [Maxout(in_features if i == 0 else units, units, pieces, device=device)
                  for i in range(layers)]
        self.net = nn.Sequential(*blocks, nn.Linear(units, 1, device=device))
        _protocol_init(self)

    def forward(self, x):
        return ops.reshape(self.net(x), (x.shape[0],))


class ProtocolGenerator(nn.Module):
    """PacGAN's 2-D G: z (N, 2) -> 4 x (Linear 400 without bias, BatchNorm, ReLU) ->
    Linear 2 with bias. BatchNorm's running statistics move by 5% a step, as in its code."""

    def __init__(self, latent_dim=2, hidden=400, layers=4, out_features=2, device=None):
        super().__init__()
        self.latent_dim = latent_dim
        blocks = []
        for i in range(layers):
            blocks += [nn.Linear(latent_dim if i == 0 else hidden, hidden, bias=False,
                                 device=device),
                       nn.BatchNorm1d(hidden, momentum=0.05, device=device), nn.ReLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, out_features, device=device))
        _protocol_init(self)

    def forward(self, z):
        return self.net(z)


def _protocol_init(module, std=0.02):
    """Linear weights N(0, std^2) and biases 0 (PacGAN's IsotropicGaussian(0.02), Constant(0))."""
    for layer in [module, *module._children()]:
        if isinstance(layer, nn.Linear):
            layer.weight.data = init.normal(*layer.weight.shape, std=std,
                                            device=layer.weight.device)
            if layer.bias is not None:
                layer.bias.data = init.zeros(*layer.bias.shape, device=layer.bias.device)


# ---- one run --------------------------------------------------------------------------------
def _pack_of(method):
    """The pack size a method name ends in (pacgan4 -> 4), 1 for unpacked methods."""
    digits = "".join(ch for ch in method if ch.isdigit())
    return int(digits) if method.startswith("pac") else 1


def _mixture_parts(method):
    """(D, objective, penalties, n_critic, betas) of a 2-D method."""
    from gan.objectives import NonSaturating, RelativisticPairing, Wasserstein
    from gan.packing import Packed
    from gan.penalties import GradientPenalty

    m = _pack_of(method)
    D = ProtocolDiscriminator(2) if m == 1 else Packed(lambda k: ProtocolDiscriminator(2 * k), m)
    if "wgan_gp" in method:
        penalty = GradientPenalty(10.0)
        return D, Wasserstein(), [penalty if m == 1 else D.penalty(penalty)], 5, (0.5, 0.9)
    objective = RelativisticPairing() if "rpgan" in method else NonSaturating()
    return D, objective, [], 1, (0.8, 0.999)


def _train(recipe, data, steps, out_dir, seed):
    """Train to `steps`; returns {"steps": the steps taken, "seconds": wall time} and, for a
    run whose losses or samples went NaN, "diverged": the Trainer's message (the run is
    then scored as it stands, which counts as no modes covered)."""
    from gan import Trainer, TrainerConfig, TrainingDiverged

    config = TrainerConfig(out_dir=out_dir, epochs=1, max_steps=steps, seed=seed,
                           checkpoint_every=steps, log_every=max(1, min(100, steps)),
                           progress=False, report=False, overwrite=True,
                           app="benchmarks.mode_collapse")
    start = time.perf_counter()
    outcome = {}
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON's
        try:
            outcome["steps"] = Trainer(recipe, data, config).train()["step"]
        except TrainingDiverged as error:
            outcome.update(steps=None, diverged=str(error))
    outcome["seconds"] = round(time.perf_counter() - start, 1)
    return outcome


def run_mixture(part, method, seed, settings, out_dir):
    """Train one 2-D run and score it: {"seed", "modes_covered", "high_quality", ...}."""
    from apps.train_wgan_gp import ModeScores
    from gan.batches import Sampled
    from gan.mixtures import MIXTURES
    from gan.recipes import GANRecipe
    from gan.samples import PointCloud

    mixture = MIXTURES[{"ring": "ring8", "grid": "grid25"}[part]]()
    np.random.seed(seed)  # initial weights, then the training stream
    generator = ProtocolGenerator()
    D, objective, penalties, n_critic, (beta1, beta2) = _mixture_parts(method)
    lr = 1e-4 * settings.lr_scale
    adversarial = _adversarial(D, objective, lr, beta1, beta2, penalties, n_critic)
    g_optimizer = ndl.optim.Adam(generator.parameters(), lr=lr, beta1=beta1, beta2=beta2)
    recipe = GANRecipe(generator, adversarial, g_optimizer, latent_dim=2, num_samples=500,
                       seed=seed, lr_decay=settings.lr_decay,
                       picture=lambda points: PointCloud(points, mixture))
    # every step is a D step; a critic with n_critic takes a G step every n_critic-th
    batch, steps = 100 * _pack_of(method), settings.steps
    outcome = _train(recipe, Sampled(mixture.sample, batch, steps), steps, out_dir, seed)
    scores = ModeScores(mixture, settings.eval_samples, 2, seed, None)(generator)
    return {"seed": seed, "modes_covered": scores["modes_covered"],
            "high_quality": scores["high_quality"],
            "g_steps": None if outcome["steps"] is None else outcome["steps"] // n_critic,
            **outcome}


def _adversarial(D, objective, lr, beta1, beta2, penalties, n_critic):
    from gan import Adversarial

    return Adversarial(D, objective, ndl.optim.Adam(D.parameters(), lr=lr, beta1=beta1,
                                                     beta2=beta2),
                       penalties=penalties, n_critic=n_critic)


class StackedData:
    """The digits, loaded once per benchmark, and the classifier that scores runs."""

    def __init__(self, data_dir):
        from gan.metrics import load_classifier
        from gan.stacked_mnist import load_digits

        self.images, self.labels = load_digits(data_dir)
        self.classifier = load_classifier()


def run_stacked(method, seed, settings, out_dir, digits):
    """Train one Stacked MNIST run and score it: {"seed", "modes_covered", "kl_to_uniform"}."""
    from gan.batches import Shuffled
    from gan.metrics import sample_images
    from gan.models.dcgan import Discriminator, Generator
    from gan.objectives import NonSaturating
    from gan.packing import Packed
    from gan.recipes import GANRecipe
    from gan.stacked_mnist import mode_scores, stacked_mnist

    m = _pack_of(method)
    images, _ = stacked_mnist(digits.images, digits.labels, settings.train_count, seed=seed)
    np.random.seed(seed)
    generator = Generator(100, channels=3, image_size=28)
    D = Discriminator(channels=3) if m == 1 else Packed(lambda k: Discriminator(channels=3 * k), m)
    lr = 2e-4 * settings.lr_scale
    adversarial = _adversarial(D, NonSaturating(), lr, 0.5, 0.999, [], 1)
    g_optimizer = ndl.optim.Adam(generator.parameters(), lr=lr, beta1=0.5)
    recipe = GANRecipe(generator, adversarial, g_optimizer, latent_dim=100, num_samples=64,
                       seed=seed, lr_decay=settings.lr_decay)
    outcome = _train(recipe, Shuffled(images, batch_size=64 * m), settings.steps, out_dir,
                     seed)
    del images
    samples, _ = sample_images(generator, settings.eval_samples, seed=seed + 1)
    scores = mode_scores(digits.classifier, samples)
    return {"seed": seed, "modes_covered": scores["modes_covered"],
            "kl_to_uniform": scores["kl_to_uniform"], **outcome}


# ---- summaries -------------------------------------------------------------------------------
def mean_and_se(values):
    """{"mean", "se"} of a list of numbers; se = sample std / sqrt(n) (None for one value)."""
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return {"mean": float(values.mean()), "se": se}


def summarise(runs, keys):
    return {key: mean_and_se([run[key] for run in runs]) for key in keys}


def aims_met(part, methods):
    """For each method of `part`: whether its means reach the issue's aims."""
    aims = AIMS[part]
    return {method: all(summary[key]["mean"] >= goal for key, goal in aims.items())
            for method, summary in methods.items()}


@dataclasses.dataclass
class Settings:
    """How one part's runs are trained and scored (see the module docstring)."""

    steps: int
    lr_scale: float
    lr_decay: bool
    eval_samples: int
    train_count: int = 0  # Stacked MNIST's training images


def part_settings(part, args):
    from gan.mixtures import EVAL_SAMPLES as MIXTURE_EVAL
    from gan.stacked_mnist import EVAL_SAMPLES as STACKED_EVAL, TRAIN_COUNT

    return Settings(steps=args.steps or DEFAULT_STEPS[part],
                    lr_scale=DEFAULT_LR_SCALE[part] if args.lr_scale is None else args.lr_scale,
                    lr_decay=not args.no_lr_decay,
                    eval_samples=args.eval_samples or (
                        STACKED_EVAL if part == "stacked" else MIXTURE_EVAL),
                    train_count=args.train_count or TRAIN_COUNT)


def run_part(part, args, log, digits=None):
    methods = args.methods or DEFAULT_METHODS[part]
    seeds = args.seeds or DEFAULT_SEEDS[part]
    settings = part_settings(part, args)
    keys = ("modes_covered", "kl_to_uniform") if part == "stacked" else (
        "modes_covered", "high_quality")
    results = {}
    for method in methods:
        runs = []
        for seed in range(seeds):
            out_dir = os.path.join(args.root, part, method, f"seed{seed}")
            if part == "stacked":
                run = run_stacked(method, seed, settings, out_dir, digits)
            else:
                run = run_mixture(part, method, seed, settings, out_dir)
            log(f"{part} {method} seed {seed}: {json.dumps(run)}")
            runs.append(run)
        results[method] = {**summarise(runs, keys), "runs": runs}
    report = {**dataclasses.asdict(settings), "seeds": seeds,
              "protocol_steps": PROTOCOL_STEPS[part], "methods": results,
              "published": PUBLISHED[part], "aims": AIMS[part],
              "aims_met": aims_met(part, results)}
    if part != "stacked":
        del report["train_count"]
    else:
        report["real_data"] = real_data_scores(digits, settings)
    return report


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mode_collapse",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=PARTS, nargs="+", default=None,
                        help="parts to run (default: all three)")
    parser.add_argument("--methods", nargs="+", default=None,
                        choices=MIXTURE_METHODS + STACKED_METHODS,
                        help="methods per part (default: gan wgan_gp pacgan2 on 2-D, dcgan "
                             "pacdcgan2 on Stacked MNIST)")
    parser.add_argument("--seeds", type=_positive, default=None,
                        help="seeds 0..N-1 per method (default: 10 on 2-D, 2 on Stacked MNIST)")
    parser.add_argument("--steps", type=_positive, default=None,
                        help="training steps per run, each one D step and, every n_critic-th "
                             "(5 for WGAN-GP, else 1), one G step (default: 2000 on 2-D, 1000 "
                             "on Stacked MNIST)")
    parser.add_argument("--lr_scale", type=float, default=None,
                        help="start the rates at this multiple of the protocol's (default: 10 "
                             "on 2-D, 1 on Stacked MNIST)")
    parser.add_argument("--no_lr_decay", action="store_true",
                        help="keep the rates constant (the protocol) instead of decaying "
                             "them linearly to 0")
    parser.add_argument("--eval_samples", type=_positive, default=None,
                        help="samples scored per run (default: the protocol's 2,500 on 2-D, "
                             "26,000 on Stacked MNIST)")
    parser.add_argument("--train_count", type=_positive, default=None,
                        help="Stacked MNIST training images (default: the protocol's 128,000)")
    parser.add_argument("--data_dir", default="data/mnist", help="MNIST files (Stacked MNIST)")
    parser.add_argument("--table", nargs="+", metavar="JSON",
                        help="print the README's markdown table from reports this script "
                             "printed, and exit")
    parser.add_argument("--out", default=None,
                        help="keep each run's folder (pictures, metrics) under this folder "
                             "(default: a temporary folder, removed)")
    return parser


def _figure(summary, key, digits):
    """'mean ± se' of a summary's key (the mean alone for one run)."""
    if key not in summary:
        return ""
    value = summary[key]
    if isinstance(value, dict):
        mean, se = value["mean"], value["se"]
    else:
        mean, se = value, summary.get({"modes_covered": "modes_se", "high_quality":
                                       "high_quality_se", "kl_to_uniform": "kl_se"}[key])
    scale, unit = (100, "%") if key == "high_quality" else (1, "")
    text = f"{mean * scale:.{digits}f}{unit}"
    return text if se is None else f"{text} ± {se * scale:.{digits}f}{unit}"


def markdown_table(reports):
    """The README's table from this script's JSON reports: each part's methods, measured
    beside the published figures."""
    lines = ["| part | method | runs x steps | modes covered | high-quality / KL to uniform "
             "| published (modes, quality / KL; source) |", "|---|---|---|---|---|---|"]
    for report in reports:
        for part in PARTS:
            if part not in report:
                continue
            result, second = report[part], "kl_to_uniform" if part == "stacked" else \
                "high_quality"
            for method, summary in result["methods"].items():
                published = result["published"].get(method)
                cited = "" if published is None else (
                    f"{_figure(published, 'modes_covered', 1)}, "
                    f"{_figure(published, second, 1 if second == 'high_quality' else 2)}; "
                    f"{published['source']}")
                lines.append(
                    f"| {part} | {method} | {result['seeds']} x {result['steps']} | "
                    f"{_figure(summary, 'modes_covered', 1)} | "
                    f"{_figure(summary, second, 1 if second == 'high_quality' else 2)} | "
                    f"{cited} |")
    return "\n".join(lines)


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.table:
        reports = []
        for path in args.table:
            try:
                with open(path, encoding="utf-8") as file:
                    reports.append(json.load(file))
            except (OSError, ValueError) as error:
                raise SystemExit(f"mode_collapse: cannot read the report {path}: {error}")
        print(markdown_table(reports))
        return reports
    parts = args.only or PARTS
    for part in parts if args.methods else ():
        allowed = STACKED_METHODS if part == "stacked" else MIXTURE_METHODS
        bad = [m for m in args.methods if m not in allowed]
        if bad:
            raise SystemExit(f"mode_collapse: --methods {' '.join(bad)} do not apply to "
                             f"{part} (it takes {', '.join(allowed)}); run the 2-D parts "
                             "and stacked separately to give each its methods")
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    args.root = args.out or tempfile.mkdtemp(prefix="mode_collapse_")
    result = {"benchmark": "mode_collapse", "machine": machine(),
              "threads": {name: os.environ.get(name) for name in
                          ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
              "command": "python -m benchmarks.mode_collapse " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "protocol": PROTOCOL_NOTES}
    try:
        digits = StackedData(args.data_dir) if "stacked" in parts else None
        for part in parts:
            start = time.perf_counter()
            result[part] = run_part(part, args, log, digits)
            result[part]["seconds"] = round(time.perf_counter() - start, 1)
    finally:
        if args.out is None:
            shutil.rmtree(args.root, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return result


def real_data_scores(digits, settings):
    """The scores of as many real stacked images as runs are scored on: the ceiling that
    the classifier (and the sample size) allow."""
    from gan.stacked_mnist import mode_scores, stacked_mnist

    images, _ = stacked_mnist(digits.images, digits.labels, settings.eval_samples, seed=12345)
    return mode_scores(digits.classifier, images)


PROTOCOL_NOTES = {
    "mixtures": "gan.mixtures ring (8 modes, radius 1, std 0.01) and grid (25 modes, spacing "
                "2, std 0.05); 2,500 samples; high quality = within 3 std of the nearest "
                "centre; a mode is covered by >= 1 high-quality sample (VEEGAN sec. 5.1, "
                "PacGAN sec. 4)",
    "networks_2d": "PacGAN's: G 4 x 400 BatchNorm ReLU, D 3 maxout layers 200 x 5; batch "
                   "100 packs; Adam beta1 0.8 (WGAN-GP: betas 0.5, 0.9, 5 critic steps, "
                   "lambda 10)",
    "stacked": "128,000 stacked images from the 70,000 MNIST digits; batch 64 packs; Adam "
               "2e-4, beta1 0.5; 26,000 samples scored by gan.metrics' classifier",
    "differences": "training length (--steps) instead of 400,000 (2-D) / 100,000 (Stacked "
                   "MNIST) steps, with rates starting at lr_scale x the protocol's and "
                   "decaying linearly to 0 when lr_decay; fresh 2-D points every step; "
                   "Stacked MNIST: z ~ N(0, I), one G step per D step, this project's "
                   "28x28 DCGAN (see the module docstring)",
}


if __name__ == "__main__":
    main()

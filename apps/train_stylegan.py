"""Train StyleGAN-lite (StyleGAN2's generator and residual D, small) on 32x32 MNIST.

The default run trains gan.models.stylegan's StyleGANGenerator (mapping 64 -> 4 x 64 with lr
multiplier 0.01, constant 4x4 input, modulated and demodulated 3x3 convolutions, skip toRGB
outputs summed and squashed by tanh, channels 32, 32, 16, 8 at 4, 8, 16, 32 pixels) against
StyleGANDiscriminator for one epoch of the bundled data/mnist, each digit padded from 28x28
to 32x32 with the background value (1875 steps of 32), with StyleGAN2's training choices:
the non-saturating logistic loss, lazy R1 on real images (gamma --r1 every --lazy_every D
steps), style mixing regularisation (--mixing_prob), the EMA generator (--ema 0.99) and Adam
with betas (0, 0.99), D at lr 0.001 and G at --g_lr 0.01. Two defaults leave StyleGAN2: G
has no noise inputs (--noise puts them back) and ends in tanh (--output linear: StyleGAN's
linear output); --noise --output linear --g_lr 0.001 is the StyleGAN2 recipe this app had
before, which mode-collapses here. --no_demod leaves demodulation out as well.

At --max_steps 1030 (the DCGAN main job's wall time at the step costs below; scores on 2000
samples with the shipped classifier), G then EMA(G): seed 0 FID 28.3 / 23.6, KID 0.306 /
0.195, precision 0.43 / 0.52, recall 0.036 / 0.074, digits covered 7 / 6; seed 1 FID 26.9 /
29.3, KID 0.295 / 0.297, precision 0.31 / 0.49, recall 0.070 / 0.079, digits 7 / 5:

  python -m apps.train_stylegan --max_steps 1030 --evaluate --eval_samples 2000

With --noise it trains too, less evenly over seeds (EMA(G) FID 37.2 on seed 0, 24.6 on seed
1, 6 and 7 digits). --no_demod trains as well. 920 steps of it, G then EMA(G): seed 0 FID
46.2 / 26.8, KID 0.816 / 0.249, precision 0.37 / 0.54, recall 0.059 / 0.042, digits covered
4 / 7; seed 1 (--seed 1) FID 30.1 / 24.6, KID 0.396 / 0.276, precision 0.38 / 0.48, recall
0.14 / 0.13, digits 8 / 7; EMA(G) draws every class (all ten in its class histogram), varied
digits (--no_demod --max_steps 920 --evaluate --eval_samples 2000); at --max_steps 1030,
seed 0: FID 25.7 / 25.3, KID 0.226 / 0.220, precision 0.40 / 0.54, recall 0.051 / 0.060,
digits 7 / 8. With --no_demod, --g_lr 0.02 did as well on seed 0 (G 29.3, 7 digits; EMA(G)
27.9, 6) but collapsed on seed 1 (FID 161, one digit, a saturated tanh and D winning), so
the default is 0.01.

The collapse and its fix. With the StyleGAN2 recipe every variant tried collapsed to 1-3
digits. With nearest-neighbour feature upsampling (before G used the [1, 3, 3, 1] filter),
1000 steps at 0.001 (seed 0) made one digit, FID 95.0 (EMA(G) 100.0) on 2000 samples, where
the DCGAN scores 20; 300-step screens (seed 0, FID on 1000 samples): the defaults 58.5; lr
0.0025 with --r1 0.0064 --mapping_layers 2 56.6, and with it --width 16 70.7, --mbstd_group
32 61.0, --beta1 0.5 72.7, --g_lr 0.001 60.7, --d_lr 0.01 54.3; lr 0.005 84.8 and lr 0.01
96.2; --mapping_lr_mul 1 73.1, --mixing_prob 0 54.7. With the DCGAN's G in its place this D
trains varied digits, and this G collapses against the DCGAN's D too (FID 60.5). With the
filter and no noise, 920 steps of --g_lr 0.0005 end at FID 73.3 (EMA(G) 71.6), 3 digits,
mostly 1s (--r1 1 56.9, one digit; --mbstd_group 32 66.7, one digit; --g_lr 0.00025 67.5;
--lr 0.0005 72.3; G alone twice as wide 92.4). A PyTorch twin of G, D and this loop (same
architecture, initialisation, losses, lazy R1, mixing, EMA and Adam; a scratch oracle, not
shipped) collapses the same way (920 steps, no noise, --g_lr 0.0005: G / EMA(G) FID 81.7 /
78.0, 2 digits; seed 1 77.2 / 69.1, one digit; FID on 1000 samples), so it is the design at
this size and budget, not a needle bug. In the twin (920 steps, seed 0, G / EMA(G)), still
collapsed: affine bias 0 instead of 1 66.9 / 64.7, tanh alone 81.2 / 85.8, one mapping layer
at lr multiplier 1 71.7 / 73.1, the DCGAN's Adam (lr 0.0002, betas 0.5, 0.999) 71.6 / 61.5,
no demodulation 61.7 / 62.9, G 4x as wide 85.2 / 76.5, a fresh z for the G step 83.8 / 78.2,
batch 64 89.7 / 80.7, a 4x4 input from w instead of the constant 82.5 / 71.8, and (cut after
200-600 steps) path-length regularisation (weight 2, every 4), D 4x as wide, D lr 0.004 or
0.005, minibatch-std groups of 32: FID 60-90, 1-2 digits. Against the same D and recipe a
DCGAN G (z -> ConvTranspose 256, 128, 64, 1, tanh) trains: 21.4 / 20.3, 9 digits with
BatchNorm, 19.3 / 19.0, 8 digits without, so batch coupling is not what is missing; but with
StyleGAN's equalized learning rate it learns nothing at g_lr 0.0005 (FID 182: the runtime
1/sqrt(fan_in) scale makes Adam's steps tens of times smaller relative to the weights than
in a plainly initialised net) and trains at g_lr 0.02 (27.9 / 23.9, 6-7 digits), even when
it is fed only a learned constant and z enters through per-layer styles (37.0 / 33.4, 6-7
digits). This G at g_lr 0.005 or 0.02 keeps up with D (D's loss 1.1-1.4) yet collapses
harder (FID 93-112, 0-1 digits): the spread of its images over z falls steadily (at g_lr
0.005 the 4x4 toRGB output's standard deviation over z is 0.35 of a total 0.62 at step 100,
0.07 of 0.21 at step 600) while its styles keep varying (coefficient of variation about
0.7), also with no demodulation (and a linear output) or frozen synthesis biases. What
trains is the fast G with a tanh output: --g_lr 0.02 and tanh 34.9 / 28.4, 6-7 digits; with
no demodulation as well 20.1 / 19.1, 10 / 9 digits (KID 0.19, recall 0.13), about the
DCGAN's; the needle runs above are that recipe at G lr 0.01, and in needle demodulation back
on (the default) scores as well. (Why a bounded output matters is a guess: with a linear
output the four summed toRGB layers must land on the flat -1 background exactly, and a fast
G gets there by making every image alike; tanh saturates the background, and the pre-tanh
images grow (standard deviation 4-25 at 16x16 and 32x32) while keeping their dependence on
z.)

A step of --no_demod costs less than the DCGAN main job's (0.249 against 0.280 s of CPU,
median of 20 steps after 4, one thread, the two alternating in one process; the StyleGAN2
recipe's 0.285 against 0.284), so --max_steps 920 is slightly under the DCGAN main job's
wall time (about 1030 steps match it) and the default epoch about twice it. --minutes M
stops after M minutes instead (then scores G with --evaluate and writes the pictures). It
writes into the run folder (--out_dir, default runs/stylegan):

  report.html                 the page to watch: latest grid (G and EMA(G)), grids over time,
                              curves, scores, health warnings, configuration
  samples/step_XXXXXXXX.png   a grid from fixed noise every --sample_every steps and at each
                              epoch end
  stylegan_mixing.png         the style-mixing grid (StyleGAN's figure 3): the first row
                              and column are the sources; each other image takes its
                              coarse styles (the --crossover first, the 4x4 and 8x8 layers by
                              default) from its row's source and the fine ones from its
                              column's
  stylegan_truncation.png     the truncation sweep: one row per z, w = w_avg + psi (w -
                              w_avg) with psi from 1 down to 0 across the columns
  budget.json                 with --minutes: the step reached, the time and the scores
  losses.png, metrics.jsonl   losses, D(x), D(G(z)), gradient norms, health warnings
  run.json, checkpoints/      the run's id, options and checkpoint hashes; the checkpoints

Modes of a run folder:
  (none)           a new run; refused if --out_dir already holds one
  --resume         continue that run bit for bit from its newest intact checkpoint, to its
                   own target, with its own options (give options again to change them);
                   NumPy's global RNG, which draws the noise, the style-mixing coin, its
                   crossovers and second z, is in every checkpoint
  --more_epochs N  resume and train N epochs past the run's target
  --overwrite      move the run in --out_dir aside (OUT_DIR.old-<time>) and start afresh
  --dry_run        3 steps on random images in a temporary folder: checks the wiring
  --pictures RUN   no training: the two pictures from RUN's newest checkpoint (its EMA(G)
                   when it kept one), written into RUN

Ctrl-C (or SIGTERM) finishes the step, writes a checkpoint and prints how to continue; a
second Ctrl-C stops at once. --evaluate scores G and EMA(G) at each epoch end (and at the
end of --minutes) with the shipped MNIST classifier (FID, KID, precision/recall, digits
covered; gan.metrics) on their outputs clipped to [-1, 1], as StyleGAN's metrics clip.
"""
import argparse
import json
import os
import sys

import numpy as np

import needle as ndl
from gan import Adversarial, RunFolderError, Trainer
from gan.batches import Shuffled
from gan.images import save_grid
from gan.metrics import sample_images
from gan.models.stylegan import (OUTPUTS, StyleGANDiscriminator, StyleGANGenerator,
                                 num_ws_for)
from gan.objectives import OBJECTIVES, get_objective
from gan.penalties import R1
from gan.recipes import GANRecipe
from gan.trainer import TrainingInterrupted
from needle.fileio import atomic_write

from .cli import (USER_ERRORS, AppParser, finish, float_in, folder, nonnegative_float,
                  nonnegative_int, one_line, positive_int)
from .common import (adam, add_adam_options, add_common_options, mnist_evaluator,
                     mnist_images, resolve_device, saved_args, trainer_config)
from .run_models import open_run
from .techniques import build_ema

APP = "train_stylegan"
IMAGE_SIZE = 32
PSIS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)
OBJECTIVE_CHOICES = sorted(set(OBJECTIVES) - {"wasserstein"})  # no penalty for it here


def build_parser():
    parser = AppParser(APP, __doc__)
    add_common_options(parser, "stylegan", epochs=1, checkpoint_every=500, sample_every=200)
    add_adam_options(parser, lr=0.001, beta1=0.0, beta2=0.99)
    parser.set_defaults(batch_size=32, g_lr=0.01)
    add = parser.add_argument
    add("--latent_dim", "--latent-dim", type=positive_int, default=64, help="size of z")
    add("--w_dim", "--w-dim", type=positive_int, default=64, help="size of w")
    add("--width", type=positive_int, default=8,
        help="feature channels at 32x32, doubled per halving up to 4x (G and D)")
    add("--mapping_layers", "--mapping-layers", type=positive_int, default=4,
        help="layers of the mapping network (StyleGAN: 8)")
    add("--mapping_lr_mul", "--mapping-lr-mul", type=float_in(0.0, 1.0, high_included=True),
        default=0.01, help="the mapping network's learning-rate multiplier (StyleGAN's)")
    add("--mixing_prob", "--mixing-prob", type=float_in(0.0, 1.0, high_included=True),
        default=0.9, help="probability of style mixing in a training batch; 0: off")
    add("--no_noise", "--no-noise", action="store_true", default=True,
        help="build G without its per-pixel noise inputs (the default)")
    add("--noise", dest="no_noise", action="store_false",
        help="build G with StyleGAN's per-pixel noise inputs (default: without)")
    add("--demod", dest="demodulate", action="store_true", default=True,
        help="demodulate G's 3x3 convolutions (StyleGAN2's; the default)")
    add("--no_demod", "--no-demod", dest="demodulate", action="store_false",
        help="modulation only: G's 3x3 convolutions are not demodulated (default: they are)")
    add("--output", choices=OUTPUTS, default="tanh",
        help="G's output: tanh of the skip sum (the default) or linear (StyleGAN's)")
    add("--w_avg_beta", "--w-avg-beta", type=float_in(0.0, 1.0), default=0.995,
        help="decay of the w_avg tracking (the truncation centre)")
    add("--mbstd_group", "--mbstd-group", type=positive_int, default=4, metavar="G",
        help="D's minibatch standard deviation over groups of G images (StyleGAN2: 4)")
    add("--objective", choices=OBJECTIVE_CHOICES, default="non-saturating",
        help="the GAN objective (StyleGAN's: non-saturating)")
    add("--r1", type=nonnegative_float, default=0.1, metavar="GAMMA",
        help="R1 gradient penalty on real images with this gamma; 0: off")
    add("--lazy_every", "--lazy-every", type=positive_int, default=16, metavar="K",
        help="lazy regularisation: R1 every K D steps, times K (StyleGAN2: 16)")
    add("--ema", type=float_in(0.0, 1.0), default=0.99, metavar="DECAY",
        help="sample, score and draw the pictures with an EMA of G's weights with this "
             "decay; 0: off")
    add("--ema_start", "--ema-start", type=nonnegative_int, default=0, metavar="STEP",
        help="the EMA copies G's weights until this step")
    add("--minutes", type=float_in(0.0, 1e6), default=None,
        help="stop after this many minutes of training (the step finishes and is "
             "checkpointed), then score (--evaluate) and draw the pictures; this invocation "
             "only, a --resume trains to the target unless given again (default: no "
             "limit)%(default).0s")
    add("--crossover", type=positive_int, default=3,
        help="the mixing grid's crossover: the styles before it (3: the 4x4 and 8x8 "
             "convolutions) come from the row's source")
    add("--num_samples", "--num-samples", type=positive_int, default=64,
        help="images in each sample grid")
    add("--evaluate", action="store_true",
        help="score G (and EMA(G)) at each epoch end and after --minutes with the shipped "
             "MNIST classifier (FID, KID, digits_covered, ...; gan.metrics) on "
             "--eval_samples samples")
    add("--eval_samples", "--eval-samples", type=positive_int, default=1000,
        help="samples per evaluation (with --evaluate)")
    add("--pictures", type=folder, default=None, metavar="RUN",
        help="write the mixing grid and truncation sweep of the run in RUN and stop "
             "(default: train)%(default).0s")
    parser.after_parsing.insert(0, check_options)
    parser.after_parsing.append(minutes_of_this_invocation)
    return parser


def check_options(parser, args, argv):
    if args.crossover >= num_ws_for(IMAGE_SIZE):
        parser.error(f"--crossover {args.crossover}: G has {num_ws_for(IMAGE_SIZE)} styles, "
                     f"so the crossover is at most {num_ws_for(IMAGE_SIZE) - 1}")
    if args.minutes is not None and args.minutes <= 0:
        parser.error(f"--minutes {args.minutes}: give a positive number of minutes")


def minutes_of_this_invocation(parser, args, argv):
    """--minutes is this command line's budget: a resume does not take the run's own."""
    if "minutes" not in args.given_options:
        args.minutes = None


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.pictures is not None:
        try:
            paths = pictures_of_run(args.pictures, args.crossover, args.device)
        except USER_ERRORS as error:
            sys.exit(f"{APP}: {one_line(error)}")
        print(f"{APP}: wrote {', '.join(paths)}")
        return paths
    return finish(APP, lambda: train(args), args.out_dir, debug=args.debug)


# ---- the models --------------------------------------------------------------------------
def build_generator(args, device):
    return StyleGANGenerator(args.latent_dim, args.w_dim, IMAGE_SIZE, channels=1,
                             width=args.width, mapping_layers=args.mapping_layers,
                             mapping_lr_mul=args.mapping_lr_mul, mixing_prob=args.mixing_prob,
                             w_avg_beta=args.w_avg_beta, noise=not args.no_noise,
                             demodulate=args.demodulate, output=args.output, device=device)


def clipped_evaluator(args):
    """With --evaluate, G's scores on its outputs clipped to [-1, 1]; else None."""
    evaluator = mnist_evaluator(args)
    if evaluator is None:
        return None
    return lambda generator: clipped_scores(evaluator, generator)


def build(args):
    """(the recipe, the batches) that the options describe."""
    device = resolve_device(args.device)
    images, _ = mnist_images(args, IMAGE_SIZE)
    np.random.seed(args.seed)  # the initial weights come from NumPy's global RNG
    generator = build_generator(args, device)
    discriminator = StyleGANDiscriminator(1, IMAGE_SIZE, width=args.width,
                                          mbstd_group=args.mbstd_group, device=device)
    penalties = [R1(gamma=args.r1, every=args.lazy_every)] if args.r1 else []
    adversarial = Adversarial(discriminator, get_objective(args.objective),
                              adam(args, discriminator, "d"), penalties=penalties)
    recipe = GANRecipe(generator, adversarial, adam(args, generator, "g"), args.latent_dim,
                       num_samples=args.num_samples, seed=args.seed, device=device,
                       evaluate=clipped_evaluator(args), ema=build_ema(args, generator))
    return recipe, Shuffled(images, batch_size=args.batch_size)


def train(args):
    recipe, data = build(args)
    config = trainer_config(args, APP, latent_dim=args.latent_dim, num_samples=args.num_samples,
                            time_limit=None if args.minutes is None else args.minutes * 60)
    trainer = Trainer(recipe, data, config, run_info={"args": saved_args(args)})
    try:
        record = trainer.train()
    except TrainingInterrupted as stop:
        if stop.signal_name != "time limit":
            raise  # a Ctrl-C: the engine's message
        record = budget_spent(args, recipe, stop.step)
    pictures(recipe.ema_generator or recipe.generator, args.out_dir, args.crossover,
             args.seed)
    return record


def budget_spent(args, recipe, step):
    """--minutes ran out at `step`: the scores (with --evaluate) into budget.json."""
    scores = {key: value for key, value in recipe.evaluate().items()
              if isinstance(value, (int, float))}
    record = {"step": step, "minutes": args.minutes, **scores}
    atomic_write(os.path.join(args.out_dir, "budget.json"), json.dumps(record, indent=2) + "\n")
    print(f"{APP}: --minutes {args.minutes:g} spent at step {step}; continue with: python -m "
          f"apps.{APP} --resume --out_dir {args.out_dir}", file=sys.stderr)
    return record


# ---- the pictures ------------------------------------------------------------------------
def _generate(generator, ws):
    with ndl.no_grad():
        return np.clip(generator.synthesis(ws).numpy(), -1.0, 1.0)


def _tensor(array, generator):
    return ndl.Tensor(array.astype(np.float32), device=generator.parameters()[0].device,
                      requires_grad=False)


def pictures(generator, out_dir, crossover=3, seed=0, rows=5, cols=6):
    """stylegan_mixing.png and stylegan_truncation.png in out_dir (the module docstring);
    from RandomState(seed + 2), never NumPy's global RNG; returns their paths."""
    rng = np.random.RandomState(seed + 2)
    training = generator.training
    generator.eval()
    try:
        with ndl.no_grad():
            w_rows = generator.mapping(_tensor(rng.randn(rows, generator.latent_dim),
                                               generator))
            w_cols = generator.mapping(_tensor(rng.randn(cols, generator.latent_dim),
                                               generator))
            w_sweep = generator.mapping(_tensor(rng.randn(rows, generator.latent_dim),
                                                generator))
        mixing = _mixing_grid(generator, w_rows, w_cols, crossover)
        sweep = np.concatenate([_generate(generator, [generator.truncate(w_sweep, psi)] *
                                          generator.num_ws)[:, None] for psi in PSIS], axis=1)
    finally:
        generator.train(training)
    size = generator.image_size
    mixing_path = os.path.join(out_dir, "stylegan_mixing.png")
    save_grid(mixing, mixing_path, rows=rows + 1, scale=3,
              title=f"coarse styles (w 0-{crossover - 1}) from the row, fine from the column",
              col_labels=["", *(f"B{c}" for c in range(cols))],
              row_labels=["", *(f"A{r}" for r in range(rows))])
    truncation_path = os.path.join(out_dir, "stylegan_truncation.png")
    save_grid(sweep.reshape(rows * len(PSIS), 1, size, size), truncation_path, rows=rows,
              scale=3, title="truncation: w_avg + psi (w - w_avg)",
              col_labels=[f"psi {psi:g}" for psi in PSIS])
    return [mixing_path, truncation_path]


def _mixing_grid(generator, w_rows, w_cols, crossover):
    """(rows + 1) x (cols + 1) images: a blank corner, the column sources across the top,
    the row sources down the left, and styles < crossover from the row, the rest from the
    column."""
    rows, cols = w_rows.shape[0], w_cols.shape[0]
    num_ws, w_dim = generator.num_ws, generator.w_dim
    top = _generate(generator, [w_cols] * num_ws)
    left = _generate(generator, [w_rows] * num_ws)
    # every (row, column) pair at once: row r's w repeated cols times, the columns tiled
    w_r = ndl.ops.reshape(ndl.ops.broadcast_to(ndl.ops.reshape(w_rows, (rows, 1, w_dim)),
                                               (rows, cols, w_dim)), (rows * cols, w_dim))
    w_c = ndl.ops.reshape(ndl.ops.broadcast_to(ndl.ops.reshape(w_cols, (1, cols, w_dim)),
                                               (rows, cols, w_dim)), (rows * cols, w_dim))
    mixed = _generate(generator, generator.mix(w_r, w_c, crossover))
    blank = np.ones_like(top[:1])
    tiles = [blank, top]
    for r in range(rows):
        tiles += [left[r:r + 1], mixed[r * cols:(r + 1) * cols]]
    return np.concatenate(tiles)


def pictures_of_run(path, crossover=3, device="cpu_numpy"):
    """The pictures of the train_stylegan run in `path` (its newest intact checkpoint; its
    EMA(G) when it kept one), written into the run folder; returns their paths."""
    run = open_run(path)
    generator = load_run_generator(run, resolve_device(device))
    return pictures(generator, run.folder, crossover, run.args.get("seed", 0))


def load_run_generator(run, device=None, weights="auto", latent_dim=None, width=None):
    """The StyleGAN-lite G of a train_stylegan `run` (apps.run_models.open_run), in eval
    mode, as its run.json describes it (latent_dim, width: overrides when given). weights:
    "auto" its EMA(G) when it kept one, else G; "g" G itself; "ema" the EMA."""
    if run.app != APP:
        raise RunFolderError(f"{run.folder} is a {run.app} run; this takes a {APP} run")
    if weights == "ema" and not run.args.get("ema"):
        raise RunFolderError(f"{run.folder} kept no EMA of G (it was trained with --ema 0); "
                             "use --weights g")
    given = {key: value for key, value in (("latent_dim", latent_dim), ("width", width))
             if value is not None}
    # runs from before --demod and --output had demodulated convolutions and a linear output
    legacy = {"demodulate": True, "output": "linear"}
    args = argparse.Namespace(**{**vars(build_parser().parse_args([])), **legacy, **run.args,
                                 **given})
    generator = build_generator(args, device)
    prefix = "generator." if weights == "g" or not run.args.get("ema") else "ema."
    state = {key[len(prefix):]: value for key, value in ndl.load(run.checkpoint).items()
             if key.startswith(prefix)}
    try:
        generator.load_state_dict(state)
    except (KeyError, ValueError) as error:
        raise RunFolderError(f"{run.checkpoint}: its {prefix[:-1]} weights do not fit the "
                             f"generator its run.json describes ({error})") from None
    return generator.eval()


def clipped_scores(evaluator, generator):
    """`evaluator`'s scores (a gan.metrics.Evaluator) of G's outputs clipped to [-1, 1], as
    StyleGAN's metrics clip (G's output is linear)."""
    images, _ = sample_images(generator, evaluator.num_samples, evaluator.seed,
                              evaluator.batch_size)
    return evaluator(np.clip(images, -1.0, 1.0))


if __name__ == "__main__":
    main()

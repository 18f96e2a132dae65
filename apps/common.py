"""What the GAN training apps share: their options, device, MNIST images, the run folder
and the TrainerConfig built from the options.

Every trainer has the same run options with the same names (`add_common_options`) and the
same optimizer options (`add_adam_options`: --lr, --d_lr, --g_lr, --beta1, --beta2). After
parsing, `settle(parser, args, argv)` (which add_common_options hooks into parse_args):

  * rejects combinations that cannot work (--resume with --overwrite; --epochs with
    --more_epochs, which implies --resume);
  * picks the run folder: --out_dir, else the app's folder under runs/, or with --dry_run a
    new temporary folder (and says where);
  * with --distributed, joins the ranks mpiexec started (needle.distributed.init; NCCL with
    --device cuda), so that everything after runs on every rank;
  * on a resume, takes every option not given on this command line from the run's run.json
    (so `--resume --out_dir DIR` rebuilds the same models on the same data); the run's
    target (--epochs, --max_steps) comes from its checkpoint unless given, and --d_lr /
    --g_lr given with --resume replace the rates the checkpoint restores.
"""
import atexit
import contextlib
import importlib.util
import os
import sys
import tempfile

import numpy as np

import needle as ndl
import needle.distributed as dist
from gan import TrainerConfig
from gan.runfiles import read_manifest
from needle.data import load_mnist
from needle.data.idx import DataFileError

from .cli import (AppParser, DeviceUnavailable, beta, folder, learning_rate, nonnegative_int,
                  positive_int)

__all__ = ["add_common_options", "add_adam_options", "add_dcgan_options", "adam",
           "mnist_evaluator", "settle", "resolve_device",
           "mnist_images", "at_image_size", "load_mnist_named", "trainer_config", "saved_args",
           "make_parser", "DEFAULT_DATA_DIR", "DEVICES"]

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "data", "mnist")
DEVICES = {"cpu_numpy": ndl.cpu_numpy, "cpu": ndl.cpu, "cuda": ndl.cuda}
# Options of one invocation, never taken from the run being resumed.
_THIS_INVOCATION = {"resume", "overwrite", "more_epochs", "out_dir", "epochs", "max_steps",
                    "no_progress", "debug", "dry_run", "tensorboard", "d_lr", "g_lr",
                    "given_options", "distributed", "dist_timeout"}


def add_common_options(parser, runs_name, epochs, checkpoint_every=500, sample_every=120):
    """The run options every GAN trainer has (flags accept snake_case and kebab-case).

    runs_name: the default run folder is runs/<runs_name>; epochs: the target of a new run;
    sample_every: the default steps between sample grids."""
    parser.set_defaults(default_out_dir=os.path.join("runs", runs_name),
                        default_epochs=epochs)
    parser.after_parsing.append(settle)
    add = parser.add_argument
    add("--data_dir", "--data-dir", type=folder, default=DEFAULT_DATA_DIR,
        help="folder with the four MNIST .gz files")
    add("--out_dir", "--out-dir", type=folder, default=None,
        help=f"run folder for all outputs (default: runs/{runs_name}; with --dry_run a new "
             "temporary folder)%(default).0s")
    add("--epochs", type=positive_int, default=None,
        help=f"passes over the training data (default: {epochs or 'see below'} for a new "
             "run; with --resume the run's own target)%(default).0s")
    add("--max_steps", "--max-steps", type=positive_int, default=None,
        help="stop at this step, before the epochs are done (default: no cap for a new run; "
             "with --resume the run's own cap)%(default).0s")
    add("--more_epochs", "--more-epochs", type=positive_int, default=None, metavar="N",
        help="resume and train N epochs past the run's target (implies --resume; default: "
             "not given)%(default).0s")
    add("--resume", action="store_true",
        help="continue the run in --out_dir from its newest intact checkpoint, with its "
             "saved options unless given again")
    add("--overwrite", action="store_true",
        help="move a run already in --out_dir aside (to OUT_DIR.old-<time>) and start afresh")
    add("--batch_size", "--batch-size", type=positive_int, default=64, help="images per step")
    add("--seed", type=nonnegative_int, default=0, help="seed of NumPy's global RNG")
    add("--device", choices=sorted(DEVICES), default="cpu_numpy",
        help="cpu_numpy: NumPy; cpu: the course's flat-memory device; cuda: CuPy on a GPU")
    add("--checkpoint_every", "--checkpoint-every", type=positive_int,
        default=checkpoint_every, help="steps between checkpoints")
    add("--log_every", "--log-every", type=positive_int, default=50,
        help="steps per metrics.jsonl line")
    add("--sample_every", "--sample-every", type=positive_int, default=sample_every,
        help="steps between sample grids (and report.html updates), besides one at each "
             "epoch end" + ("" if sample_every else " (default: see below)%(default).0s"))
    add("--limit", type=positive_int, default=None,
        help="use only the first N training images (default: all)%(default).0s")
    add("--no_health", "--no-health", action="store_true",
        help="turn off the training-health warnings (gan.health)")
    add("--tensorboard", action="store_true",
        help="also write TensorBoard event files into the run folder")
    add("--debug", action="store_true",
        help="full tracebacks on errors, and the D/G graph-boundary check at every step "
             "(slower)")
    add("--no_progress", "--no-progress", action="store_true", help="no progress bar")
    add("--dry_run", "--dry-run", action="store_true",
        help="a few steps on random images, in a temporary folder unless --out_dir: checks "
             "the wiring in seconds")
    add("--distributed", action="store_true",
        help="data-parallel training on the ranks of `mpiexec -n N python -m apps.NAME "
             "--distributed ...`: each rank takes 1/N of every --batch_size batch, gradients "
             "are averaged, rank 0 writes the run folder (needs mpi4py: pip install "
             "'needle-gan[distributed]')")
    add("--dist_timeout", "--dist-timeout", type=positive_int, default=600,
        help="with --distributed: seconds a rank waits for the others in a collective "
             "before the run stops (a rank died or hangs)")


def add_adam_options(parser, lr=2e-4, beta1=0.5, beta2=0.999):
    """--lr for both networks, --d_lr / --g_lr for one of them, Adam's betas."""
    add = parser.add_argument
    add("--lr", type=learning_rate, default=lr, help="Adam learning rate of G and D")
    add("--d_lr", "--d-lr", type=learning_rate, default=None,
        help="D's learning rate (default: --lr); with --resume, replaces the saved "
             "one%(default).0s")
    add("--g_lr", "--g-lr", type=learning_rate, default=None,
        help="G's learning rate (default: --lr); with --resume, replaces the saved "
             "one%(default).0s")
    add("--beta1", type=beta, default=beta1, help="Adam beta1, in [0, 1)")
    add("--beta2", type=beta, default=beta2, help="Adam beta2, in [0, 1)")


def adam(args, module, network):
    """Adam over `module`'s parameters with the options of add_adam_options: --d_lr or
    --g_lr (network "d" or "g") when given, else --lr, and --beta1/--beta2."""
    lr = getattr(args, f"{network}_lr") or args.lr
    return ndl.optim.Adam(module.parameters(), lr=lr, beta1=args.beta1, beta2=args.beta2)


def mnist_evaluator(args):
    """With --evaluate, gan.metrics' scorer of G on --eval_samples samples; else None."""
    if not args.evaluate:
        return None
    from gan.metrics import Evaluator
    return Evaluator.from_mnist(args.data_dir, num_samples=args.eval_samples)


def add_dcgan_options(parser, num_samples, num_samples_help, evaluate_help):
    """The DCGAN family's model, objective and evaluation options (train_dcgan, train_cgan)."""
    from gan.models.dcgan import SUPPORTED_SIZES
    from gan.objectives import OBJECTIVES

    add = parser.add_argument
    add("--latent_dim", "--latent-dim", type=positive_int, default=100, help="size of z")
    add("--width", type=positive_int, default=64, help="channel width unit of G and D")
    add("--image_size", "--image-size", type=int, choices=SUPPORTED_SIZES, default=28,
        help="side of the images (MNIST is padded to 32, then doubled to 64)")
    add("--objective", choices=sorted(OBJECTIVES), default="non-saturating",
        help="the GAN objective (gan.objectives)")
    add("--num_samples", "--num-samples", type=positive_int, default=num_samples,
        help=num_samples_help)
    add("--evaluate", action="store_true",
        help=f"score G at each epoch end with the shipped MNIST classifier ({evaluate_help}; "
             "gan.metrics) on --eval_samples samples")
    add("--eval_samples", "--eval-samples", type=positive_int, default=1000,
        help="samples per evaluation (with --evaluate)")


def _remove_if_empty(folder):
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def settle(parser, args, argv=None):
    """Check option combinations, pick the run folder and, on a resume, restore the run's
    saved options (see the module docstring)."""
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in --out_dir and --overwrite moves it "
                     "aside: give one of them")
    if args.more_epochs is not None:
        if args.epochs is not None:
            parser.error("give --epochs (the total) or --more_epochs (beyond the run's "
                         "target), not both")
        args.resume = True
    if args.tensorboard and importlib.util.find_spec("tensorboardX") is None:
        from gan.tensorboard import MISSING_EXTRA
        parser.error(MISSING_EXTRA)
    args.given_options = parser.given(argv)
    if args.distributed:
        _join_ranks(parser, args)
    if args.out_dir is None:
        if args.dry_run:
            if dist.rank() == 0:
                args.out_dir = tempfile.mkdtemp(prefix=f"{parser.app}-dry-run-")
                # a dry run that fails before writing anything leaves no empty folder behind
                atexit.register(_remove_if_empty, args.out_dir)
                print(f"{parser.app}: dry run: writing to {args.out_dir}", file=sys.stderr)
            if dist.world_size() > 1:  # rank 0's folder: the one the run writes
                args.out_dir = dist.get_group().host.broadcast_object(args.out_dir)
        else:
            args.out_dir = args.default_out_dir
    if args.resume:
        manifest = read_manifest(args.out_dir)
        if manifest.get("app") == parser.app:
            for name, value in (manifest.get("args") or {}).items():
                if name not in args.given_options and name not in _THIS_INVOCATION \
                        and hasattr(args, name):
                    setattr(args, name, value)
    if dist.world_size() > 1 and args.batch_size % dist.world_size():
        parser.error(f"--batch_size {args.batch_size} is not a multiple of the "
                     f"{dist.world_size()} ranks: each rank trains on an equal slice of "
                     "every batch")


def _join_ranks(parser, args):
    """--distributed: needle.distributed.init() (NCCL with --device cuda); a missing mpi4py
    or GPU is a one-line option error."""
    try:
        dist.init(device=ndl.cuda() if args.device == "cuda" else None,
                  timeout=args.dist_timeout)
    except (ImportError, dist.DistributedError) as error:
        parser.error(f"--distributed: {error}")


def saved_args(args):
    """The options as run.json records them."""
    return {k: v for k, v in vars(args).items()
            if k not in ("given_options", "default_out_dir", "default_epochs")}


def make_parser(description, app=None):
    """An AppParser for the app module that calls it (apps.NAME gives the prog
    `python -m apps.NAME`), with `description` as its help text."""
    if app is None:
        app = sys._getframe(1).f_globals.get("__name__", "app").rpartition(".")[2]
    return AppParser(app, description)


def resolve_device(name):
    device = DEVICES[name]()
    if not device.enabled():
        raise DeviceUnavailable(
            f"--device {name}: not available on this machine. For cuda, install CuPy "
            "matching your CUDA version (e.g. pip install cupy-cuda12x) on a machine with an "
            "NVIDIA GPU; or use --device cpu_numpy")
    return device


def trainer_config(args, app, **extra):
    """The TrainerConfig of the common options (--dry_run: 3 steps unless --max_steps)."""
    resuming = args.resume
    epochs = args.epochs if args.epochs is not None or resuming else args.default_epochs
    max_steps = args.max_steps
    if args.dry_run and max_steps is None:
        max_steps = extra.pop("dry_run_steps", 3)
    extra.pop("dry_run_steps", None)
    given = args.given_options
    return TrainerConfig(
        out_dir=args.out_dir, epochs=epochs, max_steps=max_steps, batch_size=args.batch_size,
        seed=args.seed, checkpoint_every=args.checkpoint_every, log_every=args.log_every,
        sample_every=args.sample_every, resume=resuming, overwrite=args.overwrite,
        more_epochs=args.more_epochs or 0, progress=not args.no_progress,
        health=not args.no_health, debug=args.debug, app=app, tensorboard=args.tensorboard,
        resume_d_lr=args.d_lr if resuming and "d_lr" in given else None,
        resume_g_lr=args.g_lr if resuming and "g_lr" in given else None, **extra)


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
        dataset = load_mnist_named(args.data_dir, train=True)
        count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
        images = dataset.images[:count].reshape(count, 1, 28, 28) * 2 - 1
        labels = dataset.labels[:count].astype(np.int64)
    return at_image_size(images, image_size), labels


def at_image_size(images, image_size):
    """MNIST images (N, 1, 28, 28) in [-1, 1] at 28, 32 (padded with the background value)
    or 64 (then each pixel doubled) pixels, float32."""
    if image_size in (32, 64):
        images = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-1)
    if image_size == 64:
        images = images.repeat(2, axis=2).repeat(2, axis=3)
    return np.ascontiguousarray(images, dtype=np.float32)


def load_mnist_named(data_dir, train=True):
    """load_mnist, with a missing folder or file named with what to do (DataFileError)."""
    if not os.path.isdir(data_dir):
        raise DataFileError(f"no MNIST folder {data_dir!r} (--data_dir): give the folder "
                            "that holds train-images-idx3-ubyte.gz and the other three "
                            "MNIST .gz files")
    try:
        return load_mnist(data_dir, train=train)
    except FileNotFoundError as error:
        raise DataFileError(f"{error.filename}: no such file; --data_dir {data_dir!r} must "
                            "hold the four MNIST .gz files (train-images-idx3-ubyte.gz, "
                            "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                            "t10k-labels-idx1-ubyte.gz)") from error

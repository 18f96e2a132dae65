"""A trained run's models, rebuilt from its folder: which app made it, with which options,
and the weights of its newest intact checkpoint.

    run = open_run("runs/cgan")                  # a run folder or one checkpoint file in it
    generator = load_generator(run)              # DCGAN, cGAN, WGAN-GP (MNIST or 2-D points)
    generator = load_generator(run, weights="g") # G itself, not the run's EMA(G)
    G = load_translator(open_run("runs/cyclegan"), "AtoB")   # CycleGAN's G (BtoA: F)

The app and its options come from run.json ("app", "args"); a folder without run.json (or
one whose run.json names no app) is read as a train_dcgan run with the settings saved in the
checkpoint, which is what such runs were. Every problem a user can cause (no such folder, no
intact checkpoint, another app's run, weights that do not fit) raises gan.RunFolderError
with a one-line message naming the folder or file.
"""
import dataclasses
import json
import os

import needle as ndl
from gan import RunFolderError
from gan.checkpoint import checkpoint_info, latest_checkpoint
from gan.mixtures import MIXTURES
from gan.models.conditional import ConditionalGenerator
from gan.models.cyclegan import ResnetGenerator
from gan.models.dcgan import Generator
from gan.models.mlp import MLPGenerator
from needle.serialization import CheckpointError

__all__ = ["Run", "open_run", "load_generator", "load_translator", "IMAGE_APPS", "DIRECTIONS",
           "WEIGHTS"]

IMAGE_APPS = ("train_dcgan", "train_cgan", "train_wgan_gp")  # MNIST image generators
DIRECTIONS = {"AtoB": "G", "BtoA": "F"}  # CycleGAN: G maps A to B, F maps B to A


@dataclasses.dataclass
class Run:
    """One run: its folder, the app that made it, that app's options and a checkpoint."""

    folder: str
    app: str
    args: dict
    checkpoint: str
    step: int

    @property
    def is_points(self):
        """A train_wgan_gp run on a 2-D mixture (its generator makes points, not images)."""
        return self.app == "train_wgan_gp" and self.args.get("data", "mnist") in MIXTURES


def _locate(path):
    """(checkpoint file, run folder) for a run folder or a checkpoint file."""
    if os.path.isfile(path):
        folder = os.path.dirname(os.path.abspath(path))
        run_dir = os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" \
            else folder
        return path, run_dir
    if not os.path.isdir(path):
        raise RunFolderError(f"{path} is neither a run folder nor a checkpoint file")
    for folder in (os.path.join(path, "checkpoints"), path):
        checkpoint = latest_checkpoint(folder) if os.path.isdir(folder) else None
        if checkpoint is not None:
            return checkpoint, path
    raise RunFolderError(f"no intact checkpoint in {os.path.join(path, 'checkpoints')}; "
                         "train first, or give a run folder that holds checkpoints")


def open_run(path):
    """The Run behind `path` (a run folder or a checkpoint file inside one)."""
    checkpoint, run_dir = _locate(path)
    try:
        info = checkpoint_info(checkpoint)
    except CheckpointError as error:
        raise RunFolderError(str(error)) from None
    manifest = {}
    manifest_path = os.path.join(run_dir, "run.json")
    if os.path.exists(manifest_path):
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
        except (OSError, ValueError) as error:
            raise RunFolderError(f"{manifest_path} cannot be read ({error}); it tells which "
                                 "model was trained") from None
        if not isinstance(manifest, dict):
            raise RunFolderError(f"{manifest_path} is not a JSON object")
    # Settings: the run's own options (run.json) over what the checkpoint saved.
    args = {}
    for source in (info.get("config"), info.get("args"), manifest.get("config"),
                   manifest.get("args")):
        args.update(source if isinstance(source, dict) else {})
    return Run(folder=run_dir, app=manifest.get("app") or "train_dcgan", args=args,
               checkpoint=checkpoint, step=int(info["step"]))


def _state(run, prefix):
    """The checkpoint's `prefix`-named arrays, prefix removed; RunFolderError when none."""
    state = {key[len(prefix):]: value for key, value in ndl.load(run.checkpoint).items()
             if key.startswith(prefix)}
    if not state:
        raise RunFolderError(f"{run.checkpoint} holds no {prefix!r} weights; is it a "
                             f"{run.app} checkpoint?")
    return state


def _load_weights(module, run, state, name):
    try:
        module.load_state_dict(state)
    except (KeyError, ValueError) as error:
        raise RunFolderError(f"{run.checkpoint}: the {name} weights do not fit the model that "
                             f"{os.path.join(run.folder, 'run.json')} describes "
                             f"({error})") from None
    return module.eval()


WEIGHTS = {"auto": None, "g": "generator.", "ema": "ema."}


def load_generator(run, device=None, weights="auto", **overrides):
    """The run's generator in eval mode: DCGAN Generator (train_dcgan, train_wgan_gp on
    MNIST), ConditionalGenerator (train_cgan) or MLPGenerator (train_wgan_gp on 2-D points).

    weights: "auto" the EMA of G's weights when the run kept one (--ema; what its grids and
    scores lead with), else G; "g" G itself; "ema" the EMA (an error for a run without one).
    `overrides` (latent_dim, width, image_size; None values ignored) replace the run's own.
    """
    if run.app not in IMAGE_APPS:
        hint = "; apps.translate applies it to a folder of images" \
            if run.app == "train_cyclegan" else ""
        raise RunFolderError(f"{run.folder} is a {run.app} run, which has no generator of "
                             f"noise; this takes {', '.join(IMAGE_APPS)} runs{hint}")
    args = dict(run.args, **{k: v for k, v in overrides.items() if v is not None})
    latent_dim = args.get("latent_dim") or (2 if run.is_points else 100)
    if run.is_points:
        generator = MLPGenerator(latent_dim, 2, hidden=args.get("hidden", 128),
                                 layers=args.get("layers", 3), device=device)
    else:
        kw = dict(channels=1, image_size=args.get("image_size") or 28,
                  width=args.get("width") or 64, device=device)
        generator = ConditionalGenerator(args.get("num_classes") or 10, latent_dim, **kw) \
            if run.app == "train_cgan" else Generator(latent_dim, **kw)
    if weights == "ema" and not run.args.get("ema"):
        raise RunFolderError(f"{run.folder} kept no EMA of G (it was trained without --ema); "
                             "use --weights g")
    prefix = WEIGHTS[weights] or ("ema." if run.args.get("ema") else "generator.")
    name = "EMA(G)" if prefix == "ema." else "generator"
    return _load_weights(generator, run, _state(run, prefix), name)


def load_translator(run, direction="AtoB", device=None):
    """CycleGAN's G (direction "AtoB") or F ("BtoA") from a train_cyclegan run, eval mode."""
    if run.app != "train_cyclegan":
        raise RunFolderError(f"{run.folder} is a {run.app} run; translating images takes a "
                             "train_cyclegan run")
    if direction not in DIRECTIONS:
        raise RunFolderError(f"direction must be one of {', '.join(DIRECTIONS)}, got "
                             f"{direction!r}")
    name = DIRECTIONS[direction]
    state = _state(run, name + ".")
    # The architecture from the weights themselves: the first 7x7 conv is (7, 7, channels,
    # width) and each residual block holds "net.modules.<i>.fn..." weights.
    first = state.get("net.modules.0.weight")
    if first is None or len(first.shape) != 4:
        raise RunFolderError(f"{run.checkpoint}: {name} is not a CycleGAN ResnetGenerator")
    blocks = {key.split(".fn.")[0] for key in state if ".fn." in key}
    generator = ResnetGenerator(int(first.shape[2]), int(first.shape[3]), len(blocks),
                                device=device)
    return _load_weights(generator, run, state, name)

"""The GAN training loop: one D step per batch, one G step every n_critic batches.

Writes into `out_dir`:
  run.json                 the manifest: command line, configuration, seed, versions, device,
                           resumes and the SHA-256 of every checkpoint (gan.runfiles)
  metrics.jsonl            one JSON line per logging interval (means over the interval), and
                           one per epoch end (sample diversity, evaluator scores); health
                           warnings in a "warnings" list (gan.health)
  samples/step_XXXXXXXX.png  a grid from a fixed noise batch, at every epoch end
  losses.png               D/G losses and D(x), D(G(z)) against the step
  checkpoints/step_XXXXXXXX.safetensors   complete state, every `checkpoint_every` steps

`resume=True` continues from the newest checkpoint bit for bit (same weights, optimizer
state, RNG, data order and position, and the unfinished logging interval), to the target the
run was started with (`epochs=None`) or to `epochs`; `more_epochs=N` resumes and extends the
target by N. Everything a step writes happens before that step's checkpoint, so a kill at any
moment loses at most the work since the last checkpoint, and a resume redoes it exactly.

Before the first step the Trainer checks the setup and raises a named error (gan.errors) for
data that do not fit the models: channels (grayscale vs RGB) or image size, D's output shape,
integer or non-finite images; images outside [-1, 1] for a tanh generator give a
DataRangeWarning. A NaN or Inf loss stops training with TrainingDiverged; the last good
checkpoint stays as it was.
"""
import dataclasses
import errno
import math
import os
import sys
import time
import warnings
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

import needle as ndl
from needle import init, nn

from .adversarial import _global_norm
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .errors import DataRangeWarning, GANSetupError, ImageShapeError, TrainingDataError
from .health import HealthMonitor, HealthThresholds
from .images import save_grid
from .models.dcgan import SUPPORTED_SIZES
from .plots import plot_history
from .runfiles import RunManifest, append_record, clean_stale_temp_files, read_history

__all__ = ["TrainerConfig", "Trainer", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """A loss became NaN or Inf; the message names the step and the last good checkpoint."""


@dataclasses.dataclass
class TrainerConfig:
    """How to train. `epochs=None` means: on resume, the target the run was started with;
    on a new run, 1. `more_epochs` resumes and extends that target. `resume_d_lr` and
    `resume_g_lr`, when set, replace the learning rates a resume restores (to act on a
    health warning); otherwise a resume continues bit for bit. `health` turns the health
    monitor on (thresholds from `health_thresholds`); `debug` checks the D/G graph boundary
    at every step instead of once per run (see gan.Adversarial)."""

    out_dir: str
    epochs: Optional[int] = 1
    batch_size: int = 64
    latent_dim: int = 100
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    num_samples: int = 64
    max_steps: Optional[int] = None
    resume: bool = False
    progress: bool = True
    more_epochs: int = 0
    resume_d_lr: Optional[float] = None
    resume_g_lr: Optional[float] = None
    health: bool = True
    health_thresholds: Optional[HealthThresholds] = None
    debug: bool = False


class Trainer:
    """Trains `generator` against `adversarial` on NCHW `images` in [-1, 1].

    With `labels`, the models are conditional: G(z, y) and D(x, y) get the batch's labels,
    and the sample grid has one row per class.
    """

    def __init__(self, generator, adversarial, g_optimizer, images, config, labels=None,
                 device=None, evaluate: Optional[Callable] = None, run_info=None):
        if images.ndim != 4:
            raise ImageShapeError(f"Trainer: expected NCHW images (4 dims), got shape "
                                  f"{images.shape}")
        if len(images) < config.batch_size:
            raise GANSetupError(f"Trainer: {len(images)} images is fewer than one batch of "
                                f"{config.batch_size}")
        if labels is not None and len(labels) != len(images):
            raise GANSetupError(f"Trainer: {len(labels)} labels for {len(images)} images")
        self.generator, self.adversarial, self.g_optimizer = generator, adversarial, g_optimizer
        self.images, self.labels, self.config = images, labels, config
        self.device = ndl.default_device() if device is None else device
        self.evaluate = evaluate
        self.run_info = run_info or {}
        self.steps_per_epoch = len(images) // config.batch_size
        self.checkpoint_dir = os.path.join(config.out_dir, "checkpoints")
        self.metrics_path = os.path.join(config.out_dir, "metrics.jsonl")
        self.history = []
        self.fixed_noise, self.fixed_labels = self._fixed_inputs()
        self._check_data()
        self._check_models()
        if getattr(adversarial, "_watched", None) is None:
            adversarial.watch(generator)
        adversarial.debug = adversarial.debug or config.debug
        self.health = None
        if config.health:
            self.health = HealthMonitor(config.health_thresholds, adversarial.objective,
                                        images[:max(2, config.num_samples)])
        self._warning_codes = []

    # ---- setup checks -------------------------------------------------------------------
    def _check_data(self):
        """Integer or non-finite images are errors; a range that tanh cannot make warns."""
        images = self.images
        if not np.issubdtype(images.dtype, np.floating):
            raise TrainingDataError(
                f"Trainer: images have dtype {images.dtype}; expected floats in [-1, 1] "
                "(for uint8 pixels: images.astype(np.float32) / 127.5 - 1)")
        dtype = _parameter_dtype(self.generator)
        if dtype is not None and np.dtype(images.dtype) != np.dtype(dtype):
            raise TrainingDataError(
                f"Trainer: images have dtype {images.dtype} but {type(self.generator).__name__}"
                f"'s parameters are {dtype}; convert with images.astype(np.{dtype})")
        finite = np.isfinite(images)
        if not finite.all():
            bad = np.flatnonzero(~finite.reshape(len(images), -1).all(axis=1))
            raise TrainingDataError(
                f"Trainer: {len(bad)} of {len(images)} images hold NaN or Inf values "
                f"(first at index {bad[0]}); clean or drop them before training")
        low, high = float(images.min()), float(images.max())
        if _has_tanh_output(self.generator) and (low < -1.001 or high > 1.001 or low >= 0):
            hint = ("looks like [0, 1]: use images * 2 - 1" if low >= 0 and high <= 1.001
                    else "scale them into [-1, 1]")
            warnings.warn(DataRangeWarning(
                f"Trainer: images span [{low:.4g}, {high:.4g}] but "
                f"{type(self.generator).__name__} ends in tanh, whose outputs span [-1, 1]; "
                f"D can tell real from generated by range alone ({hint})"), stacklevel=3)

    def _check_models(self):
        """One no-grad, eval-mode forward of G and D on two inputs: shape mistakes surface
        here, named, instead of deep inside the first step. Changes no state, draws no
        random numbers."""
        data_shape = tuple(self.images.shape[1:])
        modes = (self.generator.training, self.adversarial.discriminator.training)
        self.generator.eval()
        self.adversarial.discriminator.eval()
        try:
            with ndl.no_grad():
                labels = None if self.fixed_labels is None else self._tensor(
                    self.fixed_labels[:2])
                made = self._generate(self._tensor(self.fixed_noise[:2]), labels)
                made_shape = tuple(made.shape[1:])
                if made_shape != data_shape:
                    raise ImageShapeError(_shape_message(self.generator, made_shape,
                                                         data_shape))
                real_labels = None if self.labels is None else self._tensor(self.labels[:2])
                try:
                    self.adversarial.score(self._tensor(self.images[:2]), real_labels)
                except GANSetupError:
                    raise
                except ValueError as error:
                    raise ImageShapeError(
                        f"Trainer: discriminator {type(self.adversarial.discriminator).__name__}"
                        f" does not take the data's images of shape (N, {data_shape[0]}, "
                        f"{data_shape[1]}, {data_shape[2]}): {error}") from error
        finally:
            self.generator.train(modes[0])
            self.adversarial.discriminator.train(modes[1])

    # ---- inputs -------------------------------------------------------------------------
    def _fixed_inputs(self):
        """Noise (and labels) for the sample grids, from their own RNG: resume-safe."""
        rng = np.random.RandomState(self.config.seed + 1)
        count = max(2, self.config.num_samples)
        labels = None
        if self.labels is not None:
            classes = int(self.labels.max()) + 1
            per_class = max(1, count // classes)
            labels = np.repeat(np.arange(classes), per_class)
            count = len(labels)
        noise = rng.randn(count, self.config.latent_dim).astype(np.float32)
        return noise, labels

    def _tensor(self, array):
        return ndl.Tensor(array, device=self.device, requires_grad=False)

    def _generate(self, z, labels):
        return self.generator(z) if labels is None else self.generator(z, labels)

    def _components(self):
        return {"generator": self.generator, "adversarial": self.adversarial,
                "g_optimizer": self.g_optimizer}

    # ---- the loop -----------------------------------------------------------------------
    def train(self):
        """Run to the configured epochs (or max_steps); returns the last metrics record
        (with the latest epoch-end figures merged in)."""
        self._make_run_folder()
        state, resumed_from = self._start()
        config = self.config
        self.manifest = RunManifest(config.out_dir, dataclasses.asdict(config), config.seed,
                                    self.device, **self.run_info)
        self.manifest.start(resumed_from)
        total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        interval = state.pop("interval")
        if state["step"] >= total_steps:  # e.g. --resume of a finished run: nothing to add
            return self._result()
        while state["step"] < total_steps:
            if state["position"] == 0:
                state["order"] = np.random.permutation(len(self.images))
            bar = tqdm(total=self.steps_per_epoch, initial=state["position"],
                       desc=f"epoch {state['epoch'] + 1}/{config.epochs}",
                       disable=not config.progress, file=sys.stderr, dynamic_ncols=True)
            with bar:
                while state["step"] < total_steps:
                    figures = self._step(state)
                    interval.append(figures)
                    state["position"] += 1
                    state["step"] += 1
                    bar.update(1)
                    bar.set_postfix(d=f"{figures['d_loss']:.3f}",
                                    g=f"{figures.get('g_loss', float('nan')):.3f}",
                                    refresh=False, **self._warning_postfix())
                    if state["step"] % config.log_every == 0:
                        self._log(state, interval)
                        interval = []
                    epoch_done = state["position"] == self.steps_per_epoch
                    if epoch_done:  # before the checkpoint: a resume never redoes it
                        state["epoch"] += 1
                        state["position"] = 0
                        self._epoch_end(state)
                    if state["step"] % config.checkpoint_every == 0:
                        self._checkpoint(state, interval)
                    if epoch_done:
                        break
        if interval:
            self._log(state, interval)
        if state["position"]:
            self._epoch_end(state)
        self._checkpoint(state, [])
        return self._result()

    def _make_run_folder(self):
        """The run folder, writable, before anything is trained or written."""
        folder = self.config.out_dir
        try:
            os.makedirs(folder, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "not writable")
        except OSError as error:
            raise OSError(error.errno, f"Trainer: cannot use {folder!r} as the run folder: "
                                       f"{error.strerror or error}") from error

    def _start(self):
        """(state, (step, checkpoint) resumed from or None); resolves the target epochs."""
        config = self.config
        for folder in (config.out_dir, self.checkpoint_dir,
                       os.path.join(config.out_dir, "samples")):
            clean_stale_temp_files(folder)
        state = {"step": 0, "epoch": 0, "position": 0, "order": None, "interval": []}
        if not (config.resume or config.more_epochs):
            self.config = dataclasses.replace(config, epochs=1 if config.epochs is None
                                              else config.epochs)
            np.random.seed(config.seed)
            open(self.metrics_path, "w").close()
            return state, None
        path = latest_checkpoint(self.checkpoint_dir)
        if path is None:
            raise FileNotFoundError(f"resume: no checkpoint in {self.checkpoint_dir}")
        info, arrays = load_checkpoint(path, self._components())
        if config.resume_d_lr is not None:
            self.adversarial.optimizer.lr = config.resume_d_lr
        if config.resume_g_lr is not None:
            self.g_optimizer.lr = config.resume_g_lr
        saved_epochs = info.get("config", {}).get("epochs") or 1
        epochs = saved_epochs if config.epochs is None else config.epochs
        self.config = dataclasses.replace(config, epochs=epochs + config.more_epochs,
                                          more_epochs=0, resume=True)
        state.update(step=info["step"], epoch=info["epoch"], position=info["position"],
                     order=arrays.get("order"), interval=list(info.get("interval", [])))
        if state["position"] >= self.steps_per_epoch:  # an epoch's last step, older format
            state["epoch"] += 1
            state["position"] = 0
        self.history = read_history(self.metrics_path, info["step"])
        return state, (info["step"], path)

    def _step(self, state):
        config, batch = self.config, state["position"]
        index = state["order"][batch * config.batch_size:(batch + 1) * config.batch_size]
        real = self._tensor(self.images[index])
        labels = None if self.labels is None else self._tensor(self.labels[index])
        z = init.randn(config.batch_size, config.latent_dim, device=self.device)
        fake = self._generate(z, labels)
        figures = self.adversarial.discriminator_step(real, fake, labels)
        if (state["step"] + 1) % self.adversarial.n_critic == 0:
            g_loss = self.adversarial.generator_loss(fake, labels)
            self.g_optimizer.reset_grad()
            g_loss.backward(create_graph=False)
            figures["g_loss"] = float(g_loss.numpy())
            figures["g_grad_norm"] = _global_norm(self.g_optimizer.params)
            self.g_optimizer.step()
            self.adversarial.check_generator_step()
        for name, value in figures.items():
            if not math.isfinite(value):
                self._diverged(state, name, value)
        return figures

    def _diverged(self, state, name, value):
        last = latest_checkpoint(self.checkpoint_dir)
        where = f"last good checkpoint: {last} (resume with --resume)" if last else \
            "no checkpoint was written yet"
        raise TrainingDiverged(
            f"training stopped at step {state['step'] + 1}: {name} is {value}; {where}. "
            "Try a lower learning rate, a gradient penalty, or another objective.")

    # ---- outputs ------------------------------------------------------------------------
    def _append(self, record, found=(), scope="interval"):
        """Add the health warnings to `record`, write it, and show new warnings."""
        if found:
            record["warnings"] = [str(w) for w in found]
        if self.health is not None:
            for warning in self.health.onsets(found, scope):
                tqdm.write(f"health: {warning}", file=sys.stderr)
            if scope == "interval":
                self._warning_codes = [w.code for w in found]
        self.history.append(record)
        append_record(self.metrics_path, record)

    def _warning_postfix(self):
        """The bar shows the warnings of the last logged interval, by code."""
        return {"warn": ",".join(self._warning_codes)} if self._warning_codes else {}

    def _log(self, state, interval):
        record = {"step": state["step"], "epoch": state["epoch"], "time": time.time()}
        for key in dict.fromkeys(k for f in interval for k in f):  # g_* only on G steps
            record[key] = float(np.mean([f[key] for f in interval if key in f]))
        found = self.health.check_interval(record, self.history) if self.health else []
        self._append(record, found)

    def _result(self):
        losses = [i for i, r in enumerate(self.history) if "d_loss" in r]
        if not losses:
            return dict(self.history[-1]) if self.history else {}
        result = dict(self.history[losses[-1]])
        for later in self.history[losses[-1] + 1:]:
            result.update({k: v for k, v in later.items()
                           if k not in ("step", "epoch", "time", "warnings")})
            result["warnings"] = result.get("warnings", []) + later.get("warnings", [])
        if not result.get("warnings"):
            result.pop("warnings", None)
        return result

    def _checkpoint(self, state, interval):
        # The run's settings, not this invocation's (resume, more_epochs): the checkpoints
        # of a resumed run are then byte for byte those of an uninterrupted one.
        config = {k: v for k, v in dataclasses.asdict(self.config).items()
                  if k not in ("resume", "more_epochs", "resume_d_lr", "resume_g_lr")}
        info = {"epoch": state["epoch"], "position": state["position"], "config": config,
                "interval": interval}
        arrays = {} if state["order"] is None else {"order": state["order"]}
        path = save_checkpoint(self.checkpoint_dir, state["step"], self._components(), info,
                               arrays)
        self.manifest.add_checkpoint(path, state["step"])
        return path

    def sample(self):
        """Images from the fixed noise batch, G in eval mode, as a NumPy NCHW array."""
        self.generator.eval()
        try:
            with ndl.no_grad():
                z = self._tensor(self.fixed_noise)
                labels = None if self.fixed_labels is None else self._tensor(self.fixed_labels)
                return self._generate(z, labels).numpy()
        finally:
            self.generator.train()

    def _epoch_end(self, state):
        """The sample grid, the loss plot, and one record with the sample diversity, the
        evaluator's scores and the epoch-end health warnings."""
        rows = None if self.fixed_labels is None else int(self.fixed_labels.max()) + 1
        step = state["step"]
        samples = self.sample()
        save_grid(samples, os.path.join(self.config.out_dir, "samples",
                                        f"step_{step:08d}.png"),
                  rows=rows, metadata={"step": step, "epoch": state["epoch"]})
        if self.history:
            plot_history(self.history, os.path.join(self.config.out_dir, "losses.png"))
        if self.evaluate is None and self.health is None:
            return
        record, found = {"step": step, "epoch": state["epoch"]}, []
        if self.health is not None:
            diversity, found = self.health.check_samples(samples, step)
            if diversity is not None:
                record["sample_diversity"] = diversity
        if self.evaluate is not None:
            scores = dict(self.evaluate(self.generator))
            if self.health is not None:
                found += self.health.check_scores(scores, self.history, step)
            record.update(scores)
        self._append(record, found, scope="epoch")


def _parameter_dtype(module):
    parameters = module.parameters()
    return str(parameters[0].dtype) if parameters else None


def _has_tanh_output(generator):
    """True when the generator's modules include a Tanh (its outputs are then in [-1, 1])."""
    return isinstance(generator, nn.Tanh) or any(isinstance(m, nn.Tanh)
                                                 for m in generator._children())


def _shape_message(generator, made, data):
    name = type(generator).__name__
    if made[0] != data[0]:
        kinds = {1: "grayscale", 3: "RGB"}
        return (f"Trainer: {name} makes {made[0]}-channel images "
                f"({kinds.get(made[0], 'other')}, shape {made}) but the data have "
                f"{data[0]} channels ({kinds.get(data[0], 'other')}, shape {data}); build "
                f"G and D with channels={data[0]} or convert the images")
    if data[1] == data[2] and data[1] in SUPPORTED_SIZES:
        remedy = f"build G and D with image_size={data[1]}"
    else:
        remedy = f"resize the data to a size the DCGAN models support, one of {SUPPORTED_SIZES}"
    return (f"Trainer: {name} makes images of size {made[1:]} but the data are {data[1:]}; "
            f"{remedy}")

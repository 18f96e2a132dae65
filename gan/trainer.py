"""gan.Trainer: the one training loop. Every model is a recipe on it (gan.recipes).

    trainer = Trainer(recipe, data, TrainerConfig(out_dir="runs/dcgan", app="train_dcgan"))
    record = trainer.train()

`recipe` (gan.recipes.Recipe) owns the networks, Adversarial(s) and optimizers and does one
step on a batch; `data` (gan.batches) gives the batches. The engine does everything else,
once: the run folder's safety (gan.runfolder), resume, checkpoints, logging, health, sample
grids, the report and interrupts. `Trainer(generator, adversarial, g_optimizer, images,
config, labels=None, device=None, evaluate=None)` is the shorthand for the one-generator GAN
(gan.recipes.GANRecipe on gan.batches.Shuffled).

Writes into `out_dir`:
  run.json                 the manifest: run id, app, target, status, command line,
                           configuration, seed, versions, device, resumes and the SHA-256 of
                           every checkpoint (gan.runfiles)
  metrics.jsonl            one JSON line per logging interval (means over the interval,
                           "kind": "interval"), one per epoch end ("kind": "epoch": sample
                           diversity, evaluation scores); health warnings in a "warnings" list
  samples/step_XXXXXXXX.png  the recipe's picture (titled with app, step and epoch) every
                           `sample_every` steps and at every epoch end
  losses.png, report.html  the training curves and the page to watch (gan.report), rewritten
                           at each picture
  checkpoints/step_XXXXXXXX.safetensors   complete state, every `checkpoint_every` steps

A new run refuses a folder that holds one unless `overwrite` (the old run is moved aside).
`resume=True` continues the folder's run from its newest intact checkpoint bit for bit (same
weights, optimizer state, RNG, data order and position, and the unfinished logging
interval), to the target saved with the run unless new ones are given (`epochs`,
`max_steps`; `more_epochs=N` extends the saved target by N epochs). Everything a step writes
happens before that step's checkpoint, so a kill at any moment loses at most the work since
the last checkpoint, and a resume redoes it exactly.

On several ranks (needle.distributed.init(), `mpiexec -n N`), gan.parallel.DataParallel
shards the batches, averages gradients and figures, keeps every rank's state equal at each
checkpoint and lets rank 0 alone write; on one process it changes nothing.

SIGINT and SIGTERM finish the current step, write a checkpoint and raise TrainingInterrupted;
a second one raises TrainingAborted at once (the atomic writer leaves the last checkpoint
whole). A NaN or Inf figure stops training with TrainingDiverged naming the step and the last
good checkpoint, which stays as it was.
"""
import dataclasses
import math
import os
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Optional

import numpy as np
from tqdm import tqdm

from .adversarial import Adversarial
from .batches import Shuffled
from .checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from .errors import GANSetupError, ImageShapeError
from .health import HealthMonitor, HealthThresholds
from .parallel import DataParallel
from .recipes import GANRecipe, Recipe
from .runfiles import RunManifest, clean_stale_temp_files, read_history, write_history
from .runfolder import claim_run_folder, resume_point

__all__ = ["TrainerConfig", "Trainer", "TrainingDiverged", "TrainingInterrupted",
           "TrainingAborted"]


class TrainingDiverged(RuntimeError):
    """A loss became NaN or Inf; the message names the step and the last good checkpoint."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM: the step in progress finished and a checkpoint was written."""

    def __init__(self, step, checkpoint, signal_name):
        super().__init__(f"interrupted ({signal_name}) at step {step}; checkpoint "
                         f"{checkpoint} written")
        self.step, self.checkpoint, self.signal_name = step, checkpoint, signal_name


class TrainingAborted(KeyboardInterrupt):
    """A second SIGINT or SIGTERM: stopped at once; `checkpoint` (the last one) is intact."""

    def __init__(self, step, checkpoint):
        super().__init__(f"stopped at once during step {step + 1}; the last checkpoint "
                         f"{checkpoint or '(none yet)'} is intact")
        self.step, self.checkpoint = step, checkpoint


@dataclasses.dataclass
class TrainerConfig:
    """How to train.

    epochs: the target in epochs; None means, on a resume, the target saved with the run and,
    on a new run, 1. max_steps: stop at this step (None: no cap; on a resume with neither
    given, the saved cap). more_epochs: resume and extend the saved target by N epochs.
    sample_every: steps between sample pictures besides those at each epoch end (None: at
    epoch ends only). resume / overwrite: continue the folder's run / move it aside and start
    afresh. resume_d_lr, resume_g_lr: replace the learning rates a resume restores (to act on
    a health warning). health: the health monitor (thresholds from `health_thresholds`).
    time_limit: seconds of training this invocation may spend; the step that passes it is
    the last, and the run stops as for a Ctrl-C (checkpoint, status "interrupted",
    TrainingInterrupted with signal_name "time limit"), to be resumed like one (None: no
    limit). debug: check the D/G graph boundary at every step instead of once per run. app: the name
    recorded with the run and checked on resume. report: write report.html. tensorboard: also
    write TensorBoard event files (gan.tensorboard). batch_size, latent_dim and num_samples
    are read by the one-generator shorthand; with a recipe, the recipe and data have them.
    """

    out_dir: str
    epochs: Optional[int] = 1
    batch_size: int = 64
    latent_dim: int = 100
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    sample_every: Optional[int] = None
    num_samples: int = 64
    max_steps: Optional[int] = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    more_epochs: int = 0
    resume_d_lr: Optional[float] = None
    resume_g_lr: Optional[float] = None
    health: bool = True
    health_thresholds: Optional[HealthThresholds] = None
    debug: bool = False
    app: str = "gan.Trainer"
    report: bool = True
    tensorboard: bool = False
    time_limit: Optional[float] = None


# Settings of one invocation, not of the run: left out of the checkpoints, so a resumed run's
# checkpoints are byte for byte those of an uninterrupted one.
_INVOCATION = ("resume", "overwrite", "more_epochs", "resume_d_lr", "resume_g_lr", "progress",
               "report", "tensorboard", "debug", "time_limit")


class Trainer:
    """Runs `recipe` on the batches of `data` as `config` says (see the module docstring)."""

    def __init__(self, recipe, data, config, *shorthand, labels=None, device=None,
                 evaluate=None, run_info=None):
        if not isinstance(recipe, Recipe):  # (generator, adversarial, g_optimizer, images,
            recipe, data, config = _one_generator(  # config): the GAN shorthand
                recipe, data, config, *shorthand, labels=labels, device=device,
                evaluate=evaluate)
        for name in ("checkpoint_every", "log_every", "sample_every", "epochs", "max_steps"):
            value = getattr(config, name)
            if value is not None and (int(value) != value or value < 1):
                raise GANSetupError(f"Trainer: {name} must be an integer >= 1, got {value}")
        self.parallel = DataParallel()
        data = self.parallel.shard(data)
        if data.steps_per_epoch < 1:
            raise GANSetupError(f"Trainer: {getattr(data, 'count', 0)} images is fewer than "
                                f"one batch of {data.batch_size}; use a smaller batch size or "
                                "more images")
        self.recipe, self.data, self.config = recipe, data, config
        self.run_info = run_info or {}
        self.steps_per_epoch = data.steps_per_epoch
        self.checkpoint_dir = os.path.join(config.out_dir, "checkpoints")
        self.metrics_path = os.path.join(config.out_dir, "metrics.jsonl")
        self.history = []
        for adversarial in _adversarials(recipe):
            adversarial.debug = adversarial.debug or config.debug
        recipe.check(data)
        self.parallel.prepare(recipe)
        self.health = None
        if config.health and recipe.objective is not None:
            self.health = HealthMonitor(config.health_thresholds, recipe.objective,
                                        recipe.health_images)
        self._warning_codes = []
        self._signal, self._aborted, self._stop = None, False, None
        self._deadline = None
        self._last_checkpoint = None
        self._step_now = 0
        self.tensorboard = None

    # ---- the loop -----------------------------------------------------------------------
    def train(self):
        """Run to the target; returns the last metrics record (with the latest epoch-end
        figures merged in)."""
        state = self._start()
        config, total = self.config, self.total_steps
        interval = state.pop("interval")
        if state["step"] >= total:  # e.g. --resume of a finished run: nothing to add
            self._say(f"run {self.run_id[:8]} is at step {state['step']}, its target is step "
                      f"{total}: nothing to train; give a later --epochs or --max_steps, or "
                      "--more_epochs N, to go on")
            self._finish("finished")
            return dict(self._result(), step=state["step"], epoch=state["epoch"])
        if self._last_checkpoint is not None:
            self._say(f"resuming run {self.run_id[:8]} from step {state['step']} of {total} "
                      f"({self._last_checkpoint})")
        handlers = self._catch_signals()
        self._deadline = None if config.time_limit is None else \
            time.monotonic() + config.time_limit
        try:
            while state["step"] < total:
                if state["position"] == 0:
                    self.data.shuffle()
                bar = tqdm(total=self.steps_per_epoch, initial=state["position"],
                           desc=f"epoch {state['epoch'] + 1}/{config.epochs}",
                           disable=not (config.progress and self.parallel.writer),
                           file=sys.stderr, dynamic_ncols=True)
                with bar:
                    while state["step"] < total:
                        figures = self._step(state)
                        interval.append(figures)
                        state["position"] += 1
                        state["step"] += 1
                        self._step_now = state["step"]
                        bar.update(1)
                        bar.set_postfix(d=f"{figures.get('d_loss', math.nan):.3f}",
                                        g=f"{figures.get('g_loss', math.nan):.3f}",
                                        refresh=False, **self._warning_postfix())
                        if state["step"] % config.log_every == 0:
                            self._log(state, interval)
                            interval = []
                        epoch_done = state["position"] == self.steps_per_epoch
                        if epoch_done:  # before the checkpoint: a resume never redoes it
                            state["epoch"] += 1
                            state["position"] = 0
                            self._epoch_end(state)
                        elif config.sample_every and state["step"] % config.sample_every == 0:
                            self._picture(state)
                        if state["step"] % config.checkpoint_every == 0:
                            self._checkpoint(state, interval)
                        if self._aborted:
                            raise TrainingAborted(state["step"] - 1, self._last_checkpoint)
                        if self._stop is not None:
                            self._interrupted(state, interval)
                        if epoch_done:
                            break
            if interval:
                self._log(state, interval)
            if state["position"]:
                self._epoch_end(state)
            self._checkpoint(state, [])
        finally:
            self._restore_signals(handlers)
        self._finish("finished")
        return self._result()

    def _step(self, state):
        batch = self.data.batch(state["position"])
        figures = self.recipe.step(batch, state["step"])
        if self._signal is None and self._deadline is not None \
                and time.monotonic() >= self._deadline:
            self._signal = "time limit"  # stops like a signal, on every process at once
        figures, self._stop = self.parallel.reduce(figures, self._signal)
        for name, value in figures.items():
            if not math.isfinite(value):
                self._diverged(state, name, value)
        return figures

    # ---- start: a new run or a resume -----------------------------------------------------
    def _start(self):
        """The run folder claimed or the run resumed; returns the loop state."""
        config = self.config
        state = {"step": 0, "epoch": 0, "position": 0, "interval": []}
        if config.resume or config.more_epochs:
            path, info, manifest = self.parallel.share(
                resume_point(config.out_dir, config.app, self._say) if self.parallel.writer
                else None)
            self.parallel.check_resume(info, path)
            self.run_id = info.get("run_id") or manifest.get("run_id") or uuid.uuid4().hex
            self._resolve_target(info)
        else:
            moved = claim_run_folder(config.out_dir, config.app, config.overwrite) \
                if self.parallel.writer else None
            if moved:
                self._say(f"moved the earlier run in {config.out_dir} aside to {moved}")
            self.run_id, path, info = uuid.uuid4().hex, None, None
            self._resolve_target(None)
        for folder in (config.out_dir, self.checkpoint_dir,
                       os.path.join(config.out_dir, "samples")) if self.parallel.writer else ():
            clean_stale_temp_files(folder)
        self.recipe.start(self.total_steps)
        if path is None:
            np.random.seed(config.seed)
        else:
            info, arrays = load_checkpoint(path, self.recipe.components())
            self.recipe.set_learning_rates(config.resume_d_lr, config.resume_g_lr)
            self.data.load_state(arrays)
            state.update(step=info["step"], epoch=info["epoch"], position=info["position"],
                         interval=list(info.get("interval", [])))
            if state["position"] >= self.steps_per_epoch:  # an epoch's last step, older format
                state["epoch"] += 1
                state["position"] = 0
            self.history = read_history(self.metrics_path, info["step"])
            self._last_checkpoint = path
        self._step_now = state["step"]
        settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _INVOCATION}
        self.manifest = RunManifest(config.out_dir, settings, config.seed,
                                    getattr(self.recipe, "device", None),
                                    **self.run_info, **self.parallel.info(), app=config.app,
                                    run_id=self.run_id, target=self.target, pid=os.getpid(),
                                    host=socket.gethostname())
        if self.parallel.writer:
            self.manifest.start(None if path is None else (state["step"], path))
            if path is None:
                write_history(self.metrics_path, [])  # after run.json: the folder says whose
        if config.tensorboard and self.parallel.writer:
            from .tensorboard import TensorBoardLogger
            self.tensorboard = TensorBoardLogger(config.out_dir,
                                                 purge_step=state["step"] if path else None)
        return state

    def _resolve_target(self, info):
        """self.config.epochs / max_steps, self.total_steps and self.target, from this
        invocation's settings and (on a resume) the target saved in the checkpoint."""
        config = self.config
        epochs, max_steps = config.epochs, config.max_steps
        if info is not None:
            saved = info.get("target") or info.get("config") or info.get("args") or {}
            if epochs is None:
                epochs = saved.get("epochs") or 1
                if max_steps is None and not config.more_epochs:
                    max_steps = saved.get("max_steps")
            epochs += config.more_epochs
        elif epochs is None:
            epochs = 1
        total = epochs * self.steps_per_epoch
        if max_steps is not None:
            total = min(total, max_steps)
        self.config = dataclasses.replace(config, epochs=epochs, max_steps=max_steps)
        self.total_steps = total
        self.target = {"epochs": epochs, "max_steps": max_steps, "steps": total}

    # ---- interrupts ---------------------------------------------------------------------
    def _catch_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {number: signal.signal(number, self._on_signal)
                for number in (signal.SIGINT, signal.SIGTERM)}

    def _restore_signals(self, handlers):
        for number, handler in handlers.items():
            signal.signal(number, handler)

    def _on_signal(self, number, frame):
        if self._signal is None:
            self._signal = signal.Signals(number).name  # the loop stops after this step
            return
        self._aborted = True  # raised again at the step's end should a finalizer swallow it
        raise TrainingAborted(self._step_now, self._last_checkpoint)

    def _interrupted(self, state, interval):
        path = self._last_checkpoint
        if path is None or not path.endswith(f"step_{state['step']:08d}.safetensors"):
            path = self._checkpoint(state, interval)
        self._finish("interrupted")
        raise TrainingInterrupted(state["step"], path, self._stop)

    def _diverged(self, state, name, value, step=None):
        """Stop: `name` is `value` at `step` (default: the step under way)."""
        step = state["step"] + 1 if step is None else step
        last = latest_checkpoint(self.checkpoint_dir)
        where = f"last good checkpoint: {last} (resume from it with --resume and a lower " \
                "--d_lr/--g_lr)" if last else "no checkpoint was written yet"
        self._finish("diverged")
        raise TrainingDiverged(
            f"training stopped at step {step}: {name} is {value}; {where}. "
            "Try a lower learning rate, a gradient penalty, or another objective.")

    def _finish(self, status):
        """run.json says how the run ended; the report stops reloading."""
        if not self.parallel.writer:
            return
        self.manifest.update(status=status, ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.config.report:
            self._write_report(alive=False, status=status)

    # ---- outputs ------------------------------------------------------------------------
    def _say(self, message):
        if self.parallel.writer:
            tqdm.write(message, file=sys.stderr)

    def _append(self, record, found=(), scope="interval"):
        """Add the health warnings to `record`, write it, and show new warnings."""
        if found:
            record["warnings"] = [str(w) for w in found]
        if self.health is not None:
            for warning in self.health.onsets(found, scope):
                self._say(f"health: {warning}")
            if scope == "interval":
                self._warning_codes = [w.code for w in found]
        self.history.append(record)
        write_history(self.metrics_path, self.history)
        if self.tensorboard is not None:
            self.tensorboard.log(record, record["step"])

    def _warning_postfix(self):
        """The bar shows the warnings of the last logged interval, by code."""
        return {"warn": ",".join(self._warning_codes)} if self._warning_codes else {}

    def _log(self, state, interval):
        if not self.parallel.writer:  # the figures are global: rank 0 logs and checks them
            return
        record = {"step": state["step"], "epoch": state["epoch"], "time": time.time(),
                  "kind": "interval"}
        for key in dict.fromkeys(k for f in interval for k in f):  # g_* only on G steps
            record[key] = float(np.mean([f[key] for f in interval if key in f]))
        found = self.health.check_interval(record, self.history) if self.health else []
        self._append(record, found)

    def _result(self):
        """The last interval's record with the latest epoch end's figures merged in."""
        intervals = [r for r in self.history if _kind(r) == "interval"]
        ends = [r for r in self.history if _kind(r) == "epoch"]
        result = dict(intervals[-1]) if intervals else {}
        if ends:
            result.update({k: v for k, v in ends[-1].items()
                           if k not in ("step", "epoch", "time", "warnings", "kind")})
            result["warnings"] = result.get("warnings", []) + ends[-1].get("warnings", [])
            result.setdefault("step", ends[-1]["step"])
        if not result.get("warnings"):
            result.pop("warnings", None)
        return result

    def _checkpoint(self, state, interval):
        settings = {k: v for k, v in dataclasses.asdict(self.config).items()
                    if k not in _INVOCATION}
        info = {"epoch": state["epoch"], "position": state["position"], "config": settings,
                "interval": interval, "run_id": self.run_id, "app": self.config.app,
                "target": self.target, **self.parallel.info()}
        self.parallel.align(self.recipe)
        if not self.parallel.writer:
            self._last_checkpoint = checkpoint_path(self.checkpoint_dir, state["step"])
            return self._last_checkpoint
        path = save_checkpoint(self.checkpoint_dir, state["step"], self.recipe.components(),
                               info, self.data.state(), report=self._say)
        self.manifest.add_checkpoint(path, state["step"])
        self._last_checkpoint = path
        return path

    def sample(self):
        """The recipe's picture of the moment (an ImageGrid or PointCloud)."""
        return self.recipe.sample()

    def _picture(self, state):
        """The sample picture, the loss plot and the report; returns the picture."""
        if not self.parallel.writer:
            return None
        step, out_dir = state["step"], self.config.out_dir
        epoch = state["epoch"] + (1 if state["position"] else 0)  # the epoch under way
        picture = self.recipe.sample()
        if not np.isfinite(picture.values).all():
            self._diverged(state, "a sample", "not finite (NaN or Inf in G's outputs)",
                           step=step)
        path = os.path.join(out_dir, "samples", f"step_{step:08d}.png")
        picture.save(path, title=f"{self.config.app}  step {step}  epoch {epoch}",
                     metadata={"step": step, "epoch": epoch})
        if self.tensorboard is not None:
            self.tensorboard.image("samples", path, step)
        if self.history:
            self.recipe.plot_losses(self.history, os.path.join(out_dir, "losses.png"),
                                    f"{self.config.app}: training curves")
        if self.config.report:
            self._write_report(alive=True)
        return picture

    def _write_report(self, alive, status=None):
        from .report import write_report
        write_report(self.config.out_dir, alive=alive, status=status)

    def _epoch_end(self, state):
        """The picture, and one record with the sample diversity, the recipe's scores and
        the epoch-end health warnings."""
        if not self.parallel.writer:
            return
        step = state["step"]
        picture = self._picture(state)
        record, found = {"step": step, "epoch": state["epoch"], "kind": "epoch"}, []
        if self.health is not None and picture.images is not None:
            diversity, found = self.health.check_samples(picture.images, step)
            if diversity is not None:
                record["sample_diversity"] = diversity
        scores = self.recipe.evaluate()
        if self.health is not None and scores:
            found += self.health.check_scores(scores, self.history, step)
        record.update(scores)
        if len(record) > 3 or found:
            self._append(record, found, scope="epoch")


def _kind(record):
    """"interval" (means over a logging interval) or "epoch" (an epoch end's figures);
    records of older runs say it by having losses or not."""
    return record.get("kind") or ("interval" if any(k.endswith("_loss") for k in record)
                                  else "epoch")


def _adversarials(recipe):
    return [c for c in recipe.components().values() if isinstance(c, Adversarial)]


def _one_generator(generator, adversarial, g_optimizer, images, config, labels=None,
                   device=None, evaluate=None):
    """(GANRecipe, Shuffled, config) for Trainer(generator, adversarial, g_optimizer, images,
    config, labels=None, device=None, evaluate=None)."""
    if images.ndim != 4:
        raise ImageShapeError(f"Trainer: expected NCHW images (4 dims), got shape "
                              f"{images.shape}")
    if len(images) < config.batch_size:
        raise GANSetupError(f"Trainer: {len(images)} images is fewer than one batch of "
                            f"{config.batch_size}; use a smaller batch size or more images")
    arrays = (images,)
    num_classes = None
    if labels is not None:
        if len(labels) != len(images):
            raise GANSetupError(f"Trainer: {len(labels)} labels for {len(images)} images")
        arrays, num_classes = (images, labels), int(labels.max()) + 1
    recipe = GANRecipe(generator, adversarial, g_optimizer, config.latent_dim,
                       num_samples=config.num_samples, num_classes=num_classes,
                       seed=config.seed, device=device, evaluate=evaluate)
    return recipe, Shuffled(*arrays, batch_size=config.batch_size), config

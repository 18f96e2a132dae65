"""The GAN training loop: one D step per batch, one G step every n_critic batches.

Writes into `out_dir`:
  run.json                 the configuration, versions and command line
  metrics.jsonl            one JSON line per logging interval (means over the interval)
  samples/step_XXXXXXXX.png  a grid from a fixed noise batch, at every epoch end
  losses.png               D/G losses and D(x), D(G(z)) against the step
  checkpoints/step_XXXXXXXX.safetensors   complete state, every `checkpoint_every` steps

`resume=True` continues from the newest checkpoint bit for bit (same weights, RNG, data
order and position). A NaN or Inf loss stops training with TrainingDiverged; the last good
checkpoint stays as it was.
"""
import dataclasses
import json
import math
import os
import sys
import time
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

import needle as ndl
from needle import init

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .images import save_grid
from .plots import plot_history

__all__ = ["TrainerConfig", "Trainer", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """A loss became NaN or Inf; the message names the step and the last good checkpoint."""


@dataclasses.dataclass
class TrainerConfig:
    out_dir: str
    epochs: int = 1
    batch_size: int = 64
    latent_dim: int = 100
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    num_samples: int = 64
    max_steps: Optional[int] = None
    resume: bool = False
    progress: bool = True


class Trainer:
    """Trains `generator` against `adversarial` on NCHW `images` in [-1, 1].

    With `labels`, the models are conditional: G(z, y) and D(x, y) get the batch's labels,
    and the sample grid has one row per class.
    """

    def __init__(self, generator, adversarial, g_optimizer, images, config, labels=None,
                 device=None, evaluate: Optional[Callable] = None, run_info=None):
        if images.ndim != 4:
            raise ValueError(f"Trainer: expected NCHW images, got shape {images.shape}")
        if len(images) < config.batch_size:
            raise ValueError(f"Trainer: {len(images)} images is fewer than one batch of "
                             f"{config.batch_size}")
        self.generator, self.adversarial, self.g_optimizer = generator, adversarial, g_optimizer
        self.images, self.labels, self.config = images, labels, config
        self.device = ndl.default_device() if device is None else device
        self.evaluate = evaluate
        self.run_info = run_info or {}
        self.steps_per_epoch = len(images) // config.batch_size
        self.checkpoint_dir = os.path.join(config.out_dir, "checkpoints")
        self.history = []
        self.fixed_noise, self.fixed_labels = self._fixed_inputs()

    # ---- inputs -------------------------------------------------------------------------
    def _fixed_inputs(self):
        """Noise (and labels) for the sample grids, from their own RNG: resume-safe."""
        rng = np.random.RandomState(self.config.seed + 1)
        count = self.config.num_samples
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
        """Run to the configured epochs (or max_steps); returns the last metrics record."""
        config = self.config
        os.makedirs(config.out_dir, exist_ok=True)
        state = self._start()
        self._write_run_info()
        total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        interval = []
        while state["step"] < total_steps:
            if state["position"] == 0:
                state["order"] = np.random.permutation(len(self.images))
            bar = tqdm(total=self.steps_per_epoch, initial=state["position"],
                       desc=f"epoch {state['epoch'] + 1}/{config.epochs}",
                       disable=not config.progress, file=sys.stderr, dynamic_ncols=True)
            with bar:
                while state["position"] < self.steps_per_epoch and state["step"] < total_steps:
                    figures = self._step(state)
                    interval.append(figures)
                    state["position"] += 1
                    state["step"] += 1
                    bar.update(1)
                    bar.set_postfix(d=f"{figures['d_loss']:.3f}",
                                    g=f"{figures.get('g_loss', float('nan')):.3f}",
                                    refresh=False)
                    if state["step"] % config.log_every == 0:
                        self._log(state, interval)
                        interval = []
                    if state["step"] % config.checkpoint_every == 0:
                        self._checkpoint(state)
            if state["position"] == self.steps_per_epoch:
                state["epoch"] += 1
                state["position"] = 0
                self._epoch_end(state)
        if interval:
            self._log(state, interval)
        if state["position"]:
            self._epoch_end(state)
        self._checkpoint(state)
        return self.history[-1] if self.history else {}

    def _start(self):
        state = {"step": 0, "epoch": 0, "position": 0, "order": None}
        if self.config.resume:
            path = latest_checkpoint(self.checkpoint_dir)
            if path is None:
                raise FileNotFoundError(f"resume: no checkpoint in {self.checkpoint_dir}")
            info, arrays = load_checkpoint(path, self._components())
            state.update(step=info["step"], epoch=info["epoch"], position=info["position"],
                         order=arrays.get("order"))
            self.history = self._read_history(info["step"])
        else:
            np.random.seed(self.config.seed)
            self._reset_metrics_file()
        return state

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
            self.g_optimizer.step()
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
    def _log(self, state, interval):
        record = {"step": state["step"], "epoch": state["epoch"], "time": time.time()}
        for key in interval[-1]:
            values = [f[key] for f in interval if key in f]
            record[key] = float(np.mean(values))
        self.history.append(record)
        with open(os.path.join(self.config.out_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def _reset_metrics_file(self):
        open(os.path.join(self.config.out_dir, "metrics.jsonl"), "w").close()

    def _read_history(self, up_to_step):
        """Metrics logged before the checkpoint; later lines (lost work) are dropped."""
        path = os.path.join(self.config.out_dir, "metrics.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        records = [r for r in records if r["step"] <= up_to_step]
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        return records

    def _checkpoint(self, state):
        info = {"epoch": state["epoch"], "position": state["position"],
                "config": dataclasses.asdict(self.config)}
        arrays = {} if state["order"] is None else {"order": state["order"]}
        return save_checkpoint(self.checkpoint_dir, state["step"], self._components(), info,
                               arrays)

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
        rows = None if self.fixed_labels is None else int(self.fixed_labels.max()) + 1
        step = state["step"]
        save_grid(self.sample(), os.path.join(self.config.out_dir, "samples",
                                              f"step_{step:08d}.png"),
                  rows=rows, metadata={"step": step, "epoch": state["epoch"]})
        if self.history:
            plot_history(self.history, os.path.join(self.config.out_dir, "losses.png"))
        if self.evaluate is not None:
            scores = dict(self.evaluate(self.generator), step=step, epoch=state["epoch"])
            self.history.append(scores)
            with open(os.path.join(self.config.out_dir, "metrics.jsonl"), "a") as f:
                f.write(json.dumps(scores) + "\n")

    def _write_run_info(self):
        import numpy
        info = {"argv": sys.argv, "config": dataclasses.asdict(self.config),
                "device": str(self.device), "numpy": numpy.__version__,
                "backend": ndl.backend_selection.BACKEND, **self.run_info}
        with open(os.path.join(self.config.out_dir, "run.json"), "w") as f:
            json.dump(info, f, indent=1)

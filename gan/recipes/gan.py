"""One generator against one Adversarial: the DCGAN, cGAN and WGAN-GP recipe.

The three differ only in their parts (networks, objective, penalties, n_critic, data), which
are constructor arguments, so one step serves them all:

    D step:  adversarial.discriminator_step(real, G(z) [, y])            every step
    G step:  adversarial.generator_loss(G(z) [, y]) -> backward -> step   every n_critic-th

With labels in the batch ((images, labels) from gan.batches.Shuffled) the models are
conditional, G(z, y) and D(x, y), and the sample grid has one row per class. 2-D points
(gan.batches.Sampled) work the same way, shown as a gan.samples.PointCloud.

Before the first step `check(data)` raises a named error (gan.errors) for images that do not
fit the models: channels (grayscale vs RGB) or image size, D's output shape, integer or
non-finite images; images outside [-1, 1] for a tanh generator give a DataRangeWarning.

With `ema` (a gan.EMA of G) the average follows every G step (ema.update(step)), is in the
checkpoints ("ema.*": G's key names), sits beside G in every sample picture (two panels,
"G" and "EMA(G)") and is scored beside it: the evaluator's figures for G, and the same
figures for EMA(G) prefixed "ema_" (fid and ema_fid).
"""
import contextlib
import warnings

import numpy as np

import needle as ndl
import needle.distributed as dist
from needle import nn

from ..adversarial import _global_norm, backward_into
from ..errors import DataRangeWarning, GANSetupError, ImageShapeError, TrainingDataError
from ..models.dcgan import SUPPORTED_SIZES
from ..samples import ImageGrid, Panels
from .recipe import Recipe

__all__ = ["GANRecipe"]


class GANRecipe(Recipe):
    """G against `adversarial` (which owns D, its objective, penalties and optimizer).

    latent_dim: size of z; num_samples: images in the sample grid (a conditional grid has
    num_samples // num_classes per class); num_classes: set for a conditional G(z, y);
    seed: the sample noise comes from RandomState(seed + 1), apart from the training
    stream; evaluate: a callable(generator) -> {name: float}, run at each epoch end;
    lr_decay: both learning rates fall linearly to 0 over the run; picture: a callable
    turning G's outputs on the sample noise into an ImageGrid or PointCloud (default: a grid,
    one row per class when conditional); ema: a gan.EMA of `generator`, or None (see the
    module docstring; `ema_generator` is the averaged G).
    """

    def __init__(self, generator, adversarial, g_optimizer, latent_dim, num_samples=64,
                 num_classes=None, seed=0, device=None, evaluate=None, lr_decay=False,
                 picture=None, ema=None):
        if ema is not None and getattr(ema, "source", None) is not generator:
            raise GANSetupError(f"GANRecipe: ema must be gan.EMA(generator) of this recipe's "
                                f"{type(generator).__name__}; got a {type(ema).__name__} "
                                "of another module")
        self.generator, self.adversarial, self.g_optimizer = generator, adversarial, g_optimizer
        self.ema = ema
        self.objective = adversarial.objective
        self.latent_dim, self.num_classes = int(latent_dim), num_classes
        self.device = ndl.default_device() if device is None else device
        self.evaluator, self.lr_decay, self.picture = evaluate, lr_decay, picture
        self.fixed_noise, self.fixed_labels = _fixed_inputs(seed, num_samples, latent_dim,
                                                            num_classes)
        self.total_steps = None
        self._base_lrs = [adversarial.optimizer.lr, g_optimizer.lr]  # what lr_decay scales
        if getattr(adversarial, "_watched", None) is None:
            adversarial.watch(generator)  # the graph-hygiene checks (gan.Adversarial)

    # ---- the engine's questions -----------------------------------------------------------
    def components(self):
        parts = {"generator": self.generator, "adversarial": self.adversarial,
                 "g_optimizer": self.g_optimizer}
        if self.ema is not None:
            parts["ema"] = self.ema
        return parts

    def start(self, total_steps):
        self.total_steps = total_steps

    def step(self, batch, step):
        if self.lr_decay:
            self._decay(step)
        real = self._tensor(batch[0])
        labels = self._tensor(batch[1]) if len(batch) > 1 else None
        # this rank's rows of the global batch's noise (all of it on one process)
        z = dist.shard_randn(len(batch[0]), self.latent_dim, device=self.device)
        g_step = (step + 1) % self.adversarial.n_critic == 0
        # a critic-only step (n_critic > 1) needs G's output as data alone: no graph
        with contextlib.nullcontext() if g_step else ndl.no_grad():
            fake = self._generate(z, labels)
        figures = self.adversarial.discriminator_step(real, fake, labels)
        if g_step:
            g_loss = self.adversarial.generator_loss(fake, labels, real=real)
            self.g_optimizer.reset_grad()
            backward_into(g_loss, self.g_optimizer)
            figures["g_loss"] = float(g_loss.numpy())
            figures["g_grad_norm"] = _global_norm(self.g_optimizer.params)
            self.g_optimizer.step()
            self.adversarial.check_generator_step()
            if self.ema is not None:
                self.ema.update(step)
        return figures

    def sample(self):
        """G's outputs on the fixed noise (eval mode, no graph) as a picture; with an EMA,
        two panels: G's and EMA(G)'s on the same noise."""
        if self.ema is None:
            return self._picture_of(self.generator)
        return Panels({"G": self._picture_of(self.generator),
                       "EMA(G)": self._picture_of(self.ema_generator)})

    def evaluate(self):
        if self.evaluator is None:
            return {}
        scores = dict(self.evaluator(self.generator))
        if self.ema is not None:
            scores.update({f"ema_{name}": value
                           for name, value in self.evaluator(self.ema_generator).items()})
        return scores

    @property
    def ema_generator(self):
        """The averaged G (eval mode) when the recipe has an EMA, else None."""
        return None if self.ema is None else self.ema.module

    def set_learning_rates(self, d_lr=None, g_lr=None):
        for i, (optimizer, lr) in enumerate(((self.adversarial.optimizer, d_lr),
                                             (self.g_optimizer, g_lr))):
            if lr is not None:
                optimizer.lr = self._base_lrs[i] = lr

    # ---- helpers --------------------------------------------------------------------------
    def generate(self, noise, labels=None, generator=None):
        """`generator` (default G; recipe.ema_generator for EMA(G)) on NumPy noise (and
        labels), in eval mode without a graph, as a NumPy array; its mode is restored."""
        generator = self.generator if generator is None else generator
        training = generator.training
        generator.eval()
        try:
            with ndl.no_grad():
                labels = None if labels is None else self._tensor(labels)
                return self._generate(self._tensor(noise), labels, generator).numpy()
        finally:
            generator.train(training)

    def _picture_of(self, generator):
        outputs = self.generate(self.fixed_noise, self.fixed_labels, generator)
        if self.picture is not None:
            return self.picture(outputs)
        if self.fixed_labels is None:
            return ImageGrid(outputs)
        return ImageGrid(outputs, rows=self.num_classes,
                         row_labels=[str(c) for c in range(self.num_classes)])

    def _decay(self, step):
        scale = 1 - step / self.total_steps
        self.adversarial.optimizer.lr = self._base_lrs[0] * scale
        self.g_optimizer.lr = self._base_lrs[1] * scale

    def _tensor(self, array):
        return ndl.Tensor(array, device=self.device, requires_grad=False)

    def _generate(self, z, labels, generator=None):
        generator = self.generator if generator is None else generator
        return generator(z) if labels is None else generator(z, labels)

    # ---- setup checks ---------------------------------------------------------------------
    def check(self, data):
        """Images that do not fit the models are named errors here, before any step."""
        images = getattr(data, "images", None)
        if images is None:
            return  # sampled data (2-D points): nothing fixed to check
        if images.ndim != 4:
            raise ImageShapeError(f"Trainer: expected NCHW images (4 dims), got shape "
                                  f"{images.shape}")
        self.health_images = images[:max(2, len(self.fixed_noise))]
        _check_images(images, self.generator)
        self._check_models(images, getattr(data, "arrays", (None, None))[1:2])

    def _check_models(self, images, labels):
        """One no-grad, eval-mode forward of G and D on two inputs: shape mistakes surface
        here, named, instead of deep inside the first step. Changes no state, draws no
        random numbers."""
        data_shape = tuple(images.shape[1:])
        D = self.adversarial.discriminator
        modes = (self.generator.training, D.training)
        self.generator.eval()
        D.eval()
        try:
            with ndl.no_grad():
                fixed = None if self.fixed_labels is None else self._tensor(
                    self.fixed_labels[:2])
                made = self._generate(self._tensor(self.fixed_noise[:2]), fixed)
                made_shape = tuple(made.shape[1:])
                if made_shape != data_shape:
                    raise ImageShapeError(_shape_message(self.generator, made_shape,
                                                         data_shape))
                real_labels = self._tensor(labels[0][:2]) if labels else None
                try:
                    self.adversarial.score(self._tensor(images[:2]), real_labels)
                except GANSetupError:
                    raise
                except ValueError as error:
                    raise ImageShapeError(
                        f"Trainer: discriminator {type(D).__name__} does not take the "
                        f"data's images of shape (N, {data_shape[0]}, {data_shape[1]}, "
                        f"{data_shape[2]}): {error}") from error
        finally:
            self.generator.train(modes[0])
            D.train(modes[1])


def _fixed_inputs(seed, count, latent_dim, num_classes):
    """Noise (and labels) for the sample grids, from their own RNG: resume-safe."""
    rng = np.random.RandomState(seed + 1)
    count = max(2, count)
    labels = None
    if num_classes is not None:
        per_class = max(1, count // num_classes)
        labels = np.repeat(np.arange(num_classes), per_class).astype(np.float32)
        count = len(labels)
    return rng.randn(count, latent_dim).astype(np.float32), labels


def _check_images(images, generator):
    """Integer or non-finite images are errors; a range that tanh cannot make warns."""
    if not np.issubdtype(images.dtype, np.floating):
        raise TrainingDataError(
            f"Trainer: images have dtype {images.dtype}; expected floats in [-1, 1] "
            "(for uint8 pixels: images.astype(np.float32) / 127.5 - 1)")
    parameters = generator.parameters()
    dtype = str(parameters[0].dtype) if parameters else None
    if dtype is not None and np.dtype(images.dtype) != np.dtype(dtype):
        raise TrainingDataError(
            f"Trainer: images have dtype {images.dtype} but {type(generator).__name__}"
            f"'s parameters are {dtype}; convert with images.astype(np.{dtype})")
    finite = np.isfinite(images)
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(len(images), -1).all(axis=1))
        raise TrainingDataError(
            f"Trainer: {len(bad)} of {len(images)} images hold NaN or Inf values "
            f"(first at index {bad[0]}); clean or drop them before training")
    low, high = float(images.min()), float(images.max())
    tanh = isinstance(generator, nn.Tanh) or any(isinstance(m, nn.Tanh)
                                                 for m in generator._children())
    if tanh and (low < -1.001 or high > 1.001 or low >= 0):
        hint = ("looks like [0, 1]: use images * 2 - 1" if low >= 0 and high <= 1.001
                else "scale them into [-1, 1]")
        warnings.warn(DataRangeWarning(
            f"Trainer: images span [{low:.4g}, {high:.4g}] but {type(generator).__name__} "
            f"ends in tanh, whose outputs span [-1, 1]; D can tell real from generated by "
            f"range alone ({hint})"), stacklevel=4)


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

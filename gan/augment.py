"""Augmentation of every image the discriminator sees: DiffAugment and ADA's adaptive p.

DiffAugment (Zhao, Liu, Lin, Zhu and Han 2020, "Differentiable Augmentation for
Data-Efficient GAN Training", arXiv:2006.10738) applies one family of random transforms T
(fresh draws at every call) to real and generated images before D, in D's step and in G's:
the losses become f(D(T(x))) and f(D(T(G(z)))). T is differentiable in the image, so G is
trained through it, and D never sees an unaugmented image, so it cannot tell real from fake
by the augmentation.
The transforms and parameters are the reference implementation's (DiffAugment_pytorch.py),
for an image x of shape (C, H, W), each parameter drawn per sample:

    brightness   x + b,                          b ~ U[-0.5, 0.5)
    saturation   m + s (x - m),  m = mean over C at each pixel,  s ~ U[0, 2)
    contrast     m + c (x - m),  m = mean of the whole image,    c ~ U[0.5, 1.5)
    translation  out[:, i, j] = x[:, i + t, j + u], zero outside the image,
                 t, u integers uniform in [-S, S], S = round(H / 8) (and round(W / 8) for u)
    cutout       zero a round(H / 2) x round(W / 2) rectangle (clipped to the image) whose
                 centre row is uniform in {0, ..., H - h % 2} (h the height), columns alike

(round is half up, int(v + 0.5), as the reference has it: on 28 x 28 MNIST, S = 4 and the
cutout is 14 x 14.)

Policy "color" is brightness, saturation, contrast in that order; "translation" and
"cutout" are one transform each. Given its parameters each transform is linear (affine for
brightness) in x, written with needle ops: the means are sums, translation is a product with
one-hot shift matrices R x C (so its adjoint, the gradient, is the opposite translation), and
cutout a product with a 0/1 mask. Gradients of ops are ops, so penalties that differentiate
D(T(x)) with respect to x (R1, WGAN-GP) differentiate through T twice.

With probability `p` (per sample and per transform, as in ADA) a transform is applied, else
that sample passes through it unchanged, bit for bit. p = 1 is DiffAugment; p = 0 is the
identity and returns its input without drawing a random number.

Random draws come from NumPy's global RNG, as every draw in this project does, so a run is
reproducible and a resume (which restores that RNG) is bit-exact. For a batch of N, each
transform in policy order draws: its N gates U[0, 1) (applied where < p), then its
parameters: brightness, saturation and contrast N uniforms in [0, 1) each (mapped to b, s,
c as above); translation randint(-S, S + 1, N) for rows then columns; cutout
randint(0, H + 1 - h % 2, N) for the centre rows, then the same for columns.

AdaptiveAugment (Karras, Aittala, Hellsten, Laine, Lehtinen and Aila 2020, "Training
Generative Adversarial Networks with Limited Data" (StyleGAN2-ADA), arXiv:2006.06676,
sec. 3) drives p from D's overfitting heuristic r_t = E[sign(D(x_real))] over the reals D
saw since the last adjustment: every `interval` D steps,

    p <- clamp(p + sign(r_t - target) * (batch_size * interval) / speed_images, 0, 1)

    augment = AdaptiveAugment(DiffAugment(), target=0.6)
    real_scores = D(augment(real)); fake_scores = D(augment(fake))
    augment.observe(real_scores)      # adjusts p every `interval` calls
"""
import numbers

import numpy as np

from needle import Tensor, ops

from .errors import GANSetupError

__all__ = ["DiffAugment", "AdaptiveAugment", "brightness", "saturation", "contrast",
           "translate", "cutout"]

_POLICIES = {"color": ("brightness", "saturation", "contrast"),
             "translation": ("translation",), "cutout": ("cutout",)}


def _constant(array, like):
    """A constant Tensor of `like`'s device and dtype from a NumPy array."""
    return Tensor(array, device=like.device, dtype=like.dtype, requires_grad=False)


def _per_sample(values, x):
    """(N,) per-sample numbers -> a constant broadcast to x's (N, C, H, W)."""
    column = np.asarray(values, dtype=np.float64).reshape(-1, 1, 1, 1)
    return ops.broadcast_to(_constant(column, x), x.shape)


def _lerp_from(mean, x, factor):
    """mean + factor (x - mean), written x f + mean (1 - f) so f = 1 gives x exactly."""
    return x * _per_sample(factor, x) + mean * _per_sample(1.0 - np.asarray(factor), x)


def brightness(x, shift):
    """x + shift[n] for each image n of x (N, C, H, W); `shift` has N entries."""
    return x + _per_sample(shift, x)


def saturation(x, factor):
    """m + factor[n] (x - m), m the mean over channels at each pixel of image n (the
    identity on one channel)."""
    n, channels, height, width = x.shape
    if channels == 1:  # a single channel is its own mean
        return x
    mean = ops.reshape(ops.summation(x, (1,)) / channels, (n, 1, height, width))
    return _lerp_from(ops.broadcast_to(mean, x.shape), x, factor)


def contrast(x, factor):
    """m + factor[n] (x - m), m the mean of image n over (C, H, W)."""
    n, channels, height, width = x.shape
    mean = ops.reshape(ops.summation(x, (1, 2, 3)) / (channels * height * width),
                       (n, 1, 1, 1))
    return _lerp_from(ops.broadcast_to(mean, x.shape), x, factor)


def _shift_matrices(shifts, size, transposed):
    """(N, 1, size, size) 0/1 matrices M with (M @ v)[i] = v[i + shift] (0 outside);
    `transposed` gives M^T, for the right-hand product over columns."""
    index = np.arange(size)
    matrices = index[None, None, :] == index[None, :, None] + np.asarray(shifts)[:, None, None]
    return (matrices.transpose(0, 2, 1) if transposed else matrices)[:, None]


def translate(x, rows, cols):
    """out[n, :, i, j] = x[n, :, i + rows[n], j + cols[n]], zero where that is outside.

    Computed as R_n @ x_n @ C_n with one-hot shift matrices, so the gradient is the
    translation by (-rows, -cols) and is itself made of ops.
    """
    _, _, height, width = x.shape
    if np.any(rows):
        x = ops.matmul(_constant(_shift_matrices(rows, height, False).astype(np.float64), x), x)
    if np.any(cols):
        x = ops.matmul(x, _constant(_shift_matrices(cols, width, True).astype(np.float64), x))
    return x


def cutout(x, top, left, height, width):
    """Zero rows [top, top + height) x columns [left, left + width) of each image, clipped
    to the image; all five are per-sample (N,) integers (a height of 0 cuts nothing)."""
    _, _, image_height, image_width = x.shape
    top, left = np.asarray(top)[:, None], np.asarray(left)[:, None]
    height, width = np.asarray(height)[:, None], np.asarray(width)[:, None]
    rows, cols = np.arange(image_height)[None], np.arange(image_width)[None]
    in_rows = (rows >= top) & (rows < top + height)
    in_cols = (cols >= left) & (cols < left + width)
    keep = 1.0 - (in_rows[:, :, None] & in_cols[:, None, :])
    return x * ops.broadcast_to(_constant(keep[:, None], x), x.shape)


def _draw_brightness(applied, shape):
    return (np.where(applied, np.random.random_sample(len(applied)) - 0.5, 0.0),)


def _draw_saturation(applied, shape):
    return (np.where(applied, np.random.random_sample(len(applied)) * 2.0, 1.0),)


def _draw_contrast(applied, shape):
    return (np.where(applied, np.random.random_sample(len(applied)) + 0.5, 1.0),)


def _draw_translation(applied, shape):
    n, _, height, width = shape
    reach_rows, reach_cols = int(height * 0.125 + 0.5), int(width * 0.125 + 0.5)
    rows = np.random.randint(-reach_rows, reach_rows + 1, n)
    cols = np.random.randint(-reach_cols, reach_cols + 1, n)
    return np.where(applied, rows, 0), np.where(applied, cols, 0)


def _draw_cutout(applied, shape):
    n, _, height, width = shape
    size_rows, size_cols = int(height * 0.5 + 0.5), int(width * 0.5 + 0.5)
    centre_rows = np.random.randint(0, height + 1 - size_rows % 2, n)
    centre_cols = np.random.randint(0, width + 1 - size_cols % 2, n)
    return (centre_rows - size_rows // 2, centre_cols - size_cols // 2,
            np.where(applied, size_rows, 0), np.where(applied, size_cols, 0))


# name -> (draw(applied, shape) -> parameters, transform(x, *parameters))
_TRANSFORMS = {"brightness": (_draw_brightness, brightness),
               "saturation": (_draw_saturation, saturation),
               "contrast": (_draw_contrast, contrast),
               "translation": (_draw_translation, translate),
               "cutout": (_draw_cutout, cutout)}


def _probability(p, owner):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise GANSetupError(f"{owner}: p must be a number in [0, 1], got {p!r}")
    return float(p)


class DiffAugment:
    """DiffAugment's transforms (see the module docstring), each applied per sample with
    probability p.

    `policy` is a comma-separated subset of "color", "translation", "cutout" (the paper's
    default is all three; "" is the identity). Call with NCHW image Tensors; `p` given to the
    call overrides the instance's (AdaptiveAugment passes its own).

        augment = DiffAugment("color,translation,cutout")
        scores = D(augment(images))       # differentiable in images, twice
    """

    def __init__(self, policy="color,translation,cutout", p=1.0):
        names = [name.strip() for name in policy.split(",") if name.strip()]
        unknown = [name for name in names if name not in _POLICIES]
        if unknown:
            raise GANSetupError(f"DiffAugment: unknown policy {unknown[0]!r} in {policy!r}; "
                                f"choose from {', '.join(_POLICIES)}")
        self.policy = ",".join(names)
        self.transforms = tuple(t for name in names for t in _POLICIES[name])
        self.p = _probability(p, "DiffAugment")

    def __call__(self, x, p=None):
        p = self.p if p is None else _probability(p, "DiffAugment")
        if not isinstance(x, Tensor) or len(x.shape) != 4:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise GANSetupError(f"DiffAugment: expected images of shape (N, C, H, W), "
                                f"got {shape}")
        if p == 0.0:
            return x
        for name in self.transforms:
            draw, transform = _TRANSFORMS[name]
            applied = np.random.random_sample(x.shape[0]) < p
            parameters = draw(applied, x.shape)
            if applied.any():
                x = transform(x, *parameters)
        return x

    def __repr__(self):
        return f"DiffAugment(policy={self.policy!r}, p={self.p})"


def _number(value, kind, key):
    """A Python number from a number, a 1-element array or a Tensor (a loaded state)."""
    array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
    if array.size != 1:
        raise ValueError(f"AdaptiveAugment.load_state_dict: {key!r} must be one number, "
                         f"got an array of shape {array.shape}")
    return kind(array.item())


class AdaptiveAugment:
    """ADA's adaptive augmentation probability (Karras et al. 2020, sec. 3) around an augment.

    r_t = E[sign(D(x_real))] over the real scores `observe` received in the last `interval`
    calls (one per D step); then

        p <- clamp(p + sign(r_t - target) * n_t / speed_images, 0, 1)

    with n_t the number of real images observed in those calls: batch_size * interval, the
    paper's step, counted from the scores' rows, so no batch size is configured (a short
    last batch counts what it holds). r_t above `target` (0.6, the paper's) means D is
    overconfident on reals, i.e. overfitting: p rises; below, p falls. p starts at `p` (the
    paper starts at 0).

    `speed_images`: the paper's 500k images lets p cross [0, 1] in 500k images, about 2% of
    its 25M-image runs; an MNIST epoch (937 steps of 64, 60k images) would then move p by at
    most 0.12. The default 20k lets p cross [0, 1] in a third of an epoch (78 adjustments of
    4 x 64 images, each moving p by 0.0128).

    `__call__(x)` augments with the current p; `state_dict()` holds p and the accumulator
    (exact integers), so a resume continues bit for bit.
    """

    def __init__(self, augment=None, target=0.6, interval=4, speed_images=20_000, p=0.0):
        if not isinstance(target, numbers.Real) or not -1.0 <= target <= 1.0:
            raise GANSetupError(f"AdaptiveAugment: target must be in [-1, 1] (a mean of "
                                f"signs), got {target!r}")
        if isinstance(interval, bool) or not isinstance(interval, numbers.Integral) \
                or interval < 1:
            raise GANSetupError(f"AdaptiveAugment: interval must be an integer >= 1, "
                                f"got {interval!r}")
        if not isinstance(speed_images, numbers.Real) or not speed_images > 0:
            raise GANSetupError(f"AdaptiveAugment: speed_images must be > 0, "
                                f"got {speed_images!r}")
        self.augment = DiffAugment() if augment is None else augment
        self.target, self.interval = float(target), int(interval)
        self.speed_images = float(speed_images)
        self._p = _probability(p, "AdaptiveAugment")
        self._reset()

    def _reset(self):
        self._sign_sum, self._scores, self._images, self._steps = 0, 0, 0, 0

    @property
    def p(self):
        """The current augmentation probability."""
        return self._p

    def __call__(self, x):
        return self.augment(x, p=self._p)

    def observe(self, real_scores):
        """Accumulate sign(D) over D's scores on (augmented) reals, a Tensor or NumPy array
        with one row per image; every `interval` calls, adjust p."""
        scores = real_scores.numpy() if isinstance(real_scores, Tensor) \
            else np.asarray(real_scores, dtype=np.float64)
        if scores.ndim == 0 or scores.size == 0:
            raise ValueError(f"AdaptiveAugment.observe: expected one score per image, got "
                             f"shape {scores.shape}")
        if not np.all(np.isfinite(scores)):
            raise ValueError("AdaptiveAugment.observe: D's real scores contain NaN or Inf")
        self._sign_sum += int(np.count_nonzero(scores > 0)) - int(np.count_nonzero(scores < 0))
        self._scores += int(scores.size)
        self._images += int(scores.shape[0])
        self._steps += 1
        if self._steps == self.interval:
            r_t = self._sign_sum / self._scores
            adjust = np.sign(r_t - self.target) * self._images / self.speed_images
            self._p = float(min(max(self._p + adjust, 0.0), 1.0))
            self._reset()

    def state_dict(self):
        """p and the accumulator since the last adjustment, as Python numbers."""
        return {"p": self._p, "sign_sum": self._sign_sum, "scores": self._scores,
                "images": self._images, "steps": self._steps}

    def load_state_dict(self, state):
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(f"AdaptiveAugment.load_state_dict: expected keys "
                             f"{sorted(expected)}, got {sorted(state)}")
        p = _probability(_number(state["p"], float, "p"), "AdaptiveAugment.load_state_dict")
        steps = _number(state["steps"], int, "steps")
        if not 0 <= steps < self.interval:
            raise ValueError(f"AdaptiveAugment.load_state_dict: steps {steps} is outside "
                             f"[0, interval={self.interval})")
        self._p, self._steps = p, steps
        self._sign_sum = _number(state["sign_sum"], int, "sign_sum")
        self._scores = _number(state["scores"], int, "scores")
        self._images = _number(state["images"], int, "images")

    def __repr__(self):
        return (f"AdaptiveAugment({self.augment!r}, target={self.target}, "
                f"interval={self.interval}, speed_images={self.speed_images:g}, p={self._p})")

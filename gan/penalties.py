"""Penalties on the discriminator: terms added to D's loss, and weight clipping.

The gradient penalties differentiate D's output with respect to its input and then D's loss
is differentiated again, so they rely on needle's double backward (`create_graph=True`).
Each penalty is called as `penalty(score, real, fake)` where `score(x)` runs D (with any
condition already bound, and the augmentation when D is trained on augmented images) and
returns its outputs.

Lazy regularisation (Karras et al. 2020, StyleGAN2, sec. 3.1): `every=k` computes the
penalty on every k-th D step only, multiplied by k, so that its average strength is the
same while its cost (a double backward) falls k-fold. StyleGAN2 also rescales Adam's rate
and betas by k / (k + 1) because it steps the penalty with a separate optimizer update;
here the penalty is added to that step's loss, so the rates stay as they are.
"""
import needle as ndl
from needle import init, ops

__all__ = ["Penalty", "GradientPenalty", "R1", "R2", "WeightClipping"]


def _squared_gradient_norms(score, x):
    """||d sum(score(x)) / dx||^2 per sample, as an (N,) Tensor that keeps its graph."""
    outputs = score(x)
    (gradient,) = ndl.grad([outputs], [x], create_graph=True)
    axes = tuple(range(1, len(gradient.shape)))
    return ops.summation(gradient * gradient, axes)


class Penalty:
    """A term on D's loss, applied on every `every`-th D step (lazy regularisation)."""

    def __init__(self, every=1):
        if int(every) != every or every < 1:
            raise ValueError(f"{type(self).__name__}: every must be an integer >= 1, got "
                             f"{every}")
        self.every = int(every)

    def applies_at(self, d_step):
        """True on the D steps (0-based count) where the penalty is computed."""
        return d_step % self.every == 0

    def _lazy(self):
        return f", every={self.every}" if self.every > 1 else ""


class GradientPenalty(Penalty):
    """WGAN-GP (Gulrajani et al. 2017, eq. 3): weight * E[(||grad D(x_hat)||_2 - 1)^2].

    x_hat = eps * real + (1 - eps) * fake with eps ~ U[0, 1] per sample (NumPy's RNG).
    With every=k: k * weight * E[...] on every k-th D step.
    """

    def __init__(self, weight=10.0, every=1):
        super().__init__(every)
        self.weight = weight

    def __call__(self, score, real, fake):
        n = real.shape[0]
        eps = init.rand(n, *([1] * (len(real.shape) - 1)), device=real.device,
                        dtype=real.dtype)
        eps = ops.broadcast_to(eps, real.shape)
        x_hat = (real.detach() * eps + fake.detach() * (1 - eps)).detach()
        x_hat.requires_grad = True
        norms = ops.sqrt(_squared_gradient_norms(score, x_hat) + 1e-12)
        return ops.mean((norms - 1) ** 2) * (self.weight * self.every)

    def __repr__(self):
        return f"GradientPenalty(weight={self.weight}{self._lazy()})"


class R1(Penalty):
    """Mescheder et al. (2018), eq. 9: gamma / 2 * E[||grad D(x)||^2] on real data.

    With every=k: k * gamma / 2 * E[...] on every k-th D step (StyleGAN2 uses k = 16)."""

    on_real = True

    def __init__(self, gamma=10.0, every=1):
        super().__init__(every)
        self.gamma = gamma

    def __call__(self, score, real, fake):
        x = (real if self.on_real else fake).detach()
        x.requires_grad = True
        return ops.mean(_squared_gradient_norms(score, x)) * (self.gamma / 2 * self.every)

    def __repr__(self):
        return f"{type(self).__name__}(gamma={self.gamma}{self._lazy()})"


class R2(R1):
    """R1's penalty on generated data: gamma / 2 * E[||grad D(G(z))||^2]."""

    on_real = False


class WeightClipping:
    """WGAN (Arjovsky et al. 2017): clamp every D parameter to [-c, c] after each step."""

    def __init__(self, clip_value=0.01):
        if clip_value <= 0:
            raise ValueError(f"WeightClipping: clip_value must be > 0, got {clip_value}")
        self.clip_value = clip_value

    def apply(self, parameters):
        with ndl.no_grad():
            for p in parameters:
                p.data = ops.clip(p.data, -self.clip_value, self.clip_value)

    def __repr__(self):
        return f"WeightClipping({self.clip_value})"

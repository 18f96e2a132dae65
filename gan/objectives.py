"""GAN objectives: each maps the discriminator's outputs to the losses of D and G.

An objective only computes losses; it never calls backward(). Every loss works on logits
through softplus (log(1 + e^x)), never a sigmoid followed by a log, so it stays exact when D
is confident. Notation: r = D(x) on real data, f = D(G(z)) on generated data, both logits
(any shape: one per sample, or a PatchGAN map); E[.] is the mean over all of them.

A pairing objective (RelativisticPairing) also needs D's outputs on the real batch in G's
loss: `pairs_real_and_fake` is True and generator_loss takes them as `real`.

To add an objective, subclass `Objective` and add a row to tests/gan/test_objectives.py.
"""
import numpy as np

from needle import ops

__all__ = ["Objective", "Minimax", "NonSaturating", "Wasserstein", "Hinge", "LeastSquares",
           "RelativisticPairing", "OBJECTIVES", "get_objective"]


class Objective:
    """D's loss, G's loss, and how to report D's outputs."""

    #: True when D's outputs are log-odds, so sigmoid(r) is "D(x)", a probability.
    outputs_logits = True
    #: D's loss when D separates real from generated perfectly (its minimum), or None when
    #: the loss is unbounded below; the health monitor watches D's loss approach it.
    loss_floor = 0.0
    #: True when G's loss compares each generated score with a real one (generator_loss
    #: then needs `real`, D's outputs on a real batch of the same size).
    pairs_real_and_fake = False

    def discriminator_loss(self, real, fake):
        raise NotImplementedError

    def generator_loss(self, fake, real=None):
        raise NotImplementedError

    def report(self, scores):
        """The figure users log as D(x) / D(G(z)): a mean probability or a mean score."""
        values = scores.numpy()
        if self.outputs_logits:
            return float((0.5 * (1.0 + np.tanh(0.5 * values))).mean())
        return float(values.mean())

    def __repr__(self):
        return f"{type(self).__name__}()"


class Minimax(Objective):
    """Goodfellow et al. (2014), eq. 1, with G minimising the saturating loss.

    D: E[-log sigmoid(r)] + E[-log(1 - sigmoid(f))] = E[softplus(-r)] + E[softplus(f)]
    G: E[log(1 - sigmoid(f))] = -E[softplus(f)]   (its gradient vanishes when D wins)

    label_smoothing s (one-sided, Salimans et al. 2016, sec. 3.4): real images get the
    target 1 - s instead of 1, so D's real term is E[(1 - s) softplus(-r) + s softplus(r)];
    generated images keep the target 0.
    """

    label_smoothing = 0.0

    def __init__(self, label_smoothing=0.0):
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"{type(self).__name__}: label_smoothing must be in [0, 0.5), "
                             f"got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def discriminator_loss(self, real, fake):
        s = self.label_smoothing
        real_term = ops.softplus(-real) if s == 0 else (
            ops.softplus(-real) * (1 - s) + ops.softplus(real) * s)
        return ops.mean(real_term) + ops.mean(ops.softplus(fake))

    def generator_loss(self, fake, real=None):
        return -ops.mean(ops.softplus(fake))

    def __repr__(self):
        smoothing = f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"{type(self).__name__}({smoothing})"


class NonSaturating(Minimax):
    """Goodfellow et al. (2014), section 3: G maximises log D(G(z)) instead.

    D: as Minimax (label_smoothing included).   G: E[-log sigmoid(f)] = E[softplus(-f)]
    """

    def generator_loss(self, fake, real=None):
        return ops.mean(ops.softplus(-fake))


class Wasserstein(Objective):
    """Arjovsky et al. (2017): D is a critic with unbounded scores.

    D: E[f] - E[r]   G: -E[f]   (needs a Lipschitz constraint: gradient penalty or clipping)
    """

    outputs_logits = False
    loss_floor = None

    def discriminator_loss(self, real, fake):
        return ops.mean(fake) - ops.mean(real)

    def generator_loss(self, fake, real=None):
        return -ops.mean(fake)


class Hinge(Objective):
    """Lim & Ye (2017), Miyato et al. (2018).

    D: E[relu(1 - r)] + E[relu(1 + f)]   G: -E[f]
    """

    outputs_logits = False

    def discriminator_loss(self, real, fake):
        return ops.mean(ops.relu(1 - real)) + ops.mean(ops.relu(fake + 1))

    def generator_loss(self, fake, real=None):
        return -ops.mean(fake)


class LeastSquares(Objective):
    """Mao et al. (2017), LSGAN with targets a=0, b=c=1.

    D: E[(r - 1)^2] / 2 + E[f^2] / 2   G: E[(f - 1)^2] / 2
    """

    outputs_logits = False

    def discriminator_loss(self, real, fake):
        return ops.mean((real - 1) ** 2) * 0.5 + ops.mean(fake ** 2) * 0.5

    def generator_loss(self, fake, real=None):
        return ops.mean((fake - 1) ** 2) * 0.5


class RelativisticPairing(Objective):
    """RpGAN: Jolicoeur-Martineau (2019), the relativistic pairing GAN (RSGAN), as
    Huang et al. (2024, "The GAN is dead; long live the GAN!", R3GAN) use it.

    Each real score is paired with one generated score (the i-th with the i-th):
    D: E[softplus(-(r - f))]   G: E[softplus(-(f - r))]
    so D asks "is the real one more real than the fake one?" and G the reverse; a G that
    covers only some modes leaves pairs D wins easily, which is why it resists mode dropping.
    """

    outputs_logits = False
    pairs_real_and_fake = True

    def discriminator_loss(self, real, fake):
        _check_pairs(real, fake)
        return ops.mean(ops.softplus(fake - real))

    def generator_loss(self, fake, real=None):
        if real is None:
            raise ValueError("RelativisticPairing.generator_loss: needs D's scores on a real "
                             "batch (real=...) to pair with the generated ones")
        _check_pairs(real, fake)
        return ops.mean(ops.softplus(real - fake))


def _check_pairs(real, fake):
    if tuple(real.shape) != tuple(fake.shape):
        raise ValueError(f"RelativisticPairing: real scores {tuple(real.shape)} and "
                         f"generated scores {tuple(fake.shape)} must pair one to one (equal "
                         "batch sizes)")


OBJECTIVES = {"minimax": Minimax, "non-saturating": NonSaturating,
              "wasserstein": Wasserstein, "hinge": Hinge, "least-squares": LeastSquares,
              "rpgan": RelativisticPairing}
SMOOTHABLE = ("minimax", "non-saturating")


def get_objective(name, label_smoothing=0.0):
    """The objective registered under `name` (the apps' --objective choices), with one-sided
    label smoothing for the objectives that take it."""
    try:
        objective = OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of "
                         f"{', '.join(OBJECTIVES)}") from None
    if label_smoothing:
        if name not in SMOOTHABLE:
            raise ValueError(f"label smoothing applies to the {' and '.join(SMOOTHABLE)} "
                             f"objectives, not {name!r}")
        return objective(label_smoothing=label_smoothing)
    return objective()

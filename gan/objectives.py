"""GAN objectives: each maps the discriminator's outputs to the losses of D and G.

An objective only computes losses; it never calls backward(). Every loss works on logits
through softplus (log(1 + e^x)), never a sigmoid followed by a log, so it stays exact when D
is confident. Notation: r = D(x) on real data, f = D(G(z)) on generated data, both logits
(any shape: one per sample, or a PatchGAN map); E[.] is the mean over all of them.

To add an objective, subclass `Objective` and add a row to tests/gan/test_objectives.py.
"""
import numpy as np

from needle import ops

__all__ = ["Objective", "Minimax", "NonSaturating", "Wasserstein", "Hinge", "LeastSquares",
           "OBJECTIVES", "get_objective"]


class Objective:
    """D's loss, G's loss, and how to report D's outputs."""

    #: True when D's outputs are log-odds, so sigmoid(r) is "D(x)", a probability.
    outputs_logits = True
    #: D's loss when D separates real from generated perfectly (its minimum), or None when
    #: the loss is unbounded below; the health monitor watches D's loss approach it.
    loss_floor = 0.0

    def discriminator_loss(self, real, fake):
        raise NotImplementedError

    def generator_loss(self, fake):
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
    """

    def discriminator_loss(self, real, fake):
        return ops.mean(ops.softplus(-real)) + ops.mean(ops.softplus(fake))

    def generator_loss(self, fake):
        return -ops.mean(ops.softplus(fake))


class NonSaturating(Minimax):
    """Goodfellow et al. (2014), section 3: G maximises log D(G(z)) instead.

    D: as Minimax.   G: E[-log sigmoid(f)] = E[softplus(-f)]
    """

    def generator_loss(self, fake):
        return ops.mean(ops.softplus(-fake))


class Wasserstein(Objective):
    """Arjovsky et al. (2017): D is a critic with unbounded scores.

    D: E[f] - E[r]   G: -E[f]   (needs a Lipschitz constraint: gradient penalty or clipping)
    """

    outputs_logits = False
    loss_floor = None

    def discriminator_loss(self, real, fake):
        return ops.mean(fake) - ops.mean(real)

    def generator_loss(self, fake):
        return -ops.mean(fake)


class Hinge(Objective):
    """Lim & Ye (2017), Miyato et al. (2018).

    D: E[relu(1 - r)] + E[relu(1 + f)]   G: -E[f]
    """

    outputs_logits = False

    def discriminator_loss(self, real, fake):
        return ops.mean(ops.relu(1 - real)) + ops.mean(ops.relu(fake + 1))

    def generator_loss(self, fake):
        return -ops.mean(fake)


class LeastSquares(Objective):
    """Mao et al. (2017), LSGAN with targets a=0, b=c=1.

    D: E[(r - 1)^2] / 2 + E[f^2] / 2   G: E[(f - 1)^2] / 2
    """

    outputs_logits = False

    def discriminator_loss(self, real, fake):
        return ops.mean((real - 1) ** 2) * 0.5 + ops.mean(fake ** 2) * 0.5

    def generator_loss(self, fake):
        return ops.mean((fake - 1) ** 2) * 0.5


OBJECTIVES = {"minimax": Minimax, "non-saturating": NonSaturating,
              "wasserstein": Wasserstein, "hinge": Hinge, "least-squares": LeastSquares}


def get_objective(name):
    """The objective registered under `name` (the apps' --objective choices)."""
    try:
        return OBJECTIVES[name]()
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of "
                         f"{', '.join(OBJECTIVES)}") from None

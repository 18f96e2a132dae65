"""Adversarial: a discriminator with its objective, penalties and optimizer, as one module.

The generator sees a loss like any other: "make this batch look like the real data".

    adv = gan.Adversarial(D, objective=gan.objectives.NonSaturating(),
                          optimizer=ndl.optim.Adam(D.parameters(), lr=2e-4, beta1=0.5))
    fake = G(z)
    adv.discriminator_step(real, fake)        # detaches fake; D's parameters only
    g_loss = adv.generator_loss(fake)         # composes: g_loss + 10 * l1(...)
"""
import math

import numpy as np

from needle import nn

from .penalties import WeightClipping

__all__ = ["Adversarial"]


class Adversarial(nn.Module):
    """Owns D, its objective, its penalties, its optimizer and the critic schedule.

    `n_critic` D steps per G step is the trainer's loop; `weight_clip` (a WeightClipping or
    a float c) clamps D's weights after every step, as the original WGAN does.
    """

    def __init__(self, discriminator, objective, optimizer, penalties=(), n_critic=1,
                 weight_clip=None):
        super().__init__()
        if int(n_critic) != n_critic or n_critic < 1:
            raise ValueError(f"Adversarial: n_critic must be an integer >= 1, got {n_critic}")
        self.discriminator = discriminator
        self.objective = objective
        self.optimizer = optimizer
        self.penalties = list(penalties)
        self.n_critic = int(n_critic)
        if weight_clip is not None and not isinstance(weight_clip, WeightClipping):
            weight_clip = WeightClipping(weight_clip)
        self.weight_clip = weight_clip

    def score(self, x, cond=None):
        """D's outputs for x (and the condition, for a conditional D)."""
        return self.discriminator(x) if cond is None else self.discriminator(x, cond)

    def generator_loss(self, fake, cond=None):
        """G's loss for a generated batch: a Tensor that backpropagates into G (and D)."""
        return self.objective.generator_loss(self.score(fake, cond))

    def discriminator_loss(self, real, fake, cond=None):
        """(D's total loss, D(real), D(fake), {penalty name: value}) with fake detached."""
        fake = fake.detach()
        real_scores, fake_scores = self.score(real, cond), self.score(fake, cond)
        loss = self.objective.discriminator_loss(real_scores, fake_scores)
        penalties = {}
        for penalty in self.penalties:
            value = penalty(lambda x: self.score(x, cond), real, fake)
            penalties[type(penalty).__name__] = value
            loss = loss + value
        return loss, real_scores, fake_scores, penalties

    def discriminator_step(self, real, fake, cond=None):
        """One optimizer step on D; returns the figures worth logging, as floats."""
        loss, real_scores, fake_scores, penalties = self.discriminator_loss(real, fake, cond)
        self.optimizer.reset_grad()
        loss.backward(create_graph=False)
        grad_norm = _global_norm(self.optimizer.params)
        self.optimizer.step()
        if self.weight_clip is not None:
            self.weight_clip.apply(self.discriminator.parameters())
        figures = {"d_loss": float(loss.numpy()),
                   "d_real": self.objective.report(real_scores),
                   "d_fake": self.objective.report(fake_scores),
                   "d_grad_norm": grad_norm}
        figures.update({f"penalty_{name}": float(value.numpy())
                        for name, value in penalties.items()})
        return figures

    def state_dict(self):
        """D's weights and buffers under "discriminator.", optimizer state under "optimizer."."""
        state = {f"discriminator.{k}": v for k, v in self.discriminator.state_dict().items()}
        state.update({f"optimizer.{k}": v for k, v in self.optimizer.state_dict().items()})
        return state

    def load_state_dict(self, state, strict=True):
        prefix_d, prefix_o = "discriminator.", "optimizer."
        unknown = [k for k in state if not k.startswith((prefix_d, prefix_o))]
        if unknown and strict:
            raise KeyError(f"Adversarial.load_state_dict: unexpected keys {unknown}")
        self.discriminator.load_state_dict(
            {k[len(prefix_d):]: v for k, v in state.items() if k.startswith(prefix_d)},
            strict=strict)
        self.optimizer.load_state_dict(
            {k[len(prefix_o):]: v for k, v in state.items() if k.startswith(prefix_o)})

    def __repr__(self):
        return (f"Adversarial({type(self.discriminator).__name__}, {self.objective!r}, "
                f"penalties={self.penalties}, n_critic={self.n_critic})")


def _global_norm(parameters):
    """sqrt(sum of squared gradient entries) over the parameters that have gradients."""
    total = 0.0
    for p in parameters:
        if getattr(p, "grad", None) is not None:
            g = p.grad.numpy()
            total += float(np.vdot(g, g))
    return math.sqrt(total)

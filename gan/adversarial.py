"""Adversarial: a discriminator with its objective, penalties and optimizer, as one module.

The generator sees a loss like any other: "make this batch look like the real data".

    adv = gan.Adversarial(D, objective=gan.objectives.NonSaturating(),
                          optimizer=ndl.optim.Adam(D.parameters(), lr=2e-4, beta1=0.5))
    fake = G(z)
    adv.discriminator_step(real, fake)        # detaches fake; D's parameters only
    g_loss = adv.generator_loss(fake)         # composes: g_loss + 10 * l1(...)

Graph hygiene: with the generator known (`Adversarial(..., generator=G)` or `adv.watch(G)`),
the first D step of a run checks that it left no new `.grad` on G's parameters (D's loss must
not reach G's graph), and the first G step (from `generator_loss` to `check_generator_step()`
or the next D step) checks that it did not change D's weights. Either leak raises
GraphHygieneError naming the parameters. `debug=True` checks every step; the checks cost one
copy of D's weights, so the default checks only once.
"""
import math

import numpy as np

from needle import nn

from .errors import DiscriminatorOutputError, GANSetupError, GraphHygieneError
from .penalties import WeightClipping

__all__ = ["Adversarial"]


class _Watched:
    """The generator's named parameters, kept outside the module walk (so Adversarial's
    parameters() and state_dict() stay D's alone)."""

    def __init__(self, generator):
        self.name = type(generator).__name__
        self.named = list(generator.named_parameters())


class Adversarial(nn.Module):
    """Owns D, its objective, its penalties, its optimizer and the critic schedule.

    `n_critic` D steps per G step is the trainer's loop; `weight_clip` (a WeightClipping or
    a float c) clamps D's weights after every step, as the original WGAN does. `generator`
    (or `watch(G)` later) turns on the graph-hygiene checks, once per run or, with
    `debug=True`, at every step (see the module docstring).
    """

    def __init__(self, discriminator, objective, optimizer, penalties=(), n_critic=1,
                 weight_clip=None, generator=None, debug=False):
        super().__init__()
        if int(n_critic) != n_critic or n_critic < 1:
            raise GANSetupError(f"Adversarial: n_critic must be an integer >= 1, got "
                                f"{n_critic}")
        self.discriminator = discriminator
        self.objective = objective
        self.optimizer = optimizer
        self.penalties = list(penalties)
        self.n_critic = int(n_critic)
        if weight_clip is not None and not isinstance(weight_clip, WeightClipping):
            weight_clip = WeightClipping(weight_clip)
        self.weight_clip = weight_clip
        self.debug = bool(debug)
        self._watched = None
        self._pending_d_check, self._pending_g_check = True, True
        self._d_snapshot = None  # D's weights when a checked G step began
        if generator is not None:
            self.watch(generator)

    # ---- graph hygiene ----------------------------------------------------------------
    def watch(self, generator):
        """Know G's parameters, so the D step can check it left none of them a gradient."""
        self._watched = _Watched(generator)
        return self

    def _d_parameters(self):
        return self.discriminator.named_parameters()

    def check_generator_step(self):
        """Raise GraphHygieneError if D's weights changed since the checked generator_loss().

        Call it after G's optimizer step; the next discriminator_step calls it anyway."""
        snapshot, self._d_snapshot = self._d_snapshot, None
        if snapshot is None:
            return
        # equal_nan: weights that a diverged step made NaN are unchanged, not a leak (the
        # NaN loss is the trainer's to report, as divergence)
        changed = [name for (name, p), before in zip(self._d_parameters(), snapshot)
                   if not np.array_equal(p.numpy(), before, equal_nan=True)]
        if changed:
            total = len(snapshot)
            raise GraphHygieneError(
                f"Adversarial: the G step changed D's weights ({len(changed)} of {total} "
                f"parameters of {type(self.discriminator).__name__}: "
                f"{_shown(changed)}) between generator_loss() and the next D step. The G "
                "step must update G only: give G's optimizer G.parameters() alone, and step "
                "D's optimizer only in discriminator_step().")

    def _grads_of_generator(self):
        return [p.grad for _, p in self._watched.named]

    def _check_d_step_leaks(self, before):
        leaked = [name for (name, p), grad in zip(self._watched.named, before)
                  if p.grad is not grad]
        if leaked:
            raise GraphHygieneError(
                f"Adversarial: the D step put gradients on {len(leaked)} of "
                f"{len(before)} parameters of the generator {self._watched.name} "
                f"({_shown(leaked)}): D's loss reached G's graph. Detach generated images "
                "before D's loss (fake.detach()); a penalty or an overridden "
                "discriminator_loss must not use a non-detached G output. D was not "
                "updated.")

    # ---- losses and steps -------------------------------------------------------------
    def score(self, x, cond=None):
        """D's outputs for x (and the condition, for a conditional D).

        Scores must be one per image, (N,) or (N, 1), or a patch map (N, 1, H, W); anything
        else (say (N, 2) class logits) raises DiscriminatorOutputError."""
        scores = self.discriminator(x) if cond is None else self.discriminator(x, cond)
        shape, n = tuple(scores.shape), x.shape[0]
        if not shape or shape[0] != n or (len(shape) > 1 and shape[1] != 1):
            raise DiscriminatorOutputError(
                f"Adversarial: discriminator {type(self.discriminator).__name__} returned "
                f"scores of shape {shape} for a batch of {n}; objective {self.objective!r} "
                f"expects one score per image, shape ({n},) or ({n}, 1), or a patch map "
                f"({n}, 1, H, W). A two-class softmax head? Give D a single output unit.")
        return scores

    def generator_loss(self, fake, cond=None):
        """G's loss for a generated batch: a Tensor that backpropagates into G (and D)."""
        if self.debug or self._pending_g_check:
            self._pending_g_check = False
            self._d_snapshot = [p.numpy().copy() for _, p in self._d_parameters()]
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
        self.check_generator_step()
        check = self._watched is not None and (self.debug or self._pending_d_check)
        before = self._grads_of_generator() if check else None
        loss, real_scores, fake_scores, penalties = self.discriminator_loss(real, fake, cond)
        self.optimizer.reset_grad()
        loss.backward(create_graph=False)
        if check:
            self._pending_d_check = False
            self._check_d_step_leaks(before)
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


def _shown(names, limit=4):
    """The first few names, and how many more."""
    more = f", ... {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more

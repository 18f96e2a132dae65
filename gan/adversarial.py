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

Techniques that live here, because they change what D sees or what G is asked:

  augment=DiffAugment(...) or AdaptiveAugment(...)  (gan.augment) D sees every image, real
      or generated, augmented, in its loss, in G's loss and inside the penalties (whose
      gradients then run through the augmentation, as StyleGAN2-ADA does); an adaptive one
      is shown D's scores on reals after every D step and its p is logged and checkpointed.
  penalties with every=k (gan.penalties): lazy regularisation on every k-th D step.
  feature_matching=w (Salimans et al. 2016, sec. 3.1): G's loss gains
      w * mean_j (E[f_j(x)] - E[f_j(G(z))])^2 over the features f = D.features of a real
      batch and the generated one (the real features are constants to G).
  an objective with pairs_real_and_fake (RpGAN) pairs generated scores with real ones.

Those two need a real batch in G's loss: generator_loss(fake, real=...).
"""
import math

import numpy as np

from needle import nn, ops

from .errors import DiscriminatorOutputError, GANSetupError, GraphHygieneError
from .penalties import WeightClipping

_STEPS_KEY = "schedule.d_steps"

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
                 weight_clip=None, generator=None, debug=False, augment=None,
                 feature_matching=0.0):
        super().__init__()
        if int(n_critic) != n_critic or n_critic < 1:
            raise GANSetupError(f"Adversarial: n_critic must be an integer >= 1, got "
                                f"{n_critic}")
        if feature_matching < 0:
            raise GANSetupError(f"Adversarial: feature_matching must be >= 0, got "
                                f"{feature_matching}")
        if feature_matching and not callable(getattr(discriminator, "features", None)):
            raise GANSetupError(
                f"Adversarial: feature matching compares D's intermediate features, but "
                f"{type(discriminator).__name__} has no callable .features(x)")
        self.augment, self.feature_matching = augment, float(feature_matching)
        self.d_steps = 0  # D steps taken: the lazy penalties' schedule
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

    def seen(self, x):
        """x as D sees it: augmented when the Adversarial has an augmentation."""
        return x if self.augment is None else self.augment(x)

    @property
    def needs_real_in_generator_loss(self):
        return bool(self.objective.pairs_real_and_fake or self.feature_matching)

    def generator_loss(self, fake, cond=None, real=None, balance=None):
        """G's loss for a generated batch: a Tensor that backpropagates into G (and D).

        `real` (a real batch) is needed by a pairing objective and by feature matching.
        `balance` (a callable loss -> loss, e.g. gan.loss_balance.AdaptiveWeight.balance(
        reconstruction, last_layer)) scales the whole adversarial term last."""
        if real is None and self.needs_real_in_generator_loss:
            needs = "RpGAN's pairing" if self.objective.pairs_real_and_fake else \
                "feature matching"
            raise GANSetupError(f"Adversarial.generator_loss: {needs} needs a real batch: "
                                "generator_loss(fake, cond, real=real_images)")
        if self.debug or self._pending_g_check:
            self._pending_g_check = False
            self._d_snapshot = [p.numpy().copy() for _, p in self._d_parameters()]
        fake_seen = self.seen(fake)
        real_seen = None if real is None else self.seen(real.detach())
        real_scores = None
        if self.objective.pairs_real_and_fake:
            real_scores = self.score(real_seen, cond).detach()
        loss = self.objective.generator_loss(self.score(fake_seen, cond), real=real_scores)
        if self.feature_matching:
            loss = loss + self._feature_matching(real_seen, fake_seen) * self.feature_matching
        return loss if balance is None else balance(loss)

    def _feature_matching(self, real, fake):
        """mean_j (E[f_j(real)] - E[f_j(fake)])^2 over D's flattened features."""
        features_real = self.discriminator.features(real).detach()
        features_fake = self.discriminator.features(fake)
        n_real, n_fake = features_real.shape[0], features_fake.shape[0]
        width = math.prod(features_fake.shape[1:])
        gap = (ops.summation(ops.reshape(features_real, (n_real, width)), axes=(0,)) / n_real
               - ops.summation(ops.reshape(features_fake, (n_fake, width)), axes=(0,)) / n_fake)
        return ops.summation(gap * gap) / width

    def discriminator_loss(self, real, fake, cond=None):
        """(D's total loss, D(real), D(fake), {penalty name: value}) with fake detached.

        D(real) and D(fake) are on the images as D sees them (augmented, with augment);
        penalties due at this D step (see gan.penalties' `every`) are included."""
        fake = fake.detach()
        real_scores = self.score(self.seen(real), cond)
        fake_scores = self.score(self.seen(fake), cond)
        loss = self.objective.discriminator_loss(real_scores, fake_scores)
        penalties = {}
        for penalty in self.penalties:
            if hasattr(penalty, "applies_at") and not penalty.applies_at(self.d_steps):
                continue
            value = penalty(lambda x: self.score(self.seen(x), cond), real, fake)
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
        self.d_steps += 1
        figures = {"d_loss": float(loss.numpy()),
                   "d_real": self.objective.report(real_scores),
                   "d_fake": self.objective.report(fake_scores),
                   "d_grad_norm": grad_norm}
        figures.update({f"penalty_{name}": float(value.numpy())
                        for name, value in penalties.items()})
        if hasattr(self.augment, "observe"):  # adaptive augmentation: D's view of reals
            self.augment.observe(real_scores.numpy())
            figures["augment_p"] = float(self.augment.p)
        return figures

    def state_dict(self):
        """D's weights and buffers under "discriminator.", optimizer state under "optimizer.",
        an adaptive augmentation's state under "augment.", and the D-step count."""
        state = {f"discriminator.{k}": v for k, v in self.discriminator.state_dict().items()}
        state.update({f"optimizer.{k}": v for k, v in self.optimizer.state_dict().items()})
        if hasattr(self.augment, "state_dict"):
            state.update({f"augment.{k}": np.asarray(v)
                          for k, v in self.augment.state_dict().items()})
        state[_STEPS_KEY] = np.array(self.d_steps, dtype=np.int64)
        return state

    def load_state_dict(self, state, strict=True):
        """The inverse of state_dict. A state saved before the D-step count was kept loads
        with the count at 0 (it only times lazy penalties)."""
        prefix_d, prefix_o, prefix_a = "discriminator.", "optimizer.", "augment."
        unknown = [k for k in state
                   if not k.startswith((prefix_d, prefix_o, prefix_a)) and k != _STEPS_KEY]
        if unknown and strict:
            raise KeyError(f"Adversarial.load_state_dict: unexpected keys {unknown}")
        self.discriminator.load_state_dict(
            {k[len(prefix_d):]: v for k, v in state.items() if k.startswith(prefix_d)},
            strict=strict)
        self.optimizer.load_state_dict(
            {k[len(prefix_o):]: v for k, v in state.items() if k.startswith(prefix_o)})
        augment_state = {k[len(prefix_a):]: v for k, v in state.items()
                         if k.startswith(prefix_a)}
        if hasattr(self.augment, "load_state_dict"):
            if not augment_state and strict:
                raise KeyError("Adversarial.load_state_dict: the state holds no augment.* "
                               f"keys for {type(self.augment).__name__}")
            if augment_state:
                self.augment.load_state_dict(augment_state)
        elif augment_state and strict:
            raise KeyError("Adversarial.load_state_dict: the state holds augmentation state "
                           "(augment.*) but this Adversarial has no adaptive augmentation")
        self.d_steps = int(np.asarray(state.get(_STEPS_KEY, 0)))

    def __repr__(self):
        extras = "".join(f", {name}={value!r}" for name, value in
                         (("augment", self.augment), ("feature_matching", self.feature_matching))
                         if value)
        return (f"Adversarial({type(self.discriminator).__name__}, {self.objective!r}, "
                f"penalties={self.penalties}, n_critic={self.n_critic}{extras})")


def backward_into(loss, *optimizers):
    """loss.backward() into these optimizers' trainable parameters alone: the walk skips
    every path that reaches none of them, so a G step through D computes no gradient of
    D's weights (its optimizer would reset them before its own step anyway; StudioGAN
    toggles D's requires_grad for the same saving) and leaves D's .grad as it was."""
    params = [p for optimizer in optimizers for p in optimizer.params if p.requires_grad]
    loss.backward(create_graph=False, inputs=params or None)


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

"""Training health: the usual ways a GAN run goes wrong, caught while it runs.

gan.Trainer checks each logged interval (the means over `log_every` steps) and each epoch end
(on by default; `TrainerConfig(health=False)` or the apps' `--no_health` turns it off). Each
warning names the symptom, the figure that shows it and a remedy; it goes into the metrics
record's "warnings" list and, when it first appears, to the console (`tqdm.write`).

    code              fires when (defaults in HealthThresholds)
    d_loss_collapsed  D's loss is within `d_loss_floor` of its minimum (0 for the logit,
                      hinge and least-squares objectives; never for Wasserstein's
                      unbounded loss): D separates real from fake outright
    d_saturated       logit objectives: mean D(x) > `d_real_high` and mean D(G(z)) <
                      `d_fake_low` over the interval
    g_grad_vanished   G's gradient norm (after backward, over all of G's parameters) below
                      `g_grad_low`, or below its early level (the median of the run's first
                      `g_grad_baseline_intervals` intervals) divided by `g_grad_change`
    g_grad_exploded   ... above `g_grad_high`, or above the early level times `g_grad_change`
    mode_collapse     epoch end: the fixed-noise sample grid's diversity is below
                      `diversity_low` times that of as many real images (from step
                      `diversity_warmup_steps` on). Diversity is the mean pairwise L2 distance
                      between the images after standardising each one (minus its mean, over
                      its standard deviation), so faint but varied images do not count as
                      collapsed and near-identical ones do, whatever their contrast
    digits_dropped    epoch end, with an evaluator: `digits_covered` fell by at least
                      `digits_drop` below its best so far in the run

The checks read only the records, so a resumed run (whose history is reloaded) warns exactly
as the uninterrupted run would. Thresholds are figures for the DCGAN family on MNIST-like
data; a model of a very different size may want other gradient-norm bounds.
"""
import dataclasses
from typing import List, Optional

import numpy as np

__all__ = ["HealthThresholds", "HealthWarning", "HealthMonitor", "mean_pairwise_distance",
           "standardize", "SYMPTOMS"]

SYMPTOMS = ("d_loss_collapsed", "d_saturated", "g_grad_vanished", "g_grad_exploded",
            "mode_collapse", "digits_dropped")


@dataclasses.dataclass
class HealthThresholds:
    """Where each health warning fires (see the module docstring)."""

    #: D's loss within this of its minimum (objective.loss_floor) counts as collapsed.
    d_loss_floor: float = 0.01
    #: D saturated: mean D(x) above d_real_high and mean D(G(z)) below d_fake_low.
    d_real_high: float = 0.99
    d_fake_low: float = 0.01
    #: G's gradient norm outside [g_grad_low, g_grad_high], or moved by more than a factor
    #: g_grad_change from its early level (its scale depends on the model and objective: a
    #: 28x28 DCGAN with the non-saturating loss starts at about 0.3 to 10, a WGAN-GP critic's
    #: G at about 0.01).
    g_grad_low: float = 1e-4
    g_grad_high: float = 1e4
    g_grad_change: float = 100.0
    g_grad_baseline_intervals: int = 3
    #: Sample diversity (of the standardised sample grid / of standardised real images)
    #: below this. Healthy DCGAN grids on MNIST measured 0.84 to 1.15 from step 100 on (also
    #: in runs with other symptoms); a G collapsing onto one pattern 0.60, 0.47, 0.40 over
    #: three epochs; identical images measure 0.
    diversity_low: float = 0.5
    #: digits_covered this many below its best so far in the run.
    digits_drop: int = 2
    #: No mode_collapse warning before this step: a BatchNorm generator's eval-mode grid is
    #: near-constant until its running statistics settle (a few hundred steps).
    diversity_warmup_steps: int = 200


@dataclasses.dataclass(frozen=True)
class HealthWarning:
    """One symptom at one step: what, the figure that shows it, and what to try."""

    code: str
    step: int
    symptom: str
    figure: str
    remedy: str

    def __str__(self):
        return f"[{self.code}] step {self.step}: {self.symptom}: {self.figure}. " \
               f"Try: {self.remedy}"


def standardize(images):
    """Each image flattened, minus its mean, over its standard deviation (+ 1e-3, so a
    constant image stays near 0 instead of becoming noise)."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    x = x - x.mean(axis=1, keepdims=True)
    return x / (x.std(axis=1, keepdims=True) + 1e-3)


def mean_pairwise_distance(images):
    """Mean L2 distance over all pairs of distinct images (N >= 2, any shape per image)."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    n = len(x)
    if n < 2:
        raise ValueError(f"mean_pairwise_distance: need at least 2 images, got {n}")
    squared = np.einsum("ij,ij->i", x, x)
    distances = squared[:, None] + squared[None, :] - 2 * (x @ x.T)
    distances = np.sqrt(np.maximum(distances, 0))
    return float(distances.sum() / (n * (n - 1)))


class HealthMonitor:
    """Turns metrics records into HealthWarnings.

    objective: the gan.objectives instance (its `loss_floor` and `outputs_logits` decide which
    checks apply); real_images: a few real images (NCHW) as the diversity reference.
    """

    def __init__(self, thresholds: Optional[HealthThresholds] = None, objective=None,
                 real_images=None):
        self.thresholds = thresholds or HealthThresholds()
        self.loss_floor = getattr(objective, "loss_floor", 0.0)
        self.logits = getattr(objective, "outputs_logits", True)
        self.real_spread = None
        if real_images is not None and len(real_images) >= 2:
            self.real_spread = mean_pairwise_distance(standardize(real_images))
        self._active = set()

    # ---- the checks -------------------------------------------------------------------
    def _g_grad_baseline(self, history):
        """The median G gradient norm of the run's first few logged intervals, or None."""
        early = [r["g_grad_norm"] for r in history if "g_grad_norm" in r]
        count = self.thresholds.g_grad_baseline_intervals
        return float(np.median(early[:count])) if len(early) >= count else None

    def check_interval(self, record, history=()) -> List[HealthWarning]:
        """Warnings for one logged interval: a record of interval means with "step";
        `history` holds the earlier records of the run (for the gradient's early level)."""
        t, step, found = self.thresholds, record.get("step", 0), []
        d_loss = record.get("d_loss")
        if d_loss is not None and self.loss_floor is not None \
                and d_loss - self.loss_floor < t.d_loss_floor:
            found.append(HealthWarning(
                "d_loss_collapsed", step, "D's loss collapsed to its minimum",
                f"d_loss = {d_loss:.3g} (minimum {self.loss_floor:g}, threshold "
                f"{t.d_loss_floor:g} above it)",
                "lower D's learning rate (say to half of G's: --d_lr), add a penalty on D "
                "(R1 or a gradient penalty), or give D fewer channels"))
        d_real, d_fake = record.get("d_real"), record.get("d_fake")
        if self.logits and d_real is not None and d_fake is not None \
                and d_real > t.d_real_high and d_fake < t.d_fake_low:
            found.append(HealthWarning(
                "d_saturated", step, "D(x) - D(G(z)) saturated: D is certain of every image",
                f"D(x) = {d_real:.4f} > {t.d_real_high:g} and D(G(z)) = {d_fake:.4f} < "
                f"{t.d_fake_low:g}",
                "lower D's learning rate (--d_lr), use the non-saturating objective "
                "(its G gradient survives a confident D), or add an R1 penalty"))
        g_norm = record.get("g_grad_norm")
        if g_norm is not None:
            found += self._check_g_grad(g_norm, self._g_grad_baseline(history), step)
        return found

    def _check_g_grad(self, g_norm, baseline, step):
        t = self.thresholds
        low, high = t.g_grad_low, t.g_grad_high
        if baseline is not None:
            low, high = max(low, baseline / t.g_grad_change), min(high, baseline * t.g_grad_change)
        early = "" if baseline is None else f"; early level {baseline:.3g}"
        if g_norm < low:
            return [HealthWarning(
                "g_grad_vanished", step, "G's gradient vanished: G has stopped learning",
                f"g_grad_norm = {g_norm:.3g} < {low:.3g}{early}",
                "use the non-saturating objective instead of minimax, lower D's learning "
                "rate (--d_lr), or train D less often than G")]
        if g_norm > high:
            return [HealthWarning(
                "g_grad_exploded", step, "G's gradient exploded",
                f"g_grad_norm = {g_norm:.3g} > {high:.3g}{early}",
                "lower the learning rates (--g_lr, --d_lr), keep D smooth with a gradient "
                "penalty (WGAN-GP, R1), or resume from the last checkpoint with lower rates")]
        return []

    def sample_diversity(self, samples):
        """Mean pairwise L2 of the standardised `samples` relative to that of the real
        reference (None without one)."""
        if self.real_spread is None or len(samples) < 2 or self.real_spread == 0:
            return None
        return mean_pairwise_distance(standardize(samples)) / self.real_spread

    def check_samples(self, samples, step):
        """(diversity, warnings) for the epoch-end sample grid (NCHW, from fixed noise)."""
        diversity = self.sample_diversity(samples)
        found = []
        if diversity is not None and diversity < self.thresholds.diversity_low \
                and step >= self.thresholds.diversity_warmup_steps:
            found.append(HealthWarning(
                "mode_collapse", step, "the fixed-noise samples are near-identical (mode "
                "collapse)",
                f"sample diversity = {diversity:.3f} of the real images' (mean pairwise L2 "
                f"of the standardised images {diversity * self.real_spread:.3g} vs "
                f"{self.real_spread:.3g}; threshold {self.thresholds.diversity_low:g})",
                "lower G's learning rate, use a penalty on D (R1 or WGAN-GP), or resume "
                "from an earlier checkpoint"))
        return diversity, found

    def check_scores(self, scores, history, step):
        """Warnings for an evaluator's epoch-end scores, given the earlier records."""
        covered = scores.get("digits_covered")
        earlier = [r["digits_covered"] for r in history if "digits_covered" in r]
        if covered is None or not earlier:
            return []
        best = max(earlier)
        if best - covered < self.thresholds.digits_drop:
            return []
        return [HealthWarning(
            "digits_dropped", step, "G stopped making some digits (mode dropping)",
            f"digits_covered = {covered} after a best of {best} in this run (threshold: a "
            f"drop of {self.thresholds.digits_drop})",
            "resume from the checkpoint of the better epoch with lower learning rates, or "
            "use WGAN-GP (python -m apps.train_wgan_gp --data mnist)")]

    # ---- reporting --------------------------------------------------------------------
    def onsets(self, warnings, scope="interval"):
        """The warnings whose symptom was absent at the previous check of this `scope`:
        what the console shows, so a lasting symptom is printed once, not every interval."""
        codes = {w.code for w in warnings}
        previous = {code for s, code in self._active if s == scope}
        self._active = {(s, c) for s, c in self._active if s != scope} | \
            {(scope, c) for c in codes}
        return [w for w in warnings if w.code not in previous]

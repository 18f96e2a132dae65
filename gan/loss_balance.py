"""Adaptive loss weighting: the adversarial term scaled to the reconstruction term by their
gradient norms at the generator's last layer (Esser et al. 2021, taming-transformers'
VQLPIPSWithDiscriminator.calculate_adaptive_weight), with a warm-up.

    lambda = ||d L_rec / d w|| / (||d L_adv / d w|| + 1e-4),  clamped to [0, 1e4], detached
    G's loss = L_rec + base_weight * lambda * L_adv           (L_rec + 0 * L_adv in warm-up)

w is the weight of G's last layer. The ratio makes the adversarial term pull on that layer
as hard as the reconstruction term, times base_weight, whatever the two losses' scales, so
a reconstruction weight (pix2pix's 100) needs no retuning per task; lambda is a constant
to the backward pass, as `.detach()` makes it in taming-transformers. In the first
`warmup_steps` steps there is no adversarial term (their `disc_start`, where the
discriminator's loss is zeroed too): G learns to reconstruct before D's opinion counts.

    weighting = AdaptiveWeight(base_weight=1.0, warmup_steps=500)
    rec = l1(fake, target) * 100
    if weighting.warming_up(step):
        g_loss = rec
    else:
        g_loss = rec + adversarial.generator_loss(
            fake, cond, balance=weighting.balance(rec, G.last_layer.weight))
    weighting.last_weight          # base_weight * lambda of that step, for the logs

The norms cost one extra backward pass per term, pruned to the paths that reach w (for the
adversarial term: through D and G's last layer only).
"""
import math

import numpy as np

import needle as ndl

__all__ = ["AdaptiveWeight"]


def _norm(gradient):
    values = gradient.numpy().astype(np.float64)
    return math.sqrt(float(np.vdot(values, values)))


class AdaptiveWeight:
    """base_weight * lambda (see the module docstring); eps and max_weight are
    taming-transformers' 1e-4 and 1e4. Holds no training state: the warm-up reads the
    step it is given."""

    def __init__(self, base_weight=1.0, warmup_steps=0, eps=1e-4, max_weight=1e4):
        if not (math.isfinite(base_weight) and base_weight >= 0):
            raise ValueError(f"AdaptiveWeight: base_weight must be a finite number >= 0, got "
                             f"{base_weight}")
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(f"AdaptiveWeight: warmup_steps must be an integer >= 0, got "
                             f"{warmup_steps}")
        self.base_weight, self.warmup_steps = float(base_weight), int(warmup_steps)
        self.eps, self.max_weight = float(eps), float(max_weight)
        self.last_weight = None

    def warming_up(self, step):
        """True for the 0-based steps before warmup_steps: no adversarial term yet."""
        return step < self.warmup_steps

    def weight(self, reconstruction, adversarial, last_layer):
        """base_weight * clamp(||grad L_rec|| / (||grad L_adv|| + eps), 0, max_weight), the
        gradients taken with respect to `last_layer` (a Parameter), as a float; also kept
        as `last_weight`."""
        g_rec, g_adv = (ndl.grad(loss, last_layer) for loss in (reconstruction, adversarial))
        ratio = _norm(g_rec) / (_norm(g_adv) + self.eps)
        self.last_weight = self.base_weight * min(max(ratio, 0.0), self.max_weight)
        return self.last_weight

    def balance(self, reconstruction, last_layer):
        """The `balance` of gan.Adversarial.generator_loss: adversarial loss ->
        weight(reconstruction, adversarial, last_layer) * adversarial loss."""
        def scaled(adversarial):
            return adversarial * self.weight(reconstruction, adversarial, last_layer)
        return scaled

    def __repr__(self):
        return (f"AdaptiveWeight(base_weight={self.base_weight}, "
                f"warmup_steps={self.warmup_steps})")

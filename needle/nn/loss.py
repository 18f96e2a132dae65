"""Losses: each maps (prediction, target) to a scalar Tensor (shape ()), the batch mean.

Losses only compute; they never call `backward()`, so they compose: `bce(d_fake, ones) +
10 * l1(x_rec, x)`. Classification losses take logits, never probabilities.
"""
from .. import init, ops
from .module import Module

__all__ = ["SoftmaxLoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss"]


def _check_same_shape(loss, prediction, target):
    if prediction.shape != target.shape:
        raise ValueError(f"{type(loss).__name__}: prediction shape {prediction.shape} and "
                         f"target shape {target.shape} differ")


class SoftmaxLoss(Module):
    """Cross-entropy of logits (B, k) against integer labels y (B,), averaged over B.

    loss = mean_b(logsumexp(logits_b) - logits_b[y_b]); the label logit is picked with
    init.one_hot, as the course does. y may hold floats or integers.
    """

    def forward(self, logits, y):
        batch, classes = logits.shape
        one_hot = init.one_hot(classes, y, device=logits.device, dtype=logits.dtype)
        picked = ops.summation(logits * one_hot, (1,))
        return ops.summation(ops.logsumexp(logits, (1,)) - picked) / batch


class BCEWithLogitsLoss(Module):
    """Binary cross-entropy on logits x against targets y in [0, 1] (same shape), mean.

    -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))] = softplus(x) - y x, and softplus is
    computed stably, so logits of +-1000 give exact, finite losses and gradients.
    """

    def forward(self, logits, target):
        _check_same_shape(self, logits, target)
        return ops.mean(ops.softplus(logits) - target * logits)


class MSELoss(Module):
    """mean((prediction - target)^2)."""

    def forward(self, prediction, target):
        _check_same_shape(self, prediction, target)
        difference = prediction - target
        return ops.mean(difference * difference)


class L1Loss(Module):
    """mean(|prediction - target|); the gradient at 0 is 0."""

    def forward(self, prediction, target):
        _check_same_shape(self, prediction, target)
        return ops.mean(ops.abs(prediction - target))

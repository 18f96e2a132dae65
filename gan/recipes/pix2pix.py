"""The pix2pix recipe (Isola et al. 2017): paired translation G: A -> B against a conditional
PatchGAN, plus L1 to the target.

    D step:  adversarial.discriminator_step(B, G(A), cond=A)     D(A, B) real, D(A, G(A)) fake
    G step:  adversarial.generator_loss(G(A), cond=A) + l1_weight * |B - G(A)|_1    (eq. 4)

with l1_weight = 100, the paper's lambda. The noise is G's dropout (gan.models.unet); there is
no z. `adversarial=None` trains on the L1 term alone (the paper's "L1" row, to show what the
adversarial term adds). `balance` (a gan.loss_balance.AdaptiveWeight) scales the adversarial
term to the L1 term by their gradient norms at G's last layer and leaves it out (D's step
too) for its warm-up steps. The paper halves D's objective; Adam's step does not change when a
loss is scaled (up to its epsilon), so D's loss is the objective's own.

The logged figures: l1 (|B - G(A)|, mean over pixels, on [-1, 1] images), g_loss (G's whole
loss), gan_G (the adversarial term as it enters g_loss), adaptive_weight (base_weight *
lambda, with a balance), g_grad_norm, and D's step's d_loss, d_real, d_fake, d_grad_norm.

The sample picture: rows input | output | target on fixed held-out pairs (one column each), G
in eval mode (dropout off, BatchNorm's running statistics), so sampling draws no random
numbers. `evaluate` (a PairedScores) scores G on the held-out pairs at each epoch end.
"""
import numpy as np

import needle as ndl
from needle import nn

from ..adversarial import _global_norm, backward_into
from ..errors import ImageShapeError
from ..samples import ImageGrid
from .recipe import Recipe, apply_in_chunks

__all__ = ["Pix2PixRecipe", "PairedScores", "translate", "mean_l1", "psnr", "ROWS"]

ROWS = ("input", "output", "target")


class Pix2PixRecipe(Recipe):
    """G (an image-to-image generator) trained on (A, B) batches; see the module docstring.

    test_A, test_B: held-out pairs (NCHW), the first `num_samples` of which are the
    picture's columns; evaluate: a callable(generator) -> {name: float} (e.g. PairedScores),
    run at each epoch end. No health checks: their thresholds are figures for an
    unconditional GAN's D on its own objective.
    """

    def __init__(self, generator, g_optimizer, test_A, test_B, adversarial=None,
                 l1_weight=100.0, balance=None, device=None, num_samples=8, evaluate=None):
        if balance is not None and adversarial is None:
            raise ValueError("Pix2PixRecipe: an adaptive weight balances the adversarial "
                             "term, and there is none (adversarial=None)")
        self.generator, self.g_optimizer, self.adversarial = generator, g_optimizer, adversarial
        self.l1_weight, self.balance, self.evaluator = float(l1_weight), balance, evaluate
        self.device = ndl.default_device() if device is None else device
        count = min(num_samples, len(test_A), len(test_B))
        self.test_A, self.test_B = test_A[:count], test_B[:count]
        self.l1 = nn.L1Loss()
        if adversarial is not None and getattr(adversarial, "_watched", None) is None:
            adversarial.watch(generator)  # the graph-hygiene checks (gan.Adversarial)

    def components(self):
        parts = {"generator": self.generator, "g_optimizer": self.g_optimizer}
        if self.adversarial is not None:
            parts["adversarial"] = self.adversarial
        return parts

    def step(self, batch, step):
        real_A, real_B = (self._tensor(x) for x in batch)
        fake_B = self.generator(real_A)                       # G(A): dropout is the noise
        l1 = self.l1(fake_B, real_B)                          # |B - G(A)|_1, eq. 3
        reconstruction = l1 * self.l1_weight
        figures, g_loss = {"l1": float(l1.numpy())}, reconstruction
        warming_up = self.balance is not None and self.balance.warming_up(step)
        if self.adversarial is not None and not warming_up:
            figures.update(self.adversarial.discriminator_step(real_B, fake_B, real_A))
            balance = None if self.balance is None else self.balance.balance(
                reconstruction, self.generator.last_layer.weight)
            gan = self.adversarial.generator_loss(fake_B, real_A, real=real_B,  # eq. 2
                                                  balance=balance)
            figures["gan_G"] = float(gan.numpy())
            if self.balance is not None:
                figures["adaptive_weight"] = self.balance.last_weight
            g_loss = gan + reconstruction                     # eq. 4
        self.g_optimizer.reset_grad()
        backward_into(g_loss, self.g_optimizer)
        figures["g_loss"] = float(g_loss.numpy())
        figures["g_grad_norm"] = _global_norm(self.g_optimizer.params)
        self.g_optimizer.step()
        if self.adversarial is not None and not warming_up:
            self.adversarial.check_generator_step()
        return figures

    def sample(self):
        outputs = translate(self.generator, self.test_A, self.device)
        rows = [self.test_A, outputs, self.test_B]
        channels = max(row.shape[1] for row in rows)  # a grayscale row beside RGB ones
        rows = [np.repeat(row, channels // row.shape[1], axis=1) for row in rows]
        return ImageGrid(np.concatenate(rows), rows=len(rows), row_labels=list(ROWS))

    def evaluate(self):
        return {} if self.evaluator is None else dict(self.evaluator(self.generator))

    def set_learning_rates(self, d_lr=None, g_lr=None):
        if g_lr is not None:
            self.g_optimizer.lr = g_lr
        if d_lr is not None and self.adversarial is not None:
            self.adversarial.optimizer.lr = d_lr

    def check(self, data):
        """G and D on two held-out pairs (eval mode, no graph, no random draws): shapes that
        do not fit are named here instead of deep inside the first step."""
        a, b = self.test_A[:2], self.test_B[:2]
        made = translate(self.generator, a, self.device)
        if made.shape != b.shape:
            raise ImageShapeError(
                f"Trainer: {type(self.generator).__name__} maps inputs of shape "
                f"{a.shape[1:]} to {made.shape[1:]}, but the targets are {b.shape[1:]}; "
                "build G with the targets' channels")
        if self.adversarial is None:
            return
        D = self.adversarial.discriminator
        training = D.training
        D.eval()
        try:
            with ndl.no_grad():
                self.adversarial.score(self._tensor(b), self._tensor(a))
        except ValueError as error:
            raise ImageShapeError(f"Trainer: discriminator {type(D).__name__} does not take "
                                  f"the pairs ({a.shape[1:]} -> {b.shape[1:]}): {error}") \
                from error
        finally:
            D.train(training)

    def plot_losses(self, history, path, title):
        """D's loss, G's terms, D's outputs (and the adaptive weight) against the step."""
        from ..plots import plot_panels  # matplotlib, Agg backend

        return plot_panels(history, path, title, [
            ("D loss", ("d_loss",)), ("G terms", ("l1", "gan_G", "g_loss")),
            ("D output", ("d_real", "d_fake")), ("adaptive weight", ("adaptive_weight",))])

    def _tensor(self, array):
        return ndl.Tensor(array, device=self.device, requires_grad=False)


def translate(generator, images, device, chunk=100):
    """generator(images) as a NumPy array, `chunk` images at a time, in eval mode without a
    graph (dropout off: no random draws); the generator's mode is restored."""
    return apply_in_chunks(generator, generator, images, device, chunk)


# ---- held-out scores ---------------------------------------------------------------------
def mean_l1(outputs, targets):
    """mean |output - target| over every value (images in [-1, 1]: at most 2)."""
    return float(np.mean(np.abs(np.asarray(outputs, np.float64) - targets)))


def psnr(outputs, targets, floor=1e-10):
    """Peak signal-to-noise ratio in dB, image by image, averaged: 10 log10(1 / MSE) on the
    [0, 1] scale (the images in [-1, 1] halved), the MSE floored at `floor` (100 dB) so an
    exact copy counts as a finite figure."""
    diff = (np.asarray(outputs, np.float64) - np.asarray(targets, np.float64)) / 2
    mse = np.mean(diff.reshape(len(diff), -1) ** 2, axis=1)
    return float(np.mean(10 * np.log10(1 / np.maximum(mse, floor))))


class PairedScores:
    """Scores of G: A -> B on held-out pairs: {"l1", "psnr"} and, with the MNIST classifier
    (gan.metrics.load_classifier) and the digits' `labels`, "label_kept" (the share of
    outputs it labels as the source digit) and "fid" (Frechet distance between its features
    of the outputs and of the targets); "label_kept_target" is the classifier on the
    targets themselves, the ceiling of label_kept."""

    def __init__(self, inputs, targets, device=None, labels=None, classifier=None):
        self.inputs, self.targets, self.labels = inputs, targets, labels
        self.device = ndl.default_device() if device is None else device
        self.classifier = classifier
        if classifier is not None:
            from ..metrics import feature_statistics, predict

            features, probs = predict(classifier, targets)
            self.target_statistics = feature_statistics(features)
            self.target_kept = float((probs.argmax(axis=1) == labels).mean())

    def __call__(self, generator):
        outputs = translate(generator, self.inputs, self.device)
        scores = {"l1": mean_l1(outputs, self.targets), "psnr": psnr(outputs, self.targets)}
        if self.classifier is not None:
            from ..metrics import feature_statistics, frechet_distance, predict

            features, probs = predict(self.classifier, outputs)
            scores["label_kept"] = float((probs.argmax(axis=1) == self.labels).mean())
            scores["label_kept_target"] = self.target_kept
            scores["fid"] = frechet_distance(*self.target_statistics,
                                             *feature_statistics(features))
        return scores

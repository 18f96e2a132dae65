"""The CycleGAN recipe: gan.cyclegan.CycleGAN's step on unpaired batches, with the paper's
learning-rate schedule over the run and a grid of fixed test images in both directions.

Rows of the grid: A, G(A), F(G(A)), B, F(B), G(F(B)) (one column per test image). The logged
figures are CycleGAN.step's (d_A_*, d_B_*, gan_G, gan_F, cycle_*, idt_*, g_loss, d_loss) and
the learning rate each optimizer used in the step (lr_G, lr_F, lr_D_A, lr_D_B).
"""
import numpy as np

import needle as ndl

from ..samples import ImageGrid
from .recipe import Recipe

__all__ = ["CycleGANRecipe", "round_trip", "ROWS"]

ROWS = ("A", "G(A)", "F(G(A))", "B", "F(B)", "G(F(B))")


class CycleGANRecipe(Recipe):
    """`model` (a gan.cyclegan.CycleGAN) trained on (A, B) batches; `test_A`, `test_B`:
    images for the grid (its first `num_samples` of each); `evaluate`: a
    callable(model) -> {name: float} run at each epoch end. No health checks: their
    thresholds are figures for one D on one objective."""

    def __init__(self, model, test_A, test_B, device=None, evaluate=None, num_samples=8):
        self.model, self.evaluator = model, evaluate
        self.device = ndl.default_device() if device is None else device
        count = min(num_samples, len(test_A), len(test_B))
        self.test_A, self.test_B = test_A[:count], test_B[:count]

    def components(self):
        return self.model.components()

    def start(self, total_steps):
        self.model.schedule(total_steps)  # the schedulers exist before a checkpoint loads

    def step(self, batch, step):
        rates = self.model.learning_rates()  # the rates this step uses
        real_A, real_B = (ndl.Tensor(x, device=self.device, requires_grad=False)
                          for x in batch)
        figures = self.model.step(real_A, real_B)
        self.model.schedule_step()
        figures.update(rates)
        return figures

    def sample(self):
        fake_B, rec_A = round_trip(self.model.G, self.model.F, self.test_A, self.device)
        fake_A, rec_B = round_trip(self.model.F, self.model.G, self.test_B, self.device)
        rows = [self.test_A, fake_B, rec_A, self.test_B, fake_A, rec_B]
        return ImageGrid(np.concatenate(rows), rows=len(rows), row_labels=list(ROWS))

    def evaluate(self):
        return {} if self.evaluator is None else dict(self.evaluator(self.model))

    def set_learning_rates(self, d_lr=None, g_lr=None):
        rates = {"G": g_lr, "F": g_lr, "D_A": d_lr, "D_B": d_lr}
        for name, optimizer in self.model.optimizers().items():
            if rates[name] is None:
                continue
            scheduler = self.model.schedulers.get(name)
            if scheduler is None:
                optimizer.lr = rates[name]
            else:
                scheduler.base_lr = rates[name]
                optimizer.lr = scheduler.get_lr()

    def plot_losses(self, history, path, title):
        """D losses, G's loss terms and D's mean outputs against the step, in three panels."""
        from ..plots import plot_panels  # matplotlib, Agg backend

        return plot_panels(history, path, title, [
            ("D loss", ("d_A_loss", "d_B_loss")),
            ("G terms", ("gan_G", "gan_F", "cycle_A", "cycle_B", "idt_G", "idt_F")),
            ("D output", ("d_A_real", "d_A_fake", "d_B_real", "d_B_fake"))])


def round_trip(first, second, images, device, chunk=100):
    """(first(x), second(first(x))) as NumPy arrays, `chunk` images at a time, in eval mode
    without a graph."""
    outputs, returns = [], []
    modes = first.training, second.training
    first.eval()
    second.eval()
    try:
        with ndl.no_grad():
            for start in range(0, len(images), chunk):
                x = ndl.Tensor(images[start:start + chunk], device=device, requires_grad=False)
                y = first(x)
                outputs.append(y.numpy())
                returns.append(second(y).numpy())
    finally:
        first.train(modes[0])
        second.train(modes[1])
    return np.concatenate(outputs), np.concatenate(returns)

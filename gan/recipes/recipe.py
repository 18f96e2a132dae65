"""The Recipe: what gan.Trainer asks of a model. Everything else is the engine's.

A recipe owns its networks, its Adversarial(s) and its optimizers, and answers:

    step(batch, step) -> figures   one training step on a batch (a tuple of NumPy arrays from
                                   the batch source); `step` is its 0-based number in the run
                                   (the n_critic schedule and learning-rate decay read it);
                                   returns {name: float}, the figures worth logging
    sample()                       the picture of the moment: a gan.samples.ImageGrid or
                                   PointCloud, drawn without changing any state or drawing
                                   from NumPy's global RNG (so sampling never moves a run)
    components()                   {name: object with state_dict/load_state_dict}: all the
                                   state a checkpoint must hold to resume bit for bit

and optionally (the defaults below do nothing):

    check(data)                    setup checks before anything is written (named errors)
    start(total_steps)             the run's length is known (before a checkpoint loads)
    evaluate()                     scores at each epoch end, {name: float}
    set_learning_rates(d_lr, g_lr) replace the rates a resume restored (None: keep)
    plot_losses(history, path, title)  the training-curve figure
    objective, health_images       what the health checks (gan.health) read; objective None
                                   turns them off for this recipe

Resume, checkpoints, logging, health, sampling, the report and interrupts live once, in
gan.Trainer; a recipe has no loop of its own.
"""
import numpy as np

import needle as ndl

__all__ = ["Recipe", "apply_in_chunks"]


def apply_in_chunks(modules, call, inputs, device, chunk):
    """call(x) for every `chunk` rows x of the NumPy `inputs` (as Tensors on `device`),
    concatenated as one NumPy array: without a graph and with `modules` (one or a tuple) in
    eval mode, so dropout and BatchNorm draw nothing and change nothing; their modes are
    restored after."""
    modules = modules if isinstance(modules, tuple) else (modules,)
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    outputs = []
    try:
        with ndl.no_grad():
            for start in range(0, len(inputs), chunk):
                x = ndl.Tensor(inputs[start:start + chunk], device=device, requires_grad=False)
                outputs.append(call(x).numpy())
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
    return np.concatenate(outputs)


class Recipe:
    """Base class of the models gan.Trainer runs; see the module docstring."""

    objective = None       # the D objective the health checks read (None: no checks)
    health_images = None   # real images as the sample-diversity reference (NCHW) or None

    def check(self, data):
        pass

    def start(self, total_steps):
        pass

    def step(self, batch, step):
        raise NotImplementedError(f"{type(self).__name__}.step(batch, step)")

    def sample(self):
        raise NotImplementedError(f"{type(self).__name__}.sample()")

    def components(self):
        raise NotImplementedError(f"{type(self).__name__}.components()")

    def evaluate(self):
        return {}

    def set_learning_rates(self, d_lr=None, g_lr=None):
        pass

    def plot_losses(self, history, path, title):
        from ..plots import plot_history

        return plot_history(history, path, title=title)

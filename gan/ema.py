"""EMA: an exponential moving average of the generator's weights, the copy that samples.

Averaging G's iterates over training (Yazici et al. 2019, "The Unusual Effectiveness of
Averaging in GAN Training", ICLR; the generator EMA with decay 0.999 of Karras et al. 2018,
"Progressive Growing of GANs for Improved Quality, Stability, and Variation") damps the oscillation of the adversarial game: the averaged G
makes better samples and scores than the last iterate, at no cost to training, since the
average never feeds back into it. After each G step, for every parameter w of G and its
average w_ema:

    w_ema <- w                                       step <  start_step   (a plain copy)
    w_ema <- decay * w_ema + (1 - decay) * w         step >= start_step

on the parameters' own backend arrays in their own dtype (float32 stays float32: the decay
enters as a Python float, which does not promote). decay = 0.999 averages over about
1 / (1 - decay) = 1000 G steps; start_step skips the first, far-from-converged iterates.

    ema = EMA(G, decay=0.999, start_step=1000)
    ...                            # after each G optimizer step:
    ema.update(step)
    ema.module(z)                  # the averaged G, in eval mode
    ema.state_dict()               # its weights and buffers, G's key names

BatchNorm running statistics (every buffer of G) are *copied, not averaged*: at each update
the average takes G's buffers as they are, as stylegan2-ada-pytorch's training loop does
(`b_ema.copy_(b)`; StudioGAN's BigGAN-derived Ema averages them with the weights instead).
The running statistics are already an average, over batches, of G's activations; averaging
them again with the weights' time constant would smooth them twice, and neither way gives
the statistics of EMA(G)'s own activations (only recomputing them on EMA(G), BigGAN's
"standing statistics", would). A copy keeps the average normalising with the statistics G
trained with, recent and exact, and makes a copy before start_step a complete copy of G.
"""
import copy
import numbers

from needle.autograd import Tensor
from needle.nn import Module, Parameter

__all__ = ["EMA"]


class EMA:
    """The averaged copy of `generator` (see the module docstring for the formula).

    generator: the nn.Module being trained; decay in [0, 1); start_step >= 0: updates with
    step < start_step copy G's weights. make_copy: a callable returning a fresh module of
    G's architecture (default: a deep copy of G sharing its devices, without its gradients);
    pass one for a module holding objects that cannot be deep-copied. The copy starts equal
    to G and never requires a gradient.

    `module` is the averaged G, in eval mode whenever it is read. `state_dict()` /
    `load_state_dict()` hold its parameters and buffers under G's own key names, so a
    checkpoint's "ema." arrays load into a bare G as well, and a resume is bit-exact.
    """

    def __init__(self, generator, decay=0.999, start_step=0, make_copy=None):
        if not isinstance(generator, Module):
            raise TypeError(f"EMA: expected the generator as a needle nn.Module, got "
                            f"{type(generator).__name__}")
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real) \
                or not 0 <= decay < 1:
            raise ValueError(f"EMA: decay must be a number in [0, 1), got {decay!r}")
        if isinstance(start_step, bool) or not isinstance(start_step, numbers.Real) \
                or int(start_step) != start_step or start_step < 0:
            raise ValueError(f"EMA: start_step must be an integer >= 0, got {start_step!r}")
        self.source, self.decay, self.start_step = generator, float(decay), int(start_step)
        self._module = _copy_module(generator) if make_copy is None else make_copy()
        if not isinstance(self._module, Module):
            raise TypeError(f"EMA: make_copy returned {type(self._module).__name__}, not an "
                            "nn.Module")
        self._module.load_state_dict(generator.state_dict())  # checks the architecture
        for parameter in self._module.parameters():
            parameter.requires_grad = False
        self._module.eval()

    @property
    def module(self):
        """The averaged generator, in eval mode (set again on every read)."""
        return self._module.eval()

    def update(self, step):
        """Fold G's current weights into the average after the G step of training step
        `step` (0-based); copy G's buffers."""
        decay = self.decay if step >= self.start_step else 0.0
        for (_, kind, average), (_, _, current) in _pairs(self._module, self.source):
            data = current.realize_cached_data()
            if kind == "parameter" and decay:
                data = average.realize_cached_data() * decay + data * (1.0 - decay)
            # a copy (a buffer, or a weight before start_step) shares G's storage, as
            # detach() does: needle never changes an array in place, every update of G
            # (optimizer, BatchNorm) writes new storage
            average.data = Tensor.make_const(data)  # a dtype change raises TypeError here

    def state_dict(self):
        return self._module.state_dict()

    def load_state_dict(self, state, strict=True):
        return self._module.load_state_dict(state, strict=strict)


def _tensors(module):
    return [entry for entry in module._walk() if entry[1] != "module"]


def _pairs(average, source):
    """(average's entry, G's entry) by dotted name; a mismatch is an error, not a zip."""
    ours, theirs = _tensors(average), _tensors(source)
    if [(n, k) for n, k, _ in ours] != [(n, k) for n, k, _ in theirs]:
        raise ValueError(f"EMA: {type(source).__name__}'s parameters and buffers no longer "
                         "match the averaged copy's (a layer was added or replaced)")
    return zip(ours, theirs)


def _copy_module(generator):
    """A deep copy of `generator`: its parameters and buffers new Tensors with copies of the
    data, its devices shared (a device holds its backend module, which cannot be copied),
    and no gradient or graph carried over."""
    memo = {}
    for _, kind, tensor in _tensors(generator):
        memo[id(tensor.device)] = tensor.device
        new = Parameter if kind == "parameter" else Tensor
        memo[id(tensor)] = new(tensor.numpy(), device=tensor.device, dtype=tensor.dtype,
                               requires_grad=False)
    try:
        clone = copy.deepcopy(generator, memo)
    except (TypeError, copy.Error) as error:
        raise TypeError(f"EMA: cannot copy {type(generator).__name__} ({error}); pass "
                        "make_copy=a callable that builds a fresh one") from error
    return clone

"""Basic initializers (COURSE_API.md section 5): NumPy's global RNG on the host, then moved.

The default device is `default_device()` (the device Tensors default to), so layers built
without a device meet their inputs on the same device.
"""
from ..autograd import Tensor
from ..backend_selection import default_device

__all__ = ["rand", "randn", "normal", "constant", "ones", "zeros", "randb", "one_hot",
           "zeros_like", "ones_like"]


def rand(*shape, low=0.0, high=1.0, device=None, dtype="float32", requires_grad=False):
    """Uniform on [low, high)."""
    device = default_device() if device is None else device
    array = device.rand(*shape, dtype=dtype) * (high - low) + low
    return Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def randn(*shape, mean=0.0, std=1.0, device=None, dtype="float32", requires_grad=False):
    """Gaussian with the given mean and standard deviation."""
    device = default_device() if device is None else device
    array = device.randn(*shape, dtype=dtype) * std + mean
    return Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def normal(*shape, mean=0.0, std=1.0, **kwargs):
    """N(mean, std^2), e.g. the DCGAN paper's N(0, 0.02) weights."""
    return randn(*shape, mean=mean, std=std, **kwargs)


def constant(*shape, c=1.0, device=None, dtype="float32", requires_grad=False):
    device = default_device() if device is None else device
    array = device.full(shape, c, dtype=dtype)
    return Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def ones(*shape, device=None, dtype="float32", requires_grad=False):
    return constant(*shape, c=1.0, device=device, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, device=None, dtype="float32", requires_grad=False):
    return constant(*shape, c=0.0, device=device, dtype=dtype, requires_grad=requires_grad)


def randb(*shape, p=0.5, device=None, dtype="bool", requires_grad=False):
    """Bernoulli(p) mask: rand <= p."""
    device = default_device() if device is None else device
    array = device.rand(*shape) <= p
    return Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def one_hot(n, i, device=None, dtype="float32", requires_grad=False):
    """Rows of the n x n identity picked by the integer labels in Tensor `i`."""
    device = default_device() if device is None else device
    return Tensor(device.one_hot(n, i.numpy().astype("int32"), dtype=dtype), device=device,
                  requires_grad=requires_grad)


def zeros_like(array, *, device=None, requires_grad=False):
    device = array.device if device is None else device
    return zeros(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)


def ones_like(array, *, device=None, requires_grad=False):
    device = array.device if device is None else device
    return ones(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)

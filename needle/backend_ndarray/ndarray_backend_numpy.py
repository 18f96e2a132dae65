"""The flat-memory backend table over NumPy: `cpu_numpy()` and the fallback `cpu()`."""
import numpy as np

from .fused_cpu import make_fused_cpu
from .ndarray_backend_xp import make_backend


def _view(flat, shape, byte_strides, offset):
    # The ndarray constructor is ~8x cheaper than as_strided and still checks bounds.
    return np.ndarray(shape, flat.dtype, flat, offset * flat.itemsize, byte_strides)


def make_numpy_backend(name):
    """The table; its `fused` kernels (fused_cpu) serve cpu_numpy(), whose NDArrays take
    NumPy fast paths (the fallback cpu() takes none)."""
    backend = make_backend(np, name, tile_size=8, pointer=lambda a: a.ctypes.data,
                           to_host=np.asarray, view=_view)
    backend.fused = make_fused_cpu()
    return backend

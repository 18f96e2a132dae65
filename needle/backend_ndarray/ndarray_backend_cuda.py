"""Everything CuPy-specific: the guarded import, device checks and host/device copies.

The kernels themselves are the shared `ndarray_backend_xp` table with `xp = cupy`.
"""
import importlib

from .ndarray_backend_xp import make_backend

INSTALL_HINT = ("install CuPy for your CUDA version (e.g. `pip install cupy-cuda12x`) "
                "on a machine with an NVIDIA GPU")


def load_cupy():
    """Return the cupy module if it imports and sees a GPU, else None."""
    try:
        cupy = importlib.import_module("cupy")
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # ImportError, or CUDA driver errors raised by getDeviceCount
        return None
    return cupy


def make_cuda_backend(cupy):
    return make_backend(cupy, "cuda", tile_size=4, pointer=lambda a: a.data.ptr,
                        to_host=cupy.asnumpy)

"""Everything CuPy-specific: the guarded import, host/device copies, fused kernels.

The kernels themselves are the shared `ndarray_backend_xp` table with `xp = cupy`. On top of
it, `FUSED` lists a few hot elementwise chains as single `cupy.ElementwiseKernel`s (one launch
instead of one per operation). Each has a reference written over `xp`, which runs where CuPy's
kernel compiler is absent (the CI stand-in) and which the GPU suite compares the kernels with.
`NEEDLE_FUSED=0` turns them off.
"""
import importlib
import os
from types import SimpleNamespace

from .ndarray_backend_xp import make_backend

INSTALL_HINT = ("install CuPy for your CUDA version (e.g. `pip install cupy-cuda12x`) "
                "on a machine with an NVIDIA GPU")


def _adam_reference(xp, w, g, m, v, lr, beta1, beta2, eps, correction1, correction2, decay):
    g = g + w * decay
    m = m * beta1 + g * (1 - beta1)
    v = v * beta2 + (g * g) * (1 - beta2)
    return w - (m / correction1) * lr / (xp.sqrt(v / correction2) + eps), m, v


#: name -> (ElementwiseKernel in/out parameters and body, scalar names, xp reference).
#: Array arguments come first, then the scalars in the order named.
FUSED = {
    "leaky_relu": SimpleNamespace(
        params=("T x, T slope", "T y"), body="y = x > 0 ? x : x * slope", scalars=("slope",),
        reference=lambda xp, x, slope: xp.where(x > 0, x, x * slope)),
    "leaky_relu_grad": SimpleNamespace(
        params=("T x, T g, T slope", "T dx"), body="dx = x > 0 ? g : g * slope",
        scalars=("slope",), reference=lambda xp, x, g, slope: xp.where(x > 0, g, g * slope)),
    "adam": SimpleNamespace(
        params=("T w, T g, T m, T v, T lr, T beta1, T beta2, T eps, T correction1, "
                "T correction2, T decay", "T w_new, T m_new, T v_new"),
        body="""T gd = g + w * decay;
                m_new = m * beta1 + gd * (1 - beta1);
                v_new = v * beta2 + (gd * gd) * (1 - beta2);
                w_new = w - (m_new / correction1) * lr / (sqrt(v_new / correction2) + eps);""",
        scalars=("lr", "beta1", "beta2", "eps", "correction1", "correction2", "decay"),
        reference=_adam_reference),
}


def load_cupy():
    """Return the cupy module if it imports and sees a GPU, else None."""
    try:
        cupy = importlib.import_module("cupy")
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # ImportError, or CUDA driver errors raised by getDeviceCount
        return None
    return cupy


def make_fused(cupy, compiled=True):
    """name -> function(*xp arrays, **scalars) returning an xp array or a tuple of them.

    `compiled=False` (or no `cupy.ElementwiseKernel`, as under the stand-in) gives the
    references."""
    table = {}
    for name, spec in FUSED.items():
        if compiled and hasattr(cupy, "ElementwiseKernel"):
            kernel = cupy.ElementwiseKernel(*spec.params, spec.body, "needle_" + name)
            table[name] = (lambda *arrays, _k=kernel, _s=spec, **scalars:
                           _k(*arrays, *(scalars[n] for n in _s.scalars)))
        else:
            table[name] = (lambda *arrays, _s=spec, **scalars:
                           _s.reference(cupy, *arrays, **scalars))
    return table


def make_cuda_backend(cupy, fused=None):
    """The CUDA device's table; `fused` None follows NEEDLE_FUSED (on unless "0")."""
    backend = make_backend(cupy, "cuda", tile_size=4, pointer=lambda a: a.data.ptr,
                           to_host=cupy.asnumpy)
    if fused is None:
        fused = os.environ.get("NEEDLE_FUSED", "1") != "0"
    backend.fused = make_fused(cupy) if fused else {}
    return backend

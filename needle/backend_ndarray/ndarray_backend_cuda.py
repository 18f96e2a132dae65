"""Everything CuPy-specific: the guarded import, host/device copies, fused kernels.

The kernels themselves are the shared `ndarray_backend_xp` table with `xp = cupy`. On top
of it, `FUSED` lists a few hot elementwise chains and conv_transpose's col2im as single
`cupy.ElementwiseKernel`s (one launch instead of one per operation or kernel offset). Each
has a reference written over `xp`, which runs where CuPy's kernel compiler is absent (the CI
stand-in) and which the GPU suite compares the kernels with. `NEEDLE_FUSED=0`, read when the
device is first made, turns them off.
"""
import importlib
import os
from types import SimpleNamespace

from .ndarray_backend_xp import make_backend

INSTALL_HINT = ("install CuPy for your CUDA version (e.g. `pip install cupy-cuda12x`) "
                "on a machine with an NVIDIA GPU")


def _adam_reference(xp, w, g, m, v, lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                    correction1, correction2, decay):
    g = g + w * decay
    m = m * beta1 + g * one_minus_beta1
    v = v * beta2 + (g * g) * one_minus_beta2
    return w - (m / correction1) * lr / (xp.sqrt(v / correction2) + eps), m, v


def _col2im_reference(xp, cols, canvas_shape, origin, out_size, stride, dilation):
    """Scatter-add (N, H, W, KH, KW, C) columns into a zero canvas, one kernel offset at a
    time (conv_transpose's col2im; needle.ops.conv does the same over NDArrays); the
    (OH, OW) window at `origin` of it."""
    _, h, w, kh, kw, _ = cols.shape
    (sh, sw), (dh, dw) = stride, dilation
    canvas = xp.zeros(canvas_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            canvas[:, i * dh:i * dh + (h - 1) * sh + 1:sh,
                   j * dw:j * dw + (w - 1) * sw + 1:sw, :] += cols[:, :, :, i, j, :]
    return _window(canvas, origin, out_size)


def _window(canvas, origin, out_size):
    (y, x), (oh, ow) = origin, out_size
    return canvas[:, y:y + oh, x:x + ow, :]


# One thread per canvas element sums the columns that land on it, in the reference's offset
# order (so both give the same bits): a gather, deterministic, no atomics.
_COL2IM_BODY = """
ptrdiff_t c = i % C, t = i / C;
ptrdiff_t x = t % CW; t /= CW;
ptrdiff_t y = t % CH, n = t / CH;
T acc = 0;
for (int ki = 0; ki < KH; ki++) {
    ptrdiff_t yy = y - ki * DH;
    if (yy < 0 || yy % SH != 0 || yy / SH >= H) continue;
    for (int kj = 0; kj < KW; kj++) {
        ptrdiff_t xx = x - kj * DW;
        if (xx < 0 || xx % SW != 0 || xx / SW >= W) continue;
        acc += cols[((((n * H + yy / SH) * W + xx / SW) * KH + ki) * KW + kj) * C + c];
    }
}
out = acc;
"""


def _build_col2im(cupy, name):
    kernel = cupy.ElementwiseKernel(
        "raw T cols, int32 H, int32 W, int32 KH, int32 KW, int32 C, int32 CH, int32 CW, "
        "int32 SH, int32 SW, int32 DH, int32 DW", "T out", _COL2IM_BODY, "needle_" + name)

    def col2im(cols, canvas_shape, origin, out_size, stride, dilation):
        _, h, w, kh, kw, c = cols.shape
        out = cupy.empty(canvas_shape, dtype=cols.dtype)
        kernel(cupy.ascontiguousarray(cols), h, w, kh, kw, c, canvas_shape[1],
               canvas_shape[2], *stride, *dilation, out)
        return _window(out, origin, out_size)

    return col2im


def _elementwise(params, body, scalars, reference):
    """A fused elementwise chain: arrays first, then the scalars in the order named."""
    def build(cupy, name):
        kernel = cupy.ElementwiseKernel(*params, body, "needle_" + name)
        return lambda *arrays, **values: kernel(*arrays, *(values[n] for n in scalars))

    return SimpleNamespace(build=build, reference=reference, params=params, scalars=scalars)


#: name -> spec: `build(cupy, name)` compiles the kernel into a function of xp arrays and
#: keyword scalars; `reference(xp, ...)` is the same computation over xp arrays.
FUSED = {
    "leaky_relu": _elementwise(
        ("T x, T slope", "T y"), "y = x > 0 ? x : x * slope", ("slope",),
        lambda xp, x, slope: xp.where(x > 0, x, x * slope)),
    "leaky_relu_grad": _elementwise(
        ("T x, T g, T slope", "T dx"), "dx = x > 0 ? g : g * slope", ("slope",),
        lambda xp, x, g, slope: xp.where(x > 0, g, g * slope)),
    # 1 - beta comes in computed in double, as the composite's Python floats are
    "adam": _elementwise(
        ("T w, T g, T m, T v, T lr, T beta1, T beta2, T one_minus_beta1, T one_minus_beta2, "
         "T eps, T correction1, T correction2, T decay", "T w_new, T m_new, T v_new"),
        """T gd = g + w * decay;
           m_new = m * beta1 + gd * one_minus_beta1;
           v_new = v * beta2 + (gd * gd) * one_minus_beta2;
           w_new = w - (m_new / correction1) * lr / (sqrt(v_new / correction2) + eps);""",
        ("lr", "beta1", "beta2", "one_minus_beta1", "one_minus_beta2", "eps", "correction1",
         "correction2", "decay"),
        _adam_reference),
    "col2im": SimpleNamespace(build=_build_col2im, reference=_col2im_reference),
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
            table[name] = spec.build(cupy, name)
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

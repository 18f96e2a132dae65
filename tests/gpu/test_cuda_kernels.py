"""The CUDA device's compiled fused kernels against their xp references, and the on-device
generator, on a real GPU (`pytest -m gpu`; skipped without CuPy or a GPU)."""
import numpy as np
import pytest

import needle as ndl
from needle.backend_ndarray.ndarray_backend_cuda import FUSED, load_cupy, make_fused
from tests.support.fused_calls import count_fused_calls

pytestmark = [pytest.mark.gpu, pytest.mark.nd_only,
              pytest.mark.skipif(not ndl.cuda().enabled(),
                                 reason="needs CuPy and a CUDA GPU")]

SCALARS = {"slope": 0.2, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "one_minus_beta1": 0.5,
           "one_minus_beta2": 1 - 0.999, "eps": 1e-8, "correction1": 0.75,
           "correction2": 0.002, "decay": 0.01}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geometry", [((2, 7, 7, 4, 4, 5), (2, 1), (1, 1)),
                                      ((3, 5, 6, 3, 2, 2), (1, 3), (2, 1)),
                                      ((1, 4, 4, 3, 3, 7), (3, 2), (1, 2))])
def test_compiled_col2im_matches_reference_bit_for_bit(dtype, geometry):
    cupy = load_cupy()
    shape, stride, dilation = geometry
    n, h, w, kh, kw, c = shape
    canvas = (n, (h - 1) * stride[0] + dilation[0] * (kh - 1) + 1,
              (w - 1) * stride[1] + dilation[1] * (kw - 1) + 1, c)
    cols = cupy.asarray(np.random.default_rng(0).standard_normal(shape).astype(dtype))
    cols = cols.transpose(0, 2, 1, 3, 4, 5).copy().transpose(0, 2, 1, 3, 4, 5)  # strided
    for origin, out_size in [((0, 0), canvas[1:3]), ((1, 1), (canvas[1] - 2, canvas[2] - 1))]:
        args = dict(canvas_shape=canvas, origin=origin, out_size=out_size, stride=stride,
                    dilation=dilation)
        compiled = make_fused(cupy)["col2im"](cols, **args)
        reference = make_fused(cupy, compiled=False)["col2im"](cols, **args)
        assert compiled.shape == (n, *out_size, c)
        np.testing.assert_array_equal(cupy.asnumpy(compiled), cupy.asnumpy(reference))


@pytest.mark.parametrize("name", sorted(n for n in FUSED if hasattr(FUSED[n], "scalars")))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_compiled_kernel_matches_reference(name, dtype, layout):
    cupy = load_cupy()
    spec = FUSED[name]
    n_arrays = len(spec.params[0].split(",")) - len(spec.scalars)
    rng = np.random.default_rng(0)
    arrays = [cupy.asarray(rng.standard_normal((33, 70)).astype(dtype)) for _ in range(n_arrays)]
    if name == "adam":
        arrays[3] = abs(arrays[3])  # v, the second moment, is never negative
    if layout == "transposed":
        arrays = [a.T for a in arrays]
    scalars = {key: SCALARS[key] for key in spec.scalars}
    compiled = make_fused(cupy)[name](*arrays, **scalars)
    reference = make_fused(cupy, compiled=False)[name](*arrays, **scalars)
    compiled = compiled if isinstance(compiled, tuple) else (compiled,)
    reference = reference if isinstance(reference, tuple) else (reference,)
    rtol = 1e-6 if dtype == "float32" else 1e-13
    for got, want in zip(compiled, reference):
        assert got.dtype == want.dtype == dtype
        np.testing.assert_allclose(cupy.asnumpy(got), cupy.asnumpy(want), rtol=rtol,
                                   atol=rtol)


def test_training_step_uses_the_kernels_and_matches_cpu():
    device = ndl.cuda()
    results = []
    with count_fused_calls(device) as calls:
        for dev in (ndl.cpu_numpy(), device):
            np.random.seed(0)
            layer = ndl.nn.Sequential(ndl.nn.Linear(5, 7, device=dev), ndl.nn.LeakyReLU(0.2),
                                      ndl.nn.Linear(7, 1, device=dev))
            opt = ndl.optim.Adam(layer.parameters(), lr=0.01)
            x = ndl.Tensor(np.random.randn(16, 5).astype(np.float32), device=dev)
            for _ in range(3):
                opt.reset_grad()
                (layer(x) ** 2).sum().backward(create_graph=False)
                opt.step()
            results.append([p.numpy() for p in layer.parameters()])
    assert all(calls[name] > 0 for name in ("leaky_relu", "leaky_relu_grad", "adam"))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_device_rng_on_the_gpu():
    cupy = load_cupy()
    device = ndl.cuda().use_device_rng()
    try:
        cupy.random.seed(11)
        first = ndl.init.randn(256, 256, device=device).numpy()
        cupy.random.seed(11)
        second = ndl.init.randn(256, 256, device=device).numpy()
    finally:
        device.use_device_rng(False)
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and abs(first.mean()) < 0.02
    assert abs(first.std() - 1) < 0.02

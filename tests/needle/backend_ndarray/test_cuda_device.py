"""The CUDA device's own features under the CuPy stand-in (every CI run): fused kernels are
dispatched and agree with the ops' composites, and the optional on-device generator.

tests/gpu/test_cuda_kernels.py compares the compiled kernels with these references on a GPU.
"""
import numpy as np
import pytest

import needle as ndl
from needle.backend_ndarray import BackendDevice
from needle.backend_ndarray.ndarray_backend_cuda import FUSED, make_cuda_backend
from tests.support.adam_run import train_linear_with_adam
from tests.support.cupy_standin import make_standin
from tests.support.fused_calls import count_fused_calls

pytestmark = pytest.mark.nd_only


def standin_device(fused):
    return BackendDevice("cuda", make_cuda_backend(make_standin(), fused=fused))


def leaky_relu_run(device, x_host, create_graph):
    x = ndl.Tensor(x_host, device=device)
    y = ndl.ops.leaky_relu(x, 0.2)
    y.backward(ndl.Tensor(np.linspace(-1, 1, x_host.size, dtype=np.float32)
                          .reshape(x_host.shape), device=device), create_graph=create_graph)
    return y.numpy(), x.grad.numpy()


@pytest.mark.parametrize("create_graph", [False, True])
def test_fused_leaky_relu_matches_composite(create_graph):
    x_host = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    x_host[0, 0] = 0.0  # the kink takes the slope on both paths
    fused = standin_device(True)
    expected = leaky_relu_run(standin_device(False), x_host, create_graph)
    with count_fused_calls(fused) as calls:
        results = leaky_relu_run(fused, x_host, create_graph)
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
    # the gradient kernel runs only when the gradient need not be differentiable
    assert [calls[name] for name in ("leaky_relu", "leaky_relu_grad", "adam", "col2im")] == \
        [1, 0 if create_graph else 1, 0, 0]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_adam_matches_composite(weight_decay):
    fused = standin_device(True)
    with count_fused_calls(fused) as calls:
        params, state = train_linear_with_adam(fused, weight_decay)
    ref_params, ref_state = train_linear_with_adam(standin_device(False), weight_decay)
    assert calls["adam"] == 3 * 2  # the first step of each parameter is the composite
    for got, want in zip(params, ref_params):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert state.keys() == ref_state.keys()
    for key in ref_state:
        np.testing.assert_allclose(state[key], ref_state[key], rtol=1e-6, atol=1e-9,
                                   err_msg=key)


def test_every_fused_kernel_has_a_build_and_a_reference():
    for name, spec in FUSED.items():
        assert callable(spec.build) and callable(spec.reference), name
        if hasattr(spec, "scalars"):  # elementwise: its scalars end its parameter list
            inputs = [p.split()[-1] for p in spec.params[0].split(",")]
            assert inputs[len(inputs) - len(spec.scalars):] == list(spec.scalars), name


@pytest.mark.parametrize("stride,padding,output_padding,dilation",
                         [(2, 1, 0, 1), (2, 1, 1, 1), (1, 0, 0, 2), (3, 2, 1, 1)])
def test_col2im_kernel_path_matches_the_loop(stride, padding, output_padding, dilation):
    rng = np.random.default_rng(stride * 10 + dilation)
    y_host = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    w_host = rng.standard_normal((4, 4, 2, 3)).astype(np.float32)
    fused = standin_device(True)
    outputs = []
    with count_fused_calls(fused) as calls:
        for device in (fused, standin_device(False)):
            y, w = ndl.Tensor(y_host, device=device), ndl.Tensor(w_host, device=device)
            outputs.append(ndl.conv_transpose(y, w, stride, padding, output_padding,
                                              dilation).numpy())
    assert calls["col2im"] == 1
    np.testing.assert_array_equal(*outputs)


def test_device_rng_draws_on_the_device_and_follows_its_seed():
    device = standin_device(True).use_device_rng()
    device.random.seed(7)
    first = ndl.init.randn(3, 4, device=device)
    device.random.seed(7)
    second = ndl.init.randn(3, 4, device=device)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    assert first.device == device and first.dtype == "float32"
    np.random.seed(7)  # the host stream is untouched by device draws
    host_before = np.random.rand()
    np.random.seed(7)
    ndl.init.rand(1000, device=device)
    assert np.random.rand() == host_before
    uniform = ndl.init.rand(10000, device=device).numpy()
    assert uniform.min() >= 0 and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.02


def test_host_rng_by_default_gives_the_same_values_on_every_device():
    values = []
    for device in (ndl.cpu_numpy(), standin_device(True)):
        np.random.seed(3)
        values.append(ndl.init.randn(5, device=device).numpy())
    np.testing.assert_array_equal(*values)


def test_device_rng_is_one_switch_for_every_array_on_the_device():
    device = standin_device(True).use_device_rng()
    x = ndl.Tensor(np.ones((50, 40), dtype=np.float32), device=device)
    h = x * 2  # op results carry the same device object, so dropout draws on it too
    device.random.seed(1)
    np.random.seed(1)
    host_state = np.random.get_state()[1].copy()
    dropped = ndl.nn.Dropout(0.5)(h).numpy()
    np.testing.assert_array_equal(np.random.get_state()[1], host_state)  # host RNG unused
    assert 0.4 < (dropped == 0).mean() < 0.6
    device.use_device_rng(False)
    assert device.random is None


def test_device_rng_is_refused_off_cuda():
    with pytest.raises(ValueError, match="use_device_rng: only an available cuda"):
        ndl.cpu_numpy().use_device_rng()

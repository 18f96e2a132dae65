"""The CuPy device on a real GPU against the NumPy device: layers, a DCGAN step, checkpoints.

Every device-parameterised test in the suite also runs on `cuda()` when a GPU is present
(tests/conftest.py); this file adds the whole-model checks. Run with `pytest -m gpu`; without
CuPy or a GPU every test here is skipped.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
from benchmarks.dcgan_vs_torch import NeedleDCGAN

pytestmark = [pytest.mark.gpu, pytest.mark.nd_only,
              pytest.mark.skipif(not ndl.cuda().enabled(),
                                 reason="needs CuPy and a CUDA GPU")]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RTOL, ATOL = 2e-4, 2e-5  # float32, different summation orders (cuBLAS vs OpenBLAS)


def on_both(build, inputs):
    """Run `build(device) -> (module, fn)` on cpu_numpy() and cuda() with the same inputs and
    the same parameter draws; return (output, input grads, parameter grads) per device."""
    results = []
    for device in (ndl.cpu_numpy(), ndl.cuda()):
        np.random.seed(0)
        module = build(device)
        tensors = [ndl.Tensor(x, device=device) for x in inputs]
        out = module(*tensors)
        (out * out).sum().backward()
        assert out.device == device
        results.append((out.numpy(), [t.grad.numpy() for t in tensors],
                        [p.grad.numpy() for p in module.parameters()]))
    return results


def assert_same(cpu_result, gpu_result):
    (out_c, grads_c, params_c), (out_g, grads_g, params_g) = cpu_result, gpu_result
    np.testing.assert_allclose(out_g, out_c, rtol=RTOL, atol=ATOL)
    for a, b in zip(grads_g + params_g, grads_c + params_c):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(b).max()))


def images(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (2, 0)])
def test_conv2d_forward_backward(stride, padding):
    build = lambda d: ndl.nn.Conv2d(3, 8, 4, stride=stride, padding=padding, device=d)
    assert_same(*on_both(build, [images((4, 3, 16, 16))]))


@pytest.mark.parametrize("stride,padding,output_padding", [(1, 0, 0), (2, 1, 0), (2, 1, 1)])
def test_conv_transpose2d_forward_backward(stride, padding, output_padding):
    build = lambda d: ndl.nn.ConvTranspose2d(8, 3, 4, stride=stride, padding=padding,
                                             output_padding=output_padding, device=d)
    assert_same(*on_both(build, [images((4, 8, 7, 7))]))


def test_batchnorm2d_forward_backward_and_running_stats():
    results, running = [], []
    for device in (ndl.cpu_numpy(), ndl.cuda()):
        layer = ndl.nn.BatchNorm2d(6, device=device)
        x = ndl.Tensor(images((8, 6, 5, 5)) * 3 + 1, device=device)
        out = layer(x)
        (out * out).sum().backward()
        results.append((out.numpy(), [x.grad.numpy()], [p.grad.numpy()
                                                         for p in layer.parameters()]))
        running.append((layer.running_mean.numpy(), layer.running_var.numpy()))
    assert_same(*results)
    for a, b in zip(*running):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def test_conv_ops_nhwc_match_including_double_backward():
    """ops.conv (the course's NHWC op) and its gradient's gradient, as WGAN-GP uses it."""
    x_host, w_host = images((2, 9, 9, 3)), images((3, 3, 3, 4), seed=2) * 0.2
    penalties = []
    for device in (ndl.cpu_numpy(), ndl.cuda()):
        x = ndl.Tensor(x_host, device=device)
        w = ndl.Tensor(w_host, device=device)
        y = ndl.ops.conv(x, w, stride=2, padding=1)
        (gx,) = ndl.grad([ndl.ops.summation(y * y)], [x], create_graph=True)
        penalty = ndl.ops.summation(gx * gx)
        penalty.backward()
        penalties.append((penalty.numpy(), w.grad.numpy()))
    np.testing.assert_allclose(penalties[1][0], penalties[0][0], rtol=1e-3)
    np.testing.assert_allclose(penalties[1][1], penalties[0][1], rtol=1e-3, atol=1e-3)


def test_dcgan_training_steps_match_numpy_device():
    rng = np.random.default_rng(3)
    batches = [(rng.uniform(-1, 1, (16, 1, 28, 28)).astype(np.float32),
                rng.standard_normal((16, 100)).astype(np.float32)) for _ in range(3)]
    models = []
    for device in (ndl.cpu_numpy(), ndl.cuda()):
        np.random.seed(0)  # the same initial weights
        models.append(NeedleDCGAN(16, device))
    cpu, gpu = models

    def losses(model, real, z):
        figures = model.step(real, z)
        return figures["d_loss"], figures["g_loss"]

    for real, z in batches:
        np.testing.assert_allclose(losses(gpu, real, z), losses(cpu, real, z), rtol=1e-3)
    for name, value in cpu.G.state_dict().items():
        np.testing.assert_allclose(gpu.G.state_dict()[name], value, rtol=1e-3, atol=1e-4,
                                   err_msg=name)


def test_checkpoint_trained_on_gpu_loads_on_cpu(tmp_path):
    """train_dcgan --device cuda writes a checkpoint that the CPU samples identically."""
    from apps.run_models import load_generator, open_run

    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "apps.train_dcgan", "--device", "cuda",
                    "--max_steps", "4", "--limit", "256", "--batch_size", "32",
                    "--checkpoint_every", "4", "--width", "16", "--no_progress",
                    "--out_dir", str(run)], cwd=ROOT, check=True)
    z = images((8, 100), seed=4)
    outputs = []
    for device in (ndl.cpu_numpy(), ndl.cuda()):
        generator = load_generator(open_run(str(run)), device)
        with ndl.no_grad():
            outputs.append(generator(ndl.Tensor(z, device=device)).numpy())
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=RTOL, atol=ATOL)


def test_moving_between_devices_only_through_to():
    x = ndl.Tensor(images((3, 4)), device=ndl.cpu_numpy())
    y = x.to(ndl.cuda())
    assert y.device == ndl.cuda() and x.device == ndl.cpu_numpy()
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    with pytest.raises(Exception, match="cuda.*cpu_numpy|cpu_numpy.*cuda"):
        x + y

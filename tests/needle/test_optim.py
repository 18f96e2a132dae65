"""Optimizers, clip_grad_norm and LR schedules against NumPy formulas written here and torch.

Parameters are plain Tensors with hand-set gradients, so each test checks the update rule
itself, independent of any layer.
"""
import gc

import numpy as np
import pytest

import needle as ndl
from needle import optim

SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 4

CONFIGS = {
    "sgd": (optim.SGD, dict(lr=0.1)),
    "sgd_momentum": (optim.SGD, dict(lr=0.1, momentum=0.9)),
    "sgd_momentum_wd": (optim.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.01)),
    "adam": (optim.Adam, dict(lr=0.01)),
    "adam_wd": (optim.Adam, dict(lr=0.02, beta1=0.5, beta2=0.9, eps=1e-6, weight_decay=0.1)),
    "rmsprop": (optim.RMSprop, dict(lr=0.01)),
    "rmsprop_wd": (optim.RMSprop, dict(lr=0.03, alpha=0.9, eps=1e-6, weight_decay=0.05)),
}


def _draw(seed, dtype="float64"):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return weights, grads


def _params(weights, device):
    return [ndl.Tensor(w, device=device, dtype=w.dtype) for w in weights]


def _set_grads(params, grads, device):
    for p, g in zip(params, grads):
        p.grad = ndl.Tensor(g, device=device, dtype=g.dtype, requires_grad=False)


# ---- references, written from the formulas (COURSE_API.md section 7, PyTorch docs) ----
def _numpy_step(kind, hyper, w, g, state, t):
    hyper = {"momentum": 0.0, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999,
             "eps": 1e-8, "alpha": 0.99, **hyper}
    lr, wd = hyper["lr"], hyper["weight_decay"]
    g = g + wd * w
    if kind == "sgd":
        mom = hyper["momentum"]
        state["u"] = mom * state.get("u", 0.0) + (1 - mom) * g
        return w - lr * state["u"]
    if kind == "adam":
        b1, b2 = hyper["beta1"], hyper["beta2"]
        state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g ** 2
        m_hat, v_hat = state["m"] / (1 - b1 ** t), state["v"] / (1 - b2 ** t)
        return w - lr * m_hat / (np.sqrt(v_hat) + hyper["eps"])
    alpha = hyper["alpha"]
    state["s"] = alpha * state.get("s", 0.0) + (1 - alpha) * g ** 2
    return w - lr * g / (np.sqrt(state["s"]) + hyper["eps"])


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_numpy_formula(name, device):
    cls, hyper = CONFIGS[name]
    weights, grads = _draw(0)
    params = _params(weights, device)
    opt = cls(params, **hyper)
    states = [{} for _ in weights]
    for t, step_grads in enumerate(grads, start=1):
        _set_grads(params, step_grads, device)
        opt.step()
        weights = [_numpy_step(name.split("_")[0], hyper, w, g, s, t)
                   for w, g, s in zip(weights, step_grads, states)]
        for p, w in zip(params, weights):
            np.testing.assert_allclose(p.numpy(), w, rtol=1e-12, atol=1e-14)


def _torch_optimizer(torch, cls, hyper, tensors):
    if cls is optim.SGD:
        momentum = hyper.get("momentum", 0.0)
        opt = torch.optim.SGD(tensors, lr=hyper["lr"], momentum=momentum, dampening=momentum,
                              weight_decay=hyper.get("weight_decay", 0.0))
        if momentum:  # torch starts u at g, the course at 0: seed torch's buffer with zeros
            for x in tensors:
                opt.state[x]["momentum_buffer"] = torch.zeros_like(x)
        return opt
    if cls is optim.Adam:
        return torch.optim.Adam(tensors, lr=hyper["lr"],
                                betas=(hyper.get("beta1", 0.9), hyper.get("beta2", 0.999)),
                                eps=hyper.get("eps", 1e-8),
                                weight_decay=hyper.get("weight_decay", 0.0))
    return torch.optim.RMSprop(tensors, lr=hyper["lr"], alpha=hyper.get("alpha", 0.99),
                               eps=hyper.get("eps", 1e-8),
                               weight_decay=hyper.get("weight_decay", 0.0))


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_torch(name, device):
    torch = pytest.importorskip("torch")
    cls, hyper = CONFIGS[name]
    weights, grads = _draw(1)
    params = _params(weights, device)
    tensors = [torch.tensor(w, requires_grad=True) for w in weights]
    opt, torch_opt = cls(params, **hyper), _torch_optimizer(torch, cls, hyper, tensors)
    for step_grads in grads:
        _set_grads(params, step_grads, device)
        for x, g in zip(tensors, step_grads):
            x.grad = torch.tensor(g)
        opt.step()
        torch_opt.step()
        for p, x in zip(params, tensors):
            np.testing.assert_allclose(p.numpy(), x.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", CONFIGS)
def test_keeps_float32_and_leaves_grad_alone(name, device):
    cls, hyper = CONFIGS[name]
    # NumPy float64 hyperparameters would promote float32 data if they reached the arrays.
    hyper = {k: np.float64(v) for k, v in hyper.items()}
    weights, grads = _draw(2, dtype="float32")
    params = _params(weights, device)
    opt = cls(params, **hyper)
    counters = []
    for step_grads in grads:
        _set_grads(params, step_grads, device)
        held = [(p.grad, p.grad.realize_cached_data()) for p in params]
        opt.step()
        for p, g, (grad, grad_data) in zip(params, step_grads, held):
            assert p.grad is grad and p.grad.realize_cached_data() is grad_data
            np.testing.assert_array_equal(p.grad.numpy(), g)
            assert p.dtype == "float32" and p.numpy().dtype == np.float32
            assert p.op is None and p.device == device
        del held
        gc.collect()  # garbage cycles left by earlier tests would be counted otherwise
        counters.append(ndl.autograd.TENSOR_COUNTER)
    # New grads replace old ones each step; the update itself leaves no Tensor or graph.
    assert len(set(counters)) == 1


def test_skips_params_without_grad_and_reset_grad(device):
    weights, grads = _draw(3)
    params = _params(weights, device)
    opt = optim.Adam(params, lr=0.1)
    params[0].grad = ndl.Tensor(grads[0][0], device=device, dtype="float64")
    opt.step()
    assert opt.t == 1 and params[0] in opt.m and params[1] not in opt.m
    np.testing.assert_array_equal(params[1].numpy(), weights[1])
    assert not np.array_equal(params[0].numpy(), weights[0])
    opt.reset_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_resumes_bit_exactly(name, device, tmp_path):
    cls, hyper = CONFIGS[name]
    weights, grads = _draw(4, dtype="float32")
    params = _params(weights, device)
    opt = cls(params, **hyper)
    for step_grads in grads[:2]:
        _set_grads(params, step_grads, device)
        opt.step()
    ndl.save(opt.state_dict(), tmp_path / "opt.safetensors")
    resumed_params = [ndl.Tensor(p.numpy(), device=device) for p in params]
    resumed = cls(resumed_params)  # default hyperparameters: the checkpoint restores them
    resumed.load_state_dict(ndl.load(tmp_path / "opt.safetensors"))
    for step_grads in grads[2:]:
        for group in (params, resumed_params):
            _set_grads(group, step_grads, device)
        opt.step()
        resumed.step()
        for p, q in zip(params, resumed_params):
            np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_state_dict_layout_and_errors():
    weights, grads = _draw(5, dtype="float32")
    params = _params(weights, None)
    opt = optim.Adam(params, lr=0.5)
    _set_grads(params, grads[0], None)
    opt.step()
    state = opt.state_dict()
    assert state["t"] == 1 and state["lr"] == 0.5
    assert sorted(k for k in state if "." in k) == [
        "m.0", "m.1", "m.2", "step_count.0", "step_count.1", "step_count.2",
        "v.0", "v.1", "v.2"]
    assert all(state[f"step_count.{i}"] == 1 for i in range(3))
    assert state["m.2"].dtype == np.float32 and state["m.2"].shape == SHAPES[2]
    with pytest.raises(ValueError, match="unexpected key 'u.0'"):
        opt.load_state_dict({"u.0": np.zeros(SHAPES[0])})
    with pytest.raises(ValueError, match="unexpected key 'm.7'"):
        opt.load_state_dict({"m.7": np.zeros(SHAPES[0])})
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({"m.0": np.zeros((2, 2))})


def test_clip_grad_norm(device):
    weights, grads = _draw(6)
    params = _params(weights, device)
    _set_grads(params, grads[0], device)
    old = [p.grad for p in params]
    expected = np.sqrt(sum((g ** 2).sum() for g in grads[0]))
    norm = optim.clip_grad_norm(params, max_norm=0.25)
    assert norm == pytest.approx(expected, rel=1e-12)
    scale = 0.25 / (expected + 1e-6)
    for p, g, old_grad in zip(params, grads[0], old):
        np.testing.assert_allclose(p.grad.numpy(), g * scale, rtol=1e-12)
        np.testing.assert_array_equal(old_grad.numpy(), g)  # replaced, not modified
    # Below the limit nothing changes; the method form uses the optimizer's params.
    opt = optim.SGD(params)
    before = [p.grad for p in params]
    assert opt.clip_grad_norm(max_norm=10.0) == pytest.approx(0.25, rel=1e-5)
    assert all(p.grad is g for p, g in zip(params, before))
    assert optim.clip_grad_norm([ndl.Tensor([1.0])]) == 0.0


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    weights, grads = _draw(7)
    params = _params(weights, None)
    _set_grads(params, grads[0], None)
    tensors = [torch.tensor(w, requires_grad=True) for w in weights]
    for x, g in zip(tensors, grads[0]):
        x.grad = torch.tensor(g)
    norm = optim.clip_grad_norm(params, 1.0)
    assert norm == pytest.approx(torch.nn.utils.clip_grad_norm_(tensors, 1.0).item(), rel=1e-12)
    for p, x in zip(params, tensors):
        np.testing.assert_allclose(p.grad.numpy(), x.grad.numpy(), rtol=1e-12)


def test_step_lr():
    opt = optim.SGD([ndl.Tensor([1.0])], lr=0.1)
    scheduler = optim.StepLR(opt, step_size=3, gamma=0.5)
    lrs = [opt.lr]
    for _ in range(9):
        scheduler.step()
        lrs.append(opt.lr)
    np.testing.assert_allclose(lrs, [0.1 * 0.5 ** (e // 3) for e in range(10)], rtol=1e-15)
    torch = pytest.importorskip("torch")
    torch_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    torch_scheduler = torch.optim.lr_scheduler.StepLR(torch_opt, step_size=3, gamma=0.5)
    torch_lrs = [torch_opt.param_groups[0]["lr"]]
    for _ in range(9):
        torch_opt.step()
        torch_scheduler.step()
        torch_lrs.append(torch_opt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, torch_lrs, rtol=1e-12)


def test_linear_decay_and_scheduler_state():
    opt = optim.Adam([ndl.Tensor([1.0])], lr=2e-4)
    scheduler = optim.LinearDecay(opt, start_epoch=3, total_epochs=7)
    lrs = [opt.lr]
    for _ in range(8):
        scheduler.step()
        lrs.append(opt.lr)
    factors = [1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0]
    np.testing.assert_allclose(lrs, [2e-4 * f for f in factors], rtol=1e-15)
    # A fresh optimizer and scheduler resume at the same epoch and learning rate.
    opt2 = optim.Adam([ndl.Tensor([1.0])], lr=2e-4)
    restored = optim.LinearDecay(opt2, start_epoch=3, total_epochs=7)
    state = {k: np.asarray(v) for k, v in optim.LinearDecay(
        optim.Adam([ndl.Tensor([1.0])], lr=2e-4), 3, 7).state_dict().items()}
    state["last_epoch"] = np.asarray(5)
    restored.load_state_dict(state)
    assert restored.last_epoch == 5 and opt2.lr == lrs[5]
    with pytest.raises(ValueError, match="start_epoch"):
        optim.LinearDecay(opt, start_epoch=5, total_epochs=5)
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(opt, step_size=0)

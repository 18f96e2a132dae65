"""Adam counts steps per parameter, as PyTorch's does: a parameter whose first gradient
comes at step 3 gets the bias correction of its own first step. PyTorch is the oracle."""
import numpy as np
import pytest

import needle as ndl

torch = pytest.importorskip("torch")


def _late_parameter_run(device, steps=5, first_step_of_b=2, weight_decay=0.0):
    rng = np.random.RandomState(0)
    w_a, w_b = rng.randn(3).astype(np.float32), rng.randn(2, 2).astype(np.float32)
    a, b = (ndl.nn.Parameter(ndl.Tensor(w, device=device)) for w in (w_a, w_b))
    ta, tb = (torch.tensor(w, requires_grad=True) for w in (w_a, w_b))
    opt = ndl.optim.Adam([a, b], lr=0.05, beta1=0.8, beta2=0.95, weight_decay=weight_decay)
    topt = torch.optim.Adam([ta, tb], lr=0.05, betas=(0.8, 0.95), weight_decay=weight_decay)
    for step in range(steps):
        opt.reset_grad()
        topt.zero_grad()
        loss, t_loss = (a * a * a).sum(), (ta ** 3).sum()
        if step >= first_step_of_b:
            loss, t_loss = loss + (b * b).sum(), t_loss + (tb ** 2).sum()
        loss.backward()
        t_loss.backward()
        opt.step()
        topt.step()
    return opt, (a, b), (ta, tb)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_a_late_parameter_gets_its_own_bias_correction(device, weight_decay):
    opt, params, t_params = _late_parameter_run(device, weight_decay=weight_decay)
    for p, tp in zip(params, t_params):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert opt.t == 5  # step() calls, as the course counts them
    state = opt.state_dict()
    assert (state["step_count.0"], state["step_count.1"]) == (5, 3)


def test_per_parameter_counts_survive_a_resume(device):
    opt, params, _ = _late_parameter_run(device, steps=3)
    resumed = ndl.optim.Adam(params, lr=0.05, beta1=0.8, beta2=0.95)
    resumed.load_state_dict(opt.state_dict())
    assert resumed.step_count == opt.step_count


def test_state_saved_before_per_parameter_counts_resumes_with_the_shared_count():
    p = ndl.nn.Parameter(ndl.Tensor([1.0, 2.0]))
    opt = ndl.optim.Adam([p], lr=0.1)
    p.grad = ndl.Tensor([0.5, -0.5])
    opt.step()
    opt.step()
    old_state = {k: v for k, v in opt.state_dict().items() if not k.startswith("step_count")}
    resumed = ndl.optim.Adam([p], lr=0.1)
    resumed.load_state_dict(old_state)
    assert resumed.step_count[p] == 2

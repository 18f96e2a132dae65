"""Module machinery: the parameter walk, train/eval, state dicts."""
import numpy as np
import pytest

import needle as ndl
from needle import init, nn


class Leaf(nn.Module):
    def __init__(self, dim, device=None):
        super().__init__()
        self.w = nn.Parameter(init.ones(dim, device=device))
        self.not_a_parameter = init.zeros(dim, device=device)

    def forward(self, x):
        return x * ndl.broadcast_to(self.w, x.shape)


class Tree(nn.Module):
    """Modules and parameters inside a dict, a list and a tuple, in a known order."""

    def __init__(self):
        super().__init__()
        self.first = nn.Parameter(init.zeros(1))
        self.by_name = {"a": Leaf(2), "b": [Leaf(3), nn.Parameter(init.zeros(4))]}
        self.stack = [Leaf(5), (Leaf(6), nn.BatchNorm1d(7))]
        self.last = nn.Parameter(init.zeros(8))


def test_parameter_is_a_trainable_tensor():
    p = nn.Parameter(init.ones(3))
    assert isinstance(p, ndl.Tensor)
    assert p.requires_grad


def test_parameters_walk_containers_in_insertion_order():
    tree = Tree()
    names = [name for name, _ in tree.named_parameters()]
    assert names == ["first", "by_name.a.w", "by_name.b.0.w", "by_name.b.1", "stack.0.w",
                     "stack.1.0.w", "stack.1.1.weight", "stack.1.1.bias", "last"]
    assert [p.shape for p in tree.parameters()] == [
        (1,), (2,), (3,), (4,), (5,), (6,), (7,), (7,), (8,)]
    assert all(type(p) is nn.Parameter for p in tree.parameters())


def test_plain_tensors_and_buffers_are_not_parameters():
    bn = nn.BatchNorm1d(4)
    assert [id(p) for p in bn.parameters()] == [id(bn.weight), id(bn.bias)]
    assert Leaf(3).parameters()[0].shape == (3,)
    assert len(Leaf(3).parameters()) == 1


def test_shared_parameters_and_modules_are_listed_once():
    leaf = Leaf(3)
    model = nn.Sequential(leaf, leaf, nn.Residual(leaf))
    assert len(model.parameters()) == 1
    assert model.named_parameters()[0][0] == "modules.0.w"
    assert model._children() == [leaf, model.modules[2]]


def test_children_are_all_descendants():
    tree = Tree()
    kinds = [type(m).__name__ for m in tree._children()]
    assert kinds == ["Leaf", "Leaf", "Leaf", "Leaf", "BatchNorm1d"]


def test_train_and_eval_recurse_through_dicts_and_lists():
    tree = Tree()
    assert tree.training and all(m.training for m in tree._children())
    assert tree.eval() is tree
    assert not tree.training and not any(m.training for m in tree._children())
    tree.train()
    assert tree.training and all(m.training for m in tree._children())


def test_call_forwards_arguments_to_forward():
    class Add(nn.Module):
        def forward(self, a, b=0):
            return a + b

    assert Add()(1, b=2) == 3
    with pytest.raises(NotImplementedError, match="Module does not define forward"):
        nn.Module()(1)


# ---- state dicts ------------------------------------------------------------------------
def _model(seed, device=None):
    np.random.seed(seed)
    return nn.Sequential(nn.Linear(3, 4, device=device), nn.BatchNorm1d(4, device=device),
                         nn.ReLU(), nn.Linear(4, 2, device=device))


def test_state_dict_holds_numpy_copies_of_parameters_and_buffers(device):
    model = _model(0, device)
    state = model.state_dict()
    assert list(state) == ["modules.0.weight", "modules.0.bias", "modules.1.weight",
                           "modules.1.bias", "modules.1.running_mean", "modules.1.running_var",
                           "modules.3.weight", "modules.3.bias"]
    assert all(isinstance(v, np.ndarray) for v in state.values())
    np.testing.assert_array_equal(state["modules.1.running_var"], np.ones(4))
    state["modules.0.weight"][...] = 7
    assert not np.any(model.modules[0].weight.numpy() == 7)


def test_buffer_stays_registered_when_reassigned():
    bn = nn.BatchNorm1d(2)
    bn.running_mean = ndl.Tensor(np.array([1.0, 2.0], dtype="float32"))
    np.testing.assert_array_equal(bn.state_dict()["running_mean"], [1.0, 2.0])


def test_state_dict_round_trip_loads_in_place(device):
    source, target = _model(0, device), _model(1, device)
    x = ndl.Tensor(np.random.randn(5, 3), device=device, dtype="float32")
    source(x)  # moves the running statistics away from their initial values
    source.eval(), target.eval()
    params_before = [id(p) for p in target.parameters()]
    result = target.load_state_dict(source.state_dict())
    assert result == nn.LoadResult([], [])
    assert [id(p) for p in target.parameters()] == params_before
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(source(x).numpy(), target(x).numpy())
    assert all(p.op is None and p.requires_grad for p in target.parameters())


def test_load_converts_to_the_parameter_dtype():
    model = _model(0)
    state = {k: v.astype("float64") for k, v in model.state_dict().items()}
    state["modules.0.bias"] = ndl.Tensor(np.full((1, 4), 0.5))
    model.load_state_dict(state)
    assert all(v.dtype == np.float32 for v in model.state_dict().values())
    assert str(model.modules[0].bias.dtype) == "float32"
    np.testing.assert_array_equal(model.modules[0].bias.numpy(), np.full((1, 4), 0.5))


def test_load_reports_missing_keys():
    model, state = _model(0), _model(1).state_dict()
    del state["modules.1.running_var"]
    with pytest.raises(ValueError, match=r"missing keys: \['modules.1.running_var'\]"):
        model.load_state_dict(state)


def test_load_reports_unexpected_keys():
    model, state = _model(0), _model(1).state_dict()
    state["extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected keys: \['extra.weight'\]"):
        model.load_state_dict(state)


def test_load_reports_shape_mismatch_and_changes_nothing():
    model, state = _model(0), _model(1).state_dict()
    state["modules.0.weight"] = np.zeros((4, 3))
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"shape mismatch for 'modules.0.weight': "
                                         r"expected \(3, 4\), got \(4, 3\)"):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_load_non_strict_skips_and_returns_the_differences():
    model, state = _model(0), _model(1).state_dict()
    del state["modules.3.bias"]
    state["extra"] = np.zeros(1)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["modules.3.bias"]
    assert result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(model.modules[0].weight.numpy(), state["modules.0.weight"])
    with pytest.raises(ValueError, match="shape mismatch"):
        model.load_state_dict({"modules.3.bias": np.zeros(2)}, strict=False)

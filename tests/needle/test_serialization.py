"""needle.save / needle.load: round trips, atomic writes, and damaged files."""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle.serialization import CheckpointError, load_metadata


def _state():
    rng = np.random.RandomState(0)
    return {
        "w32": rng.randn(3, 4).astype(np.float32),
        "w64": rng.randn(5).astype(np.float64),
        "labels": np.arange(6, dtype=np.uint8).reshape(2, 3),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "lr": 2e-4,   # numbers become 0-d arrays
        "t": 7,
    }


def _assert_same(loaded, state):
    assert set(loaded) == set(state)
    for key, value in state.items():
        value = np.asarray(value)
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded[key], value)


def test_round_trip_numpy(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    ndl.save(_state(), path, metadata={"epoch": "3"})
    _assert_same(ndl.load(path), _state())
    assert load_metadata(path) == {"epoch": "3"}
    assert ndl.load(str(path))["lr"].item() == 2e-4  # float64: bit-exact


def test_round_trip_tensors(tmp_path, device):
    path = tmp_path / "ckpt.safetensors"
    w32 = ndl.Tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), device=device)
    w64 = ndl.Tensor(np.linspace(0, 1, 5), device=device)
    ndl.save({"w32": w32, "w64": w64}, path)
    loaded = ndl.load(path, device=device)
    for key, tensor in (("w32", w32), ("w64", w64)):
        assert isinstance(loaded[key], ndl.Tensor) and loaded[key].device == device
        assert loaded[key].dtype == tensor.dtype and not loaded[key].requires_grad
        np.testing.assert_array_equal(loaded[key].numpy(), tensor.numpy())


def test_bad_arguments(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    with pytest.raises(TypeError, match="'bad'"):
        ndl.save({"bad": "text"}, path)
    with pytest.raises(TypeError, match="metadata"):
        ndl.save({"w": np.zeros(2)}, path, metadata={"epoch": 3})
    with pytest.raises(ValueError, match="reserved"):
        ndl.save({"w": np.zeros(2)}, path, metadata={"needle.sha256": "x"})
    with pytest.raises(FileNotFoundError):
        ndl.load(tmp_path / "missing.safetensors")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_keeps_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "ckpt.safetensors"
    ndl.save({"w": np.ones(3)}, path)

    def fail(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="simulated"):
        ndl.save({"w": np.zeros(1000)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]  # no temp file left behind
    np.testing.assert_array_equal(ndl.load(path)["w"], np.ones(3))


def test_new_file_mode_follows_umask(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    umask = os.umask(0o022)
    try:
        ndl.save({"w": np.ones(1)}, tmp_path / "ckpt.safetensors")
    finally:
        os.umask(umask)
    assert (tmp_path / "ckpt.safetensors").stat().st_mode & 0o777 == 0o644


def test_files_from_other_tools_need_verify_false(tmp_path):
    import safetensors.numpy
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(safetensors.numpy.save({"w": np.arange(3.0)}))
    with pytest.raises(CheckpointError, match="verify=False"):
        ndl.load(path)
    np.testing.assert_array_equal(ndl.load(path, verify=False)["w"], np.arange(3.0))


def test_same_state_gives_the_same_bytes(tmp_path):
    """The writer's metadata order comes from a hash map; needle sorts the header, so a
    checkpoint's SHA-256 identifies its contents (run manifests rely on it)."""
    metadata = {"b": "2", "a": "1", "c": "3", "gan.trainer": "{}"}
    blobs = set()
    for i in range(8):
        path = tmp_path / f"{i}.safetensors"
        ndl.save(_state(), path, metadata=dict(metadata))
        blobs.add(path.read_bytes())
        assert load_metadata(path) == metadata
        _assert_same(ndl.load(path), _state())
    assert len(blobs) == 1


def _saved_bytes(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    ndl.save(_state(), path, metadata={"epoch": "3"})
    return path, path.read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:len(raw) // 2], "truncated"),
    (lambda raw: raw[:5], "too short"),
    (lambda raw: b"", "too short"),
    (lambda raw: b"not a checkpoint at all, just some text\n", "header claims"),
    (lambda raw: raw[:8] + b"[" + raw[9:], "not valid JSON"),
    (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "SHA-256"),
    (lambda raw: raw + b"\x00", "not a valid safetensors file"),
])
def test_damaged_files_raise_checkpoint_error(tmp_path, damage, message):
    path, raw = _saved_bytes(tmp_path)
    path.write_bytes(damage(raw))
    with pytest.raises(CheckpointError, match=message) as info:
        ndl.load(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return _saved_bytes(tmp_path_factory.mktemp("fuzz"))


@settings(max_examples=200, deadline=None)
@given(mutations=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)),
                          min_size=1, max_size=4),
       cut=st.none() | st.integers(0, 10 ** 6))
def test_fuzzed_files_load_intact_or_raise_checkpoint_error(saved, mutations, cut):
    path, original = saved
    raw = bytearray(original)
    for position, value in mutations:
        raw[position % len(raw)] = value
    if cut is not None:
        raw = raw[:cut % (len(raw) + 1)]
    fuzz_path = path.with_name("fuzzed.safetensors")
    fuzz_path.write_bytes(bytes(raw))
    try:
        loaded = ndl.load(fuzz_path)
    except CheckpointError:
        return
    _assert_same(loaded, _state())  # whatever loads is exactly what was saved

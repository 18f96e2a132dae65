"""CIFAR10Dataset (restricted unpickling) and the PTB helpers, on data generated here.

CIFAR batches are written the way the originals are: a pickle (protocol 2) of a dict with
bytes keys, b"data" uint8 (N, 3072) and b"labels" a list. One test also assembles, opcode by
opcode, the Python 2 form the real files have (str keys, numpy.core.multiarray globals).
"""
import os
import pickle
import struct

import numpy as np
import pytest

import needle as ndl
from needle import data
from needle.backend_ndarray import NDArray


# ---- CIFAR-10 -----------------------------------------------------------------------------
def _batch(count, seed):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"generated batch",
            b"labels": [int(v) for v in rng.integers(0, 10, size=count)],
            b"data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
            b"filenames": [b"img_%d.png" % i for i in range(count)]}


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar-10-batches-py")
    batches = {f"data_batch_{i}": _batch(4, seed=i) for i in range(1, 6)}
    batches["test_batch"] = _batch(3, seed=10)
    for name, batch in batches.items():
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder, batches


def test_cifar_train_and_test_sets(cifar_dir):
    folder, batches = cifar_dir
    train = data.CIFAR10Dataset(str(folder), train=True)
    test = data.CIFAR10Dataset(str(folder), train=False)
    assert len(train) == 20 and len(test) == 3
    raw = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    for i in (0, 7, 19):
        X, y = train[i]
        assert isinstance(X, np.ndarray) and X.shape == (3, 32, 32) and X.dtype == np.float32
        # Rows hold the R, G, B planes in turn, each 32 x 32 row-major.
        np.testing.assert_allclose(X, raw[i].reshape(3, 32, 32) / 255.0, rtol=1e-6)
        assert y == labels[i]
    assert 0.0 <= train.X.min() and train.X.max() <= 1.0 and train.X.shape == (20, 3, 32, 32)
    X, y = test[0:3]
    assert X.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(y, batches["test_batch"][b"labels"])


def test_cifar_dataloader_batches(cifar_dir, device):
    train = data.CIFAR10Dataset(str(cifar_dir[0]), train=True)
    X, y = next(iter(data.DataLoader(train, 8, device=device)))
    assert isinstance(X, ndl.Tensor) and X.shape == (8, 3, 32, 32) and X.dtype == "float32"
    assert isinstance(X.cached_data, NDArray) and X.device == device
    np.testing.assert_array_equal(y.numpy(), train.y[:8])
    np.testing.assert_allclose(X.numpy(), train[0:8][0])


def test_cifar_transforms_see_height_width_channels(cifar_dir):
    folder = str(cifar_dir[0])
    plain = data.CIFAR10Dataset(folder, train=False)
    flipped = data.CIFAR10Dataset(folder, train=False,
                                  transforms=[data.RandomFlipHorizontal(p=1.0)])
    np.testing.assert_array_equal(flipped[1][0], plain[1][0][:, :, ::-1])  # width flipped
    np.testing.assert_array_equal(flipped[0:2][0], plain[0:2][0][..., ::-1])


def test_forbidden_global_raises_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar"
    folder.mkdir()
    batch = _batch(2, seed=0)
    batch[b"labels"] = Exploit()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(data.UnsafePickleError, match="system"):
        data.CIFAR10Dataset(str(folder), train=False)
    assert not marker.exists()
    assert issubclass(data.UnsafePickleError, pickle.UnpicklingError)


@pytest.mark.parametrize("payload", [
    pickle.dumps(eval, protocol=2),                       # builtins.eval
    b"\x80\x02cbuiltins\ngetattr\n.",
    b"\x80\x02c_codecs\nencode\nX\x04\x00\x00\x00abcdX\x05\x00\x00\x00rot13\x86R.",
])
def test_restricted_unpickler_refuses_other_globals(tmp_path, payload):
    import io
    with pytest.raises(data.UnsafePickleError):
        data.RestrictedUnpickler(io.BytesIO(payload), encoding="bytes").load()


def _py2_cifar_pickle(images, labels):
    """The bytes Python 2's cPickle writes (protocol 2) for a CIFAR batch dict."""
    def short(s):  # SHORT_BINSTRING: a Python 2 str, read as bytes with encoding="bytes"
        return b"U" + bytes([len(s)]) + s

    raw = images.tobytes()
    dtype = (b"cnumpy\ndtype\n" + short(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + short(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
             + b"K\x00\x85" + short(b"b") + b"\x87R"
             + b"(K\x01" + b"M" + struct.pack("<H", images.shape[0]) + b"M"
             + struct.pack("<H", images.shape[1]) + b"\x86" + dtype + b"\x89"
             + b"T" + struct.pack("<I", len(raw)) + raw + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return (b"\x80\x02}(" + short(b"data") + array + short(b"labels") + label_list
            + short(b"batch_label") + short(b"testing batch 1 of 1") + b"u.")


def test_python2_format_with_numpy_core_names_loads(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, size=(2, 3072), dtype=np.uint8)
    folder = tmp_path / "cifar"
    folder.mkdir()
    (folder / "test_batch").write_bytes(_py2_cifar_pickle(images, [3, 8]))
    dataset = data.CIFAR10Dataset(str(folder), train=False)  # warnings are errors here
    assert len(dataset) == 2 and dataset[1][1] == 8
    np.testing.assert_allclose(dataset[0][0], images[0].reshape(3, 32, 32) / 255.0, rtol=1e-6)


# ---- PTB ------------------------------------------------------------------------------------
@pytest.fixture
def ptb_dir(tmp_path):
    (tmp_path / "train.txt").write_text(" the cat sat \n the dog sat down \n a cat \n")
    (tmp_path / "test.txt").write_text(" a dog ran \n the end \n")
    return tmp_path


def test_dictionary():
    d = data.Dictionary()
    assert [d.add_word(w) for w in ["x", "y", "x", "z"]] == [0, 1, 0, 2]
    assert len(d) == 3 and d.idx2word == ["x", "y", "z"] and d.word2idx["z"] == 2


def test_corpus_ids_by_hand(ptb_dir):
    corpus = data.Corpus(str(ptb_dir))
    # the=0 cat=1 sat=2 <eos>=3 dog=4 down=5 a=6; then test: ran=7 end=8
    assert corpus.train == [0, 1, 2, 3, 0, 4, 2, 5, 3, 6, 1, 3]
    assert corpus.test == [6, 4, 7, 3, 0, 8, 3]
    assert len(corpus.dictionary) == 9
    assert corpus.dictionary.idx2word[3] == "<eos>"
    capped = data.Corpus(str(ptb_dir), max_lines=1)
    assert capped.train == [0, 1, 2, 3] and capped.test == [4, 5, 6, 3]
    assert len(capped.dictionary) == 7


def test_batchify_is_column_major():
    batches = data.batchify(list(range(26)), batch_size=4, device=ndl.cpu(), dtype="float32")
    assert isinstance(batches, np.ndarray) and batches.shape == (6, 4)
    assert batches.dtype == np.float32
    np.testing.assert_array_equal(batches[:, 0], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(batches[:, 3], [18, 19, 20, 21, 22, 23])  # 24, 25 dropped
    np.testing.assert_array_equal(batches[2], [2, 8, 14, 20])


def test_get_batch_windows_and_targets(device):
    batches = data.batchify(list(range(26)), batch_size=4, device=device, dtype="float32")
    X, y = data.get_batch(batches, 1, bptt=2, device=device)
    assert X.shape == (2, 4) and y.shape == (8,)
    np.testing.assert_array_equal(X.numpy(), [[1, 7, 13, 19], [2, 8, 14, 20]])
    np.testing.assert_array_equal(y.numpy(), [2, 8, 14, 20, 3, 9, 15, 21])
    assert isinstance(X.cached_data, NDArray) and isinstance(y.cached_data, NDArray)
    assert X.dtype == "float32" and y.dtype == "float32" and X.device == device
    assert not X.requires_grad
    # Near the end the window shrinks so every input has a target.
    X, y = data.get_batch(batches, 4, bptt=3, device=device)
    assert X.shape == (1, 4)
    np.testing.assert_array_equal(y.numpy(), [5, 11, 17, 23])
    with pytest.raises(ValueError, match="get_batch"):
        data.get_batch(batches, 5, bptt=3, device=device)

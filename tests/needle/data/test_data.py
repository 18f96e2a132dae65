"""DataLoader order, transforms against NumPy done by hand, and MNIST (real and damaged)."""
import copy
import gzip
import hashlib

import numpy as np
import pytest

import needle as ndl
from needle import data
from needle.backend_ndarray import NDArray


class CountingDataset(data.NDArrayDataset):
    """Counts __getitem__ calls, to see that a batch is one fancy-index call."""

    calls = 0

    def __getitem__(self, index):
        self.calls += 1
        return super().__getitem__(index)


class ItemDataset(data.Dataset):
    """A generic dataset: one item per call, no batch indexing."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((2,), i, dtype=np.float64), np.int64(i)


def _ids(loader):
    return [batch[0].numpy().astype(int).tolist() for batch in loader]


# ---- DataLoader ---------------------------------------------------------------------------
def test_unshuffled_batches_are_contiguous_ranges():
    loader = data.DataLoader(data.NDArrayDataset(np.arange(10)), 4)
    assert _ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(loader) == 3
    dropping = data.DataLoader(data.NDArrayDataset(np.arange(10)), 4, drop_last=True)
    assert _ids(dropping) == [[0, 1, 2, 3], [4, 5, 6, 7]] and len(dropping) == 2
    assert _ids(data.DataLoader(data.NDArrayDataset(np.arange(8)), 4, drop_last=True)) == \
        [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_shuffle_draws_the_course_permutation_at_iteration_start():
    loader = data.DataLoader(data.NDArrayDataset(np.arange(100)), batch_size=10, shuffle=True)
    np.random.seed(0)
    batches = iter(loader)
    np.random.seed(123)  # drawn already at iter(): reseeding now must not matter
    assert _ids([next(batches)])[0] == [26, 86, 2, 55, 75, 93, 16, 73, 54, 95]
    np.random.seed(0)
    epoch = _ids(loader)
    assert sorted(sum(epoch, [])) == list(range(100))
    assert sum(epoch, []) == np.random.RandomState(0).permutation(100).tolist()
    assert epoch != _ids(loader)  # a fresh permutation per epoch


def test_one_fetch_per_batch_and_generic_fallback():
    dataset = CountingDataset(np.arange(20.0), np.arange(20))
    np.random.seed(1)
    shuffled = list(data.DataLoader(dataset, 6, shuffle=True))
    assert dataset.calls == 4 == len(shuffled)
    items = data.DataLoader(ItemDataset(7), 3)
    X, y = list(items)[-1]
    np.testing.assert_array_equal(X.numpy(), [[6.0, 6.0]])
    assert y.numpy().tolist() == [6] and X.dtype == "float32" and y.dtype == "int64"


def test_batch_tensors(device):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    features = np.random.RandomState(0).rand(5, 3)  # float64 in, float32 out
    X, y = next(iter(data.DataLoader(data.NDArrayDataset(features, labels), 5, device=device)))
    assert isinstance(X.cached_data, NDArray) and X.device == device
    assert X.dtype == "float32" and y.dtype == "uint8" and not X.requires_grad
    np.testing.assert_allclose(X.numpy(), features, rtol=1e-7)
    one_hot = ndl.init.one_hot(6, y, device=device)
    np.testing.assert_array_equal(one_hot.numpy(), np.eye(6)[labels])
    X64, = next(iter(data.DataLoader(data.NDArrayDataset(features), 5, dtype=None)))
    assert X64.dtype == "float64"


# ---- transforms ---------------------------------------------------------------------------
def test_random_flip_horizontal_matches_numpy_by_hand():
    img = np.random.RandomState(5).rand(4, 6, 2).astype(np.float32)
    flip = data.RandomFlipHorizontal(p=0.5)
    flipped = 0
    for seed in range(10):
        np.random.seed(seed)
        out = flip(img)
        draws = np.random.RandomState(seed).rand(2)
        expected = img[:, ::-1, :] if draws[0] < 0.5 else img
        np.testing.assert_array_equal(out, expected)
        assert np.random.rand() == draws[1]  # exactly one draw per call
        flipped += draws[0] < 0.5
    assert 0 < flipped < 10
    np.random.seed(0)
    data.RandomFlipHorizontal(p=0.0)(img)  # draws even when it cannot flip
    assert np.random.rand() == np.random.RandomState(0).rand(2)[1]


def test_random_crop_matches_numpy_by_hand():
    img = np.random.RandomState(6).rand(5, 7, 3).astype(np.float32)
    crop = data.RandomCrop(padding=3)
    for seed in range(10):
        np.random.seed(seed)
        out = crop(img)
        shift_rows, shift_cols = np.random.RandomState(seed).randint(-3, 4, size=2)
        expected = np.zeros_like(img)
        for i in range(5):
            for j in range(7):
                if 0 <= i + shift_rows < 5 and 0 <= j + shift_cols < 7:
                    expected[i, j] = img[i + shift_rows, j + shift_cols]
        np.testing.assert_array_equal(out, expected)


def test_normalize():
    img = np.array([[[0.0], [0.25]], [[0.5], [1.0]]], dtype=np.float32)
    out = data.Normalize(0.5, 0.5)(img)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.reshape(-1), [-1.0, -0.5, 0.0, 1.0])
    rgb = np.ones((2, 2, 3), dtype=np.float32)
    out = data.Normalize([0.0, 0.5, 1.0], [1.0, 0.5, 2.0])(rgb)
    np.testing.assert_array_equal(out[0, 0], [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="std"):
        data.Normalize(0.0, 0.0)


# ---- MNIST on the real files --------------------------------------------------------------
def test_mnist_real_files(mnist_train, mnist_test):
    assert len(mnist_train) == 60000 and len(mnist_test) == 10000
    X, y = mnist_train[0]
    assert X.shape == (784,) and X.dtype == np.float32 and y == 5 and mnist_test[0][1] == 7
    assert mnist_train.labels.dtype == np.uint8
    assert mnist_train.images.min() == 0.0 and mnist_train.images.max() == 1.0
    norms = [np.linalg.norm(mnist_train[i][0]) for i in [1, 42, 1000, 2000]]
    np.testing.assert_allclose(norms, [10.188792, 6.261355, 8.966858, 9.4346485], rtol=1e-6)


def test_mnist_slice_equals_loader_batch(mnist_test):
    for i, (X, y) in enumerate(data.DataLoader(mnist_test, 5)):
        np.testing.assert_array_equal(X.numpy(), mnist_test[5 * i:5 * i + 5][0])
        np.testing.assert_array_equal(y.numpy(), mnist_test[5 * i:5 * i + 5][1])
        if i == 3:
            break


def test_mnist_transforms_see_28x28x1_images(mnist_test):
    seen = []
    transformed = copy.copy(mnist_test)  # shares the parsed arrays
    transformed.transforms = [lambda img: seen.append(img.shape) or img,
                              data.RandomFlipHorizontal(1.0), data.Normalize(0.5, 0.5)]
    X, y = transformed[np.array([3, 1, 2])]
    assert seen == [(28, 28, 1)] * 3 and X.shape == (3, 784)
    images = mnist_test.images[[3, 1, 2]].reshape(3, 28, 28)
    np.testing.assert_array_equal(X.reshape(3, 28, 28), (images[:, :, ::-1] - 0.5) / 0.5)
    np.testing.assert_array_equal(transformed[3][0], X[0])


# ---- damaged files ------------------------------------------------------------------------
def _idx(ndim, shape, payload):
    header = (0x0800 | ndim).to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in shape)
    return header + payload


def _write_pair(folder, n_images=4, n_labels=4):
    rng = np.random.RandomState(0)
    images = _idx(3, (n_images, 28, 28), rng.randint(0, 256, n_images * 784, np.uint8).tobytes())
    labels = _idx(1, (n_labels,), rng.randint(0, 10, n_labels, np.uint8).tobytes())
    paths = folder / "images.gz", folder / "labels.gz"
    for path, raw in zip(paths, (images, labels)):
        path.write_bytes(gzip.compress(raw))
    return paths, images, labels


def _rewrite(path, raw):
    path.write_bytes(gzip.compress(raw))


def _expect_error(paths, *fragments):
    with pytest.raises(data.DataFileError) as info:
        data.MNISTDataset(*paths)
    for fragment in fragments:
        assert str(fragment) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_small_valid_pair_loads(tmp_path):
    paths, images, labels = _write_pair(tmp_path)
    dataset = data.MNISTDataset(*paths)
    assert len(dataset) == 4
    np.testing.assert_array_equal(dataset.labels, np.frombuffer(labels[8:], np.uint8))


def test_truncated_gzip(tmp_path):
    paths, _, _ = _write_pair(tmp_path)
    paths[0].write_bytes(paths[0].read_bytes()[:-40])
    _expect_error(paths, paths[0], "truncated")


def test_corrupt_gzip(tmp_path):
    paths, _, _ = _write_pair(tmp_path)
    raw = bytearray(paths[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    paths[0].write_bytes(bytes(raw))
    _expect_error(paths, paths[0], "corrupt")


def test_not_gzip(tmp_path):
    paths, images, _ = _write_pair(tmp_path)
    paths[0].write_bytes(images)
    _expect_error(paths, paths[0], "not a gzip file")


def test_bad_magic(tmp_path):
    paths, _, labels = _write_pair(tmp_path)
    _rewrite(paths[1], b"\x00\x00\x08\x03" + labels[4:])
    _expect_error(paths, paths[1], "0x00000803", "expected 0x00000801")


def test_truncated_and_padded_content(tmp_path):
    paths, images, _ = _write_pair(tmp_path)
    _rewrite(paths[0], images[:-100])
    _expect_error(paths, paths[0], f"{len(images)} bytes", f"has {len(images) - 100}")
    _rewrite(paths[0], images + b"\x00")
    _expect_error(paths, paths[0], f"{len(images)} bytes", "trailing")
    _rewrite(paths[0], images[:10])
    _expect_error(paths, paths[0], "too short")


def test_mismatched_counts(tmp_path):
    paths, _, _ = _write_pair(tmp_path, n_images=4, n_labels=3)
    _expect_error(paths, paths[0], paths[1], "4 images", "3 labels")


def test_checksum_mismatch(tmp_path):
    paths, images, labels = _write_pair(tmp_path)
    good = hashlib.sha256(images).hexdigest()
    (tmp_path / "CHECKSUMS.txt").write_text(
        f"images.gz  uncompressed_bytes={len(images)}  uncompressed_sha256={good}\n"
        f"labels.gz  uncompressed_bytes={len(labels)}  uncompressed_sha256={'0' * 64}\n")
    _expect_error(paths, paths[1], "0" * 64, hashlib.sha256(labels).hexdigest())
    (tmp_path / "CHECKSUMS.txt").write_text("images.gz  uncompressed_bytes=12\n")
    _expect_error(paths, paths[0], f"{len(images)} uncompressed bytes", "expects 12")


def test_load_mnist_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.load_mnist(tmp_path / "nowhere")


def test_real_files_are_listed_in_checksums():
    from needle.data.idx import _checksum_entry
    from tests.needle.data.conftest import MNIST_DIR
    for name in ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        entry, _ = _checksum_entry(MNIST_DIR / name)
        assert len(entry["uncompressed_sha256"]) == 64  # so loading them verified the hash

"""Paired data: the MNIST outline against scipy.ndimage, the MNIST pairs and their held-out
split, image folders in both pix2pix conventions (side by side, two folders by name) with
their joint crops, held-out pairs and channels, and the named errors."""
import os

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from gan.batches import Shuffled
from gan.paired import PairedBatches, PairedFolder, edge_map, mnist_pairs
from needle.data.idx import DataFileError
from tests.support.images import centre_crop_by_hand

MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "data", "mnist")


# ---- the MNIST task ----------------------------------------------------------------------
def test_the_outline_is_the_thresholded_external_gradient_as_scipy_computes_it():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (3, 1, 9, 7)).astype(np.float32)
    x[0, 0, 0, :] = 1  # ink on the border: outside counts as background
    unit = (x.astype(np.float64) + 1) / 2
    dilated = scipy.ndimage.grey_dilation(unit, size=(1, 1, 3, 3), mode="constant", cval=0)
    expected = np.where(dilated - unit > 0.5, 1, -1)
    got = edge_map(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got, expected)


def test_a_dot_becomes_the_ring_around_it():
    dot = -np.ones((1, 1, 5, 5), np.float32)
    dot[0, 0, 2, 2] = 1
    ring = edge_map(dot)[0, 0]
    expected = -np.ones((5, 5))
    expected[1:4, 1:4] = 1
    expected[2, 2] = -1  # the stroke itself stays blank
    np.testing.assert_array_equal(ring, expected)
    with pytest.raises(ValueError, match=r"edge_map: expected NCHW images, got shape \(5, 5\)"):
        edge_map(dot[0, 0])


class FakeMNIST:
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)


def test_mnist_pairs_are_outlines_and_digits_with_a_held_out_test_split():
    rng = np.random.RandomState(1)
    train = FakeMNIST(rng.uniform(0, 1, (30, 784)).astype(np.float32), rng.randint(0, 10, 30))
    test = FakeMNIST(rng.uniform(0, 1, (12, 784)).astype(np.float32), rng.randint(0, 10, 12))
    (A, B), (test_A, test_B, labels) = mnist_pairs(train, test, limit=20, held_out=5)
    assert A.shape == B.shape == (20, 1, 28, 28) and test_A.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(B, train.images[:20].reshape(-1, 1, 28, 28) * 2 - 1)
    np.testing.assert_array_equal(A, edge_map(B))
    np.testing.assert_array_equal(test_B, test.images[:5].reshape(-1, 1, 28, 28) * 2 - 1)
    np.testing.assert_array_equal(test_A, edge_map(test_B))
    np.testing.assert_array_equal(labels, test.labels[:5])
    assert labels.dtype == np.int64
    (A, _), _ = mnist_pairs(train, test)  # no limit: every training digit
    assert len(A) == 30


@pytest.mark.skipif(not os.path.exists(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz")),
                    reason="needs data/mnist")
def test_mnist_outlines_are_thin_contours_outside_the_strokes():
    from needle.data import load_mnist

    test = load_mnist(MNIST, train=False)
    (A, B), _ = mnist_pairs(test, test, limit=200, held_out=1)
    ink, outline = B > 0, A > 0
    assert not (ink & outline).any()       # the contour lies outside the stroke
    assert 0.5 < outline.mean() / ink.mean() < 2  # one pixel wide around it


# ---- image folders -----------------------------------------------------------------------
def write_image(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode="RGB" if array.ndim == 3 else "L").save(path)


def pair_arrays(rng, count, height=20, width=24):
    """(A images RGB, B images grayscale) as uint8 arrays."""
    return ([rng.randint(0, 256, (height, width, 3), np.uint8) for _ in range(count)],
            [rng.randint(0, 256, (height, width), np.uint8) for _ in range(count)])


def two_folders(tmp_path, count=6):
    A, B = pair_arrays(np.random.RandomState(2), count)
    for i in range(count):
        write_image(tmp_path / "A" / f"{i}.png", A[i])
        write_image(tmp_path / "B" / f"{i}.png", B[i])
    return tmp_path / "A", tmp_path / "B"


def side_by_side_folder(tmp_path, count=6):
    """Files A | B, and the halves written alone (for the reference crops)."""
    A, B = pair_arrays(np.random.RandomState(3), count)
    for i in range(count):
        b_rgb = np.repeat(B[i][:, :, None], 3, axis=2)
        write_image(tmp_path / "AB" / f"{i}.png", np.concatenate([A[i], b_rgb], axis=1))
        write_image(tmp_path / "halves" / f"{i}_A.png", A[i])
        write_image(tmp_path / "halves" / f"{i}_B.png", B[i])
    return tmp_path / "AB", tmp_path / "halves"


def test_two_folders_pair_by_name_with_a_held_out_split_and_channels_per_side(tmp_path):
    dir_a, dir_b = two_folders(tmp_path)
    pairs = PairedFolder.two_folders(str(dir_a), str(dir_b), image_size=16, hold_out=2)
    assert pairs.channels == [3, 1] and pairs.load_size == 18  # round(16 * 286 / 256)
    assert pairs.held_out_names == ["0.png", "5.png"]  # spread over the sorted names
    assert pairs.names == [f"{i}.png" for i in range(1, 5)] and len(pairs) == 4
    for shown, folder, mode in ((pairs.held_out_A, dir_a, "RGB"), (pairs.held_out_B, dir_b,
                                                                   "L")):
        expected = np.stack([centre_crop_by_hand(folder / name, 16, mode)
                             for name in pairs.held_out_names])
        np.testing.assert_allclose(shown, expected, atol=1 / 127.5 + 1e-6)
    limited = PairedFolder.two_folders(str(dir_a), str(dir_b), image_size=16, hold_out=2,
                                       limit=3, channels_b=3)
    assert limited.names == ["1.png", "2.png", "3.png"] and limited.channels == [3, 3]


def test_side_by_side_files_split_at_the_middle(tmp_path):
    folder, halves = side_by_side_folder(tmp_path)
    pairs = PairedFolder.side_by_side(str(folder), image_size=16, hold_out=2)
    assert pairs.channels == [3, 1]  # the right halves are grayscale
    for shown, side, mode in ((pairs.held_out_A, "A", "RGB"), (pairs.held_out_B, "B", "L")):
        expected = np.stack([centre_crop_by_hand(halves / f"{i}_{side}.png", 16, mode)
                             for i in (0, 5)])
        np.testing.assert_allclose(shown, expected, atol=1 / 127.5 + 1e-6)


def test_a_training_batch_crops_and_flips_both_images_of_a_pair_alike(tmp_path):
    """With B a copy of A, every crop and flip of a pair must give equal images; the
    crops come from the load_size square, drawn from NumPy's global RNG."""
    rng = np.random.RandomState(4)
    for i in range(5):
        image = rng.randint(0, 256, (22, 26, 3), np.uint8)
        write_image(tmp_path / "A" / f"{i}.png", image)
        write_image(tmp_path / "B" / f"{i}.png", image)
    pairs = PairedFolder.two_folders(str(tmp_path / "A"), str(tmp_path / "B"), image_size=12,
                                     load_size=20, hold_out=1)
    np.random.seed(0)
    A, B = pairs[np.arange(4)]
    assert A.shape == B.shape == (4, 3, 12, 12) and A.dtype == np.float32
    np.testing.assert_array_equal(A, B)
    np.random.seed(0)
    again, _ = pairs[np.arange(4)]
    np.testing.assert_array_equal(A, again)  # the same draws, the same crops
    # every crop is a window (maybe mirrored) of the 20x20 centre square of its image
    square = np.stack([centre_crop_by_hand(tmp_path / "A" / name, 20) for name in pairs.names])
    for crop, source in zip(A, square):
        windows = [source[:, y:y + 12, x:x + 12] for y in range(9) for x in range(9)]
        windows += [w[:, :, ::-1] for w in windows]
        assert min(np.abs(crop - w).max() for w in windows) < 1e-6


def test_paired_batches_give_pairs_in_a_new_order_each_epoch_and_resume(tmp_path):
    dir_a, dir_b = two_folders(tmp_path)
    pairs = PairedFolder.two_folders(str(dir_a), str(dir_b), image_size=16, hold_out=2)
    batches = PairedBatches(pairs, batch_size=2)
    assert batches.steps_per_epoch == 2 and isinstance(batches, Shuffled)
    np.random.seed(1)
    batches.shuffle()
    state, rng = batches.state(), np.random.get_state()
    A, B = batches.batch(1)
    assert A.shape == (2, 3, 16, 16) and B.shape == (2, 1, 16, 16)
    copy = PairedBatches(pairs, batch_size=2)
    copy.load_state(state)
    np.random.set_state(rng)
    A2, B2 = copy.batch(1)
    np.testing.assert_array_equal(A, A2)
    np.testing.assert_array_equal(B, B2)


def test_folder_errors_are_one_line_and_name_the_file(tmp_path):
    dir_a, dir_b = two_folders(tmp_path, count=4)
    (dir_b / "3.png").rename(dir_b / "9.png")
    with pytest.raises(DataFileError, match=r"paired by file name, but 1 in '.*A' without a "
                                            r"match in '.*B' \(3\.png\); 1 in '.*B' without "
                                            r"a match in '.*A' \(9\.png\)"):
        PairedFolder.two_folders(str(dir_a), str(dir_b), image_size=8)
    (dir_b / "9.png").rename(dir_b / "3.png")
    write_image(dir_b / "2.png", np.zeros((10, 24), np.uint8))
    with pytest.raises(DataFileError, match=r"paired images differ in size: '.*2\.png' is "
                                            r"24 x 20, '.*2\.png' is 24 x 10"):
        PairedFolder.two_folders(str(dir_a), str(dir_b), image_size=8)
    write_image(dir_b / "2.png", np.zeros((20, 24), np.uint8))
    (dir_a / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataFileError, match=r"cannot read image '.*1\.png'"):
        PairedFolder.two_folders(str(dir_a), str(dir_b), image_size=8)
    with pytest.raises(DataFileError, match=r"'.*missing' does not exist"):
        PairedFolder.two_folders(str(tmp_path / "missing"), str(dir_b), image_size=8)
    with pytest.raises(DataFileError, match=r"has 4 pairs; holding out 4 leaves none"):
        PairedFolder.two_folders(str(dir_b), str(dir_b), image_size=8, hold_out=4)
    write_image(tmp_path / "odd" / "0.png", np.zeros((8, 17), np.uint8))
    with pytest.raises(DataFileError, match=r"'.*0\.png' is 17 x 8: a side-by-side pair"):
        PairedFolder.side_by_side(str(tmp_path / "odd"), image_size=8)
    with pytest.raises(ValueError, match=r"need 1 <= image_size <= load_size"):
        PairedFolder.two_folders(str(dir_b), str(dir_b), image_size=8, load_size=4)

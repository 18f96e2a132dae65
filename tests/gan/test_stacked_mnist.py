"""Stacked MNIST: the dataset builder on constructed digits, and the mode labelling and
scores with the shipped classifier on hand-built stacks of real test digits."""
import math

import numpy as np
import pytest

from gan.metrics import load_classifier
from gan.stacked_mnist import (EVAL_SAMPLES, N_MODES, TRAIN_COUNT, channel_digits, load_digits,
                               mode_ids, mode_scores, stacked_mnist)
from needle.data.mnist import load_mnist


def test_mode_numbers_are_rgb_digit_triples():
    digits = np.array([[7, 2, 1], [0, 0, 0], [9, 9, 9], [0, 4, 2]])
    np.testing.assert_array_equal(mode_ids(digits), [721, 0, 999, 42])
    assert N_MODES == 1000 and TRAIN_COUNT == 128000 and EVAL_SAMPLES == 26000


def _constructed_digits(count=30):
    """Digit i is an image filled with i / 100 - 0.5, labelled i % 10: its value names it."""
    images = np.ones((count, 28, 28), np.float32) * (np.arange(count)[:, None, None] / 100
                                                     - 0.5)
    return images.astype(np.float32), np.arange(count) % 10


def test_builder_stacks_three_drawn_digits_with_their_mode():
    images, labels = _constructed_digits()
    stacked, modes = stacked_mnist(images, labels, count=500, seed=3)
    assert stacked.shape == (500, 3, 28, 28) and stacked.dtype == np.float32
    assert modes.shape == (500,) and modes.dtype == np.int64
    picks = np.rint((stacked[:, :, 0, 0] + 0.5) * 100).astype(int)  # (500, 3) digit indices
    np.testing.assert_array_equal(stacked, images[picks])
    expected = 100 * (picks[:, 0] % 10) + 10 * (picks[:, 1] % 10) + picks[:, 2] % 10
    np.testing.assert_array_equal(modes, expected)
    # uniform, independent draws per channel: all 30 digits appear in every channel
    assert all(len(set(picks[:, k])) == 30 for k in range(3))
    assert len(set(map(tuple, picks))) > 450  # triples are (nearly) all distinct


def test_builder_is_deterministic_given_a_seed():
    images, labels = _constructed_digits()
    a = stacked_mnist(images, labels, count=50, seed=7)
    b = stacked_mnist(images[:, None], labels, count=50, seed=7)  # (M, 1, 28, 28) too
    c = stacked_mnist(images, labels, count=50, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.fixture(scope="module")
def test_digits():
    test = load_mnist("data/mnist", train=False)
    return test.images[:20].reshape(20, 28, 28) * 2 - 1, test.labels[:20].astype(int)


def test_classifier_labels_each_channel_of_hand_built_stacks(test_digits):
    images, labels = test_digits
    # first test digits: 7 2 1 0 4 1 4 9 5 9 0 6 9 0 1 5 9 7 3 4
    assert labels[[0, 1, 2, 3, 11, 18]].tolist() == [7, 2, 1, 0, 6, 3]
    picks = np.array([[0, 1, 2], [18, 3, 11], [2, 2, 2], [0, 1, 2]])
    stacks = images[picks]  # (4, 3, 28, 28): channel k is digit picks[:, k]
    classifier = load_classifier()
    np.testing.assert_array_equal(channel_digits(classifier, stacks),
                                  [[7, 2, 1], [3, 0, 6], [1, 1, 1], [7, 2, 1]])
    scores = mode_scores(classifier, stacks)
    # modes 721 (twice), 306, 111: p = (1/2, 1/4, 1/4) over 1000 modes
    kl = 0.5 * math.log(0.5 * 1000) + 2 * 0.25 * math.log(0.25 * 1000)
    assert scores == {"modes_covered": 3, "n_modes": 1000,
                      "kl_to_uniform": pytest.approx(kl, rel=1e-12), "samples": 4}


def test_real_digits_load_in_the_gan_range():
    images, labels = load_digits("data/mnist")
    assert images.shape == (70000, 28, 28) and labels.shape == (70000,)
    assert images.dtype == np.float32 and images.min() == -1.0 and images.max() == 1.0
    assert np.bincount(labels).min() > 6000


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"mode_ids: expected digit triples \(N, 3\)"):
        mode_ids(np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"mode_ids: expected digit triples"):
        mode_ids(np.array([[1, 2, 10]]))
    with pytest.raises(ValueError, match=r"stacked_mnist: expected digit images"):
        stacked_mnist(np.zeros((5, 28, 28)), np.zeros(4))
    with pytest.raises(ValueError, match=r"channel_digits: expected stacked images"):
        channel_digits(None, np.zeros((2, 1, 28, 28)))

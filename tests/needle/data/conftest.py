"""MNIST parsed once per test session: the 60000-image file takes about half a second."""
import pathlib

import pytest

from needle import data

MNIST_DIR = pathlib.Path(__file__).resolve().parents[3] / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_train():
    return data.load_mnist(MNIST_DIR, train=True)


@pytest.fixture(scope="session")
def mnist_test():
    return data.load_mnist(MNIST_DIR, train=False)

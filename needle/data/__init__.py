"""Datasets, the DataLoader and image transforms (COURSE_API.md section 8).

    train = ndl.data.load_mnist("data/mnist", train=True,
                                transforms=[ndl.data.Normalize(0.5, 0.5)])
    for X, y in ndl.data.DataLoader(train, batch_size=64, shuffle=True):
        ...  # X: (64, 784) float32 Tensor in [-1, 1], y: (64,) uint8 Tensor
    horses = ndl.data.ImageFolder("horses", image_size=64)   # needs Pillow
"""
from .dataloader import DataLoader
from .dataset import Dataset, NDArrayDataset
from .image_folder import ImageFolder
from .mnist import DataFileError, MNISTDataset, load_mnist, read_idx
from .transforms import Normalize, RandomCrop, RandomFlipHorizontal, Transform
from .cifar10 import CIFAR10Dataset, RestrictedUnpickler, UnsafePickleError
from .ptb import Corpus, Dictionary, batchify, get_batch

__all__ = ["Dataset", "NDArrayDataset", "DataLoader", "Transform", "RandomFlipHorizontal",
           "RandomCrop", "Normalize", "MNISTDataset", "load_mnist", "read_idx", "DataFileError",
           "ImageFolder",
           "CIFAR10Dataset", "RestrictedUnpickler", "UnsafePickleError",
           "Dictionary", "Corpus", "batchify", "get_batch"]

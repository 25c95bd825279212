"""Datasets for sparsejax experiments.

For now: Fashion-MNIST read straight from its IDX files, offline
(:func:`load_fashion_mnist`), and the IDX reader behind it
(:mod:`sparsejax.data.idx`). Nothing here imports TensorFlow or TFDS.

Example:
  >>> from sparsejax.data import load_fashion_mnist
  >>> x_train, y_train = load_fashion_mnist('train')  # doctest: +SKIP
  >>> x_train.shape, y_train.shape  # doctest: +SKIP
  ((60000, 28, 28, 1), (60000,))
"""

from sparsejax.data.fashion_mnist import (
    CLASS_NAMES,
    DATA_DIR_ENV,
    SYSTEM_DIR,
    find_fashion_mnist,
    load_fashion_mnist,
)
from sparsejax.data.idx import IDXError, read_idx, write_idx

__all__ = [
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "IDXError",
    "SYSTEM_DIR",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
    "write_idx",
]

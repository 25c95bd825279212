"""MNIST from local IDX files (no network, no TensorFlow).

MNIST (LeCun, Cortes and Burges) is 70,000 grey-scale 28x28 images of
hand-written digits: 60,000 for training and 10,000 for testing, as four IDX
files with the same names as Fashion-MNIST's::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

Because the names are the same, MNIST is looked for only where it cannot be
mistaken for Fashion-MNIST: in the ``data_dir`` argument itself, in
``data_dir/mnist``, and in ``$SPARSEJAX_DATA_DIR/mnist`` (not in
``$SPARSEJAX_DATA_DIR`` itself, which may hold Fashion-MNIST).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sparsejax.data.fashion_mnist import DATA_DIR_ENV, _read_idx_pair, _search_idx_pair

__all__ = ["SUBDIR", "find_mnist", "load_mnist"]

SUBDIR = "mnist"
"""Sub-folder of ``data_dir`` / ``$SPARSEJAX_DATA_DIR`` holding the MNIST IDX files."""

_HOW_TO_GET = (
    "To get MNIST, download the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (e.g. from "
    "https://storage.googleapis.com/cvdf-datasets/mnist/) into a folder and pass it as data_dir=, "
    f"or put them in ${DATA_DIR_ENV}/{SUBDIR}/."
)


def _candidate_dirs(data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    places = []
    if data_dir is not None:
        places.append(("data_dir argument", Path(data_dir)))
        places.append(("data_dir argument", Path(data_dir) / SUBDIR))
    if os.environ.get(DATA_DIR_ENV):
        places.append((f"${DATA_DIR_ENV}/{SUBDIR}", Path(os.environ[DATA_DIR_ENV]) / SUBDIR))
    return places


def _search_mnist(
    split: str, data_dir: str | os.PathLike[str] | None
) -> tuple[tuple[Path, Path] | None, list[str]]:
    found, looked = _search_idx_pair(split, _candidate_dirs(data_dir))
    if found is None and not looked:
        looked = [f"  - (nowhere: no data_dir argument and ${DATA_DIR_ENV} is not set)"]
    return found, looked


def find_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """Finds the images and labels files of an MNIST split.

    The first folder holding both files wins, in the order: ``data_dir``,
    ``data_dir/mnist``, ``$SPARSEJAX_DATA_DIR/mnist``.

    Args:
      split: ``'train'`` or ``'test'``.
      data_dir: a folder holding the files (or their ``mnist/`` sub-folder).

    Returns:
      ``(images_path, labels_path)``.

    Raises:
      ValueError: if ``split`` is not ``'train'`` or ``'test'``.
      FileNotFoundError: if no folder holds both files; the message lists every
        place looked at and how to obtain the data.

    Example:
      >>> from sparsejax.data.mnist import find_mnist
      >>> images, labels = find_mnist('test', data_dir='/data')  # doctest: +SKIP
      >>> images  # doctest: +SKIP
      PosixPath('/data/mnist/t10k-images-idx3-ubyte.gz')
    """
    found, looked = _search_mnist(split, data_dir)
    if found is None:
        raise FileNotFoundError(
            f"MNIST ({split} split) not found. Looked in:\n" + "\n".join(looked) + "\n" + _HOW_TO_GET
        )
    return found


def load_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a split of MNIST into memory from its IDX files.

    Args:
      split: ``'train'`` (60,000 examples) or ``'test'`` (10,000).
      data_dir: a folder holding the IDX files (or their ``mnist/``
        sub-folder); ``$SPARSEJAX_DATA_DIR/mnist`` is looked in after it.

    Returns:
      ``(images, labels)``: ``uint8`` images ``[N, 28, 28, 1]`` and ``int32``
      labels ``[N]`` in ``0..9``.

    Raises:
      ValueError: if ``split`` is unknown.
      FileNotFoundError: if the files are nowhere to be found.
      sparsejax.data.IDXError: if a file is malformed or the files disagree.

    Example:
      >>> from sparsejax.data.mnist import load_mnist
      >>> images, labels = load_mnist('test', data_dir='/data')  # doctest: +SKIP
      >>> images.shape, labels.shape  # doctest: +SKIP
      ((10000, 28, 28, 1), (10000,))
    """
    images_path, labels_path = find_mnist(split, data_dir)
    return _read_idx_pair(images_path, labels_path, 10)

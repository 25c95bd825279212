"""Fashion-MNIST from local IDX files (no network, no TensorFlow).

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) is 70,000 grey-scale 28x28
images of clothing in 10 classes: 60,000 for training and 10,000 for testing.
It is distributed as four gzipped IDX files::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

:func:`load_fashion_mnist` looks for them, in order, in the ``data_dir``
argument, in ``$SPARSEJAX_DATA_DIR``, and in ``/usr/share/datasets/fashion-mnist``
(where the Debian/Ubuntu package ``dataset-fashion-mnist`` puts them). The
uncompressed names (without ``.gz``) are accepted too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sparsejax.data.idx import IDXError, read_idx

__all__ = [
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "SYSTEM_DIR",
    "find_fashion_mnist",
    "load_fashion_mnist",
]

DATA_DIR_ENV = "SPARSEJAX_DATA_DIR"
"""Environment variable naming a folder that holds the IDX files."""

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts the files."""

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
"""Names of the 10 classes, indexed by label."""

_PREFIX = {"train": "train", "test": "t10k"}
_IMAGES_MAGIC = 0x00000803  # uint8, 3-d
_LABELS_MAGIC = 0x00000801  # uint8, 1-d
_HOW_TO_GET = (
    "To get Fashion-MNIST, either install the Debian/Ubuntu package "
    "(`sudo apt-get install dataset-fashion-mnist`, or run `bash scripts/setup.sh`), "
    f"or download the four files from https://github.com/zalandoresearch/fashion-mnist "
    f"into a folder and pass it as data_dir= or set {DATA_DIR_ENV}=/that/folder."
)


def _file_names(split: str) -> tuple[str, str]:
    prefix = _PREFIX[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _candidate_dirs(data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    places = []
    if data_dir is not None:
        places.append(("data_dir argument", Path(data_dir)))
    if os.environ.get(DATA_DIR_ENV):
        places.append((f"${DATA_DIR_ENV}", Path(os.environ[DATA_DIR_ENV])))
    places.append(("dataset-fashion-mnist package", SYSTEM_DIR))
    return places


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def find_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """Finds the images and labels files of a split.

    The first folder holding both files wins, in the order: ``data_dir``,
    ``$SPARSEJAX_DATA_DIR``, ``/usr/share/datasets/fashion-mnist``.

    Args:
      split: ``'train'`` or ``'test'``.
      data_dir: a folder to look in first.

    Returns:
      ``(images_path, labels_path)``.

    Raises:
      ValueError: if ``split`` is not ``'train'`` or ``'test'``.
      FileNotFoundError: if no folder holds both files; the message lists every
        place looked at and how to obtain the data.

    Example:
      >>> from sparsejax.data import find_fashion_mnist
      >>> images, labels = find_fashion_mnist('test')  # doctest: +SKIP
      >>> images.name  # doctest: +SKIP
      't10k-images-idx3-ubyte.gz'
    """
    found, looked = _search_idx_pair(split, _candidate_dirs(data_dir))
    if found is None:
        raise FileNotFoundError(
            f"Fashion-MNIST ({split} split) not found. Looked in:\n"
            + "\n".join(looked)
            + "\n"
            + _HOW_TO_GET
        )
    return found


def _search_idx_pair(
    split: str, places: list[tuple[str, Path]]
) -> tuple[tuple[Path, Path] | None, list[str]]:
    """The first folder of ``places`` holding both IDX files of ``split``.

    Returns ``((images, labels), looked)`` or ``(None, looked)``, where
    ``looked`` has one line per place visited saying what was wrong there.
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be one of {sorted(_PREFIX)}, got {split!r}")
    images_name, labels_name = _file_names(split)
    looked = []
    for what, folder in places:
        images, labels = _find_file(folder, images_name), _find_file(folder, labels_name)
        if images is not None and labels is not None:
            return (images, labels), looked
        missing = [n for n, p in ((images_name, images), (labels_name, labels)) if p is None]
        state = "does not exist" if not folder.is_dir() else "lacks " + " and ".join(
            f"{n}.gz" for n in missing
        )
        looked.append(f"  - {folder} ({what}): {state}")
    return None, looked


def _read_idx_pair(
    images_path: Path, labels_path: Path, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Reads and checks an (images, labels) pair of 28x28 IDX files."""
    images = read_idx(images_path, expected_magic=_IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise IDXError(f"{images_path}: expected 28x28 images, got shape {images.shape}")
    if len(images) != len(labels):
        raise IDXError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if labels.size and labels.max() >= num_classes:
        raise IDXError(
            f"{labels_path}: labels must be in 0..{num_classes - 1}, found {int(labels.max())}"
        )
    return images[..., None], labels.astype(np.int32)


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a split of Fashion-MNIST into memory (about 0.3 s for the training set).

    Args:
      split: ``'train'`` (60,000 examples) or ``'test'`` (10,000).
      data_dir: a folder holding the IDX files, looked in before
        ``$SPARSEJAX_DATA_DIR`` and ``/usr/share/datasets/fashion-mnist``.

    Returns:
      ``(images, labels)``: ``uint8`` images of shape ``[N, 28, 28, 1]`` (0 is
      background, 255 full intensity) and ``int32`` labels of shape ``[N]`` in
      ``0..9`` (see :data:`CLASS_NAMES`).

    Raises:
      ValueError: if ``split`` is unknown.
      FileNotFoundError: if the files are nowhere to be found (the message says
        where it looked and how to get them).
      sparsejax.data.IDXError: if a file is malformed, the images are not
        28x28, the counts of images and labels differ, or a label is outside 0..9.

    Example:
      >>> from sparsejax.data import load_fashion_mnist
      >>> images, labels = load_fashion_mnist('test')  # doctest: +SKIP
      >>> images.shape, images.dtype, labels.shape, labels.dtype  # doctest: +SKIP
      ((10000, 28, 28, 1), dtype('uint8'), (10000,), dtype('int32'))
    """
    images_path, labels_path = find_fashion_mnist(split, data_dir)
    return _read_idx_pair(images_path, labels_path, len(CLASS_NAMES))

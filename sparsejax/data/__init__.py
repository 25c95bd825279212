"""Datasets and input pipelines for sparsejax experiments.

* :func:`load` ``(name, split)`` returns a :class:`Dataset` of
  ``fashion_mnist``, ``mnist``, ``cifar10``, ``cifar100``, ``imagenet2012`` or
  ``synthetic``, from a prepared TFDS dataset or local files, offline unless
  ``download=True`` (see :mod:`sparsejax.data.datasets` for where it looks).
  A missing dataset raises :class:`DatasetNotFoundError`, naming every place
  looked at and how to obtain the data.
* :func:`load_numpy` ``(name, split)`` returns ``(images, labels)`` as numpy
  arrays for notebooks: from the same offline places as :func:`load`, else
  downloaded with TFDS (``download=True`` by default; needs TensorFlow and
  network access, as in Colab).
* :func:`batches` ``(dataset, batch_size, train=...)`` is the input pipeline:
  per-epoch shuffling from a seed, random crop + flip for CIFAR/ImageNet,
  normalisation, background prefetch, and per-host sharding (every process
  reads only its rows of the global batch); see :mod:`sparsejax.data.pipeline`.
* :func:`prepare_tfds` builds TFDS datasets (``fashion_mnist``, ``mnist``,
  ``cifar10``, ``cifar100``) offline from the local files, so that TFDS loads
  them by name (needs TensorFlow, the ``tf`` extra).
* The readers behind the local files: :func:`load_fashion_mnist` and the IDX
  format (:mod:`sparsejax.data.idx`), :mod:`sparsejax.data.mnist`,
  :mod:`sparsejax.data.cifar`, and :mod:`sparsejax.data.synthetic`.

Importing this package imports neither TensorFlow nor TFDS; TFDS is imported
when a TFDS dataset is read or prepared.

Example:
  >>> from sparsejax.data import load, batches
  >>> train = load('synthetic', 'train', num_examples=512)
  >>> pipe = batches(train, 128, train=True, seed=0, process_index=0, process_count=1)
  >>> [batch['image'].shape for batch in pipe.epoch(0)]
  [(128, 28, 28, 1), (128, 28, 28, 1), (128, 28, 28, 1), (128, 28, 28, 1)]
  >>> fmnist = load('fashion_mnist', 'test')  # doctest: +SKIP
  >>> x_train, y_train = load_fashion_mnist('train')  # doctest: +SKIP
  >>> x_train.shape, y_train.shape  # doctest: +SKIP
  ((60000, 28, 28, 1), (60000,))
"""

from sparsejax.data.datasets import (
    DATASETS,
    ArrayReader,
    Dataset,
    DatasetInfo,
    DatasetNotFoundError,
    SourceReader,
    available_datasets,
    load,
    load_numpy,
    split_ranges,
)
from sparsejax.data.fashion_mnist import (
    CLASS_NAMES,
    DATA_DIR_ENV,
    SYSTEM_DIR,
    find_fashion_mnist,
    load_fashion_mnist,
)
from sparsejax.data.idx import IDXError, read_idx, write_idx
from sparsejax.data.pipeline import Batches, batches, crop_and_flip, normalize
from sparsejax.data.tfds_io import TFDS_DATA_DIR_ENV, default_tfds_dir, prepare_tfds

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "DATA_DIR_ENV",
    "SYSTEM_DIR",
    "TFDS_DATA_DIR_ENV",
    "ArrayReader",
    "Batches",
    "Dataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "IDXError",
    "SourceReader",
    "available_datasets",
    "batches",
    "crop_and_flip",
    "default_tfds_dir",
    "find_fashion_mnist",
    "load",
    "load_fashion_mnist",
    "load_numpy",
    "normalize",
    "prepare_tfds",
    "read_idx",
    "split_ranges",
    "write_idx",
]

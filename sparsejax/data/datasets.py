"""Image-classification datasets by name: :func:`load` and :class:`Dataset`.

:func:`load` finds a dataset wherever it is, in this order (``source='auto'``):

1. a **prepared TFDS dataset** in ``data_dir`` (when given) or else in
   ``$TFDS_DATA_DIR`` / ``~/tensorflow_datasets``, read with
   :func:`tfds.data_source` (no TensorFlow needed for the ``array_record``
   format) or :func:`tfds.load`. Never downloads unless ``download=True``.
2. **local files**, read directly:

   ============== ===================================================================
   fashion_mnist  IDX files in ``data_dir``, ``$SPARSEJAX_DATA_DIR``, or
                  ``/usr/share/datasets/fashion-mnist`` (``apt-get install
                  dataset-fashion-mnist``)
   mnist          IDX files in ``data_dir``, ``data_dir/mnist`` or ``$SPARSEJAX_DATA_DIR/mnist``
   cifar10/100    python-version pickles (``cifar-10-batches-py/``,
                  ``cifar-100-python/`` or their ``.tar.gz``) in ``data_dir`` or
                  ``$SPARSEJAX_DATA_DIR``
   imagenet2012   (prepared TFDS only)
   synthetic      generated (:mod:`sparsejax.data.synthetic`)
   ============== ===================================================================

3. with ``download=True``, TFDS downloads and prepares it (network and
   TensorFlow needed).

When nothing is found, :class:`DatasetNotFoundError` (a ``FileNotFoundError``)
lists every place looked at and how to obtain the data.

:func:`load_numpy` (for notebooks) returns a split as numpy arrays, trying the
same offline places first and then, by default, a TFDS download.

A :class:`Dataset` is a split held in memory as ``uint8`` arrays (small
datasets) or read example by example from a TFDS data source (ImageNet), with
random access ``dataset[indices]`` and the constants an input pipeline needs
(per-channel mean and standard deviation, default augmentation).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sparsejax.data import tfds_io
from sparsejax.data.fashion_mnist import (
    _HOW_TO_GET as _FASHION_HOW_TO_GET,
)
from sparsejax.data.fashion_mnist import (
    CLASS_NAMES as FASHION_MNIST_CLASSES,
)
from sparsejax.data.fashion_mnist import (
    DATA_DIR_ENV,
    _candidate_dirs,
    _read_idx_pair,
    _search_idx_pair,
)

__all__ = [
    "DATASETS",
    "ArrayReader",
    "Dataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "available_datasets",
    "load",
    "load_numpy",
    "split_ranges",
]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is in none of the places :func:`load` looks; the message lists them and the remedies.

    Attributes:
      name: the dataset's name.
      places: one line per place looked at, saying what was missing there.
    """

    def __init__(self, message: str, *, name: str = "", places: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.name = name
        self.places = tuple(places)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What is known about a named dataset before reading it.

    Attributes:
      name: the name :func:`load` takes.
      tfds_name: its TFDS name (``None``: not in TFDS).
      num_classes: number of classes.
      image_shape: ``(height, width, channels)`` of the images :class:`Dataset` returns.
      mean: per-channel mean of the training images on the 0..1 scale.
      std: per-channel standard deviation on the 0..1 scale.
      augment: whether training uses random crop + flip by default.
      splits: number of examples per split, by our split name (``'train'``, ``'test'``).
      tfds_splits: our split name -> TFDS split name, where they differ
        (ImageNet: ``{'test': 'validation'}``).
      how_to_get: how to obtain the data.
    """

    name: str
    tfds_name: str | None
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    splits: dict[str, int]
    tfds_splits: dict[str, str] = dataclasses.field(default_factory=dict)
    how_to_get: str = ""


def _tfds_how_to(name: str) -> str:
    return (
        f"with network access and TensorFlow, `tfds build {name} --file_format=array_record` "
        f"(into $TFDS_DATA_DIR or ~/tensorflow_datasets), or load(..., download=True)"
    )


# Mean/std: per-channel statistics of each training set's pixels on the 0..1 scale.
# Fashion-MNIST: computed here from the 60,000 training images (0.28604, 0.35302).
# MNIST: the customary 0.1307 / 0.3081 (e.g. the PyTorch MNIST example).
# CIFAR-10/100: statistics of the 50,000 training images (the standard deviation over all pixels,
# not the mean of per-image deviations). ImageNet: the usual torchvision constants.
DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "fashion_mnist", 10, (28, 28, 1), (0.2860,), (0.3530,), False,
        {"train": 60000, "test": 10000},
        how_to_get=_FASHION_HOW_TO_GET + " Or, " + _tfds_how_to("fashion_mnist")
        + "; or build the TFDS dataset from the local IDX files: sparsejax.data.prepare_tfds('fashion_mnist').",
    ),
    "mnist": DatasetInfo(
        "mnist", "mnist", 10, (28, 28, 1), (0.1307,), (0.3081,), False,
        {"train": 60000, "test": 10000},
        how_to_get="Download the four MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, e.g. from "
        "https://storage.googleapis.com/cvdf-datasets/mnist/) into a folder passed as data_dir= or into "
        f"${DATA_DIR_ENV}/mnist/; or " + _tfds_how_to("mnist")
        + "; or build the TFDS dataset from the IDX files: sparsejax.data.prepare_tfds('mnist', source_dir=...).",
    ),
    "cifar10": DatasetInfo(
        "cifar10", "cifar10", 10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
        {"train": 50000, "test": 10000},
        how_to_get="Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and put it "
        f"(or the cifar-10-batches-py/ folder it unpacks to) in a folder passed as data_dir= or named by "
        f"${DATA_DIR_ENV}; or " + _tfds_how_to("cifar10") + ".",
    ),
    "cifar100": DatasetInfo(
        "cifar100", "cifar100", 100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
        {"train": 50000, "test": 10000},
        how_to_get="Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and put "
        f"it (or the cifar-100-python/ folder it unpacks to) in a folder passed as data_dir= or named by "
        f"${DATA_DIR_ENV}; or " + _tfds_how_to("cifar100") + ".",
    ),
    "imagenet2012": DatasetInfo(
        "imagenet2012", "imagenet2012", 1000, (224, 224, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True,
        {"train": 1281167, "test": 50000}, tfds_splits={"test": "validation"},
        how_to_get="ImageNet is read from a prepared TFDS dataset only. Download ILSVRC2012_img_train.tar and "
        "ILSVRC2012_img_val.tar from https://image-net.org (registration needed) into "
        "<TFDS data dir>/downloads/manual/, then run `tfds build imagenet2012 --file_format=array_record` "
        "(needs TensorFlow, hours) and pass that TFDS data dir as data_dir= or set $TFDS_DATA_DIR.",
    ),
    "synthetic": DatasetInfo(
        "synthetic", None, 10, (28, 28, 1), (0.5,), (0.25,), False, {"train": 2048, "test": 512},
        how_to_get="It is generated: nothing to obtain.",
    ),
}  # fmt: skip
"""The datasets :func:`load` knows, by name."""

_ALIASES = {
    "fmnist": "fashion_mnist",
    "cifar_10": "cifar10",
    "cifar_100": "cifar100",
    "imagenet": "imagenet2012",
    "imagenet_1k": "imagenet2012",
    "ilsvrc2012": "imagenet2012",
}
_SOURCES = ("auto", "tfds", "files")


def available_datasets() -> tuple[str, ...]:
    """The names :func:`load` accepts.

    Example:
      >>> from sparsejax.data import available_datasets
      >>> available_datasets()
      ('cifar10', 'cifar100', 'fashion_mnist', 'imagenet2012', 'mnist', 'synthetic')
    """
    return tuple(sorted(DATASETS))


def _canonical_name(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, one of {available_datasets()}, got {name!r}")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return key


# --- readers: where a Dataset's examples come from --------------------------------------


class Reader(Protocol):
    """Random access to a split's examples (what :class:`Dataset` wraps)."""

    def __len__(self) -> int: ...

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(images uint8 [n, H, W, C], labels int32 [n])`` of non-negative ``indices``."""
        ...


class ArrayReader:
    """Examples held in memory as numpy arrays.

    Args:
      images: ``uint8`` ``[N, H, W, C]``.
      labels: integer ``[N]``.
    """

    in_memory = True

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = np.ascontiguousarray(images)
        self.labels = np.ascontiguousarray(labels, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.images[indices], self.labels[indices]


def _resize_center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes the shorter side to 8/7 of the target (256 for 224), then crops the centre."""
    from PIL import Image

    if image.ndim == 2:
        image = image[..., None]
    if image.shape[:2] == (height, width):
        return image
    h, w = image.shape[:2]
    short = round(max(height, width) * 8 / 7)
    scale = short / min(h, w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    resized = np.asarray(pil.resize((new_w, new_h), Image.BILINEAR))
    if resized.ndim == 2:
        resized = resized[..., None]
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return resized[top : top + height, left : left + width]


class SourceReader:
    """Examples read on demand from a TFDS data source (``tfds.data_source``).

    Images of another size than ``image_shape`` are resized (shorter side to
    8/7 of the target) and centre-cropped, as ImageNet evaluation does.
    """

    in_memory = False

    def __init__(self, source: Any, image_shape: tuple[int, int, int]) -> None:
        self.source = source
        self.image_shape = image_shape

    def __len__(self) -> int:
        return len(self.source)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        examples = self.source.__getitems__([int(i) for i in indices])
        h, w, c = self.image_shape
        images = np.empty((len(examples), h, w, c), np.uint8)
        for k, ex in enumerate(examples):
            images[k] = _resize_center_crop(np.asarray(ex["image"], np.uint8), h, w)
        labels = np.fromiter((int(ex["label"]) for ex in examples), np.int32, len(examples))
        return images, labels


# --- the Dataset -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A split of an image-classification dataset with random access.

    ``dataset[indices]`` returns ``{'image': uint8 [n, H, W, C], 'label':
    int32 [n]}`` for an integer array (or slice) of indices, and one example
    (``[H, W, C]`` and a scalar) for an integer.

    Attributes:
      name: the dataset's name (``'fashion_mnist'``, ...).
      split: the split as asked for (``'train'``, ``'test[:10%]'``, ...).
      num_classes: number of classes.
      image_shape: ``(height, width, channels)``.
      mean: per-channel mean on the 0..1 scale, for normalisation.
      std: per-channel standard deviation on the 0..1 scale.
      augment: whether training should use random crop + flip by default
        (CIFAR, ImageNet: yes; MNIST-like: no).
      reader: where the examples come from (:class:`ArrayReader` in memory, or
        :class:`SourceReader` over a TFDS data source).
      source: where the data was found, e.g. ``'files:/usr/share/datasets/fashion-mnist'``,
        ``'tfds:/data/fashion_mnist/3.0.1'``, ``'synthetic(seed=0)'`` or ``'arrays'``.
      class_names: the classes' names, when known.

    Example:
      >>> import numpy as np
      >>> from sparsejax.data import load
      >>> ds = load('synthetic', 'train', num_examples=100)
      >>> len(ds), ds.image_shape, ds.num_classes
      (100, (28, 28, 1), 10)
      >>> batch = ds[np.array([0, 5, 7])]
      >>> batch['image'].shape, batch['image'].dtype, batch['label'].dtype
      ((3, 28, 28, 1), dtype('uint8'), dtype('int32'))
    """

    name: str
    split: str
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    reader: Reader = dataclasses.field(repr=False, kw_only=True)
    source: str = dataclasses.field(default="", kw_only=True)
    class_names: tuple[str, ...] = dataclasses.field(default=(), kw_only=True, repr=False)

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (height, width, channels) of positive ints, got {self.image_shape}")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != shape[2] or len(self.std) != shape[2]:
            raise ValueError(
                f"mean and std need one value per channel ({shape[2]}), got {self.mean} and {self.std}"
            )
        if min(self.std) <= 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def in_memory(self) -> bool:
        """Whether the examples are held in memory (else read on demand)."""
        return bool(getattr(self.reader, "in_memory", False))

    def __getitem__(self, indices: Any) -> dict[str, np.ndarray]:
        n = len(self)
        if isinstance(indices, slice):
            indices = np.arange(n)[indices]
        idx = np.asarray(indices)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.dtype == np.bool_ or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"Dataset indices must be integers or a slice, got {idx.dtype}")
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for a dataset of {n} examples")
        flat = np.where(idx < 0, idx + n, idx).reshape(-1)
        images, labels = self.reader.get(flat)
        if idx.ndim == 0:
            return {"image": images[0], "label": labels[0]}
        return {
            "image": images.reshape(*idx.shape, *self.image_shape),
            "label": labels.reshape(idx.shape),
        }

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All examples as ``(images uint8 [N, H, W, C], labels int32 [N])`` (reads everything)."""
        if isinstance(self.reader, ArrayReader):
            return self.reader.images, self.reader.labels
        return self.reader.get(np.arange(len(self)))

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        name: str = "arrays",
        split: str = "train",
        num_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: bool | None = False,
        class_names: Sequence[str] = (),
    ) -> Dataset:
        """A dataset over in-memory arrays.

        Args:
          images: ``uint8`` ``[N, H, W, C]`` (``[N, H, W]`` gets a channel axis).
          labels: integers ``[N]`` in ``0..num_classes-1``.
          name: a name for messages.
          split: a split name for messages.
          num_classes: default ``max(labels) + 1``.
          mean: per-channel mean on the 0..1 scale (default: computed from ``images``).
          std: per-channel standard deviation (default: computed from ``images``).
          augment: default augmentation for training, ``True`` or ``False``
            (``None``: ``False``).
          class_names: optional names of the classes.

        Returns:
          The :class:`Dataset`.

        Raises:
          ValueError: malformed ``images`` or ``labels``, labels out of range,
            or an ``augment`` that is not a bool.

        Example:
          >>> import numpy as np
          >>> from sparsejax.data import Dataset
          >>> ds = Dataset.from_arrays(np.zeros((4, 2, 2, 1), np.uint8), np.array([0, 1, 0, 1]))
          >>> len(ds), ds.num_classes, ds.mean
          (4, 2, (0.0,))
        """
        augment = _bool_option("augment", augment, False)
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim == 3:
            images = images[..., None]
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers [N={len(images)}], got {labels.dtype} {labels.shape}")
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.size else 1
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must be in 0..{num_classes - 1}")
        if mean is None or std is None:
            scaled = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
            mean = mean if mean is not None else tuple(scaled.mean(axis=0)) if scaled.size else (0.0,) * images.shape[-1]
            std = std if std is not None else tuple(np.maximum(scaled.std(axis=0), 1e-3)) if scaled.size else (1.0,) * images.shape[-1]
        return cls(
            name, split, int(num_classes), images.shape[1:], tuple(mean), tuple(std), augment,
            reader=ArrayReader(images, labels), source="arrays", class_names=tuple(class_names),
        )  # fmt: skip


# --- splits ------------------------------------------------------------------------------

# TFDS's split grammar (tensorflow_datasets/core/splits.py): summands separated by '+' with optional
# spaces around it, each a name with an optional selector of non-space characters in brackets,
# the selector two bounds "<val><unit>" with val -?[\d_.]+ and unit '%' or 'shard'.
_SUMMAND_SEP_RE = re.compile(r"\s*\+\s*")
_SPLIT_RE = re.compile(r"(?P<name>[\w-]+)(\[(?P<sel>[\w%:.-]+)\])?")
_BOUND_RE = re.compile(r"((?P<val>-?[\d_.]+)(?P<unit>%|shard)?)?")


def split_ranges(split: str, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """Resolves a TFDS-style split string into ``(base_split, start, stop)`` ranges.

    Accepts TFDS's split grammar, with TFDS's results: a split name
    (``'train'``), a slice of it by absolute or percent bounds
    (``'train[:1000]'``, ``'train[10%:]'``, ``'test[-500:]'``,
    ``'train[12.5%:]'``), and sums (``'train+test'``, spaces allowed around
    ``+`` only). Absolute bounds are integers (``1_000`` allowed), percentages
    may be fractional and lie in ``-100..100``; when one bound is a
    percentage, both are. Percentages are rounded to the closest example, as
    TFDS does. Slices by shard (``'train[:2shard]'``) and TFDS's ``'all'`` are
    not supported.

    Args:
      split: the split string.
      sizes: number of examples per base split.

    Returns:
      One ``(base_split, start, stop)`` per summand.

    Raises:
      ValueError: a ``split`` TFDS would not accept, an unknown base split, or
        a bound outside its split.

    Example:
      >>> from sparsejax.data.datasets import split_ranges
      >>> split_ranges('train[:10%]+test', {'train': 60000, 'test': 10000})
      [('train', 0, 6000), ('test', 0, 10000)]
    """
    out = []
    for part in _SUMMAND_SEP_RE.split(split):
        m = _SPLIT_RE.fullmatch(part)
        if not m or m["name"] not in sizes:
            spaces = " (spaces are allowed only around '+')" if m is None and re.search(r"\s", part) else ""
            raise ValueError(
                f"split {split!r}: expected one of {sorted(sizes)}, optionally sliced like 'train[:10%]' "
                f"or 'test[1000:]', or a sum like 'train+test'{spaces}"
            )
        n = sizes[m["name"]]
        start, stop = 0, n
        if m["sel"] is not None:
            bounds = m["sel"].split(":")
            matches = [_BOUND_RE.fullmatch(b) for b in bounds]
            if len(bounds) != 2 or not all(matches) or not any(bounds):
                raise ValueError(
                    f"split {split!r}: a slice must look like [start:stop] with bounds such as 1000, -500 "
                    "or 10%, e.g. 'train[:80%]'"
                )
            units = [mt["unit"] for mt in matches if mt and mt["unit"]]
            if "shard" in units:
                raise ValueError(
                    f"split {split!r}: slices by shard are not supported; use absolute or percent bounds"
                )
            percent = bool(units)
            start = _resolve_bound(matches[0], 0, n, percent, split)
            stop = _resolve_bound(matches[1], n, n, percent, split)
        out.append((m["name"], start, max(start, stop)))
    return out


def _resolve_bound(mt: re.Match[str] | None, default: int, n: int, percent: bool, split: str) -> int:
    """One slice bound as a non-negative index (percentages rounded to the closest, as TFDS)."""
    if mt is None or mt["val"] is None:
        return default
    text = mt["val"]
    try:
        value = float(text)  # what TFDS does with a percentage; it takes an absolute bound with int()
    except ValueError:
        raise ValueError(f"split {split!r}: {text!r} is not a number; a slice must look like "
                         "[start:stop], e.g. 'train[:80%]' or 'train[1000:]'") from None
    if percent:
        if abs(value) > 100:
            raise ValueError(f"split {split!r}: percentages must be in -100%..100%, got {text}%")
        v = round(value * n / 100.0)
    else:
        try:
            v = int(text)
        except ValueError:
            raise ValueError(f"split {split!r}: absolute bounds must be integers, got {text!r}") from None
    if abs(v) > n:
        raise ValueError(f"split {split!r}: bound {v} is outside a split of {n} examples")
    return v + n if v < 0 else v


# --- load ---------------------------------------------------------------------------------


def _check_kwargs(name: str, kwargs: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"load({name!r}, ...) got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(allowed) or 'none'}"
        )


def _int_option(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _bool_option(name: str, value: Any, default: bool | None) -> bool:
    """``value`` as a bool (``None``: ``default``); anything but a bool is a ``ValueError``.

    With ``default=None`` the option is required: ``None`` is refused too.
    """
    if value is None and default is not None:
        return bool(default)
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


# numpy's SeedSequence splits an integer >= 2**32 into 32-bit words, so such a seed would draw
# the stream of a smaller seed with another epoch, batch or option (seed 2**32 at epoch 0
# shuffles as seed 0 at epoch 1): seeds are limited to 32 bits.
_SEED_LIMIT = 2**32


def _seed_option(value: Any, name: str = "seed") -> int:
    """``value`` as a seed: an integer in ``0 .. 2**32 - 1``, else a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < _SEED_LIMIT:
        raise ValueError(
            f"{name} must be an integer in 0..2**32 - 1 (larger seeds would repeat other seeds' "
            f"random streams), got {value!r}"
        )
    return int(value)


def _load_synthetic(split: str, source: str, kwargs: dict[str, Any]) -> Dataset:
    from sparsejax.data.synthetic import (
        DEFAULT_NOISE,
        DEFAULT_NUM_EXAMPLES,
        synthetic_arrays,
    )

    _check_kwargs("synthetic", kwargs, ("num_examples", "image_shape", "num_classes", "seed", "noise", "augment"))
    if source == "tfds":
        raise ValueError("the synthetic dataset has no TFDS source; use source='auto'")
    shape = kwargs.get("image_shape", (28, 28, 1))
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise ValueError(f"image_shape must be (height, width, channels) of positive ints, got {shape!r}")
    shape = tuple(int(s) for s in shape)
    num_classes = _int_option("num_classes", kwargs.get("num_classes", 10), 2)
    seed = _seed_option(kwargs.get("seed", 0))
    noise = kwargs.get("noise", DEFAULT_NOISE)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < float("inf"):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    sizes = dict(DEFAULT_NUM_EXAMPLES)
    if "num_examples" in kwargs:
        n = _int_option("num_examples", kwargs["num_examples"], 1)
        sizes = {b: n for b in sizes}
    parts, labels = [], []
    for base, start, stop in split_ranges(split, sizes):
        x, y = synthetic_arrays(base, sizes[base], shape, num_classes, seed, noise)
        parts.append(x[start:stop])
        labels.append(y[start:stop])
    info = DATASETS["synthetic"]
    return Dataset(
        "synthetic", split, num_classes, shape, info.mean * shape[2], info.std * shape[2],
        _bool_option("augment", kwargs.get("augment"), info.augment),
        reader=ArrayReader(np.concatenate(parts), np.concatenate(labels)),
        source=f"synthetic(seed={seed})",
        class_names=tuple(f"class_{i}" for i in range(num_classes)),
    )  # fmt: skip


def _read_local(
    name: str, base: str, data_dir: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str] | list[str]:
    """One base split from local files, or the list of places looked at."""
    if name == "fashion_mnist":
        found, looked = _search_idx_pair(base, _candidate_dirs(data_dir))
        if found is None:
            return looked
        x, y = _read_idx_pair(*found, len(FASHION_MNIST_CLASSES))
        return x, y, FASHION_MNIST_CLASSES, os.fspath(found[0].parent)
    if name == "mnist":
        from sparsejax.data.mnist import _search_mnist

        found, looked = _search_mnist(base, data_dir)
        if found is None:
            return looked
        x, y = _read_idx_pair(*found, 10)
        return x, y, tuple(str(i) for i in range(10)), os.fspath(found[0].parent)
    if name in ("cifar10", "cifar100"):
        from sparsejax.data.cifar import _read_cifar, _search_cifar

        found, looked = _search_cifar(name, data_dir)
        if found is None:
            return looked
        out = _read_cifar(name, base, data_dir)
        return out["image"], out["label"], out["label_names"], os.fspath(out["place"])
    return [f"  - (no local-file format for {name}: it is read from a prepared TFDS dataset only)"]


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source: str = "auto",
    download: bool = False,
    **kwargs: Any,
) -> Dataset:
    """Loads a split of a dataset by name, from TFDS or local files, offline by default.

    Sources are tried in order (``source='auto'``): a prepared TFDS dataset
    (in ``data_dir`` if given, else ``$TFDS_DATA_DIR`` or
    ``~/tensorflow_datasets``), then local files (see
    :mod:`sparsejax.data.datasets` for where each dataset's files are looked
    for), then, only with ``download=True``, a TFDS download. Small datasets
    are decoded into memory once: from IDX files Fashion-MNIST takes about
    0.3 s, from a TFDS dataset about 10 s (its images are stored as PNG).

    Args:
      name: ``'fashion_mnist'``, ``'mnist'``, ``'cifar10'``, ``'cifar100'``,
        ``'imagenet2012'`` or ``'synthetic'`` (see :func:`available_datasets`).
      split: ``'train'`` or ``'test'`` (ImageNet's ``'test'`` is its
        validation set), optionally TFDS-sliced: ``'train[:10%]'``,
        ``'test[:1000]'``, ``'train+test'``.
      data_dir: a folder to look in first: a TFDS data folder and/or a folder
        of the dataset's files.
      source: ``'auto'``, ``'tfds'`` (prepared TFDS dataset only) or
        ``'files'`` (local files only).
      download: allow TFDS to download and prepare the dataset when it is not
        found locally (network and TensorFlow needed).
      **kwargs: per dataset. ``synthetic``: ``num_examples`` (per split,
        default 2048 train / 512 test), ``image_shape=(28, 28, 1)``,
        ``num_classes=10``, ``seed=0`` (an integer below ``2**32``), ``noise=7`` (see
        :mod:`sparsejax.data.synthetic`). ``imagenet2012``: ``image_size=224``.
        TFDS-backed: ``in_memory`` (a bool; default: everything but ImageNet is
        decoded into memory once). All: ``augment``, a bool overriding the
        dataset's default (``None``: the default).

    Returns:
      The :class:`Dataset`.

    Raises:
      ValueError: unknown ``name``, ``source`` or ``split``, a bad option, or a
        damaged local file (a corrupt IDX file, a truncated CIFAR archive).
      TypeError: an option the dataset does not take.
      DatasetNotFoundError: the data is nowhere; the message names each place
        looked at and how to obtain it.

    Example:
      >>> from sparsejax.data import load
      >>> train = load('synthetic', 'train', num_examples=256, image_shape=(32, 32, 3))
      >>> test = load('synthetic', 'test[:50%]', num_examples=256, image_shape=(32, 32, 3))
      >>> len(train), len(test), train.mean, train.augment
      (256, 128, (0.5, 0.5, 0.5), False)
      >>> fmnist = load('fashion_mnist', 'train')  # doctest: +SKIP
      >>> len(fmnist), fmnist.source  # doctest: +SKIP
      (60000, 'files:/usr/share/datasets/fashion-mnist')
    """
    key = _canonical_name(name)
    data_dir = Path(data_dir).expanduser() if data_dir is not None else None
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
    if not isinstance(split, str):
        raise ValueError(f"split must be a string like 'train' or 'test[:10%]', got {split!r}")
    if key == "synthetic":
        return _load_synthetic(split, source, kwargs)
    info = DATASETS[key]
    allowed = ("in_memory", "augment") + (("image_size",) if key == "imagenet2012" else ())
    _check_kwargs(key, kwargs, allowed)
    image_shape = info.image_shape
    if key == "imagenet2012":
        size = _int_option("image_size", kwargs.get("image_size", 224), 8)
        image_shape = (size, size, 3)
    in_memory = _bool_option("in_memory", kwargs.get("in_memory"), key != "imagenet2012")
    augment = _bool_option("augment", kwargs.get("augment"), info.augment)
    ranges = split_ranges(split, info.splits)  # checks the split's syntax before any I/O

    def make(reader: Reader, where: str, names: Sequence[str]) -> Dataset:
        return Dataset(
            key, split, info.num_classes, image_shape, info.mean, info.std, augment,
            reader=reader, source=where, class_names=tuple(names),
        )  # fmt: skip

    looked: list[str] = []
    tfds_dir = data_dir if data_dir is not None else tfds_io.default_tfds_dir()
    tfds_what = "data_dir argument" if data_dir is not None else (
        f"${tfds_io.TFDS_DATA_DIR_ENV}" if os.environ.get(tfds_io.TFDS_DATA_DIR_ENV) else "TFDS default"
    )  # fmt: skip
    tfds_split = _tfds_split(split, info)

    if source in ("auto", "tfds"):
        prepared = tfds_io.find_prepared(info.tfds_name, tfds_dir)
        if prepared is not None:
            return _from_tfds(key, tfds_split, tfds_dir, in_memory, image_shape, make)
        looked.append(
            f"  - {tfds_dir / info.tfds_name} (prepared TFDS dataset, {tfds_what}): "
            + ("does not exist" if not (tfds_dir / info.tfds_name).exists() else "no <version>/dataset_info.json")
        )

    if source in ("auto", "files"):
        arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        where, names = "", ()
        for base in dict.fromkeys(b for b, _, _ in ranges):
            got = _read_local(key, base, data_dir)
            if isinstance(got, list):
                looked.extend(got)
                break
            x, y, names, where = got
            arrays[base] = (x, y)
        else:
            sizes = {b: len(y) for b, (_, y) in arrays.items()}
            parts = [(arrays[b][0][i:j], arrays[b][1][i:j]) for b, i, j in split_ranges(split, sizes)]
            if len(parts) == 1:
                reader = ArrayReader(*parts[0])
            else:
                reader = ArrayReader(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            return make(reader, f"files:{where}", names)

    if download and source in ("auto", "tfds"):
        return _from_tfds(key, tfds_split, tfds_dir, in_memory, image_shape, make, download=True)

    what = {"auto": "in a prepared TFDS dataset or in local files", "tfds": "as a prepared TFDS dataset",
            "files": "in local files"}[source]  # fmt: skip
    raise DatasetNotFoundError(
        f"Dataset {key!r} ({split} split) not found {what}. Looked in:\n"
        + "\n".join(looked)
        + f"\nHow to get it: {info.how_to_get}"
        + ("" if download or key == "imagenet2012" else "\nTo let TFDS download it: load(..., download=True)."),
        name=key,
        places=looked,
    )


def _tfds_split(split: str, info: DatasetInfo) -> str:
    """Our split string with base names translated to TFDS's (ImageNet: test -> validation)."""
    if not info.tfds_splits:
        return split
    return re.sub(
        r"(?<![\w-])(" + "|".join(map(re.escape, info.tfds_splits)) + r")(?![\w-])",
        lambda m: info.tfds_splits[m.group(1)],
        split,
    )


def _from_tfds(
    key: str,
    tfds_split: str,
    tfds_dir: Path,
    in_memory: bool,
    image_shape: tuple[int, int, int],
    make: Any,
    *,
    download: bool = False,
) -> Dataset:
    info = DATASETS[key]
    opened = tfds_io.open_prepared(info.tfds_name, tfds_split, tfds_dir, download=download, in_memory=in_memory)
    where = f"tfds:{opened['path']}"
    if "arrays" in opened:
        images, labels = opened["arrays"]
        reader: Reader = ArrayReader(images, labels)
    elif in_memory:
        src = opened["source"]
        if image_shape == info.image_shape and key != "imagenet2012":
            reader = ArrayReader(*tfds_io.read_all(src))
        else:
            reader = ArrayReader(*SourceReader(src, image_shape).get(np.arange(len(src))))
    else:
        reader = SourceReader(opened["source"], image_shape)
    if isinstance(reader, ArrayReader) and reader.images.shape[1:] != image_shape:
        raise ValueError(
            f"{where}: images have shape {reader.images.shape[1:]}, expected {image_shape} for {key}"
        )
    return make(reader, where, opened["label_names"])


# --- load_numpy: arrays for notebooks, downloading when needed ---------------------------------

#: Host whose reachability stands for network access before a TFDS download is tried
#: (TFDS's own files and many datasets are served from it).
_PROBE_HOST = ("storage.googleapis.com", 443)
_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _tensorflow_importable() -> bool:
    """Whether ``import tensorflow`` would find a module (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def _download_blocker(key: str) -> str | None:
    """Why a TFDS download of ``key`` cannot work here, found in seconds; ``None`` when it may.

    TFDS itself retries an unreachable server for minutes, so TensorFlow and
    the network are checked first: the network by one TCP connection to
    ``storage.googleapis.com:443`` with a 5 s timeout (skipped when a proxy is
    configured through the environment, where a direct connection says little).
    """
    import socket

    if key == "imagenet2012":
        return "not possible: TFDS cannot download ImageNet (its archives need a manual download)"
    if not _tensorflow_importable():
        return (
            "not attempted: TensorFlow is not installed, and TFDS needs it to download and prepare "
            "a dataset (pip install 'sparsejax[tf]', or pip install tensorflow-cpu)"
        )
    if not any(os.environ.get(v) for v in _PROXY_ENV):
        try:
            socket.create_connection(_PROBE_HOST, timeout=5).close()
        except OSError as e:
            return f"not attempted: no network access ({_PROBE_HOST[0]}:{_PROBE_HOST[1]} unreachable: {e})"
    return None


def load_numpy(
    name: str,
    split: str,
    *,
    download: bool = True,
    data_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a split as numpy arrays: offline when the data is here, else downloaded with TFDS.

    The entry point for notebooks, on this machine or in Colab. It first does
    what :func:`load` does offline (a prepared TFDS dataset, then local files
    such as ``/usr/share/datasets/fashion-mnist``); when the data is in none
    of those places and ``download=True``, TFDS downloads and prepares it
    (``load(..., download=True)``, into ``data_dir`` or the TFDS data folder),
    after a quick check that TensorFlow is installed and the network is
    reachable. Every example is read into memory: meant for the small
    datasets (Fashion-MNIST, MNIST, CIFAR).

    Args:
      name: a dataset name :func:`load` accepts (see :func:`available_datasets`).
      split: ``'train'`` or ``'test'``, optionally TFDS-sliced (``'test[:2000]'``).
      download: let TFDS download the dataset when it is not found offline.
      data_dir: a folder to look in first (TFDS data folder and/or the
        dataset's files); a download goes there too.
      **kwargs: options of :func:`load` for the dataset (e.g. ``num_examples``
        for ``'synthetic'``).

    Returns:
      ``(images, labels)``: ``uint8`` ``[N, H, W, C]`` and ``int32`` ``[N]``.

    Raises:
      ValueError: an unknown ``name``, a bad ``split`` or option (as :func:`load`).
      DatasetNotFoundError: the data is not here and could not be downloaded;
        the message lists every place looked at, why the download was not
        made or what made it fail, and how to obtain the data (the download's
        exception is chained as ``__cause__``).

    Example:
      >>> from sparsejax.data import load_numpy
      >>> images, labels = load_numpy('synthetic', 'test', num_examples=64)
      >>> images.shape, images.dtype, labels.shape, labels.dtype
      ((64, 28, 28, 1), dtype('uint8'), (64,), dtype('int32'))
      >>> x_test, y_test = load_numpy('fashion_mnist', 'test[:2000]')  # doctest: +SKIP
      >>> x_test.shape  # doctest: +SKIP
      (2000, 28, 28, 1)
    """
    try:
        dataset = load(name, split, data_dir=data_dir, download=False, **kwargs)
    except DatasetNotFoundError as missing:
        dataset = _download_or_raise(missing, split, data_dir, download, kwargs)
    return dataset.arrays()


def _download_or_raise(
    missing: DatasetNotFoundError,
    split: str,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
    kwargs: dict[str, Any],
) -> Dataset:
    """The TFDS download behind :func:`load_numpy`, or a :class:`DatasetNotFoundError` saying why not."""
    key = missing.name
    target = Path(data_dir).expanduser() if data_dir is not None else tfds_io.default_tfds_dir()
    cause: Exception | None = None
    if not download:
        outcome = "not attempted (download=False; load_numpy(..., download=True) lets TFDS download it)"
    else:
        outcome = _download_blocker(key)
        if outcome is None:
            try:
                return load(key, split, data_dir=data_dir, download=True, **kwargs)
            except Exception as e:  # whatever TFDS or the network raised: reported below
                cause = e
                outcome = f"failed: {type(e).__name__}: {e}"
    place = f"  - TFDS download into {target}: {outcome}"
    raise DatasetNotFoundError(
        f"Dataset {key!r} ({split} split) is not available offline and was not downloaded. Looked in:\n"
        + "\n".join((*missing.places, place))
        + f"\nHow to get it: {DATASETS[key].how_to_get}",
        name=key,
        places=(*missing.places, place),
    ) from cause

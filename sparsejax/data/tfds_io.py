"""TensorFlow Datasets (TFDS): find, read and prepare datasets, importing TFDS lazily.

Nothing here imports ``tensorflow_datasets`` (or TensorFlow) at module import:
``import sparsejax.data`` stays cheap. TFDS is imported the first time a
prepared dataset is actually read or built.

* Reading a prepared dataset in the ``array_record`` file format goes through
  :func:`tfds.data_source`, which needs no TensorFlow; other formats
  (``tfrecord``, what ``tfds build`` writes by default) go through
  :func:`tfds.load` and need TensorFlow.
* :func:`prepare_tfds` builds the TFDS datasets ``fashion_mnist``, ``mnist``,
  ``cifar10`` and ``cifar100`` offline, from the local files the rest of
  :mod:`sparsejax.data` reads (the Debian ``dataset-fashion-mnist`` IDX files,
  MNIST IDX files, the CIFAR python pickles), with builders that subclass
  TFDS's own (same name, version and features) but read those files instead of
  downloading. TFDS's manual-download path cannot be used for Fashion-MNIST:
  it checks the archives' checksums, and Debian recompressed them. The images
  are PNG-encoded with PIL, so no TensorFlow is needed, or, with
  ``use_tensorflow=True``, by TFDS with TensorFlow (the ``tf`` extra).

Datasets live in ``data_dir`` when given, else in ``$TFDS_DATA_DIR``, else
``~/tensorflow_datasets`` (TFDS's own rule). TensorFlow, when this module
imports it, is told to be quiet (``TF_CPP_MIN_LOG_LEVEL=2`` unless set), to use
few threads, and to leave every GPU to JAX.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PREPARABLE",
    "TFDS_DATA_DIR_ENV",
    "default_tfds_dir",
    "find_prepared",
    "import_tfds",
    "prepare_tfds",
]

TFDS_DATA_DIR_ENV = "TFDS_DATA_DIR"
"""Environment variable TFDS reads for its data folder."""

PREPARABLE = ("fashion_mnist", "mnist", "cifar10", "cifar100")
"""TFDS datasets :func:`prepare_tfds` can build from local files."""


def default_tfds_dir() -> Path:
    """``$TFDS_DATA_DIR`` if set, else ``~/tensorflow_datasets`` (where TFDS looks by default).

    Example:
      >>> from sparsejax.data.tfds_io import default_tfds_dir
      >>> default_tfds_dir().name  # doctest: +SKIP
      'tensorflow_datasets'
    """
    return Path(os.environ.get(TFDS_DATA_DIR_ENV) or "~/tensorflow_datasets").expanduser()


def find_prepared(tfds_name: str, data_dir: str | os.PathLike[str]) -> Path | None:
    """The folder of a prepared TFDS dataset under ``data_dir``, without importing TFDS.

    A dataset is prepared when ``data_dir/<name>/<version>/dataset_info.json``
    (or ``data_dir/<name>/<config>/<version>/dataset_info.json``) exists; the
    highest version wins.

    Args:
      tfds_name: the TFDS name, e.g. ``'fashion_mnist'``.
      data_dir: a TFDS data folder.

    Returns:
      The version folder, or ``None``.

    Example:
      >>> import tempfile
      >>> from sparsejax.data.tfds_io import find_prepared
      >>> find_prepared('fashion_mnist', tempfile.mkdtemp()) is None
      True
    """
    root = Path(data_dir) / tfds_name
    if not root.is_dir():
        return None
    found = [p.parent for p in (*root.glob("*/dataset_info.json"), *root.glob("*/*/dataset_info.json"))]
    if not found:
        return None

    def version_key(path: Path) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in path.name.split("."))
        except ValueError:
            return (-1,)

    return max(found, key=version_key)


def _full_name(version_dir: Path, data_dir: str | os.PathLike[str]) -> str:
    """``name[/config]:version`` of a prepared dataset folder (loads exactly what is on disk)."""
    parts = version_dir.relative_to(Path(data_dir)).parts
    return "/".join(parts[:-1]) + ":" + parts[-1]


class _DropOpenCVAdvice(logging.Filter):
    """Drops TFDS's one-line advice to install OpenCV (PIL decodes the images fine)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "OpenCV is not installed" not in str(record.msg)


_OPENCV_FILTER = _DropOpenCVAdvice()


def import_tfds() -> Any:
    """Imports ``tensorflow_datasets`` with TensorFlow's C++ logging turned down.

    Returns:
      The ``tensorflow_datasets`` module.

    Raises:
      ImportError: with the command that installs it.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - a dependency of sparsejax
        raise ImportError(
            "sparsejax.data needs tensorflow-datasets for TFDS datasets: pip install tensorflow-datasets"
        ) from e
    absl_logger = logging.getLogger("absl")
    if _OPENCV_FILTER not in absl_logger.filters:
        absl_logger.addFilter(_OPENCV_FILTER)
    return tfds


def _import_tensorflow(threads: int | None = None) -> Any:
    """Imports TensorFlow (needed to build TFDS datasets) so that it shares the machine with JAX."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(
            "Preparing a TFDS dataset (or reading one not in the array_record format) needs "
            "TensorFlow: pip install 'sparsejax[tf]' (tensorflow-cpu), or run scripts/setup.sh."
        ) from e
    threads = threads or min(2, os.cpu_count() or 1)
    with contextlib.suppress(RuntimeError, ValueError):
        tf.config.set_visible_devices([], "GPU")  # accelerators stay JAX's
    with contextlib.suppress(RuntimeError):  # raises once TF's runtime is initialised
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


@contextlib.contextmanager
def quiet_tfds(progress: bool = False) -> Iterator[Any]:
    """Imports TFDS and, for the duration, hides its progress bars and absl warnings."""
    tfds = import_tfds()
    from tensorflow_datasets.core.utils import tqdm_utils

    absl_logger = logging.getLogger("absl")
    old_level, old_bar = absl_logger.level, tqdm_utils._active
    absl_logger.setLevel(logging.ERROR)
    tfds.display_progress_bar(progress)
    try:
        yield tfds
    finally:
        absl_logger.setLevel(old_level)
        tfds.display_progress_bar(old_bar)


def _array_record_formats(builder: Any) -> bool:
    info = builder.info
    formats = {info.file_format, *getattr(info, "alternative_file_formats", ())}
    return any(getattr(f, "value", f) == "array_record" for f in formats if f is not None)


def open_prepared(
    tfds_name: str,
    split: str,
    data_dir: str | os.PathLike[str],
    *,
    download: bool = False,
    in_memory: bool = True,
) -> dict[str, Any]:
    """Opens a split of a TFDS dataset by name (``download=False`` unless asked).

    Returns a dict with ``source`` (a :func:`tfds.data_source` random-access
    sequence) or ``arrays`` (``(images, labels)`` read with :func:`tfds.load`,
    for datasets not in the array_record format), plus ``label_names`` and
    ``path`` (the dataset's folder).
    """
    data_dir = Path(data_dir)
    prepared = find_prepared(tfds_name, data_dir)
    with quiet_tfds() as tfds:
        if prepared is None:
            if not download:
                raise FileNotFoundError(f"no prepared TFDS dataset {tfds_name!r} in {data_dir}")
            _import_tensorflow()  # building needs TensorFlow
            source = tfds.data_source(tfds_name, split=split, data_dir=os.fspath(data_dir), download=True)
            builder = tfds.builder(tfds_name, data_dir=os.fspath(data_dir))
            path = Path(os.fspath(builder.data_path))
        else:
            full_name = _full_name(prepared, data_dir)
            builder = tfds.builder(full_name, data_dir=os.fspath(data_dir))
            path = prepared
            if _array_record_formats(builder):
                source = tfds.data_source(full_name, split=split, data_dir=os.fspath(data_dir), download=False)
            elif not in_memory:
                raise ValueError(
                    f"The TFDS dataset in {prepared} is in the {builder.info.file_format} format; reading "
                    "it example by example needs array_record. Rebuild it with `tfds build "
                    f"{tfds_name} --file_format=array_record` (or `tfds convert_format`)."
                )
            else:
                _import_tensorflow()
                data = tfds.as_numpy(
                    tfds.load(full_name, split=split, data_dir=os.fspath(data_dir), download=False, batch_size=-1)
                )
                label_names = _label_names(builder)
                return {
                    "arrays": (np.asarray(data["image"], np.uint8), np.asarray(data["label"], np.int32)),
                    "label_names": label_names,
                    "path": path,
                }
        return {"source": source, "label_names": _label_names(builder), "path": path}


def _label_names(builder: Any) -> tuple[str, ...]:
    try:
        return tuple(builder.info.features["label"].names)
    except (KeyError, AttributeError, TypeError):
        return ()


def read_all(source: Any, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Decodes every example of a TFDS data source into ``(images, labels)`` arrays."""
    n = len(source)
    images: np.ndarray | None = None
    labels = np.empty((n,), np.int32)
    for start in range(0, n, chunk):
        examples = source.__getitems__(list(range(start, min(n, start + chunk))))
        batch = np.stack([np.asarray(ex["image"]) for ex in examples])
        if batch.ndim == 3:
            batch = batch[..., None]
        if images is None:
            images = np.empty((n, *batch.shape[1:]), np.uint8)
        images[start : start + len(examples)] = batch
        labels[start : start + len(examples)] = [int(ex["label"]) for ex in examples]
    if images is None:
        raise ValueError("the TFDS split is empty")
    return images, labels


# --- preparing from local files -----------------------------------------------------


def _local_splits(name: str, source_dir: str | os.PathLike[str] | None) -> dict[str, dict[str, Any]]:
    """Reads both splits of a dataset from local files (before TensorFlow is imported)."""
    splits: dict[str, dict[str, Any]] = {}
    for split in ("train", "test"):
        if name == "fashion_mnist":
            from sparsejax.data.fashion_mnist import load_fashion_mnist

            x, y = load_fashion_mnist(split, source_dir)
            splits[split] = {"image": x, "label": y}
        elif name == "mnist":
            from sparsejax.data.mnist import load_mnist

            x, y = load_mnist(split, source_dir)
            splits[split] = {"image": x, "label": y}
        else:
            from sparsejax.data.cifar import _read_cifar

            splits[split] = _read_cifar(name, split, source_dir)
    return splits


def _png_bytes(image: np.ndarray) -> bytes:
    """A ``[H, W, C]`` ``uint8`` image as PNG bytes, encoded with PIL (lossless)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


@functools.cache
def _builder_class(name: str) -> type:
    """A builder with TFDS's name, version and features for ``name`` that reads given arrays.

    It subclasses TFDS's own builder (``skip_registration`` keeps the official
    one registered under the name) and writes the examples in file order
    (``disable_shuffling``), so reading the prepared dataset back gives exactly
    the arrays it was built from.
    """
    tfds = import_tfds()
    from tensorflow_datasets.image_classification import cifar, mnist

    base = {"fashion_mnist": mnist.FashionMNIST, "mnist": mnist.MNIST,
            "cifar10": cifar.Cifar10, "cifar100": cifar.Cifar100}[name]  # fmt: skip

    class FromLocalFiles(base, skip_registration=True):  # type: ignore[misc, valid-type]
        __doc__ = f"TFDS {name!r} built from local files by sparsejax."
        # No checksums file to find next to the code (TFDS's lookup of it needs
        # importlib_resources for packages installed in editable mode).
        code_path = None

        def __init__(
            self,
            *,
            splits: dict[str, dict[str, Any]],
            verbose: bool = False,
            png_with_pil: bool = False,
            **kwargs: Any,
        ) -> None:
            self._local_splits = splits
            self._verbose = verbose
            self._png_with_pil = png_with_pil
            super().__init__(**kwargs)

        def _log_download_bytes(self) -> None:  # TFDS prints these to stdout
            if self._verbose:
                super()._log_download_bytes()

        def _log_download_done(self) -> None:
            if self._verbose:
                super()._log_download_done()

        def _info(self) -> Any:
            info = super()._info()
            return tfds.core.DatasetInfo(
                builder=self,
                description=info.description
                + "\n\nPrepared by sparsejax.data.prepare_tfds from local files, in file order.",
                features=info.features,
                supervised_keys=info.supervised_keys,
                homepage=info.homepage,
                citation=info.citation,
                disable_shuffling=True,
            )

        def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
            first = next(iter(self._local_splits.values()))
            for key in ("label", "coarse_label"):
                names = first.get(f"{key}_names")
                if names and key in self.info.features:
                    with contextlib.suppress(ValueError, AttributeError):
                        self.info.features[key].names = list(names)
            return {split: self._generate_examples(split=split) for split in self._local_splits}

        def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:  # type: ignore[override]
            data = self._local_splits[split]
            features = self.info.features
            for i in range(len(data["label"])):
                image = data["image"][i]
                example: dict[str, Any] = {
                    "image": _png_bytes(image) if self._png_with_pil else image,
                    "label": int(data["label"][i]),
                }
                if "id" in features:
                    example["id"] = f"{split}_{i:05d}"
                if "coarse_label" in features:
                    example["coarse_label"] = int(data["coarse_label"][i])
                yield i, example

    FromLocalFiles.name = name
    FromLocalFiles.__name__ = FromLocalFiles.__qualname__ = f"{base.__name__}FromLocalFiles"
    return FromLocalFiles


def prepare_tfds(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    threads: int | None = None,
    progress: bool = False,
    use_tensorflow: bool = False,
) -> Path:
    """Prepares a TFDS dataset from local files, offline, in the ``array_record`` format.

    Afterwards TFDS (and :func:`sparsejax.data.load`) loads it by name, e.g.
    ``tfds.data_source('fashion_mnist', data_dir=data_dir)``, without
    TensorFlow. The examples are in the order of the source files, so the
    prepared dataset equals what the file loaders read. (An official
    ``tfds build`` holds the same examples in TFDS's shuffled order.)

    Sources (``source_dir`` is searched first, then the usual places):

    * ``fashion_mnist``: the four IDX files, as for
      :func:`sparsejax.data.load_fashion_mnist` (by default the Debian package's
      ``/usr/share/datasets/fashion-mnist``);
    * ``mnist``: the four IDX files, as for :func:`sparsejax.data.mnist.load_mnist`;
    * ``cifar10`` / ``cifar100``: the python-version pickles (folder or
      ``.tar.gz``), as for :func:`sparsejax.data.cifar.load_cifar`.

    The images are stored as PNG, as TFDS's own builders store them. By default
    they are encoded with PIL, which needs no TensorFlow (and is a little
    faster: about 35 s of CPU for Fashion-MNIST); ``use_tensorflow=True`` lets
    TFDS encode them with TensorFlow (the ``tf`` extra) instead. PNG is
    lossless, so both give the same pixels.

    Args:
      name: one of ``'fashion_mnist'``, ``'mnist'``, ``'cifar10'``, ``'cifar100'``.
      data_dir: the TFDS data folder to write to (default ``$TFDS_DATA_DIR``,
        else ``~/tensorflow_datasets``).
      source_dir: a folder holding the source files, looked in first.
      overwrite: rebuild even if the dataset is already prepared there.
      threads: TensorFlow's intra- and inter-op threads (default: at most 2).
      progress: show TFDS's progress bars.
      use_tensorflow: let TFDS encode the images with TensorFlow (``threads``
        then limits TensorFlow's thread pools) instead of PIL.

    Returns:
      The prepared dataset's folder, ``data_dir/<name>/<version>``.

    Raises:
      ValueError: if ``name`` cannot be prepared from local files.
      FileNotFoundError: if the source files are missing (the message says where
        it looked and how to obtain them).
      ImportError: if ``use_tensorflow=True`` and TensorFlow is not installed.

    Example:
      >>> import sparsejax.data as sd
      >>> path = sd.prepare_tfds('fashion_mnist', data_dir='/tmp/tfds')  # doctest: +SKIP
      >>> ds = sd.load('fashion_mnist', 'test', source='tfds', data_dir='/tmp/tfds')  # doctest: +SKIP
      >>> len(ds), ds.source  # doctest: +SKIP
      (10000, 'tfds:/tmp/tfds/fashion_mnist/3.0.1')
    """
    if name not in PREPARABLE:
        raise ValueError(
            f"name must be one of {PREPARABLE} (the datasets prepare_tfds builds from local files), "
            f"got {name!r}; for others use `tfds build {name}`"
        )
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_tfds_dir()
    existing = find_prepared(name, data_dir)
    if existing is not None and not overwrite:
        return existing
    splits = _local_splits(name, source_dir)  # fails early, before TensorFlow, when files are missing
    if use_tensorflow:
        _import_tensorflow(threads)
    with quiet_tfds(progress) as tfds:
        builder = _builder_class(name)(
            splits=splits,
            verbose=progress,
            png_with_pil=not use_tensorflow,
            data_dir=os.fspath(data_dir),
            file_format="array_record",
        )
        target = Path(os.fspath(builder.data_path))
        if overwrite and target.exists():
            shutil.rmtree(target)
        with tempfile.TemporaryDirectory(prefix="sparsejax-tfds-") as scratch:
            builder.download_and_prepare(
                download_dir=scratch,
                download_config=tfds.download.DownloadConfig(
                    download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
                ),
            )
    return target

"""CIFAR-10 and CIFAR-100 from the "python version" files (no network, no TensorFlow).

CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) are 60,000 colour 32x32 images,
50,000 for training and 10,000 for testing, in 10 or 100 classes. Their
"python version" is a folder of pickled batches::

    cifar-10-batches-py/   data_batch_1 ... data_batch_5, test_batch, batches.meta
    cifar-100-python/      train, test, meta

each batch a dict with ``data`` (``uint8`` rows of 3072 = 3x32x32 values,
channels first) and ``labels`` (CIFAR-100: ``fine_labels`` and
``coarse_labels``). The folder, or the ``.tar.gz`` archive it comes in
(``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, read without
unpacking), is looked for in the ``data_dir`` argument and in
``$SPARSEJAX_DATA_DIR``.

The pickles are read with an unpickler that only accepts the few numpy and
codec globals these files use, so a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsejax.data.fashion_mnist import DATA_DIR_ENV

__all__ = ["CIFAR_LAYOUT", "find_cifar", "load_cifar", "write_cifar"]

CIFAR_LAYOUT: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
        "meta": "batches.meta",
        "label_key": "labels",
        "names_key": "label_names",
        "num_classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ("train",),
        "test": ("test",),
        "meta": "meta",
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
        "num_classes": 100,
    },
}
"""File layout of the python versions of CIFAR-10 and CIFAR-100."""

_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _allowed_globals() -> dict[tuple[str, str], Any]:
    from numpy._core import multiarray, numeric  # numpy >= 2

    allowed = {
        ("_codecs", "encode"): codecs.encode,
        ("__builtin__", "bytes"): bytes,
        ("builtins", "bytes"): bytes,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches; refuses every global but numpy arrays and bytes."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _allowed_globals()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a CIFAR batch (only numpy arrays are expected)"
            ) from None


def _unpickle(raw: bytes, where: str) -> dict[str, Any]:
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # any failure means a corrupt batch file
        raise ValueError(f"{where}: not a CIFAR python batch ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: not a CIFAR python batch (a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _places(name: str, data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    layout = CIFAR_LAYOUT[name]
    roots = []
    if data_dir is not None:
        roots.append(("data_dir argument", Path(data_dir)))
    if os.environ.get(DATA_DIR_ENV):
        roots.append((f"${DATA_DIR_ENV}", Path(os.environ[DATA_DIR_ENV])))
    places = []
    for what, root in roots:
        places += [(what, root / layout["folder"]), (what, root), (what, root / layout["archive"])]
    return places


def _search_cifar(
    name: str, data_dir: str | os.PathLike[str] | None
) -> tuple[Path | None, list[str]]:
    layout = CIFAR_LAYOUT[name]
    needed = (*layout["train"], *layout["test"], layout["meta"])
    looked = []
    for what, place in _places(name, data_dir):
        if place.name.endswith(".tar.gz"):
            if place.is_file():
                return place, looked
            looked.append(f"  - {place} ({what}): does not exist")
            continue
        missing = [f for f in needed if not (place / f).is_file()]
        if place.is_dir() and not missing:
            return place, looked
        state = "does not exist" if not place.is_dir() else "lacks " + ", ".join(missing)
        looked.append(f"  - {place} ({what}): {state}")
    if not looked:
        looked = [f"  - (nowhere: no data_dir argument and ${DATA_DIR_ENV} is not set)"]
    return None, looked


def _how_to_get(name: str) -> str:
    layout = CIFAR_LAYOUT[name]
    return (
        f"To get {name.upper().replace('CIFAR', 'CIFAR-')}, download {layout['archive']} (the python "
        f"version) from {_URL} and either put it, or the folder {layout['folder']}/ it unpacks to, "
        f"in a folder passed as data_dir= or named by ${DATA_DIR_ENV}."
    )


def find_cifar(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Finds the python-version files of CIFAR-10 or CIFAR-100.

    Looked for, in order, under ``data_dir`` and then ``$SPARSEJAX_DATA_DIR``:
    the folder (``cifar-10-batches-py`` / ``cifar-100-python``), the root
    itself holding the batch files, and the ``.tar.gz`` archive.

    Args:
      name: ``'cifar10'`` or ``'cifar100'``.
      data_dir: a folder to look in first.

    Returns:
      The folder holding the batches, or the archive.

    Raises:
      ValueError: if ``name`` is not ``'cifar10'`` or ``'cifar100'``.
      FileNotFoundError: if the files are nowhere; the message lists every
        place looked at and how to obtain the data.

    Example:
      >>> from sparsejax.data.cifar import find_cifar
      >>> find_cifar('cifar10', data_dir='/data')  # doctest: +SKIP
      PosixPath('/data/cifar-10-batches-py')
    """
    if name not in CIFAR_LAYOUT:
        raise ValueError(f"name must be one of {sorted(CIFAR_LAYOUT)}, got {name!r}")
    found, looked = _search_cifar(name, data_dir)
    if found is None:
        raise FileNotFoundError(
            f"{name} (python version) not found. Looked in:\n" + "\n".join(looked) + "\n" + _how_to_get(name)
        )
    return found


def _read_member(place: Path, folder: str, member: str) -> bytes:
    if place.is_dir():
        return (place / member).read_bytes()
    name = f"{folder}/{member}"
    try:
        with tarfile.open(place, "r:gz") as tar:
            f = tar.extractfile(name)
            if f is None:
                raise ValueError(f"{place}: {name} is not a file")
            return f.read()
    except KeyError as e:
        problem, cause = f"it has no member {name}", e
    except (EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile) as e:  # truncated, or not a .tar.gz
        problem, cause = f"it is not a complete .tar.gz archive ({type(e).__name__}: {e})", e
    raise ValueError(
        f"{place}: damaged CIFAR archive: {problem}. Delete it and download it again from {_URL}"
    ) from cause


def load_cifar(
    name: str, split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Loads a split of CIFAR-10 or CIFAR-100 into memory from the python-version files.

    Args:
      name: ``'cifar10'`` or ``'cifar100'``.
      split: ``'train'`` (50,000 examples) or ``'test'`` (10,000).
      data_dir: a folder holding ``cifar-10-batches-py/`` (or
        ``cifar-100-python/``, or the ``.tar.gz`` archive); looked in before
        ``$SPARSEJAX_DATA_DIR``.

    Returns:
      ``(images, labels, class_names)``: ``uint8`` images ``[N, 32, 32, 3]``
      (channels last), ``int32`` labels ``[N]`` (CIFAR-100: the 100 fine
      labels) and the class names from the ``meta`` file.

    Raises:
      ValueError: for an unknown ``name`` or ``split``, a malformed file, or a
        damaged ``.tar.gz`` archive (truncated, not gzip, or lacking a batch;
        the message says to delete it and download it again).
      FileNotFoundError: if the files are nowhere to be found.

    Example:
      >>> from sparsejax.data.cifar import load_cifar
      >>> x, y, names = load_cifar('cifar10', 'test', data_dir='/data')  # doctest: +SKIP
      >>> x.shape, y.shape, names[:2]  # doctest: +SKIP
      ((10000, 32, 32, 3), (10000,), ('airplane', 'automobile'))
    """
    out = _read_cifar(name, split, data_dir)
    return out["image"], out["label"], out["label_names"]


def _read_cifar(
    name: str, split: str, data_dir: str | os.PathLike[str] | None
) -> dict[str, Any]:
    """All of a CIFAR split: image, label (fine), coarse_label (CIFAR-100), names."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be one of ['test', 'train'], got {split!r}")
    place = find_cifar(name, data_dir)
    layout = CIFAR_LAYOUT[name]
    images, labels, coarse = [], [], []
    for member in layout[split]:
        where = f"{place}:{member}"
        batch = _unpickle(_read_member(place, layout["folder"], member), where)
        if "data" not in batch or layout["label_key"] not in batch:
            raise ValueError(f"{where}: missing 'data' or {layout['label_key']!r}")
        data = np.asarray(batch["data"], dtype=np.uint8)
        label = np.asarray(batch[layout["label_key"]], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(label):
            raise ValueError(
                f"{where}: expected data of shape [N, 3072] and N labels, "
                f"got {data.shape} and {label.shape}"
            )
        if label.size and (label.min() < 0 or label.max() >= layout["num_classes"]):
            raise ValueError(f"{where}: labels must be in 0..{layout['num_classes'] - 1}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(label.astype(np.int32))
        if "coarse_labels" in batch:
            coarse.append(np.asarray(batch["coarse_labels"], dtype=np.int32))
    meta = _unpickle(_read_member(place, layout["folder"], layout["meta"]), f"{place}:{layout['meta']}")

    def names(key: str) -> tuple[str, ...]:
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(key, ()))

    out = {
        "image": np.ascontiguousarray(np.concatenate(images)),
        "label": np.concatenate(labels),
        "label_names": names(layout["names_key"]),
        "place": place,
    }
    if coarse and len(coarse) == len(labels):
        out["coarse_label"] = np.concatenate(coarse)
        out["coarse_label_names"] = names("coarse_label_names")
    return out


def write_cifar(
    folder: str | os.PathLike[str],
    name: str,
    splits: dict[str, tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    label_names: Sequence[str] | None = None,
    coarse_label_names: Sequence[str] | None = None,
) -> Path:
    """Writes arrays in the layout of the CIFAR python version (for tests and small examples).

    The training split is spread over the five ``data_batch_*`` files of
    CIFAR-10 (as evenly as possible) or written to ``train`` for CIFAR-100.

    Args:
      folder: where to create ``cifar-10-batches-py/`` or ``cifar-100-python/``.
      name: ``'cifar10'`` or ``'cifar100'``.
      splits: ``{'train': (images, labels), 'test': ...}`` with ``uint8``
        ``[N, 32, 32, 3]`` images; CIFAR-100 takes ``(images, fine, coarse)``.
      label_names: class names for the meta file (default ``'class_<i>'``).
      coarse_label_names: CIFAR-100's 20 superclass names.

    Returns:
      The created dataset folder.

    Example:
      >>> import numpy as np, tempfile
      >>> from sparsejax.data.cifar import load_cifar, write_cifar
      >>> x = np.arange(2 * 32 * 32 * 3, dtype=np.uint32).astype(np.uint8).reshape(2, 32, 32, 3)
      >>> root = tempfile.mkdtemp()
      >>> _ = write_cifar(root, 'cifar10', {'train': (x, np.array([3, 7])), 'test': (x, np.array([0, 1]))})
      >>> images, labels, names = load_cifar('cifar10', 'train', data_dir=root)
      >>> bool((images == x).all()), labels.tolist(), names[3]
      (True, [3, 7], 'class_3')
    """
    if name not in CIFAR_LAYOUT:
        raise ValueError(f"name must be one of {sorted(CIFAR_LAYOUT)}, got {name!r}")
    layout = CIFAR_LAYOUT[name]
    out = Path(folder) / layout["folder"]
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        arrays = splits[split]
        images = np.asarray(arrays[0], np.uint8)
        if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            raise ValueError(f"{split} images must be uint8 [N, 32, 32, 3], got {images.shape}")
        rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        members = layout[split]
        for k, chunk in enumerate(np.array_split(np.arange(len(images)), len(members))):
            batch: dict[bytes, Any] = {
                b"batch_label": f"{split} batch {k + 1}".encode(),
                b"data": rows[chunk],
                b"filenames": [f"{split}_{i:05d}.png".encode() for i in chunk],
            }
            if name == "cifar10":
                batch[b"labels"] = [int(v) for v in np.asarray(arrays[1])[chunk]]
            else:
                batch[b"fine_labels"] = [int(v) for v in np.asarray(arrays[1])[chunk]]
                batch[b"coarse_labels"] = [int(v) for v in np.asarray(arrays[2])[chunk]]
            with open(out / members[k], "wb") as f:
                pickle.dump(batch, f, protocol=2)
    num = layout["num_classes"]
    names = list(label_names) if label_names is not None else [f"class_{i}" for i in range(num)]
    meta: dict[bytes, Any] = {layout["names_key"].encode(): [n.encode() for n in names]}
    if name == "cifar100":
        coarse = list(coarse_label_names) if coarse_label_names is not None else [
            f"superclass_{i}" for i in range(20)
        ]
        meta[b"coarse_label_names"] = [n.encode() for n in coarse]
    else:
        meta[b"num_cases_per_batch"] = 10000
        meta[b"num_vis"] = 3072
    with open(out / layout["meta"], "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return out

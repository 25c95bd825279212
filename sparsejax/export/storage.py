"""Compressed weights on disk: an ``.npz`` of index and value arrays with a JSON header, no pickle.

:func:`save_sparse` writes every ``nnx.Param`` and ``nnx.BatchStat`` of a
model; each kernel (a leaf named ``kernel`` with two or more axes) whose
density is at most ``max_density`` is stored as the CSR arrays of its
transposed 2-D view ``(prod(shape[:-1]), shape[-1])`` (row pointers int32,
input indices uint16 when they fit, else int32, values in the kernel's dtype),
every other leaf as it is. An array of a dtype the ``.npy`` format cannot name
(``bfloat16`` and the other ``ml_dtypes`` types) is stored as its raw bits
(unsigned integers of the same width) and viewed back on loading, so it
round-trips exactly. The header (array ``__header__``, UTF-8 JSON) holds
the format name and version, the model class and, when given, how to rebuild
it (:func:`sparsejax.models.create` arguments), each leaf's path, storage,
shape, dtype and nonzeros, and a SHA-256 checksum of all arrays and of the
rest of the header (format version 2; version 1 files, whose checksum covers
the arrays only, are still read).
:func:`load_sparse` checks all of it and raises a ``ValueError`` saying what
is wrong for a damaged, foreign or mismatched file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsejax.export.kernels import CSRKernel
from sparsejax.tree import path_str

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "dense_bytes", "load_sparse", "save_sparse"]

FORMAT_NAME = "sparsejax-sparse-export"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)


def _leaves(model: nnx.Module) -> list[tuple[str, np.ndarray]]:
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    flat, _ = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))
    return [(path_str(p), np.asarray(x)) for p, x in flat]


def _is_extension(dtype: np.dtype) -> bool:
    """Whether ``.npy`` cannot name ``dtype`` (the ``ml_dtypes`` types: bfloat16, float8, int4, ...)."""
    if dtype.fields is not None:
        return False
    try:
        return np.lib.format.descr_to_dtype(np.lib.format.dtype_to_descr(dtype)) != dtype
    except (TypeError, ValueError):
        return True


def _encode(a: np.ndarray) -> np.ndarray:
    """``a`` as ``np.savez`` can store it: an extension dtype as unsigned ints of its width."""
    if _is_extension(a.dtype):
        return np.asarray(a, order="C").view(np.dtype(f"u{a.dtype.itemsize}"))
    return a


def _decode_dtype(a: np.ndarray, name: str) -> np.ndarray:
    """Undoes :func:`_encode` for an array whose header dtype is ``name``."""
    if str(a.dtype) == name:
        return a
    try:
        dtype = jnp.dtype(name)
    except TypeError:
        raise ValueError(f"unknown dtype {name!r}") from None
    if not _is_extension(dtype) or a.dtype != np.dtype(f"u{dtype.itemsize}"):
        raise ValueError(f"stored as {a.dtype}, the header says {name}")
    return a.view(dtype)


def _checksum(arrays: Mapping[str, np.ndarray], header: Mapping[str, Any] | None = None) -> str:
    """SHA-256 of the arrays and (version 2) of the header's other fields, as sorted JSON."""
    h = hashlib.sha256()
    if header is not None:
        rest = {k: v for k, v in header.items() if k != "sha256"}
        h.update(json.dumps(rest, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_sparse(
    path: str | os.PathLike[str],
    model: nnx.Module,
    *,
    max_density: float = 0.5,
    spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes the model's weights with sparse kernels compressed (``.npz``, no pickle).

    Args:
      path: the file to write (or a binary file object).
      model: an NNX model.
      max_density: kernels at most this dense are stored compressed.
      spec: optional ``{"name", "num_classes", "input_shape", "kwargs"}``
        (:func:`sparsejax.models.create` arguments, JSON values) so that
        :func:`load_sparse` can rebuild the model without a template.

    Returns:
      The header written (a dict).

    Example:
      >>> import os, tempfile
      >>> from sparsejax.models import create
      >>> from sparsejax.export import load_sparse, save_sparse
      >>> spec = {'name': 'mlp', 'num_classes': 3, 'input_shape': [4], 'kwargs': {'hidden': [8]}}
      >>> model = create('mlp', num_classes=3, input_shape=(4,), hidden=(8,), rngs=0)
      >>> f = os.path.join(tempfile.mkdtemp(), 'w.npz')
      >>> header = save_sparse(f, model, spec=spec)
      >>> type(load_sparse(f)).__name__
      'MLP'
    """
    if not 0.0 <= max_density <= 1.0:
        raise ValueError(f"max_density must lie in [0, 1], got {max_density}")
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for i, (name, x) in enumerate(_leaves(model)):
        entry = {"path": name, "shape": list(x.shape), "dtype": str(x.dtype),
                 "nnz": int(np.count_nonzero(x))}
        is_kernel = name.rsplit("/", 1)[-1] == "kernel" and x.ndim >= 2
        if is_kernel and entry["nnz"] <= max_density * x.size:
            k = CSRKernel.from_dense(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]))
            small = k.shape[0] <= np.iinfo(np.uint16).max
            arrays[f"{i}.indptr"] = k.indptr
            arrays[f"{i}.indices"] = k.indices.astype(np.uint16 if small else np.int32)
            arrays[f"{i}.data"] = _encode(k.data)
            entry["storage"] = "csr"
        else:
            arrays[f"{i}.value"] = _encode(x)
            entry["storage"] = "dense"
        entries.append(entry)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model": type(model).__name__,
        "spec": None if spec is None else json.loads(json.dumps(dict(spec))),
        "leaves": entries,
    }
    header["sha256"] = _checksum(arrays, header)
    blob = np.frombuffer(json.dumps(header).encode(), np.uint8)
    if hasattr(path, "write"):  # a file object
        np.savez_compressed(path, __header__=blob, **arrays)
    else:
        with open(path, "wb") as f:
            np.savez_compressed(f, __header__=blob, **arrays)
    return header


def dense_bytes(model: nnx.Module) -> int:
    """Bytes of the model's ``nnx.Param`` and ``nnx.BatchStat`` arrays in an uncompressed ``.npz``.

    The size of a dense checkpoint of the same weights, to compare with a
    :func:`save_sparse` file.

    Example:
      >>> from sparsejax.models import create
      >>> from sparsejax.export import dense_bytes
      >>> dense_bytes(create('mlp', num_classes=3, input_shape=(4,), hidden=(8,), rngs=0)) > 4 * 67
      True
    """
    buf = io.BytesIO()
    np.savez(buf, **{str(i): x for i, (_, x) in enumerate(_leaves(model))})
    return buf.getbuffer().nbytes


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a .npy array
            raise ValueError(f"it holds a single {type(z).__name__}, not an .npz archive")
        with z:
            files = {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable sparse export (damaged or not an .npz "
                         f"written by save_sparse): {e}") from None
    if "__header__" not in files:
        raise ValueError(f"{path} has no __header__: not written by save_sparse")
    try:
        header = json.loads(files.pop("__header__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the header is damaged ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not a {FORMAT_NAME} file")
    version = header.get("version")
    if version not in _READABLE_VERSIONS:
        raise ValueError(f"{path} has format version {version}; this sparsejax reads versions "
                         f"{', '.join(map(str, _READABLE_VERSIONS))}")
    if _checksum(files, header if version >= 2 else None) != header.get("sha256"):
        raise ValueError(f"{path} is corrupted: its header or arrays do not match the "
                         "header's checksum")
    return header, files


def _decode(entry: Mapping[str, Any], i: int, files: Mapping[str, np.ndarray]) -> np.ndarray:
    shape = tuple(entry["shape"])
    if entry["storage"] == "dense":
        x = _decode_dtype(files[f"{i}.value"], entry["dtype"])
    else:
        n = shape[-1]
        k = CSRKernel((math.prod(shape[:-1]), n), files[f"{i}.indptr"],
                      files[f"{i}.indices"].astype(np.int32),
                      _decode_dtype(files[f"{i}.data"], entry["dtype"]))
        x = k.todense().reshape(shape)
    if tuple(x.shape) != shape or str(x.dtype) != entry["dtype"]:
        raise ValueError(f"leaf {entry['path']!r} does not match its header entry")
    return x


def load_sparse(path: str | os.PathLike[str], model: nnx.Module | None = None) -> nnx.Module:
    """Reads a :func:`save_sparse` file into a (dense) model.

    Args:
      path: the file.
      model: a template of the same architecture (left unchanged); default:
        rebuilt from the header's ``spec`` with :func:`sparsejax.models.create`.

    Returns:
      A model with the stored weights (dense arrays; :func:`sparsify` it for
      sparse inference).

    Raises:
      FileNotFoundError: if there is no such file.
      ValueError: for a damaged file (unreadable, bad header, checksum
        mismatch), another format or version, no template and no spec, or a
        template whose variables differ (missing, extra or differently shaped
        leaves, listed).
    """
    header, files = _read(path)
    if model is None:
        spec = header.get("spec")
        if not spec:
            raise ValueError(f"{path} holds no model spec; pass a template model")
        from sparsejax.models import create

        model = create(spec["name"], spec.get("num_classes", 10), spec.get("input_shape"),
                       rngs=0, **dict(spec.get("kwargs") or {}))
    else:
        model = nnx.clone(model)
    if type(model).__name__ != header.get("model"):
        raise ValueError(f"{path} holds a {header.get('model')}, the template is a "
                         f"{type(model).__name__}")
    template = dict(_leaves(model))
    stored = {e["path"]: e for e in header["leaves"]}
    missing, extra = sorted(set(template) - set(stored)), sorted(set(stored) - set(template))
    wrong = sorted(p for p in set(template) & set(stored)
                   if list(template[p].shape) != list(stored[p]["shape"]))
    if missing or extra or wrong:
        raise ValueError(
            f"{path} does not match the model: missing {missing[:5]}, extra {extra[:5]}, "
            f"differently shaped {[(p, stored[p]['shape'], list(template[p].shape)) for p in wrong[:5]]}")
    try:
        values = {e["path"]: _decode(e, i, files) for i, e in enumerate(header["leaves"])}
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{path} is corrupted: {e}") from None
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    pure = nnx.to_pure_dict(state)
    pure = jax.tree_util.tree_map_with_path(lambda p, _: jnp.asarray(values[path_str(p)]), pure)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model

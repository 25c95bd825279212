"""The workdir of a training run: identity, Orbax checkpoints, metrics and result files.

A workdir holds::

    config.json     the experiment's identity (the ``config`` given to ``fit``)
    trainer.json    the trainer settings that change the result (epochs, seed, batch size,
                    the training pipeline's dataset, split, seed and augmentation, ...)
    checkpoints/    Orbax CheckpointManager: the train state, the epoch's running sums and
                    a JSON record (epoch, next batch, history, wall time, a checksum of
                    every array), by global step
    damaged_checkpoints/  checkpoints that failed to restore, moved aside (never deleted)
    metrics.jsonl   one JSON object per finished epoch
    result.json     written once the run has finished

A workdir whose ``config.json`` or ``trainer.json`` differs from the run asking
for it raises :class:`WorkdirMismatchError` before anything is written, so a
previous run's results are never overwritten. Checkpoints are restored against
the abstract target (shapes, dtypes and shardings of the current train state),
so NamedTuple optimizer states come back as NamedTuples and arrays land
replicated on the current mesh. Only process 0 writes the JSON files; Orbax
coordinates the checkpoint writes of all processes.

A checkpoint that does not restore because it is damaged (unreadable,
truncated or missing files, or arrays that differ from the checksums saved
with them: Orbax does not notice flipped bits in compressed array data) raises
:class:`CheckpointRestoreError`; :meth:`Workdir.restore_latest` then moves it
to ``damaged_checkpoints/`` and tries the next older checkpoint. A checkpoint
that does not fit (another model or optimizer) raises
:class:`WorkdirMismatchError` and nothing is moved.

Boolean leaves (the supports of RigL, SET, static sparse training, STE,
gradual pruning and retraining, held in the optimizer state) are stored
bit-packed, 8 entries per byte (:func:`sparsejax.pruning.pack_bits`, flat
``uint8``; an empty array as one zero byte, since Orbax cannot save arrays of
size zero), and unpacked on restore to the shape, dtype and sharding of the
restore target; callers see boolean arrays only. A packed leaf is stored
*fully replicated* over the devices of its boolean array: the bytes of the
packed vector mix 8 entries that a sharded array may hold on different devices,
a replicated array needs no layout rule of its own, Orbax writes it once (from
its primary replica) in a multi-process run, and it restores the same on any
number of processes or devices. It costs ``size / 8`` bytes of device memory per
device while saving and restoring, no more than the replicated boolean arrays
of the data-parallel trainer. The checksums (:func:`checksums`) are those of
the unpacked state, so a bit lost in packing or unpacking is reported like damage.
The JSON record keeps the shape and dtype of every packed leaf (``packed``:
``{item: {path: {"shape": [...], "dtype": "bool"}}}``), checked against the
restore target before any array is read: a mask of another shape (``(7, 5)``
for ``(5, 7)``, or 35 entries for 40, which pack into as many bytes) is another
model, never bits reread in another shape. Packed checkpoints written before
this record was kept are checked by their packed length only (and by the
checksums, so a mask whose bits differ is then reported as damage).
Checkpoints written before packing (one byte per boolean entry: their metadata
holds ``bool`` arrays) still restore, unpacked as they were saved.

Packing makes the masks 8x smaller before compression (host memory and bytes
serialised during a save); on disk the gain is smaller, since Orbax compresses
array data with zstd, which already squeezes one-byte booleans. Measured with
``benchmarks/checkpoint_size.py`` for RigL at 90% sparsity (ERK) on a
ResNet-18-sized tree (11.7M parameters): masks 11.68 MB unpacked against
1.46 MB packed before compression, 1.25 MB against 0.70 MB on disk (1.8x);
the whole checkpoint 49.0 MB against 48.4 MB (1.2% smaller: the float params
and momentum dominate).
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from sparsejax.pruning.support import pack_bits, unpack_bits
from sparsejax.train.distributed import is_primary
from sparsejax.train.step import Totals, TrainState
from sparsejax.tree import path_str

__all__ = ["CheckpointRestoreError", "Workdir", "WorkdirMismatchError", "normalize_config"]

CONFIG_FILE = "config.json"
TRAINER_FILE = "trainer.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"
ITEMS = ("state", "totals", "meta")
META_KEYS = ("epoch", "batch", "history", "wall_time", "epoch_elapsed")
WEIGHTS = ("step", "params", "model_state")  # what restore_weights reads of the state


class WorkdirMismatchError(ValueError):
    """The workdir belongs to another experiment (a different config); nothing was changed."""


class CheckpointRestoreError(RuntimeError):
    """A checkpoint is damaged (or, from :func:`~sparsejax.train.fit`: none of them restores).

    Raised for unreadable, truncated or missing files and for arrays that differ
    from the checksums saved with them, never for a checkpoint of another model
    (that is :class:`WorkdirMismatchError`). Damaged checkpoints are moved to
    ``<workdir>/damaged_checkpoints/``, never deleted.

    Attributes:
      step: the checkpoint's global step (``None`` when no checkpoint restored).
      where: the damaged part, relative to the checkpoint's directory (e.g.
        ``state/``, ``meta/metadata``), with the array's name when known.
      reason: a short, one-line reason.
    """

    def __init__(self, message: str, *, step: int | None = None, where: str = "",
                 reason: str = "") -> None:
        super().__init__(message)
        self.step, self.where, self.reason = step, where, reason


def normalize_config(config: Mapping[str, Any] | None) -> Any:
    """``config`` as plain JSON data (tuples become lists), for storing and comparing.

    Args:
      config: a JSON-serialisable mapping, or ``None`` (stored as ``{}``).

    Returns:
      The JSON round trip of ``config``.

    Raises:
      ValueError: if ``config`` cannot be written as JSON.

    Example:
      >>> from sparsejax.train.checkpoint import normalize_config
      >>> normalize_config({'hidden': (8, 4), 'lr': 0.1})
      {'hidden': [8, 4], 'lr': 0.1}
    """
    try:
        return json.loads(json.dumps({} if config is None else config, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise ValueError(f"config must be JSON-serialisable (numbers, strings, lists, dicts): {e}") from None


def _diff(stored: Any, given: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(given, dict):
        out = []
        for key in sorted(set(stored) | set(given), key=str):
            name = f"{prefix}{key}"
            if key not in given:
                out.append(f"{name}: {stored[key]!r} in the workdir, absent now")
            elif key not in stored:
                out.append(f"{name}: absent in the workdir, {given[key]!r} now")
            else:
                out.extend(_diff(stored[key], given[key], name + "."))
        return out
    return [] if stored == given else [f"{prefix.rstrip('.') or 'config'}: {stored!r} in the workdir, {given!r} now"]


def _comparable_trainer(stored: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    """``mine`` as it is compared with a stored ``trainer.json``.

    ``train_data`` (the training pipeline's dataset, split, size, seed and
    augmentation, recorded since workdirs without it were written) is compared
    on the fields both records have: a workdir written before it was recorded,
    or a pipeline wrapper that hides some of the fields, is not a mismatch.
    """
    mine = dict(mine)
    if "train_data" not in stored:
        mine.pop("train_data", None)
    elif isinstance(stored["train_data"], dict) and isinstance(mine.get("train_data"), dict):
        mine["train_data"] = {k: mine["train_data"][k] if k in mine["train_data"] else v
                              for k, v in stored["train_data"].items()}
    return mine


def _read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=False, allow_nan=True)


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _is_bool(x: Any) -> bool:
    return x.dtype == jnp.bool_


def _replicated(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding:
    """The fully replicated sharding over the devices of ``sharding`` (see the module docstring)."""
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    if sharding.is_fully_replicated:
        return sharding
    devices = np.array(sorted(sharding.device_set, key=lambda d: d.id))
    return jax.sharding.NamedSharding(jax.sharding.Mesh(devices, ("devices",)),
                                      jax.sharding.PartitionSpec())


def _pack_stored(x: jax.Array) -> jax.Array:
    """:func:`~sparsejax.pruning.pack_bits`, with one zero byte for an empty array (Orbax
    cannot save arrays of size zero)."""
    packed = pack_bits(x)
    return packed if packed.size else jnp.zeros(1, jnp.uint8)


def _unpack_stored(packed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Inverse of :func:`_pack_stored`."""
    return unpack_bits(packed[: (math.prod(shape) + 7) // 8], shape)


def _stored_abstract(tree: Any) -> Any:
    """The layout a checkpoint stores ``tree`` in: boolean leaves as packed, replicated ``uint8``."""

    def leaf(x: Any) -> jax.ShapeDtypeStruct:
        if not _is_bool(x):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        packed = jax.eval_shape(_pack_stored, jax.ShapeDtypeStruct(x.shape, x.dtype))
        return jax.ShapeDtypeStruct(packed.shape, packed.dtype, sharding=_replicated(x.sharding))

    return jax.tree.map(leaf, tree)


@functools.lru_cache(maxsize=32)
def _packer(shardings: tuple[jax.sharding.Sharding, ...]) -> Callable:
    return jax.jit(lambda leaves: [_pack_stored(x) for x in leaves], out_shardings=list(shardings))


@functools.lru_cache(maxsize=32)
def _unpacker(specs: tuple[tuple[tuple[int, ...], jax.sharding.Sharding], ...]) -> Callable:
    return jax.jit(lambda leaves: [_unpack_stored(p, shape) for p, (shape, _) in zip(leaves, specs)],
                   out_shardings=[sharding for _, sharding in specs])


def _packed_record(tree: Any) -> dict[str, dict[str, Any]]:
    """The shape and dtype of every boolean leaf of ``tree`` (stored bit-packed), by path."""
    return {path_str(p): {"shape": list(x.shape), "dtype": "bool"}
            for p, x in jax.tree_util.tree_leaves_with_path(tree) if _is_bool(x)}


def _pack_bools(tree: Any) -> Any:
    """``tree`` with every boolean leaf bit-packed (:func:`_stored_abstract`'s layout)."""
    leaves, treedef = jax.tree.flatten(tree)
    where = [i for i, x in enumerate(leaves) if _is_bool(x)]
    if where:
        packed = _packer(tuple(_replicated(leaves[i].sharding) for i in where))(
            [leaves[i] for i in where])
        for i, p in zip(where, packed):
            leaves[i] = p
    return treedef.unflatten(leaves)


def _unpack_bools(stored: Any, like: Any) -> Any:
    """Inverse of :func:`_pack_bools`: the boolean leaves of ``like`` unpacked from ``stored``,
    with ``like``'s shapes and shardings."""
    leaves, treedef = jax.tree.flatten(stored)
    targets = treedef.flatten_up_to(like)
    where = [i for i, x in enumerate(targets) if _is_bool(x)]
    if where:
        unpacked = _unpacker(tuple((tuple(targets[i].shape), targets[i].sharding) for i in where))(
            [leaves[i] for i in where])
        for i, m in zip(where, unpacked):
            leaves[i] = m
    return treedef.unflatten(leaves)


def _as_uint32(x: jax.Array) -> jax.Array | None:
    """The bits of ``x`` as uint32 words (8-byte items give two); ``None`` for other dtypes."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    size = np.dtype(x.dtype).itemsize
    if size in (4, 8):
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    if size in (1, 2):
        return jax.lax.bitcast_convert_type(x, jnp.uint8 if size == 1 else jnp.uint16).astype(jnp.uint32)
    return None


def _fingerprint(x: jax.Array) -> jax.Array:
    r"""A position-weighted sum of the bits of ``x``, modulo :math:`2^{32}`.

    .. math::

      h = \sum_i b_i (2i + 1) \bmod 2^{32}

    over the flat index :math:`i` of the uint32 words :math:`b_i`: exact (integer
    arithmetic), so independent of sharding and device count; a change of one
    word always changes it (:math:`2i + 1` is invertible modulo :math:`2^{32}`).
    """
    bits = _as_uint32(x)
    if bits is None:
        return jnp.uint32(0)
    index = jnp.zeros(bits.shape, jnp.uint32)
    stride = 1
    for d in reversed(range(bits.ndim)):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, bits.shape, d) * jnp.uint32(stride)
        stride = (stride * bits.shape[d]) % 2**32
    return jnp.sum(bits * (2 * index + 1), dtype=jnp.uint32)


_fingerprints = jax.jit(lambda leaves: [_fingerprint(x) for x in leaves])


def checksums(tree: Any) -> dict[str, int]:
    """One checksum (a uint32, see :func:`_fingerprint`) per array of ``tree``, by path.

    Args:
      tree: a pytree of arrays (sharded or not; all processes take part).

    Returns:
      ``{path: checksum}`` with the paths of :func:`sparsejax.tree.path_str`.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.train.checkpoint import checksums
      >>> a = checksums({'w': jnp.ones(3)})
      >>> a == checksums({'w': jnp.ones(3)}), a == checksums({'w': jnp.ones(3).at[1].set(2.0)})
      (True, False)
    """
    flat = jax.tree_util.tree_leaves_with_path(tree)
    paths, leaves = [p for p, _ in flat], [x for _, x in flat]
    values = jax.device_get(_fingerprints(leaves)) if leaves else []
    return {path_str(p): int(v) for p, v in zip(paths, values)}


_STATUS_CODE = re.compile(r"^[A-Z][A-Z_]+: ")


def _causes(e: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while e is not None and e not in chain and len(chain) < 20:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return chain


def _broken_json(step_dir: Path) -> str:
    """The first JSON file of a checkpoint that does not parse (relative path), or ``''``."""
    try:
        files = sorted(p for p in step_dir.rglob("*") if p.is_file() and (
            p.name in ("metadata", "_METADATA", "_sharding", "_CHECKPOINT_METADATA")
            or p.parent.name == "array_metadatas"))
    except OSError:
        return ""
    for f in files:
        try:
            json.loads(f.read_bytes().decode("utf-8"))
        except (OSError, ValueError):
            return str(f.relative_to(step_dir))
    return ""


def _where_and_why(e: BaseException, step_dir: Path, item: str = "") -> tuple[str, str]:
    """The damaged part (relative to ``step_dir``) and a one-line reason, from an exception chain.

    TensorStore messages name the OCDBT database, the key read and the failure
    (``DATA_LOSS: Error reading "params.layers.0.kernel/0.0" in OCDBT database
    at local file ".../state/": ...``); the long specs they append are dropped.
    """
    root = _causes(e)[-1]
    text = " ".join(str(root).split())
    text = text.split(" [tensorstore_spec", 1)[0].split(" See full TensorStore details", 1)[0]
    code = _STATUS_CODE.match(text)
    files = re.findall(r'local file "([^"]+)"', text)
    array = re.search(r'Error reading "([^"/]+)/[^"]*"', text)
    where = item
    if files:
        try:
            where = (str(Path(files[-1]).relative_to(step_dir))
                     + ("/" if files[-1].endswith("/") else ""))
        except ValueError:
            where = files[-1]
    if array:
        where = f"{where}, array {array.group(1)}" if where else f"array {array.group(1)}"
    if not files and isinstance(root, (UnicodeError, json.JSONDecodeError)):
        where = _broken_json(step_dir) or where
    if not where:  # e.g. "File <step_dir>/meta/metadata not found.": the file named
        for name in [getattr(root, "filename", None), *re.findall(r"\S+", text)]:
            try:
                part = Path(str(name).strip(".,;:'\"()")).relative_to(step_dir)
            except ValueError:
                continue
            if part.parts:
                where = str(part)
                break
    if files or code:
        why = text.rsplit('": ', 1)[-1] if '": ' in text else text
        if code and not why.startswith(code.group(0)):
            why = code.group(0) + why
    else:
        why = f"{type(root).__name__}: {text}" if text else type(root).__name__
    return where, (why if len(why) <= 240 else why[:237] + "...")


def _is_damage(e: BaseException) -> bool:
    """Whether a restore error means unreadable data rather than another model.

    Orbax wraps TensorStore read errors in a plain ``Exception``; TensorStore
    raises ``ValueError`` with a status code; missing items give ``KeyError``;
    damaged JSON gives ``JSONDecodeError``/``UnicodeDecodeError``.
    """
    for c in _causes(e):
        if type(c) is Exception or isinstance(c, (OSError, EOFError, KeyError, UnicodeError,
                                                  json.JSONDecodeError)):
            return True
        if isinstance(c, ValueError) and _STATUS_CODE.match(str(c)):
            return True
    return False


def _abandoned_read(e: BaseException | None) -> bool:
    """Whether ``e`` is a TensorStore read error (raw, or as Orbax wraps it)."""
    return e is not None and any(
        type(c) is Exception or (isinstance(c, ValueError) and _STATUS_CODE.match(str(c)))
        for c in _causes(e))


def _from_orbax(obj: Any) -> bool:
    code = getattr(obj, "cr_code", None) or getattr(getattr(obj, "get_coro", lambda: None)(),
                                                    "cr_code", None)
    return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


class _AbandonedReadsFilter(logging.Filter):
    """Drops asyncio's reports of the TensorStore reads of a restore that had already failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(("Task exception was never retrieved",
                               "Future exception was never retrieved")):
            return not _abandoned_read(record.exc_info[1] if record.exc_info else None)
        if message.startswith("Task was destroyed but it is pending"):
            return "orbax" not in record.getMessage()
        return True


class _QuietAbandonedReads:
    """Drops the tracebacks of the TensorStore reads that a failed restore leaves behind.

    When arrays of a checkpoint cannot be read, Orbax's restore fails at the
    first error and closes its event loop while TensorStore still completes
    the other reads. Each of them then prints a traceback some time later,
    after the damage has been reported in one line: ``RuntimeError: Event loop
    is closed`` and Orbax's read coroutines failing on close (through
    :func:`sys.unraisablehook`), asyncio's "Task/Future exception was never
    retrieved" (its logger). While installed, exactly these are dropped; every
    other unraisable error and asyncio record goes where it went before.
    Installed around the restore attempts; removed again if none failed,
    otherwise kept (the abandoned reads finish at any time later).
    """

    def __init__(self) -> None:
        self._previous = sys.unraisablehook
        self._filter = _AbandonedReadsFilter()
        sys.unraisablehook = self._hook
        logging.getLogger("asyncio").addFilter(self._filter)

    def _hook(self, u: Any) -> None:
        if isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == "Event loop is closed":
            return
        if _from_orbax(u.object) and _abandoned_read(u.exc_value):
            return
        self._previous(u)

    def remove(self) -> None:
        if sys.unraisablehook == self._hook:
            sys.unraisablehook = self._previous
        logging.getLogger("asyncio").removeFilter(self._filter)


def _agree(code: int) -> int:
    """The largest ``code`` of all processes (a collective when there are several)."""
    if jax.process_count() == 1:
        return code
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.int32(code))))


class Workdir:
    """A run's directory: identity checks, checkpoints and metric files.

    Args:
      path: the directory (made absolute; created when the run starts).
      config: the experiment's identity, stored as ``config.json``.
      trainer: the trainer settings that must match on resume, ``trainer.json``.
      keep: how many checkpoints to keep (the newest).

    Example:
      >>> import tempfile
      >>> from sparsejax.train.checkpoint import Workdir
      >>> wd = Workdir(tempfile.mkdtemp(), {'lr': 0.1}, {'epochs': 2}, keep=2)
      >>> wd.inspect()
      'new'
    """

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any] | None,
                 trainer: Mapping[str, Any], *, keep: int) -> None:
        self.path = Path(path).expanduser().absolute()
        self.config = normalize_config(config)
        self.trainer = normalize_config(trainer)
        self.keep = int(keep)
        self._manager: ocp.CheckpointManager | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def _has_checkpoints(self) -> bool:
        d = self.checkpoint_dir
        return d.is_dir() and any(p.name.isdigit() and p.is_dir() for p in d.iterdir())

    def inspect(self) -> str:
        """Checks the workdir against this run and says what to do; writes nothing.

        Returns:
          ``'new'`` (start from scratch), ``'resume'`` (a checkpoint exists) or
          ``'finished'`` (``result.json`` exists).

        Raises:
          WorkdirMismatchError: if the workdir holds another experiment.
        """
        if self.path.exists() and not self.path.is_dir():
            raise WorkdirMismatchError(f"workdir {self.path} exists and is not a directory")
        files = {n: self.path / n for n in (CONFIG_FILE, TRAINER_FILE, RESULT_FILE, METRICS_FILE)}
        if not files[CONFIG_FILE].exists():
            if self._has_checkpoints() or files[RESULT_FILE].exists():
                raise WorkdirMismatchError(
                    f"workdir {self.path} holds checkpoints or results but no {CONFIG_FILE}: "
                    "it is not a sparsejax run of this experiment; choose another --workdir"
                )
            return "new"
        for name, mine in ((CONFIG_FILE, self.config), (TRAINER_FILE, self.trainer)):
            if not files[name].exists():
                continue
            try:
                stored = _read_json(files[name])
            except (OSError, ValueError) as e:
                raise WorkdirMismatchError(f"cannot read {files[name]}: {e}") from None
            if name == TRAINER_FILE and isinstance(stored, dict):
                mine = _comparable_trainer(stored, mine)
            if stored != mine:
                diff = _diff(stored, mine)
                more = f" (and {len(diff) - 5} more)" if len(diff) > 5 else ""
                raise WorkdirMismatchError(
                    f"workdir {self.path} holds another experiment ({name} differs: "
                    + "; ".join(diff[:5]) + more
                    + "). Nothing was changed; use another workdir, or delete this one to start over."
                )
        if files[RESULT_FILE].exists():
            return "finished"
        return "resume" if self._has_checkpoints() else "new"

    def prepare(self, status: str) -> None:
        """Creates the directory and writes the identity files (process 0), all processes synced."""
        _barrier("sparsejax_workdir_inspected")
        if is_primary():
            self.path.mkdir(parents=True, exist_ok=True)
            if status == "new":
                _write_text_atomic(self.path / CONFIG_FILE, json.dumps(self.config, indent=2) + "\n")
                _write_text_atomic(self.path / TRAINER_FILE, json.dumps(self.trainer, indent=2) + "\n")
                if (self.path / METRICS_FILE).exists():  # a run that died before its first checkpoint
                    _write_text_atomic(self.path / METRICS_FILE, "")
        _barrier("sparsejax_workdir_prepared")

    @property
    def manager(self) -> ocp.CheckpointManager:
        """The Orbax :class:`~orbax.checkpoint.CheckpointManager` of ``checkpoints/``."""
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, create=True, cleanup_tmp_directories=True
            )
            handlers = {"state": ocp.StandardCheckpointHandler(),
                        "totals": ocp.StandardCheckpointHandler(),
                        "meta": ocp.JsonCheckpointHandler()}
            self._manager = ocp.CheckpointManager(self.checkpoint_dir, options=options,
                                                  item_handlers=handlers)
        return self._manager

    def latest_step(self) -> int | None:
        """The global step of the newest finished checkpoint, or ``None``."""
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, totals: Totals, meta: Mapping[str, Any]) -> None:
        """Starts an (asynchronous) save of the train state, the running sums and ``meta``.

        Boolean leaves are stored bit-packed (see the module docstring). ``meta``
        is stored with the checksums of every array (:func:`checksums`, of the
        unpacked arrays), which :meth:`restore` verifies, and the shapes of the
        packed leaves, which it checks against its target.
        """
        meta = dict(meta)
        meta["checksums"] = {"state": checksums(state), "totals": checksums(totals)}
        meta["packed"] = {"state": _packed_record(state), "totals": _packed_record(totals)}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_pack_bools(state)),
                totals=ocp.args.StandardSave(_pack_bools(totals)),
                meta=ocp.args.JsonSave(meta),
            ),
        )

    def _damaged(self, step: int, where: str, reason: str) -> CheckpointRestoreError:
        return CheckpointRestoreError(
            f"checkpoint {step} in {self.checkpoint_dir} is damaged ("
            + (f"{where}: {reason})" if where else f"{reason})"),
            step=step, where=where, reason=reason)

    def restore(self, step: int, state: TrainState, totals: Totals) -> tuple[TrainState, Totals, dict]:
        """Restores checkpoint ``step`` against the shapes, dtypes and shardings of ``state``/``totals``.

        All processes agree on the outcome: if one process finds the checkpoint
        damaged (or not fitting), all raise.

        Raises:
          WorkdirMismatchError: if the checkpoint does not fit (another model or optimizer).
          CheckpointRestoreError: if the checkpoint is damaged: a missing item
            directory, unreadable or truncated files, a damaged JSON record, or
            arrays that differ from the checksums saved with them.
        """
        error: BaseException | None = None
        try:
            r = self._restore_local(step, state, totals)
        except (WorkdirMismatchError, CheckpointRestoreError) as e:
            error = e
        self._raise_if_any_failed(step, error, f"the checkpoint at step {step} in "
                                  f"{self.checkpoint_dir} does not fit this model and optimizer")
        new_state, new_totals, meta = r
        meta.pop("packed", None)
        saved = meta.pop("checksums", None)  # absent in checkpoints of earlier versions
        if isinstance(saved, dict):
            for item, tree in (("state", new_state), ("totals", new_totals)):
                self._verify(step, item, checksums(tree), saved.get(item) or {}, partial=False)
        return new_state, new_totals, meta

    def _raise_if_any_failed(self, step: int, error: BaseException | None, mismatch: str) -> None:
        """Raises on every process if a restore of ``step`` failed on any (``mismatch``: why)."""
        code = _agree(2 if isinstance(error, WorkdirMismatchError) else 1 if error else 0)
        if code == 2:
            raise error if isinstance(error, WorkdirMismatchError) else WorkdirMismatchError(
                f"{mismatch} (found by another process); use another workdir")
        if code == 1:
            raise error if error is not None else self._damaged(
                step, "?", "another process could not read it")

    def _read_error(self, step: int, e: Exception, mismatch: str) -> Exception:
        """What a failed Orbax read of checkpoint ``step`` means: damage, or ``mismatch``."""
        if _is_damage(e):
            return self._damaged(step, *_where_and_why(e, self.checkpoint_dir / str(step)))
        return WorkdirMismatchError(
            f"{mismatch} ({type(e).__name__}: {str(e)[:500]}); use another workdir")

    def _checked_meta(self, step: int, meta: Any) -> dict:
        """``meta`` as a dict, if it is a checkpoint record with every key of ``META_KEYS``."""
        if not isinstance(meta, dict) or any(k not in meta for k in META_KEYS):
            missing = [k for k in META_KEYS if not isinstance(meta, dict) or k not in meta]
            raise self._damaged(step, "meta/", f"the record lacks {', '.join(missing)}")
        return dict(meta)

    def _verify(self, step: int, item: str, mine: dict[str, int], saved: dict[str, int], *,
                partial: bool) -> None:
        """Raises if checksums ``mine`` (the same on every process) differ from ``saved``.

        Every saved array must be among ``mine``, unless ``partial`` (only some
        arrays were restored: those are compared).
        """
        keys = [k for k in saved if k in mine] if partial else list(saved)
        bad = [k for k in keys if mine.get(k) != saved[k]]
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise self._damaged(step, f"{item}/", f"the data of {bad[0]}{more} differ "
                                                  "from the checksums saved with them")

    def _restore_local(self, step: int, state: TrainState,
                       totals: Totals) -> tuple[TrainState, Totals, dict]:
        step_dir = self.checkpoint_dir / str(step)
        for item in ITEMS:
            if not (step_dir / item).is_dir():
                raise self._damaged(step, f"{item}/", "the directory is missing")
        mismatch = (f"the checkpoint at step {step} in {self.checkpoint_dir} does not fit this "
                    "model and optimizer")
        packed, meta = self._check_fits(step, {"state": state, "totals": totals}, mismatch)
        targets = {item: (_stored_abstract if packed[item] else _abstract)(tree)
                   for item, tree in (("state", state), ("totals", totals))}
        try:
            r = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(targets["state"]),
                    totals=ocp.args.StandardRestore(targets["totals"]),
                ),
            )
        except Exception as e:  # noqa: BLE001 - sorted into damaged / does not fit
            raise self._read_error(step, e, mismatch) from e
        new = {item: _unpack_bools(r[item], tree) if packed[item] else r[item]
               for item, tree in (("state", state), ("totals", totals))}
        return TrainState(*new["state"]), Totals(*new["totals"]), dict(meta)

    def restore_weights(self, step: int, state: TrainState) -> tuple[TrainState, dict]:
        """Restores only the params, the model state and the step counter of checkpoint ``step``.

        For a finished run whose optimizer state no longer fits the optimizer
        (its layout changed between versions of the library): the weights it
        trained are still there. The paths, shapes and dtypes of the saved
        params and model state (boolean leaves: those recorded before packing)
        are compared with ``state``'s first; then the three items are read with
        Orbax's partial restore and checked against the checksums saved with them.

        Args:
          step: the checkpoint.
          state: the current train state (shapes, dtypes, shardings of the
            params and model state to restore to; its ``opt_state`` is ignored).

        Returns:
          ``(state, meta)``: ``state`` with the restored ``step``, ``params`` and
          ``model_state`` and ``opt_state=None``; ``meta`` the checkpoint's record.

        Raises:
          WorkdirMismatchError: if the params or model state do not fit either
            (another structure, shape or dtype; the message names the
            differences); nothing is moved.
          CheckpointRestoreError: if the checkpoint is damaged.
        """
        error: BaseException | None = None
        mismatch = (f"the params of the checkpoint at step {step} in {self.checkpoint_dir} "
                    "do not fit this model")
        try:
            mine = {name: getattr(state, name) for name in WEIGHTS}
            packed, meta = self._check_fits(step, {"state": mine}, mismatch, only=WEIGHTS)
            target = (_stored_abstract if packed["state"] else _abstract)(mine)
            try:
                weights = ocp.PyTreeCheckpointer().restore(
                    self.checkpoint_dir / str(step) / "state",
                    args=ocp.args.PyTreeRestore(
                        item=target, partial_restore=True,
                        restore_args=ocp.checkpoint_utils.construct_restore_args(target)),
                )
            except Exception as e:  # noqa: BLE001 - sorted into damaged / does not fit
                raise self._read_error(step, e, mismatch) from e
            if packed["state"]:
                weights = _unpack_bools(weights, mine)
        except (WorkdirMismatchError, CheckpointRestoreError) as e:
            error = e
        self._raise_if_any_failed(step, error, mismatch)
        meta.pop("packed", None)
        saved = (meta.pop("checksums", None) or {}).get("state") or {}
        # the same paths as in the whole state's checksums: step, params/..., model_state/...
        self._verify(step, "state", checksums(weights), saved, partial=True)
        return state._replace(opt_state=None, **weights), meta

    def _check_fits(self, step: int, trees: Mapping[str, Any], mismatch: str, *,
                    only: tuple[str, ...] | None = None) -> tuple[dict[str, bool], dict]:
        """Compares the saved arrays' paths, shapes and dtypes with ``trees`` and reads the record.

        Unreadable metadata or record means a damaged checkpoint; different
        arrays, another model. A bit-packed boolean leaf is compared by its
        packed length, then by the shape and dtype the record keeps of it
        (checkpoints written before the record was kept: by its packed length only).

        Args:
          step: the checkpoint.
          trees: the restore targets by item (``'state'``, ``'totals'``).
          mismatch: the start of the :class:`WorkdirMismatchError`'s message.
          only: if given, only the arrays under these top-level names are
            compared (a partial restore; others may differ).

        Returns:
          ``(packed, meta)``: for each item of ``trees``, whether its boolean
          leaves are stored bit-packed (``False`` for a checkpoint of an earlier
          version, whose metadata holds ``bool`` arrays); the checkpoint's JSON
          record (with every key of ``META_KEYS``).
        """

        def kept(path: str) -> bool:
            return only is None or path.split("/", 1)[0] in only

        packed, layouts = {}, {}
        step_dir = self.checkpoint_dir / str(step)
        try:
            metadata = self.manager.item_metadata(step)
        except Exception as e:  # noqa: BLE001 - any failure to read is damage
            raise self._damaged(step, *_where_and_why(e, step_dir)) from e
        for item, tree in trees.items():
            saved_tree = None if metadata is None else metadata.get(item)
            if saved_tree is None:
                raise self._damaged(step, f"{item}/", "its metadata cannot be read")
            try:
                saved = {path_str(p): (tuple(m.shape), str(np.dtype(m.dtype)))
                         for p, m in jax.tree_util.tree_leaves_with_path(saved_tree)}
            except Exception as e:  # noqa: BLE001
                raise self._damaged(step, f"{item}/",
                                    f"its metadata cannot be read ({type(e).__name__}: {e})") from e
            packed[item] = not any(dtype == "bool" for _, dtype in saved.values())
            saved = {p: v for p, v in saved.items() if kept(p)}
            stored = _stored_abstract(tree) if packed[item] else tree
            mine = {path_str(p): (tuple(x.shape), str(np.dtype(x.dtype)))
                    for p, x in jax.tree_util.tree_leaves_with_path(stored)}
            layouts[item] = saved, mine
            if saved == mine:
                continue
            # the boolean arrays behind packed ones are named in the message
            note = {k: f" (bool {tuple(x.shape)} bit-packed)" if packed[item] and _is_bool(x) else ""
                    for k, x in zip(mine, jax.tree.leaves(tree))}
            name = "" if item == "state" else f"{item} "
            problems = [f"{name}{p} missing" for p in sorted(mine.keys() - saved.keys())]
            problems += [f"{name}{p} unexpected" for p in sorted(saved.keys() - mine.keys())]
            problems += [f"{name}{p}: {saved[p][0]} {saved[p][1]} saved, {mine[p][0]} {mine[p][1]}"
                         f"{note[p]} now"
                         for p in sorted(mine.keys() & saved.keys()) if saved[p] != mine[p]]
            raise self._mismatch(mismatch, problems)
        try:
            meta = self.manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001 - sorted into damaged / does not fit
            raise self._read_error(step, e, mismatch) from e
        meta = self._checked_meta(step, meta)
        record = meta.get("packed")  # absent in checkpoints of earlier versions
        for item, tree in trees.items():
            if not packed[item] or not isinstance(record, dict) or record.get(item) is None:
                continue
            try:
                saved_bools = {p: (tuple(int(n) for n in r["shape"]), str(np.dtype(r["dtype"])))
                               for p, r in record[item].items() if kept(p)}
            except Exception as e:  # noqa: BLE001
                raise self._damaged(step, "meta/", "the shapes of its packed arrays cannot be read "
                                                   f"({type(e).__name__}: {e})") from e
            saved, mine = layouts[item]
            if not saved_bools.keys() <= saved.keys():
                raise self._damaged(step, "meta/", "the shapes of its packed arrays name arrays "
                                                   f"that {item}/ does not hold")
            mine_bools = {path_str(p): (tuple(x.shape), "bool")
                          for p, x in jax.tree_util.tree_leaves_with_path(tree)
                          if _is_bool(x) and kept(path_str(p))}
            name = "" if item == "state" else f"{item} "
            problems = []
            for p in sorted(saved_bools.keys() | mine_bools.keys()):
                if saved_bools.get(p) == mine_bools.get(p):
                    continue
                was = (f"{saved_bools[p][0]} {saved_bools[p][1]} (bit-packed)" if p in saved_bools
                       else f"{saved[p][0]} {saved[p][1]}")
                now = (f"{mine_bools[p][0]} bool" if p in mine_bools
                       else f"{mine[p][0]} {mine[p][1]}")
                problems.append(f"{name}{p}: {was} saved, {now} now")
            if problems:
                raise self._mismatch(mismatch, problems)
        return packed, meta

    @staticmethod
    def _mismatch(mismatch: str, problems: list[str]) -> WorkdirMismatchError:
        return WorkdirMismatchError(
            f"{mismatch} ({'; '.join(problems[:4])}"
            + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
            + "); nothing was changed; use another workdir"
        )

    def _move_aside(self, step: int) -> Path:
        """Moves checkpoint ``step`` to ``damaged_checkpoints/`` (process 0) and refreshes the manager.

        Returns:
          The new directory (``<step>``, or ``<step>.1``, ``<step>.2``, ... if taken).
        """
        damaged = self.path / DAMAGED_DIR
        dest = damaged / str(step)
        n = 0
        while dest.exists():
            n += 1
            dest = damaged / f"{step}.{n}"
        error = None
        if is_primary():
            try:
                damaged.mkdir(parents=True, exist_ok=True)
                os.rename(self.checkpoint_dir / str(step), dest)
            except OSError as e:
                error = e
        if _agree(1 if error else 0):
            raise CheckpointRestoreError(
                f"checkpoint {step} in {self.checkpoint_dir} is damaged and could not be moved "
                f"to {damaged} ({error or 'failed on process 0'}); nothing was deleted",
                step=step) from error
        _barrier("sparsejax_damaged_checkpoint_moved")
        self.manager.reload()
        return dest

    def restore_latest(self, state: TrainState, totals: Totals,
                       report: Callable[[str], None]) -> tuple[int, TrainState, Totals, dict] | None:
        """Restores the newest checkpoint that is not damaged, moving damaged ones aside.

        Each damaged checkpoint is moved to ``damaged_checkpoints/<step>``
        (never deleted) and reported in one line to ``report``; then the next
        older one is tried.

        Args:
          state: the current train state (shapes, dtypes, shardings to restore to).
          totals: the current running sums, likewise.
          report: called with one line per damaged checkpoint.

        Returns:
          ``(step, state, totals, meta)``, or ``None`` if there is no checkpoint.

        Raises:
          WorkdirMismatchError: if a checkpoint does not fit (another model or optimizer).
          CheckpointRestoreError: if there are checkpoints but none restores.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        failures = []
        quiet = _QuietAbandonedReads()
        try:
            for i, step in enumerate(steps):
                try:
                    return (step, *self.restore(step, state, totals))
                except CheckpointRestoreError as e:
                    failures.append(f"step {step}: " + (f"{e.where}: " if e.where else "")
                                    + e.reason)
                    message = str(e)
                gc.collect()  # finalises the failed restore's tasks while quiet is installed
                dest = self._move_aside(step)
                then = (f"trying step {steps[i + 1]}" if i + 1 < len(steps)
                        else "no older checkpoint is left")
                report(f"{message}; moved it to {dest}; {then}")
        finally:
            if not failures:
                quiet.remove()
        if not steps:
            return None
        # a run again finds no checkpoint: it trains from the start, unless result.json
        # marks the run finished (then there is no model to rebuild: fit refuses)
        again = (f"delete {self.path / RESULT_FILE} (or the workdir) to train again from the start"
                 if (self.path / RESULT_FILE).exists() else "run again to train from the start")
        raise CheckpointRestoreError(
            f"no checkpoint in {self.checkpoint_dir} could be restored ({'; '.join(failures)}); "
            f"all were moved to {self.path / DAMAGED_DIR} and nothing was deleted; "
            f"use another workdir, or {again}")

    def wait(self) -> None:
        """Blocks until every started save has been written."""
        if self._manager is not None:
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None

    def rewrite_metrics(self, history: list[Mapping[str, Any]]) -> None:
        """Replaces ``metrics.jsonl`` by ``history`` (process 0)."""
        if is_primary():
            text = "".join(_json_line(r) + "\n" for r in history)
            _write_text_atomic(self.path / METRICS_FILE, text)

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Appends one epoch's record to ``metrics.jsonl`` (process 0)."""
        if is_primary():
            with open(self.path / METRICS_FILE, "a") as f:
                f.write(_json_line(record) + "\n")

    def write_result(self, result: Mapping[str, Any]) -> None:
        """Writes ``result.json``, which marks the run finished (process 0)."""
        if is_primary():
            _write_text_atomic(self.path / RESULT_FILE, json.dumps(result, indent=2) + "\n")
        _barrier("sparsejax_result_written")

    def read_result(self) -> dict[str, Any]:
        """The contents of ``result.json``.

        Raises:
          ValueError: if the file is damaged (not a JSON table); the message names it
            and says how to train again.
        """
        path = self.path / RESULT_FILE
        try:
            result = _read_json(path)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{path} is damaged ({' '.join(str(e).split())}); delete it and run "
                             "again to rebuild it from the last checkpoint") from None
        if not isinstance(result, dict) or "wall_time" not in result:
            raise ValueError(f"{path} is damaged (not the record of a finished run); delete it "
                             "and run again to rebuild it from the last checkpoint")
        return result


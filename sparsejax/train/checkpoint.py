"""The workdir of a training run: identity, Orbax checkpoints, metrics and result files.

A workdir holds::

    config.json     the experiment's identity (the ``config`` given to ``fit``)
    trainer.json    the trainer settings that change the result (epochs, seed, batch size, ...)
    checkpoints/    Orbax CheckpointManager: the train state, the epoch's running sums and
                    a JSON record (epoch, next batch, history, wall time), by global step
    metrics.jsonl   one JSON object per finished epoch
    result.json     written once the run has finished

A workdir whose ``config.json`` or ``trainer.json`` differs from the run asking
for it raises :class:`WorkdirMismatchError` before anything is written, so a
previous run's results are never overwritten. Checkpoints are restored against
the abstract target (shapes, dtypes and shardings of the current train state),
so NamedTuple optimizer states come back as NamedTuples and arrays land
replicated on the current mesh. Only process 0 writes the JSON files; Orbax
coordinates the checkpoint writes of all processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from sparsejax.train.distributed import is_primary
from sparsejax.train.step import Totals, TrainState
from sparsejax.tree import path_str

__all__ = ["Workdir", "WorkdirMismatchError", "normalize_config"]

CONFIG_FILE = "config.json"
TRAINER_FILE = "trainer.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_DIR = "checkpoints"


class WorkdirMismatchError(ValueError):
    """The workdir belongs to another experiment (a different config); nothing was changed."""


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
        """Starts an (asynchronous) save of the train state, the running sums and ``meta``."""
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                totals=ocp.args.StandardSave(totals),
                meta=ocp.args.JsonSave(dict(meta)),
            ),
        )

    def restore(self, step: int, state: TrainState, totals: Totals) -> tuple[TrainState, Totals, dict]:
        """Restores checkpoint ``step`` against the shapes, dtypes and shardings of ``state``/``totals``.

        Raises:
          WorkdirMismatchError: if the checkpoint does not fit (another model or optimizer).
        """
        self._check_fits(step, state)
        try:
            r = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_abstract(state)),
                    totals=ocp.args.StandardRestore(_abstract(totals)),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise WorkdirMismatchError(
                f"the checkpoint at step {step} in {self.checkpoint_dir} does not fit this model "
                f"and optimizer ({type(e).__name__}: {str(e)[:500]}); use another workdir"
            ) from e
        return TrainState(*r["state"]), Totals(*r["totals"]), dict(r["meta"])

    def _check_fits(self, step: int, state: TrainState) -> None:
        """Compares the saved arrays' paths, shapes and dtypes with ``state`` before restoring."""
        try:
            saved_tree = self.manager.item_metadata(step)["state"]
            saved = {path_str(p): (tuple(m.shape), str(np.dtype(m.dtype)))
                     for p, m in jax.tree_util.tree_leaves_with_path(saved_tree)}
        except Exception:  # noqa: BLE001 - no usable metadata: let restore itself decide
            return
        mine = {path_str(p): (tuple(x.shape), str(np.dtype(x.dtype)))
                for p, x in jax.tree_util.tree_leaves_with_path(state)}
        if saved == mine:
            return
        problems = [f"{p} missing" for p in sorted(mine.keys() - saved.keys())]
        problems += [f"{p} unexpected" for p in sorted(saved.keys() - mine.keys())]
        problems += [f"{p}: {saved[p][0]} {saved[p][1]} saved, {mine[p][0]} {mine[p][1]} now"
                     for p in sorted(mine.keys() & saved.keys()) if saved[p] != mine[p]]
        raise WorkdirMismatchError(
            f"the checkpoint at step {step} in {self.checkpoint_dir} does not fit this model and "
            f"optimizer ({'; '.join(problems[:4])}"
            + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
            + "); nothing was changed; use another workdir"
        )

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
        """The contents of ``result.json``."""
        return _read_json(self.path / RESULT_FILE)


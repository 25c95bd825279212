"""Several hosts, one program: multi-process start-up and the data-parallel mesh.

The trainer is data-parallel with ``jax.jit``: one 1-D device mesh with a
``'data'`` axis spans every device of every process, each global batch is
split along that axis, and the params and optimizer state are replicated
(``jax.jit`` with a mesh and ``NamedSharding``, as current JAX
recommends over ``pmap``). On one machine nothing needs to be done:
the mesh holds the local devices.

Several hosts
-------------
Start the *same* command once per host (process) with three environment
variables (or the ``sparsejax`` CLI flags ``--coordinator``,
``--num-processes`` and ``--process-id``, which pass them on)::

    # host 0 (the coordinator)                      # host 1
    SPARSEJAX_COORDINATOR=10.0.0.1:1234             SPARSEJAX_COORDINATOR=10.0.0.1:1234
    SPARSEJAX_NUM_PROCESSES=2                       SPARSEJAX_NUM_PROCESSES=2
    SPARSEJAX_PROCESS_ID=0                          SPARSEJAX_PROCESS_ID=1
    sparsejax train ...                             sparsejax train ...

:func:`initialize_distributed` then calls :func:`jax.distributed.initialize`
before anything else touches JAX; :func:`jax.devices` lists the devices of all
processes and the trainer's mesh covers them all. Every process reads only its
rows of each global batch (:mod:`sparsejax.data` does this given
``jax.process_index()`` and ``jax.process_count()``) and the trainer assembles
the global batch with :func:`jax.make_array_from_process_local_data`.
Processes must see the same workdir (a shared file system): Orbax writes the
checkpoints from all processes, while ``config.json``, ``metrics.jsonl`` and
``result.json`` are written by process 0 only, which also prints the log.

On CPU the processes talk through Gloo (JAX's default CPU collectives), so
several processes on one machine stand in for several hosts, e.g. two
processes with ``JAX_NUM_CPU_DEVICES=4`` each and
``SPARSEJAX_COORDINATOR=127.0.0.1:<free port>`` behave like one process with
8 devices (this is how the tests check it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
from jax.sharding import Mesh

__all__ = [
    "COORDINATOR_ENV",
    "DATA_AXIS",
    "NUM_PROCESSES_ENV",
    "PROCESS_ID_ENV",
    "data_mesh",
    "initialize_distributed",
    "is_primary",
]

COORDINATOR_ENV = "SPARSEJAX_COORDINATOR"
NUM_PROCESSES_ENV = "SPARSEJAX_NUM_PROCESSES"
PROCESS_ID_ENV = "SPARSEJAX_PROCESS_ID"
DATA_AXIS = "data"


def _int_setting(name: str, value: int | str | None, env: str) -> int | None:
    if value is None:
        value = os.environ.get(env) or None
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} (or ${env}) must be an integer, got {value!r}") from None


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Joins a multi-process run when a coordinator is given; a no-op otherwise.

    Each argument falls back to its environment variable
    (``SPARSEJAX_COORDINATOR``, ``SPARSEJAX_NUM_PROCESSES``,
    ``SPARSEJAX_PROCESS_ID``). With none of the three set, nothing happens (a
    single-process run). With all three, :func:`jax.distributed.initialize` is
    called. Call this first, before any other JAX call creates the backend.
    Calling it again once initialised does nothing.

    Args:
      coordinator: ``host:port`` of process 0, reachable from every process.
      num_processes: the number of processes (hosts), at least 1.
      process_id: this process's index, in ``[0, num_processes)``.

    Returns:
      ``True`` if this process is (now) part of a multi-process run.

    Raises:
      ValueError: if only some of the three settings are given, or a value is
        out of range.

    Example:
      >>> from sparsejax.train import initialize_distributed
      >>> initialize_distributed()  # nothing set: a single-process run
      False
    """
    coordinator = coordinator or os.environ.get(COORDINATOR_ENV) or None
    num = _int_setting("num_processes", num_processes, NUM_PROCESSES_ENV)
    pid = _int_setting("process_id", process_id, PROCESS_ID_ENV)
    given = {"coordinator": coordinator, "num_processes": num, "process_id": pid}
    if all(v is None for v in given.values()):
        return False
    missing = [k for k, v in given.items() if v is None]
    if missing:
        envs = {"coordinator": COORDINATOR_ENV, "num_processes": NUM_PROCESSES_ENV,
                "process_id": PROCESS_ID_ENV}
        raise ValueError(
            "a multi-process run needs coordinator, num_processes and process_id; missing "
            + ", ".join(f"{k} (${envs[k]})" for k in missing)
        )
    if ":" not in coordinator:
        raise ValueError(f"coordinator must be 'host:port', got {coordinator!r}")
    if num < 1:
        raise ValueError(f"num_processes must be >= 1, got {num}")
    if not 0 <= pid < num:
        raise ValueError(f"process_id must be in [0, {num}), got {pid}")
    if jax.distributed.is_initialized():
        return True
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num, process_id=pid)
    return True


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``'data'`` over ``devices`` (default: all devices of all processes).

    The axis type is ``Auto`` (``jax.make_mesh`` defaults to ``Explicit`` axes
    in current JAX), so ``jax.jit`` places the collectives itself.

    Args:
      devices: the devices, in order (any iterable); default :func:`jax.devices`.

    Returns:
      A :class:`jax.sharding.Mesh`.

    Example:
      >>> from sparsejax.train import data_mesh
      >>> mesh = data_mesh()
      >>> mesh.axis_names, mesh.size == len(mesh.devices.flat)
      (('data',), True)
    """
    if devices is None:
        n, kwargs = jax.device_count(), {}
    else:
        devices = list(devices)  # read once: an iterator is used up by the first read
        if not devices:
            raise ValueError("data_mesh: devices is empty")
        n, kwargs = len(devices), {"devices": devices}
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), **kwargs)


def is_primary() -> bool:
    """Whether this is process 0 (the one that writes files and logs).

    Example:
      >>> from sparsejax.train.distributed import is_primary
      >>> is_primary()
      True
    """
    return jax.process_index() == 0

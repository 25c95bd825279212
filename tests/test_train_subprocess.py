"""The trainer across processes: SIGKILL and resume, and two processes as two hosts.

Both tests start ``python -m tests._train_driver`` (a tiny MLP with dropout on
synthetic data) in child processes and compare with the same run done here, in
the test process (8 simulated CPU devices, conftest.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.train import fit
from sparsejax.train.checkpoint import Workdir
from sparsejax.tree import leaves_with_paths
from tests._train_driver import KILL_ENV, build, parse_args

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # seconds per child run; they take a few seconds on an idle machine

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("train_subprocess")]


def child_env(devices: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARSEJAX_")}
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), **extra)
    return env


def driver(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as f:  # files, not pipes: two children must never block on a full pipe
        return subprocess.Popen([sys.executable, "-m", "tests._train_driver", *args], cwd=ROOT,
                                env=env, stdout=f, stderr=subprocess.STDOUT)


def finish(procs: list[subprocess.Popen]) -> list[int]:
    try:
        return [p.wait(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def reference(args: list[str], **kwargs):
    """The same run as the driver's, uninterrupted, in this process."""
    a = parse_args(["--out", "unused", *args])
    model, optimizer, train, test, config = build(a)
    return fit(model, optimizer, train, epochs=a.epochs, eval_data=test, seed=a.seed,
               config=config, checkpoint_every_steps=a.checkpoint_every, log=None, **kwargs)


def params_of(result) -> dict[str, np.ndarray]:
    return {p: np.asarray(x) for p, x in leaves_with_paths(result.params)}


def free_port() -> int:
    """A free port below the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` is free only until this function returns: any
    process that binds port 0 or connects meanwhile (the other pytest worker, a notebook kernel)
    may receive it before the coordinator binds it. Ports below the ephemeral range are never
    handed out that way, so only a process choosing the same number on purpose could take it.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default lower bound
    candidates = list(range(20000, min(low, 32768)))
    random.Random(os.getpid()).shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # no room below the ephemeral range on this machine: take the race
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigkill_mid_run_then_the_same_command_ends_like_an_uninterrupted_run(tmp_path):
    workdir, out = tmp_path / "run", tmp_path / "out.json"
    args = ["--workdir", str(workdir), "--epochs", "3", "--checkpoint-every", "3",
            "--dropout", "0.2", "--seed", "1"]
    cmd = ["--out", str(out), *args]

    # Killed (SIGKILL, by itself) when batch 6 of epoch 2 is requested, i.e. after 13 steps
    # and once a checkpoint is on disk; checkpoints are due at steps 3, 6, 8, 9, 12, ...
    (rc,) = finish([driver(cmd, child_env(8, **{KILL_ENV: "1:5"}), tmp_path / "killed.log")])
    log = (tmp_path / "killed.log").read_text()
    assert rc == -signal.SIGKILL, log
    assert "KILLING" in log and not out.exists() and not (workdir / "result.json").exists()
    assert any(p.name.isdigit() for p in (workdir / "checkpoints").iterdir())

    (rc,) = finish([driver(cmd, child_env(8), tmp_path / "rerun.log")])
    log = (tmp_path / "rerun.log").read_text()
    assert rc == 0, log
    assert f"resuming {workdir}" in log
    rerun = json.loads(out.read_text())
    assert 3 <= rerun["resumed_from"] <= 12

    ref = reference(args[2:])  # no workdir
    for path, value in params_of(ref).items():
        np.testing.assert_allclose(np.asarray(rerun["params"][path]), value, rtol=0, atol=1e-6,
                                   err_msg=path)
    for mine, theirs in zip(rerun["history"], ref.history):
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "sparsity"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-6), key
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 3

    # A third run of the same experiment (here, in process) finds it finished.
    done = reference(args[2:], workdir=workdir)
    assert done.resumed_from == 24 and done.history == rerun["history"]
    for path, value in params_of(done).items():
        np.testing.assert_array_equal(np.asarray(rerun["params"][path], np.float32), value)


def test_two_processes_with_four_devices_each_match_one_process_with_eight(tmp_path):
    """Also: the boolean supports of static sparse training are saved bit-packed by the two
    processes, and the final checkpoint restores in one process."""
    workdir = tmp_path / "run"
    args = ["--workdir", str(workdir), "--epochs", "2", "--checkpoint-every", "5",
            "--dropout", "0.2", "--static-sparsity", "0.5"]
    port = free_port()
    procs = [
        driver(["--out", str(tmp_path / f"out{i}.json"), *args],
               child_env(4, SPARSEJAX_COORDINATOR=f"127.0.0.1:{port}", SPARSEJAX_NUM_PROCESSES="2",
                         SPARSEJAX_PROCESS_ID=str(i)),
               tmp_path / f"p{i}.log")
        for i in range(2)
    ]
    rcs = finish(procs)
    logs = [(tmp_path / f"p{i}.log").read_text() for i in range(2)]
    assert rcs == [0, 0], "\n\n".join(s[-3000:] for s in logs)
    assert "epoch 2/2" in logs[0] and "epoch 2/2" not in logs[1]  # process 0 logs
    assert not (tmp_path / "out1.json").exists()
    two = json.loads((tmp_path / "out0.json").read_text())
    assert (two["processes"], two["devices"]) == (2, 8)
    assert (workdir / "result.json").exists()

    one = reference(args[2:])  # one process, 8 devices
    assert len(two["history"]) == len(one.history) == 2
    for mine, theirs in zip(two["history"], one.history):
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "sparsity"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-5), key
    for path, value in params_of(one).items():
        np.testing.assert_allclose(np.asarray(two["params"][path]), value, rtol=0, atol=1e-5,
                                   err_msg=path)
    # The checkpoint of the two processes, restored here: the run is finished, the supports
    # (packed on disk) are those of the one-process run, and so is the sparsity.
    done = reference(args[2:], workdir=workdir)
    assert done.resumed_from == 16 and done.history == two["history"]
    supports = [jax.tree.leaves(r.opt_state.support) for r in (done, one)]
    assert len(supports[0]) == 2 and all(m.dtype == jnp.bool_ for m in supports[0])
    for a, b in zip(*supports, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    wd = Workdir(workdir, {}, {}, keep=3)
    stored = [m for m in jax.tree.leaves(wd.manager.item_metadata(16)["state"])
              if getattr(m, "dtype", None) == np.uint8]
    wd.close()
    assert sorted(tuple(m.shape) for m in stored) == sorted(
        (-(-m.size // 8),) for m in supports[0])

"""A damaged checkpoint is not a crash (sparsejax.train.checkpoint, fit and the CLI).

Three kinds of damage, each to the newest checkpoint of a run interrupted
after its second epoch: 64 flipped bytes in the middle of the largest file of
``checkpoints/<step>/state`` (the OCDBT data file holding the zstd-compressed
kernels), that file truncated to half, and the ``state`` directory removed.
``fit`` reports the checkpoint in one line, moves it to
``damaged_checkpoints/`` and resumes from the previous checkpoint, ending
with the parameters of an uninterrupted run; the CLI exits with status 2 and a
one-line message when no checkpoint is left, and nothing is ever deleted.

Orbax does not notice flipped bytes inside compressed array data (zstd frames
carry no checksum and OCDBT verifies only its B-tree nodes): such a checkpoint
restores silently with different values. ``Workdir.save`` therefore stores a
checksum of every array in the checkpoint's JSON record, and the flipped-bytes
case is detected by comparing them (or by TensorStore, where the flip breaks
the zstd stream): either way the test asserts the damage was reported.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from sparsejax.models import create
from sparsejax.train import CheckpointRestoreError, WorkdirMismatchError, cli, fit
from tests._train_driver import make_data

# One worker runs the whole module, so the module-scoped training runs are made once.
pytestmark = pytest.mark.xdist_group("checkpoint_damage")

BATCH, N_TRAIN = 32, 256  # 8 steps per epoch: checkpoints at 8, 16, 24


def _largest_array_file(step_dir: Path) -> Path:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)
    assert largest.parent.name == "d" and largest.stat().st_size > 20_000, largest  # array data
    return largest


def flip_bytes(step_dir: Path) -> None:
    f = _largest_array_file(step_dir)
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    f.write_bytes(bytes(data))


def truncate(step_dir: Path) -> None:
    f = _largest_array_file(step_dir)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def remove_state(step_dir: Path) -> None:
    shutil.rmtree(step_dir / "state")


DAMAGE = {
    # (damage, what the one-line report says: where, and why)
    "flipped": (flip_bytes, r"\(state/(, array [\w.]+)?: (the data of \S+ (and \d+ more )?differ from "
                            r"the checksums saved with them|[A-Z_]+: [^()]+)\)"),
    "truncated": (truncate, r"\(state/, array [\w.]+: OUT_OF_RANGE: [^()]+ \[\d+, \d+\) [^()]+\)"),
    "missing": (remove_state, r"\(state/: the directory is missing\)"),
}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


class _Interrupt(Exception):
    pass


class _StopAt:
    """Batches that raise when batch 0 of epoch ``e`` is requested (after the epoch-e checkpoint)."""

    def __init__(self, inner, e):
        self.inner, self.e, self.batch_size = inner, e, inner.batch_size

    def __len__(self):
        return len(self.inner)

    def epoch(self, epoch, start=0):
        if epoch == self.e:
            raise _Interrupt
        return self.inner.epoch(epoch, start)


def _run(train, test, workdir, log=None):
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    return fit(create("mlp", hidden=(16,), rngs=0), tx, train, epochs=3, eval_data=test,
               workdir=workdir, config={"run": "damage"}, log=log)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The data, an uninterrupted 3-epoch run, and a workdir interrupted after epoch 2."""
    train, test = make_data(BATCH, N_TRAIN, 64, seed=0)
    root = tmp_path_factory.mktemp("damage")
    reference = _run(train, test, root / "reference")
    with pytest.raises(_Interrupt):
        _run(_StopAt(train, 2), test, root / "cut")
    assert sorted(p.name for p in (root / "cut" / "checkpoints").iterdir()) == ["16", "8"]
    return train, test, reference, root


def _assert_same_run(result, reference):
    for a, b in ((result.params, reference.params), (result.opt_state, reference.opt_state)):
        for x, y in zip(_leaves(a), _leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)
    drop = ("epoch_time", "wall_time")
    assert ([{k: v for k, v in r.items() if k not in drop} for r in result.history]
            == [{k: v for k, v in r.items() if k not in drop} for r in reference.history])


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_fit_reports_a_damaged_checkpoint_moves_it_aside_and_resumes_from_the_previous(
        runs, tmp_path, kind):
    train, test, reference, root = runs
    damage, reason = DAMAGE[kind]
    wd = tmp_path / "run"
    shutil.copytree(root / "cut", wd)
    damage(wd / "checkpoints" / "16")
    damaged = _files(wd / "checkpoints" / "16")

    log: list[str] = []
    result = _run(train, test, wd, log.append)

    assert result.resumed_from == 8
    _assert_same_run(result, reference)
    report = [line for line in log if " is damaged (" in line]
    assert len(report) == 1 and "\n" not in report[0], log
    assert report[0].startswith(f"checkpoint 16 in {wd / 'checkpoints'} is damaged ("), report
    assert report[0].endswith(f"; moved it to {wd / 'damaged_checkpoints' / '16'}; trying step 8")
    assert re.search(reason, report[0]), report[0]
    assert log[1] == f"resuming {wd} from step 8 (epoch 2, batch 1 of 8)"
    # The damaged checkpoint is intact under its new name; training saved a new step 16.
    assert _files(wd / "damaged_checkpoints" / "16") == damaged
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir()) == [8, 16, 24]


def test_a_finished_run_with_a_damaged_final_checkpoint_is_rebuilt(runs, tmp_path):
    """The previous checkpoint plus one more epoch give the result; without log, a warning reports."""
    train, test, reference, root = runs
    wd = tmp_path / "run"
    shutil.copytree(root / "reference", wd)
    remove_state(wd / "checkpoints" / "24")
    (wd / "damaged_checkpoints" / "24").mkdir(parents=True)  # taken: a unique name is chosen
    with pytest.warns(RuntimeWarning, match=r"^checkpoint 24 in .* is damaged \(state/: the directory "
                      r"is missing\); moved it to .*damaged_checkpoints/24\.1; trying step 16$"):
        result = _run(train, test, wd)
    assert result.resumed_from == 16 and result.steps == 24
    _assert_same_run(result, reference)
    assert (wd / "damaged_checkpoints" / "24.1" / "meta").is_dir()
    # Now finished again: the same call returns the stored result.
    log: list[str] = []
    again = _run(train, test, wd, log.append)
    assert log == [f"{wd} holds a finished run; returning its result"] and again.resumed_from == 24


def test_no_good_checkpoint_left_raises_and_a_checkpoint_of_another_model_is_not_moved(
        runs, tmp_path):
    train, test, _, root = runs
    wd = tmp_path / "run"
    shutil.copytree(root / "cut", wd)
    for step in (8, 16):
        remove_state(wd / "checkpoints" / str(step))
    with pytest.warns(RuntimeWarning), pytest.raises(
            CheckpointRestoreError, match=r"^no checkpoint in .* could be restored \(step 16: state/: "
            r"the directory is missing; step 8: state/: the directory is missing\); all were moved to "):
        _run(train, test, wd)
    assert sorted(p.name for p in (wd / "damaged_checkpoints").iterdir()) == ["16", "8"]

    # Another model's checkpoint is not damaged: WorkdirMismatchError, nothing moved.
    other = tmp_path / "other"
    shutil.copytree(root / "cut", other)
    before = _files(other)
    with pytest.raises(WorkdirMismatchError, match="does not fit this model"):
        fit(create("mlp", hidden=(8,), rngs=0), optax.inject_hyperparams(optax.sgd)(
            learning_rate=0.1, momentum=0.9), train, epochs=3, workdir=other,
            config={"run": "damage"}, log=None)
    assert _files(other) == before


# ------------------------------------------------------------------------------ the CLI

CLI_RUN = ["train", "--method", "sgd", "--model", "mlp", "--dataset", "synthetic",
           "--data-opt", "num_examples=256", "--data-opt", "image_shape=[8,8,1]", "--epochs", "2",
           "--batch-size", "64", "--eval-batch-size", "64", "--lr", "0.05"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    """A finished ``sparsejax train`` (checkpoints at steps 4 and 8)."""
    wd = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main([*CLI_RUN, "--workdir", str(wd), "--quiet"]) == 0
    assert sorted(p.name for p in (wd / "checkpoints").iterdir()) == ["4", "8"]
    return wd


@pytest.mark.parametrize("kind, quiet", [("flipped", False), ("truncated", False),
                                         ("missing", False), ("missing", True)])
def test_cli_without_a_good_checkpoint_exits_2_with_one_line_and_deletes_nothing(
        cli_run, tmp_path, capsys, kind, quiet):
    damage, _ = DAMAGE[kind]
    wd = tmp_path / "run"
    shutil.copytree(cli_run, wd)
    (wd / "result.json").unlink()  # an interrupted run
    for step in ("4", "8"):
        damage(wd / "checkpoints" / step)
    before = {step: _files(wd / "checkpoints" / step) for step in ("4", "8")}
    capsys.readouterr()

    assert cli.main([*CLI_RUN, "--workdir", str(wd)] + (["--quiet"] if quiet else [])) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert lines[-1].startswith(f"sparsejax train: error: no checkpoint in {wd / 'checkpoints'} "
                                "could be restored (step 8: state"), err
    assert f"all were moved to {wd / 'damaged_checkpoints'} and nothing was deleted" in lines[-1]
    reports = [f"checkpoint 8 in {wd / 'checkpoints'} is damaged (", "trying step 4",
               f"checkpoint 4 in {wd / 'checkpoints'} is damaged (", "no older checkpoint is left"]
    if quiet:  # the reports become one-line warnings on stderr
        assert len(lines) == 3 and all(line.startswith("sparsejax train: warning: checkpoint ")
                                       for line in lines[:2]), err
        shown = lines[:2]
    else:  # the reports are log lines on stdout; stderr is the error alone
        assert len(lines) == 1, err
        shown = [line for line in out.splitlines() if "is damaged" in line]
    assert len(shown) == 2 and reports[0] in shown[0] and shown[0].endswith(reports[1])
    assert reports[2] in shown[1] and shown[1].endswith(reports[3]), shown
    for step in ("4", "8"):
        assert _files(wd / "damaged_checkpoints" / step) == before[step]
    assert not any((wd / "checkpoints").iterdir())


def test_cli_names_a_damaged_result_json_and_says_what_to_do(cli_run, tmp_path, capsys):
    import json

    wd = tmp_path / "run"
    shutil.copytree(cli_run, wd)
    good = (wd / "result.json").read_text()
    (wd / "result.json").write_text(good[: len(good) // 2])  # cut short
    capsys.readouterr()
    assert cli.main([*CLI_RUN, "--workdir", str(wd), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith(f"sparsejax train: error: {wd / 'result.json'} is damaged ("), err
    assert err.endswith("delete it and run again to rebuild it from the last checkpoint"), err
    # the advice works: the last checkpoint gives the same result
    (wd / "result.json").unlink()
    assert cli.main([*CLI_RUN, "--workdir", str(wd), "--quiet"]) == 0
    assert json.loads((wd / "result.json").read_text())["final"] == json.loads(good)["final"]


def test_cli_finished_run_without_a_good_checkpoint_gives_advice_that_works(cli_run, tmp_path,
                                                                           capsys):
    wd = tmp_path / "run"
    shutil.copytree(cli_run, wd)
    for step in ("4", "8"):
        (wd / "checkpoints" / step / "meta" / "metadata").unlink()
    capsys.readouterr()
    assert cli.main([*CLI_RUN, "--workdir", str(wd), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(" damaged (: " not in line and ": : " not in line for line in err), err
    assert "is damaged (meta/metadata: FileNotFoundError: " in err[0], err
    assert "(step 8: meta/metadata: FileNotFoundError: " in err[-1], err
    assert err[-1].endswith(f"use another workdir, or delete {wd / 'result.json'} (or the "
                            "workdir) to train again from the start"), err
    (wd / "result.json").unlink()  # as advised
    assert cli.main([*CLI_RUN, "--workdir", str(wd), "--quiet"]) == 0
    assert (wd / "result.json").is_file()

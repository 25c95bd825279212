"""The main job (experiments/fashion_mnist_mlp.py) on short settings of the real data."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts import load_script, needs_fashion_mnist

pytestmark = needs_fashion_mnist


@pytest.fixture(scope="module")
def job() -> ModuleType:
    return load_script("experiments/fashion_mnist_mlp.py")


def _by_method(rows: list[dict]) -> dict[str, dict]:
    return {r["method"]: r for r in rows}


@pytest.mark.slow
def test_short_run_sgd_vs_grda_vs_lats(job: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    # 2 epochs on 20,000 examples (624 steps; about 10 s of compute per method). c and
    # the LATS lambda are raised so that in these few steps the thresholds prune most
    # weights (seen: SGD 78.5%, gRDA 76.9% accurate with 76.9% sparsity, LATS 74.2% with 97.6%).
    rows = job.main(
        ["--epochs", "2", "--train-subset", "20000", "--batch-size", "64", "--sgd-lr", "0.1",
         "--lr", "0.1", "--grda-c", "0.02", "--grda-mu", "0.51", "--lats-l1", "2e-3", "--quiet"]
    )
    out = capsys.readouterr().out
    assert [r["method"] for r in rows] == ["sgd", "grda", "lats"]
    lats = _by_method(rows)["lats"]
    assert lats["test_accuracy"] > 0.72 and lats["sparsity"] > 0.6, rows
    sgd, grda = _by_method(rows)["sgd"], _by_method(rows)["grda"]
    for r in rows:
        assert set(r) == {"method", "test_accuracy", "sparsity", "weight_sparsity", "wall_time_s"}
        assert 0.0 <= r["sparsity"] <= 1.0 and r["wall_time_s"] > 0
    assert sgd["test_accuracy"] > 0.75, rows
    assert grda["test_accuracy"] > 0.72, rows
    assert grda["test_accuracy"] > sgd["test_accuracy"] - 0.05, rows
    # Plain SGD never produces exact zeros from a dense initialisation.
    assert sgd["sparsity"] < 1e-3 and sgd["weight_sparsity"] < 1e-3, rows
    # gRDA does, in the weight matrices (almost all parameters) as in the total.
    assert grda["sparsity"] > 0.6 and grda["weight_sparsity"] > 0.6, rows
    assert grda["sparsity"] > sgd["sparsity"] + 0.5, rows
    # The printed table and the per-layer table of the gRDA model.
    assert "sparsity (weights)" in out and "layers/0/kernel" in out and "total" in out


def test_deterministic_for_a_seed(job: ModuleType) -> None:
    args = ["--methods", "grda", "--epochs", "1", "--train-subset", "2000", "--quiet", "--seed", "3"]
    first, second = job.main(args), job.main(args)
    other = job.main(args[:-1] + ["4"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]  # noqa: E731
    assert strip(first) == strip(second)
    assert strip(first) != strip(other)


def test_out_keeps_each_method_s_run_and_reuses_it(
    job: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from sparsejax.train import WorkdirMismatchError

    args = ["--methods", "sgd,grda", "--epochs", "1", "--train-subset", "2000", "--out", str(tmp_path)]
    first = job.main(args + ["--quiet"])
    for method in ("sgd", "grda"):
        run = tmp_path / method
        assert json.loads((run / "config.json").read_text())["method"] == method
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
        assert (run / "result.json").is_file()
    capsys.readouterr()
    # Run again: both finished runs are reused as they are (no training, the same rows).
    assert job.main(args) == first
    out = capsys.readouterr().out
    assert out.count("holds a finished run") == 2 and "epoch 1/1" not in out
    # Another gRDA c is another gRDA experiment: refused, the workdir left as it was ...
    before = (tmp_path / "grda" / "metrics.jsonl").read_text()
    with pytest.raises(WorkdirMismatchError, match="hparams.c"):
        job.main(args + ["--grda-c", "0.02", "--quiet"])
    assert (tmp_path / "grda" / "metrics.jsonl").read_text() == before
    # ... but not another SGD experiment: its run is still reused.
    assert job.main(args + ["--methods", "sgd", "--grda-c", "0.02", "--quiet"]) == first[:1]


def test_cli_help_and_errors(job: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        job.main(["--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--methods", "--epochs", "--batch-size", "--seed", "--data-dir", "--lr",
                 "--grda-c", "--grda-mu", "--sgd-lr", "--train-subset", "--out"):
        assert flag in help_text
    for bad in (["--methods", "adam"], ["--epochs", "0"], ["--methods", ""]):
        with pytest.raises(SystemExit) as info:
            job.main(bad)
        assert info.value.code == 2
    assert "--methods" in capsys.readouterr().err


def test_missing_data_message(job: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparsejax.data import fashion_mnist

    monkeypatch.delenv("SPARSEJAX_DATA_DIR", raising=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        job.main(["--data-dir", str(tmp_path), "--epochs", "1"])


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("SPARSEJAX_FULL_MAIN_JOB") != "1",
    reason="the full default run takes minutes; set SPARSEJAX_FULL_MAIN_JOB=1 to run it",
)
def test_defaults_meet_the_target(job: ModuleType) -> None:
    """The issue's requirement: >= 90% sparsity, accuracy within 1.5 points of SGD (gRDA; LATS too)."""
    rows = _by_method(job.main(["--quiet"]))
    for method in ("grda", "lats"):
        assert rows[method]["sparsity"] >= 0.90, rows
        assert rows[method]["test_accuracy"] >= rows["sgd"]["test_accuracy"] - 0.015, rows

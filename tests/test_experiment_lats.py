"""experiments/fashion_mnist_lats.py (LeNet-5: dense SGD against LATS) on a short setting of the real data."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts import load_script, needs_fashion_mnist


@pytest.fixture(scope="module")
def job() -> ModuleType:
    return load_script("experiments/fashion_mnist_lats.py")


@pytest.mark.slow
@needs_fashion_mnist
def test_short_run_lats_is_sparse_and_close_to_dense_sgd(
    job: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2 epochs of 12,800 examples (200 steps per method). l1 is raised so that the
    # threshold lambda * sum(lr) prunes most kernel weights in these few steps
    # (seen: SGD 80.4%, LATS 77.3% accurate with 74.2% of the kernels pruned).
    rows = job.main(["--methods", "sgd,lats", "--epochs", "2", "--train-subset", "12800",
                     "--warmup-steps", "20", "--l1", "0.015", "--quiet"])
    out = capsys.readouterr().out
    sgd, lats = rows
    assert [r["method"] for r in rows] == ["sgd", "lats"]
    for r in rows:
        assert set(r) == {"method", "test_accuracy", "weight_sparsity", "sparsity", "l1",
                          "threshold", "steps", "wall_time_s"}
        assert r["steps"] == 200 and r["wall_time_s"] > 0
    assert sgd["weight_sparsity"] == 0.0 and sgd["sparsity"] == 0.0, rows
    assert sgd["test_accuracy"] > 0.72, rows
    assert 0.6 < lats["weight_sparsity"] < 0.97, rows
    assert lats["sparsity"] < lats["weight_sparsity"], rows  # biases are not thresholded
    assert lats["test_accuracy"] > sgd["test_accuracy"] - 0.05, rows
    # the threshold is lambda times the sum of the learning rates actually used
    lr = job.learning_rate(job.parse_args(["--warmup-steps", "20"]), 200)
    assert lats["threshold"] == pytest.approx(0.015 * sum(float(lr(k)) for k in range(200)), rel=1e-4)
    assert "sparsity (kernels)" in out and "fc1/kernel" in out


@needs_fashion_mnist
def test_out_resumes_finished_runs_and_check_rechecks_them(
    job: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One epoch of 10 steps: far from the band, so --check must fail on the stored run.
    args = ["--methods", "lats", "--epochs", "1", "--train-subset", "1280", "--warmup-steps", "2",
            "--l1", "0.015", "--quiet", "--out", str(tmp_path)]
    (first,) = job.main(args)
    assert first["steps"] == 10 and first["weight_sparsity"] < 0.88, first
    assert first["l1"] == 0.015 and first["threshold"] > 0
    history = (tmp_path / "lats" / "metrics.jsonl").read_text().splitlines()
    assert len(history) == 1 and '"threshold"' in history[0]
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        job.main(args + ["--check"])  # reuses the finished run: no second training
    assert info.value.code == 1
    out = capsys.readouterr().out
    assert "FAILED: lats: kernel sparsity" in out
    assert f"{first['weight_sparsity']:.2%}" in out
    # A band around the run's own sparsity passes, on the very same stored run.
    rows = job.main(args + ["--check", "--target-sparsity", f"{first['weight_sparsity']:.4f}"])
    assert rows == [first]
    assert "OK: the sparse methods" in capsys.readouterr().out


def test_check_flags_sparsity_outside_the_band_and_accuracy_drops(job: ModuleType) -> None:
    args = argparse.Namespace(target_sparsity=0.9, tolerance=0.02, max_accuracy_drop=0.02)
    row = lambda m, acc, s: {"method": m, "test_accuracy": acc, "weight_sparsity": s}  # noqa: E731
    assert job.check([row("sgd", 0.90, 0.0), row("lats", 0.885, 0.91)], args) == []
    failures = job.check([row("sgd", 0.90, 0.0), row("lats", 0.87, 0.93),
                          row("continuation", 0.89, 0.875)], args)
    assert len(failures) == 3
    # continuation holds the l1 that met the target: above the band is accepted
    assert job.check([row("sgd", 0.90, 0.0), row("continuation", 0.89, 0.95)], args) == []
    assert any("lats: kernel sparsity 93.00%" in f for f in failures)
    assert any("lats: test accuracy" in f for f in failures)
    assert any("continuation: kernel sparsity 87.50%" in f for f in failures)


def test_command_line_is_validated(job: ModuleType) -> None:
    for bad in (["--methods", "adam"], ["--target-sparsity", "1.0"], ["--growth", "0.5"],
                ["--interval", "0"], ["--l1", "-1"], ["--seed", "-1"]):
        with pytest.raises(SystemExit):
            job.parse_args(bad)

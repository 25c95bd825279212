"""``sparsejax export`` and ``sparsejax bench`` on a tiny finished run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparsejax.export import eval_copy, load_sparse
from sparsejax.train import cli

pytestmark = pytest.mark.xdist_group("cli_export")

RUN = ["--model", "mlp", "--dataset", "synthetic", "--data-opt", "num_examples=128",
       "--data-opt", "image_shape=[6,6,1]", "--epochs", "1", "--batch-size", "64",
       "--eval-batch-size", "64", "--lr", "0.05", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main(["train", "--method", "grda", "--hp", "c=0.5", *RUN,
                     "--workdir", str(workdir)]) == 0
    return workdir


def test_export_writes_compressed_weights_that_reload(run_dir, capsys) -> None:
    assert cli.main(["export", "--workdir", str(run_dir), "--max-density", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "structured shrink" in out and "compressed weights" in out
    report = json.loads((run_dir / "export" / "export.json").read_text())
    assert report["max_abs_diff"] < 1e-5
    assert report["bytes_sparse_npz"] > 0 and report["params"][1] <= report["params"][0]
    run = cli.load_finished_run(run_dir)
    model = cli.runs.model_with_params(run.result.model, run.result.params)
    loaded = load_sparse(run_dir / "export" / "sparse.npz")  # rebuilt from the stored spec
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 1)).astype(np.float32)
    np.testing.assert_allclose(eval_copy(loaded)(x), eval_copy(model)(x), rtol=1e-6, atol=1e-6)


def test_bench_reports_and_refuses_bad_input(run_dir, capsys) -> None:
    assert cli.main(["bench", "--workdir", str(run_dir), "--batch", "2", "--rounds", "1",
                     "--quiet"]) == 0
    rows = json.loads((run_dir / "export" / "bench.json").read_text())
    assert [r["batch"] for r in rows] == [2]
    assert all(r["dense_ms"] > 0 and r["sparse_ms"] > 0 and r["shrunk_ms"] > 0 for r in rows)
    # Sparse is never reported slower than dense: it falls back.
    assert all(r["sparse_ms"] <= r["dense_ms"] or r["fell_back"] for r in rows)
    capsys.readouterr()
    assert cli.main(["bench", "--workdir", str(run_dir), "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err
    assert cli.main(["export", "--workdir", str(run_dir / "nothing")]) == 2


@pytest.mark.parametrize("batch", ["inf", "1.9", "nan", "-3", "", "2,x"])
def test_bench_batch_must_be_positive_integers(batch, tmp_path, capsys) -> None:
    # Checked before the run is loaded: tmp_path holds no run.
    assert cli.main(["bench", "--workdir", str(tmp_path), "--batch", batch]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sparsejax bench: error: --batch takes comma-separated integers >= 1, got {batch!r}"


def test_an_export_folder_that_is_a_file_is_a_one_line_error(run_dir, tmp_path, capsys) -> None:
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(run_dir, workdir, ignore=shutil.ignore_patterns("export"))
    (workdir / "export").write_text("")
    for command in ("export", "bench"):
        assert cli.main([command, "--workdir", str(workdir), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"sparsejax {command}: error: the output folder {workdir / 'export'} exists "
                       "and is not a directory; name another folder"), err

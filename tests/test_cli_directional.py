"""``sparsejax hessian`` and ``sparsejax connect`` (sparsejax.train.cli.directional), called directly
on two small finished runs (synthetic data, a small MLP)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from sparsejax.train import cli
from sparsejax.train.cli import directional as cd

# The module-scoped fixtures (compiled programs, trained runs) are built once: one worker.
pytestmark = pytest.mark.xdist_group("cli_directional")

TRAIN = ["--model", "mlp", "--dataset", "synthetic", "--data-opt", "num_examples=128",
         "--data-opt", "image_shape=[4,4,1]", "--epochs", "1", "--batch-size", "32",
         "--eval-batch-size", "64", "--lr", "0.05", "--quiet"]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sparsejax")
    cd.add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    for method, extra in (("sgd", []), ("grda", ["--hp", "c=0.05"])):
        assert cli.main(["train", "--method", method, *extra, *TRAIN,
                         "--workdir", str(root / method)]) == 0
    return root / "sgd", root / "grda"


def test_hessian_writes_the_spectrum_of_a_finished_run(runs, capsys) -> None:
    sgd, _ = runs
    args = _parse(["hessian", "--workdir", str(sgd), "--k", "3", "--lanczos-steps", "12",
                   "--examples", "100", "--batch-size", "64", "--probes", "1", "--slq-steps",
                   "12", "--trace-probes", "3"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    res = json.loads((sgd / "hessian" / "spectrum.json").read_text())
    assert res["examples"] == 100 and res["k"] == 3
    ev = np.asarray(res["eigenvalues"])
    assert ev.shape == (3,) and np.all(np.diff(ev) <= 0) and ev[0] > 0
    assert res["num_params"] == 16 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert np.isclose(np.sum(res["slq"]["weights"]), 1.0)
    assert (sgd / "hessian" / "density.png").read_bytes()[:4] == b"\x89PNG"
    assert "eigenvalue" in out and "residual bound" in out and "trace" in out


def test_connect_trains_and_plots_the_curve_between_two_runs(runs, tmp_path, capsys) -> None:
    sgd, grda = runs
    out_dir = tmp_path / "connect"
    args = _parse(["connect", "--a", str(sgd), "--b", str(grda), "--out", str(out_dir),
                   "--epochs", "1", "--points", "3", "--grid", "3", "--eval-examples", "64",
                   "--quiet"])
    assert args.func(args) == 0
    res = json.loads((out_dir / "connect.json").read_text())
    curve, line = res["curve"], res["line"]
    assert curve["t"] == line["t"] == [0.0, 0.5, 1.0]
    assert curve["train_loss"][0] == line["train_loss"][0]
    assert curve["train_loss"][2] == line["train_loss"][2]
    assert np.asarray(res["plane"]["train_loss"]).shape == (3, 3)
    for name in ("path.png", "plane.png"):
        assert (out_dir / name).read_bytes()[:4] == b"\x89PNG"
    assert (out_dir / "curve" / "result.json").exists()
    assert "max training loss: curve" in capsys.readouterr().out


def test_bad_input_raises_usage_errors(runs, tmp_path) -> None:
    sgd, grda = runs
    with pytest.raises(cli.UsageError, match="the same run"):
        cd.cmd_connect(_parse(["connect", "--a", str(sgd), "--b", str(sgd)]))
    with pytest.raises(cli.UsageError, match="holds no config.json"):
        cd.cmd_hessian(_parse(["hessian", "--workdir", str(tmp_path)]))
    with pytest.raises(cli.UsageError, match="--k must be an integer >= 1"):
        cd.cmd_hessian(_parse(["hessian", "--workdir", str(sgd), "--k", "0"]))
    with pytest.raises(cli.UsageError, match="--grid must be 0"):
        cd.cmd_connect(_parse(["connect", "--a", str(sgd), "--b", str(grda), "--grid", "1"]))


def _one_line_error(capsys, argv: list[str], match: str) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sparsejax {argv[0]}: error: ") and "\n" not in err, err
    assert "Traceback" not in err and match in err, err
    return err


def test_an_output_path_that_is_a_file_is_refused_before_the_work(runs, tmp_path, capsys) -> None:
    sgd, grda = runs
    afile = tmp_path / "afile"
    afile.write_text("")
    capsys.readouterr()
    _one_line_error(capsys, ["hessian", "--workdir", str(sgd), "--k", "2", "--examples", "64",
                             "--probes", "0", "--trace-probes", "0", "--out", str(afile)],
                    f"--out {afile} exists and is not a directory")
    _one_line_error(capsys, ["hessian", "--workdir", str(sgd), "--k", "2", "--examples", "64",
                             "--probes", "0", "--trace-probes", "0", "--out", str(afile / "x")],
                    f"--out {afile / 'x'}: {afile} exists and is not a directory")
    _one_line_error(capsys, ["connect", "--a", str(sgd), "--b", str(grda), "--out", str(afile)],
                    f"--out {afile} exists and is not a directory")
    assert afile.read_text() == ""


def test_connect_refusals_name_its_out_option(runs, tmp_path, capsys) -> None:
    sgd, grda = runs
    out = tmp_path / "connect"
    (out / "curve").mkdir(parents=True)
    (out / "curve" / "config.json").write_text("{}")  # another experiment's curve
    err = _one_line_error(capsys, ["connect", "--a", str(sgd), "--b", str(grda), "--out", str(out),
                                   "--quiet"], "holds another experiment")
    assert "use another --out" in err and "another workdir" not in err

"""The ``sparsejax`` command line (sparsejax.train.cli), on synthetic data and a small MLP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import sparsejax as sj
from sparsejax.train import cli, methods
from sparsejax.train.cli.args import setting_flags, settings_from

REPO = Path(__file__).resolve().parent.parent
DATA = ["--dataset", "synthetic", "--data-opt", "num_examples=256",
        "--data-opt", "image_shape=[8,8,1]"]
SMALL = ["--model", "mlp", *DATA, "--epochs", "2", "--batch-size", "64",
         "--eval-batch-size", "64", "--lr", "0.05", "--quiet"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _bad(capsys, argv: list[str], match: str, command: str = "train") -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sparsejax {command}: error: "), err
    assert "\n" not in err and "Traceback" not in err
    assert match in err, err
    return err


@pytest.fixture
def trained(tmp_path, monkeypatch, capsys) -> Path:
    """``sparsejax train`` of gRDA in the default workdir under tmp_path."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--method", "grda", "--hp", "c=0.05", *SMALL]) == 0
    out = capsys.readouterr().out
    workdir = tmp_path / "runs" / "synthetic-mlp-grda-s0"
    assert f"workdir {workdir}" in out and "grda: test accuracy" in out
    return workdir


def test_train_writes_a_resumable_run_and_a_rerun_only_reports(trained, capsys) -> None:
    files = _snapshot(trained)
    assert {"config.json", "trainer.json", "metrics.jsonl", "result.json"} <= set(files)
    config = json.loads(files["config.json"])
    assert config["method"] == "grda" and config["model"] == "mlp"
    assert config["hparams"] == {"c": 0.05, "mu": 0.51, "sparsify": "weights"}  # resolved
    assert config["learning_rate"] == 0.05 and config["momentum"] is None  # gRDA has none
    assert config["data_options"] == {"num_examples": 256, "image_shape": [8, 8, 1]}
    history = [json.loads(line) for line in files["metrics.jsonl"].splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["threshold"] > history[0]["threshold"] > 0  # the method's extra metric
    assert history[-1]["learning_rate"] == pytest.approx(0.05)

    # the same command again: nothing is trained or rewritten, the result is printed
    assert cli.main(["train", "--method", "grda", "--hp", "c=0.05", *SMALL]) == 0
    out = capsys.readouterr().out
    assert f"{history[-1]['test_accuracy']:.2%}" in out
    assert _snapshot(trained) == files


def test_a_workdir_of_another_experiment_is_refused_and_left_alone(trained, capsys) -> None:
    files = _snapshot(trained)
    _bad(capsys, ["train", "--method", "grda", "--hp", "c=0.07", *SMALL],
         "holds another experiment (config.json differs: hparams.c: 0.05 in the workdir, 0.07 now)")
    _bad(capsys, ["train", "--method", "sgd", *SMALL, "--workdir", str(trained)],
         "holds another experiment")
    assert _snapshot(trained) == files


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--method", "nope", *SMALL], "unknown method 'nope'; available methods: "),
        (["--method", "grda", *SMALL, "--model", "lenet6"], "unknown model 'lenet6'"),
        (["--method", "grda", "--model", "mlp", "--dataset", "svhn"], "unknown dataset 'svhn'"),
        (["--method", "grda", "--hp", "c=-1", *SMALL], "hyperparameter c must be >= 0"),
        (["--method", "grda", "--hp", "l1=1", *SMALL], "has no hyperparameter 'l1'; accepted: c, mu"),
        (["--method", "grda", "--hp", "c", *SMALL], "--hp takes NAME=VALUE"),
        (["--method", "sgd", *SMALL, "--momentum", "1.5"], "momentum must be >= 0 and < 1"),
        (["--method", "sgd", *SMALL, "--epochs", "0"], "epochs must be an integer >= 1"),
        (["--method", "sgd", *SMALL, "--data-opt", "colour=1"], "colour"),
        (["--method", "sgd", "--model", "mlp", "--dataset", "cifar100", "--source", "files"],
         "not found"),
        (["--method", "sgd", "--dataset", "synthetic"], "--model is required"),
    ],
)
def test_bad_input_gives_one_line_and_status_2(argv, match, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPARSEJAX_DATA_DIR", str(tmp_path))  # no dataset files there
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    _bad(capsys, ["train", *argv], match)
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_compare_writes_table_plots_and_skips_finished_runs(tmp_path, capsys) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text(
        '# a comparison config\nmodel = "mlp"\ndataset = "synthetic"\nepochs = 2\n'
        'batch_size = 64\neval_batch_size = 64\nlearning_rate = 0.05\n'
        'data_options = { num_examples = 256, image_shape = [8, 8, 1] }\n'
        'ratios = [0.0, 0.5, 0.9]\n'
        '[methods.sgd]\nmomentum = 0.5\nsource = "a baseline"\n'
        '[methods.grda_strong]\nmethod = "grda"\nhparams = { c = 0.1 }\n'
    )
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(config), "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert [c.strip() for c in table[0].split("|")[1:-1]] == [
        "method", "test accuracy", "sparsity (weights)", "FLOPs", "FLOPs vs dense", "wall time"]
    assert [row.split("|")[1].strip() for row in table[1:3]] == ["sgd", "grda_strong"]
    for name in ("results.md", "results.json", "accuracy_vs_sparsity.png",
                 "one_shot_curves.png", "layer_sparsity.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    sgd, grda = results["runs"]
    assert sgd["config"]["momentum"] == 0.5 and grda["config"]["hparams"]["c"] == 0.1
    assert sgd["sparsity"] == 0.0 and grda["sparsity"] > 0.0
    assert grda["flops"] < grda["flops_dense"] == sgd["flops_dense"] == sgd["flops"]
    assert [p["ratio"] for p in grda["one_shot"]] == [0.0, 0.5, 0.9]
    assert grda["one_shot"][0]["metric"] == pytest.approx(grda["test_accuracy"])
    assert grda["one_shot"][2]["sparsity"] >= 0.9
    assert "| grda_strong" in (out / "results.md").read_text()
    runs = {name: _snapshot(out / name) for name in ("sgd", "grda_strong")}

    # a rerun trains nothing and reports the same figures
    assert cli.main(["compare", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished before: skipped") == 2
    assert {name: _snapshot(out / name) for name in runs} == runs
    again = json.loads((out / "results.json").read_text())
    assert [r["test_accuracy"] for r in again["runs"]] == [sgd["test_accuracy"],
                                                           grda["test_accuracy"]]

    # prune the gRDA run: one-shot, then one epoch of retraining with the mask fixed
    workdir = out / "grda_strong"
    assert cli.main(["prune", "--workdir", str(workdir), "--ratios", "0.5,0.95",
                     "--retrain-epochs", "1", "--eval-batch-size", "64", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| 0.5 " in printed and "| 0.95 " in printed
    rows = json.loads((workdir / "prune-global-e1.json").read_text())["rows"]
    assert [r["ratio"] for r in rows] == [0.5, 0.95]
    assert rows[1]["sparsity"] == pytest.approx(max(0.95, grda["sparsity"]), abs=1e-3)
    assert rows[1]["retrained_sparsity"] >= rows[1]["sparsity"] - 1e-9  # the mask held
    assert _snapshot(workdir)["result.json"] == runs["grda_strong"]["result.json"]
    _bad(capsys, ["prune", "--workdir", str(workdir), "--bn-recalibrate", "2"],
         "model 'mlp' has no BatchNorm statistics to recompute", "prune")
    _bad(capsys, ["prune", "--workdir", str(workdir), "--bn-recalibrate", "-1"],
         "--bn-recalibrate must be >= 0", "prune")


def test_compare_and_prune_recompute_batchnorm_statistics_of_each_pruned_net(
    tmp_path, capsys
) -> None:
    # A BatchNorm net pruned one-shot is evaluated with statistics recomputed at the pruned
    # weights from the first N training batches: compare's curves with bn_recalibrate, prune's
    # extra column with --bn-recalibrate (beside the trained statistics' figure).
    from sparsejax import pruning
    from sparsejax.train import make_evaluator
    from sparsejax.train.cli.runs import load_finished_run
    from sparsejax.train.connectivity import recompute_batch_stats

    config = tmp_path / "cfg.toml"
    config.write_text(
        'model = "resnet20"\ndataset = "synthetic"\nepochs = 1\nbatch_size = 64\n'
        'eval_batch_size = 64\ndata_options = { num_examples = 192, image_shape = [8, 8, 3] }\n'
        'ratios = [0.0, 0.5, 0.9]\nbn_recalibrate = 2\n[methods.sgd]\n')
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "BatchNorm statistics recomputed at each pruned net from 2 training batches for sgd" \
        in printed
    results = json.loads((out / "results.json").read_text())
    assert results["bn_recalibrate"] == 2
    (row,) = results["runs"]
    assert row["one_shot_bn_recalibrate"] == 2

    workdir = out / "sgd"
    assert cli.main(["prune", "--workdir", str(workdir), "--ratios", "0.5,0.9",
                     "--bn-recalibrate", "2", "--eval-batch-size", "64", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| BatchNorm recomputed (2 batches) |" in printed
    report = json.loads((workdir / "prune-global.json").read_text())
    assert report["bn_recalibrate"] == 2

    run = load_finished_run(workdir, eval_batch_size=64)
    evaluator = make_evaluator(run.result.model, run.test_batches)
    curve = {p["ratio"]: p["metric"] for p in row["one_shot"]}
    for ratio in (0.0, 0.5, 0.9):
        pruned, _ = pruning.prune(run.result.params, ratio, scope="global",
                                  mask=sj.tree.weights_only)
        stats = recompute_batch_stats(run.result.model, pruned, run.train_batches, max_batches=2)
        expected = evaluator(pruned, stats)["accuracy"]
        assert curve[ratio] == expected, ratio
        if ratio:
            (r,) = [r for r in report["rows"] if r["ratio"] == ratio]
            assert r["bn_recalibrated_accuracy"] == expected
            assert r["test_accuracy"] == evaluator(pruned)["accuracy"]
    # the recomputed statistics are not the trained ones (or the checks above would be empty)
    pairs = zip(jax.tree.leaves(run.result.model_state), jax.tree.leaves(stats), strict=True)
    assert any(not np.allclose(a, b) for a, b in pairs)

    # a comparison whose model has no BatchNorm is refused before anything is trained
    _bad(capsys, ["compare", "--methods", "sgd", *SMALL[:-1], "--bn-recalibrate", "2",
                  "--out", str(tmp_path / "none")],
         "no run's model (mlp) has BatchNorm statistics to recompute", "compare")
    _bad(capsys, ["compare", "--config", str(config), "--bn-recalibrate", "-1",
                  "--out", str(tmp_path / "none")], "bn_recalibrate must be an integer >= 0",
         "compare")
    assert not (tmp_path / "none").exists()


def test_compare_bad_input(tmp_path, capsys) -> None:
    base = ["compare", "--model", "mlp", *DATA, "--out", str(tmp_path / "c")]
    _bad(capsys, [*base, "--methods", "sgd,nope"], "unknown method 'nope'", "compare")
    _bad(capsys, [*base, "--methods", "sgd,sgd"], "names a run twice", "compare")
    _bad(capsys, [*base, "--methods", "sgd", "--hp", "grda.c=1"], "RUN.NAME=VALUE", "compare")
    _bad(capsys, [*base, "--methods", "sgd", "--ratios", "0.5,1.0"], "[0, 1)", "compare")
    _bad(capsys, [*base], "--methods is required", "compare")
    cfg = tmp_path / "bad.toml"
    cfg.write_text('model = "mlp"\nepoch = 3\n')
    _bad(capsys, ["compare", "--config", str(cfg)], "unknown key(s) epoch", "compare")
    cfg.write_text('model = "mlp"\n[methods.grda]\nhparams = { c = -1 }\n')
    _bad(capsys, ["compare", "--config", str(cfg), "--dataset", "synthetic"],
         "hyperparameter c must be >= 0", "compare")
    cfg.write_text('model = \n')
    _bad(capsys, ["compare", "--config", str(cfg)], "is not valid TOML", "compare")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("ratios = 0.5\n", "'ratios' must be a list of pruning ratios (numbers in [0, 1)), got 0.5"),
        ('ratios = ["0.5"]\n', "'ratios' must be a list of pruning ratios"),
        ("ratios = [true]\n", "'ratios' must be a list of pruning ratios"),
        ("out = 5\n", "'out' must be a string (an output directory), got 5"),
        ("[methods.sgd]\nhparams = [1]\n", "methods.sgd.hparams must be a table of hyperparameters"),
        ("[methods.sgd]\nmethod = 1\n", "methods.sgd.method must be a string"),
        ('augment = "false"\n', "augment must be true or false, got 'false'"),
        ("[methods.sgd]\naugment = 1\n", "augment must be true or false, got 1"),
        ('decay_at = "0.5"\n', "decay_at must be a list of fractions of training"),
        ("decay_at = 0.5\n", "decay_at must be a list of fractions of training"),
        ('data_options = "x"\n', "data_options must be a table of options"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused(text, match, tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "mlp"\ndataset = "synthetic"\n' + text
                   + ("" if "[methods" in text else "[methods.sgd]\n"))
    out = tmp_path / "c"
    _bad(capsys, ["compare", "--config", str(cfg), "--out", str(out)], match, "compare")
    assert not out.exists()


def test_augment_in_a_json_config_must_be_a_bool(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": "mlp", "dataset": "synthetic", "augment": "false",
                               "methods": {"sgd": {}}}))
    _bad(capsys, ["train", "--method", "sgd", "--config", str(cfg), *SMALL, "--workdir",
                  str(tmp_path / "w")], "augment must be true or false, got 'false'")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(("flag", "config"), [(["--ratios", ""], ""), (["--ratios", " , "], ""),
                                              ([], "ratios = []\n")])
def test_compare_without_ratios_is_refused_before_training(flag, config, tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(config)
    out = tmp_path / "c"
    _bad(capsys, ["compare", "--methods", "sgd", "--config", str(cfg), *SMALL, "--out", str(out),
                  *flag], "ratios must hold at least one pruning ratio in [0, 1)", "compare")
    assert not out.exists()  # nothing was trained


def test_retrain_workdir_names_tell_close_ratios_apart() -> None:
    from sparsejax.train.cli.commands import ratio_name

    # The usual ratios keep their names (existing retraining workdirs are still found).
    assert [ratio_name(r) for r in (0.0, 0.5, 0.9, 0.95, 0.98, 1e-5)] == \
        ["0", "0.5", "0.9", "0.95", "0.98", "1e-05"]
    assert ratio_name(0.1234561) != ratio_name(0.1234562)
    assert (ratio_name(0.1234561), ratio_name(0.1234562)) == ("0.1234561", "0.1234562")
    rng = np.random.default_rng(0)
    ratios = list(rng.uniform(0, 1, 200)) + [0.5 + k * 1e-16 for k in range(3)]
    assert all(float(ratio_name(r)) == r for r in ratios)  # one name per distinct ratio


def test_prune_bad_input(tmp_path, capsys) -> None:
    _bad(capsys, ["prune", "--workdir", str(tmp_path), "--eval-batch-size", "0"],
         "--eval-batch-size must be an integer >= 1, got 0", "prune")
    _bad(capsys, ["hessian", "--workdir", str(tmp_path), "--eval-batch-size", "0"],
         "--eval-batch-size must be an integer >= 1, got 0", "hessian")
    _bad(capsys, ["prune", "--workdir", str(tmp_path)], "holds no config.json", "prune")
    (tmp_path / "config.json").write_text("{}")
    _bad(capsys, ["prune", "--workdir", str(tmp_path)], "has not finished", "prune")


def test_methods_lists_and_describes(capsys) -> None:
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "grda " in out and "gmp " in out
    assert cli.main(["methods", "irda"]) == 0
    out = capsys.readouterr().out
    assert "init_scale = 10.0" in out and "Table 5" in out


@pytest.mark.parametrize("path", sorted((REPO / "experiments" / "configs").glob("*.toml")),
                         ids=lambda p: p.name)
def test_experiment_configs_are_valid(path: Path) -> None:
    config = cli.load_config(path)
    args = cli.build_parser().parse_args(["compare", "--config", str(path)])
    runs = cli.compare_runs(args, config)  # validates every run, trains nothing
    assert runs and all(r.model and r.dataset for r in runs)
    assert [r.name for r in runs] == list(config["methods"])
    for name, entry in config["methods"].items():  # every run cites where its values come from
        assert isinstance(entry.get("source"), str) and entry["source"], name
    for r in runs:  # and its hyperparameters reach the method as written
        resolved = methods.resolve_hparams(r.method, r.hparams)
        for key, value in config["methods"][r.name].get("hparams", {}).items():
            assert resolved[key] == value, (path.name, r.name, key)


def test_module_entry_point_in_a_subprocess(tmp_path) -> None:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-m", "sparsejax.train.cli", "methods", "grda"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0 and "grda: generalized regularized dual averaging" in run.stdout
    run = subprocess.run([sys.executable, "-m", "sparsejax.train.cli", "train", "--method",
                          "nope", "--model", "mlp", "--dataset", "synthetic"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        run.stderr.strip()] and "unknown method 'nope'" in run.stderr
    assert not (tmp_path / "runs").exists()


def test_the_command_line_has_the_directional_pruning_commands(capsys) -> None:
    """`sparsejax hessian` and `sparsejax connect` are sub-commands of the one parser, and a
    folder without a finished run is a one-line error with status 2."""
    parser = cli.build_parser()
    assert parser.parse_args(["hessian", "--workdir", "w"]).command == "hessian"
    assert parser.parse_args(["connect", "--a", "x", "--b", "y"]).command == "connect"
    assert cli.main(["hessian", "--workdir", "/nonexistent/run"]) == 2
    assert "holds no config.json" in capsys.readouterr().err


# ------------------------------------------------------------------ audit fixes (CLI defects)


def test_data_opt_changes_single_options_of_the_config(tmp_path) -> None:
    # --data-opt merges into the config's data_options key by key (the flag wins per key)
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "mlp"\ndataset = "synthetic"\n'
                   'data_options = { num_examples = 256, image_shape = [8, 8, 1] }\n'
                   '[methods.sgd]\n')
    args = cli.build_parser().parse_args(["compare", "--config", str(cfg), "--data-opt",
                                          "num_examples=128", "--data-opt", "noise=3"])
    (run,) = cli.compare_runs(args, cli.load_config(cfg))
    assert dict(run.data_options) == {"num_examples": 128, "image_shape": [8, 8, 1], "noise": 3}
    assert run.config()["data_options"] == {"num_examples": 128, "image_shape": [8, 8, 1],
                                            "noise": 3}
    # without the flag, the config's table as it is
    args = cli.build_parser().parse_args(["compare", "--config", str(cfg)])
    (run,) = cli.compare_runs(args, cli.load_config(cfg))
    assert dict(run.data_options) == {"num_examples": 256, "image_shape": [8, 8, 1]}


def test_compare_refuses_a_pattern_and_an_hp_pattern_that_disagree() -> None:
    parse = cli.build_parser().parse_args
    base = ["compare", "--methods", "gmp,sgd", "--model", "mlp", "--dataset", "synthetic"]
    with pytest.raises(cli.UsageError, match=r"--pattern 2:4 and --hp gmp.pattern=4x4 disagree"):
        cli.compare_runs(parse([*base, "--pattern", "2:4", "--hp", "gmp.pattern=4x4"]), {})
    gmp, _ = cli.compare_runs(parse([*base, "--pattern", "4x4", "--hp", "gmp.pattern=4x4"]), {})
    assert gmp.hparams["pattern"] == "4x4"


@pytest.fixture(scope="module")
def gmp_run(tmp_path_factory) -> Path:
    """A finished gmp run at 90% sparsity."""
    workdir = tmp_path_factory.mktemp("gmp") / "gmp"
    assert cli.main(["train", "--method", "gmp", *SMALL, "--workdir", str(workdir)]) == 0
    assert json.loads((workdir / "result.json").read_text())["final"]["sparsity"] >= 0.9 - 1e-6
    return workdir


def test_prune_retraining_below_the_runs_sparsity_keeps_its_zeros(gmp_run, tmp_path,
                                                                   capsys) -> None:
    import shutil

    workdir = tmp_path / "gmp"
    shutil.copytree(gmp_run, workdir)
    assert cli.main(["prune", "--workdir", str(workdir), "--ratios", "0.5", "--retrain-epochs",
                     "1", "--eval-batch-size", "64", "--quiet"]) == 0
    (row,) = json.loads((workdir / "prune-global-e1.json").read_text())["rows"]
    assert row["sparsity"] >= 0.9 - 1e-6  # pruning at 0.5 removes nothing more
    assert row["retrained_sparsity"] >= 0.9 - 1e-6  # and retraining grows nothing back
    assert row["retrained_sparsity"] >= row["sparsity"]
    assert (workdir / "retrain" / "global-r0.5-e1").is_dir()
    capsys.readouterr()


def test_prune_refuses_a_retraining_folder_whose_pruned_weights_grew_back(
        gmp_run, tmp_path, capsys, monkeypatch) -> None:
    # What an earlier version wrote below the run's sparsity: retraining without the zeros held.
    import shutil

    import jax.numpy as jnp

    from sparsejax import pruning

    workdir = tmp_path / "gmp"
    shutil.copytree(gmp_run, workdir)
    argv = ["prune", "--workdir", str(workdir), "--ratios", "0.5", "--retrain-epochs", "1",
            "--eval-batch-size", "64", "--quiet"]
    hold = pruning.fixed_support
    with monkeypatch.context() as m:  # every weight may move: the support is all True
        m.setattr(pruning, "fixed_support",
                  lambda support: hold(jax.tree.map(jnp.ones_like, support)))
        _bad(capsys, argv, "let pruned weights grow back", "prune")
    err = _bad(capsys, argv, "delete that folder to retrain", "prune")  # the folder is reused
    assert str(workdir / "retrain" / "global-r0.5-e1") in err


def test_prune_retraining_with_another_lr_or_momentum_has_its_own_folder(gmp_run, tmp_path,
                                                                        capsys) -> None:
    import shutil

    workdir = tmp_path / "gmp"
    shutil.copytree(gmp_run, workdir)
    base = ["prune", "--workdir", str(workdir), "--ratios", "0.9", "--retrain-epochs", "1",
            "--eval-batch-size", "64", "--quiet"]
    assert cli.main(base) == 0
    report = json.loads((workdir / "prune-global-e1.json").read_text())
    assert (report["retrain_lr"], report["retrain_momentum"]) == (0.01, 0.9)
    assert cli.main([*base, "--retrain-lr", "0.02"]) == 0
    report = json.loads((workdir / "prune-global-e1.json").read_text())
    assert (report["retrain_lr"], report["retrain_momentum"]) == (0.02, 0.9)
    assert cli.main([*base, "--retrain-momentum", "0"]) == 0
    assert sorted(p.name for p in (workdir / "retrain").iterdir()) == [
        "global-r0.9-e1", "global-r0.9-e1-lr0.02", "global-r0.9-e1-m0"]
    capsys.readouterr()


def test_an_unwritable_output_path_is_a_one_line_error(gmp_run, tmp_path, capsys) -> None:
    import shutil

    workdir = tmp_path / "gmp"
    shutil.copytree(gmp_run, workdir)
    (workdir / "prune-global.json").mkdir()  # the report's path is taken by a folder
    err = _bad(capsys, ["prune", "--workdir", str(workdir), "--ratios", "0.5", "--eval-batch-size",
                        "64", "--quiet"], str(workdir / "prune-global.json"), "prune")
    assert "Is a directory" in err and "Errno" not in err
    (tmp_path / "afile").write_text("")
    _bad(capsys, ["compare", "--methods", "sgd", *SMALL, "--out", str(tmp_path / "afile")],
         f"--out {tmp_path / 'afile'} exists and is not a directory", "compare")


def test_compare_report_states_only_the_shared_settings(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "mlp"\ndataset = "synthetic"\nepochs = 1\nbatch_size = 64\n'
                   'eval_batch_size = 64\nlearning_rate = 0.05\n'
                   'data_options = { num_examples = 128, image_shape = [8, 8, 1] }\n'
                   'ratios = [0.5]\n[methods.sgd]\n[methods.long]\nmethod = "sgd"\nepochs = 2\n'
                   'batch_size = 32\n')
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    md = (out / "results.md").read_text()
    assert md.splitlines()[0] == "# sparsejax compare: synthetic, mlp, seed 0"
    assert ("Settings that differ between the runs: sgd: 1 epochs of batch 64; long: 2 epochs of "
            "batch 32.") in md
    results = json.loads((out / "results.json").read_text())
    assert results["settings"] == "synthetic, mlp, seed 0"
    assert results["settings_per_run"] == {"sgd": {"epochs": 1, "batch_size": 64},
                                           "long": {"epochs": 2, "batch_size": 32}}
    # runs that share every setting: the header as before, no list
    assert cli.main(["compare", "--config", str(cfg), "--methods", "sgd", "--out",
                     str(tmp_path / "one"), "--quiet"]) == 0
    md = (tmp_path / "one" / "results.md").read_text()
    assert md.splitlines()[0] == "# sparsejax compare: synthetic, mlp, 1 epochs of batch 64, seed 0"
    assert "differ" not in md
    assert "settings_per_run" not in json.loads((tmp_path / "one" / "results.json").read_text())
    capsys.readouterr()


def test_augment_spelled_as_the_datasets_default_is_the_same_experiment(tmp_path, capsys) -> None:
    workdir = tmp_path / "run"
    argv = ["train", "--method", "sgd", *SMALL, "--workdir", str(workdir)]
    assert cli.main([*argv, "--no-augment"]) == 0  # synthetic does not augment by default
    assert json.loads((workdir / "config.json").read_text())["augment"] is None
    files = _snapshot(workdir)
    assert cli.main(argv) == 0 and _snapshot(workdir) == files  # reused, not refused
    assert cli.main([*argv, "--augment"]) == 2  # another experiment
    assert "augment: None in the workdir, True now" in capsys.readouterr().err
    # a workdir written before, with the default spelled out, is still reused by both spellings
    config = json.loads(files["config.json"])
    (workdir / "config.json").write_text(json.dumps({**config, "augment": False}, indent=2) + "\n")
    files = _snapshot(workdir)
    assert cli.main(argv) == 0 and cli.main([*argv, "--no-augment"]) == 0
    assert _snapshot(workdir) == files
    assert cli.main(["prune", "--workdir", str(workdir), "--ratios", "0.5", "--quiet"]) == 0


def test_lr_and_schedule_help_say_which_methods_ignore_them() -> None:
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: " ".join(a.help.split()) for a in train._actions if a.help}
    for dest in ("learning_rate", "schedule"):
        assert "ignored by methods without a learning rate" in helps[dest], helps[dest]


@pytest.mark.parametrize(
    ("flags", "config"),
    [
        (["--schedule", "step", "--decay-at", ""], ""),
        (["--schedule", "step", "--decay-at", " , "], ""),
        (["--schedule", "step"], "decay_at = []\n"),
        ([], 'schedule = "step"\ndecay_at = []\n'),
        ([], 'schedule = "step"\n[methods.sgd]\ndecay_at = []\n'),
    ],
)
def test_a_step_schedule_without_decay_points_is_refused(flags, config, tmp_path, capsys) -> None:
    """``--decay-at ''`` (or ``decay_at = []``) with the step schedule used to train with a
    constant learning rate without a word; it is a usage error that says what to pass."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(config)
    workdir = tmp_path / "w"
    argv = ["train", "--method", "sgd", "--config", str(cfg), *SMALL, *flags,
            "--workdir", str(workdir)]
    err = _bad(capsys, argv, "the step schedule needs at least one decay point")
    assert "--decay-at 0.5,0.75" in err and "--schedule constant" in err
    assert not workdir.exists()


def test_an_empty_decay_at_is_still_accepted_without_the_step_schedule() -> None:
    args = cli.build_parser().parse_args(["train", "--method", "sgd", "--model", "mlp",
                                          "--dataset", "synthetic", "--decay-at", ""])
    settings = settings_from({}, {}, "sgd", setting_flags(args), {})
    assert (settings.schedule, settings.decay_at) == ("constant", ())


@pytest.mark.parametrize(
    ("text", "where"),
    [('source = "files"\n[methods.sgd]\n', "source = 'files'"),
     ('[methods.sgd]\nsource = " TFDS"\n', "methods.sgd.source = ' TFDS'")],
)
def test_a_config_source_that_names_a_data_source_is_refused(text, where, tmp_path,
                                                             capsys) -> None:
    """A config's ``source`` is a citation for the reader; ``source = "files"`` looks like
    ``--source files`` but would be ignored, so it is refused with what to pass instead."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "mlp"\ndataset = "synthetic"\n' + text)
    out = tmp_path / "c"
    err = _bad(capsys, ["compare", "--config", str(cfg), "--out", str(out)], where, "compare")
    assert "does not choose the data source" in err and "--source " in err
    assert not out.exists()
    cfg.write_text('model = "mlp"\nsource = "Chen et al. 2023, Table 1"\n'
                   '[methods.sgd]\nsource = "files of the reference code"\n')
    assert cli.load_config(cfg)["source"] == "Chen et al. 2023, Table 1"  # a citation is kept

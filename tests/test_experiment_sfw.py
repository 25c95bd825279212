"""experiments/fashion_mnist_sfw.py (SFW in K-sparse polytopes vs SGD, one-shot pruning) on real data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from sparsejax.tree import leaves_with_paths as sj_paths
from tests.scripts import load_script, needs_fashion_mnist


@pytest.fixture(scope="module")
def job() -> ModuleType:
    return load_script("experiments/fashion_mnist_sfw.py")


@needs_fashion_mnist
def test_quick_run_prints_the_table_saves_the_plot_and_resumes(
    job: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The network with BatchNorm, the three methods (GMP trained to 90%), the BatchNorm
    # statistics recomputed after pruning, retraining at 90% only and the study's 40% comparison
    # (0.4 is not among the ratios: its rows show '-'). SFW-Init: the next test.
    argv = ["--quick", "--model", "bn_cnn", "--methods", "sfw,sgd,gmp", "--gmp-ratios", "0.9",
            "--ratios", "0.5,0.9", "--retrain-steps", "2", "--bn-recalibrate", "2",
            "--out", str(tmp_path), "--quiet"]
    res = job.main(argv)
    out = capsys.readouterr().out

    names = ["sfw global", "sgd global", "sfw layerwise", "sgd layerwise",
             "sfw global + BN recomputed", "sgd global + BN recomputed", "gmp global",
             "sgd global + retrain", "sfw global + retrain"]
    assert list(res["curves"]) == names
    for name, points in res["curves"].items():
        # retraining only from --retrain-from (0.9) on; GMP only at its --gmp-ratios
        expected = [0.9] if "retrain" in name or name == "gmp global" else [0.5, 0.9]
        assert [p[0] for p in points] == expected, name
        for ratio, acc, sparsity in points:
            assert 0.0 <= acc <= 1.0, (name, points)
            # one-shot pruning removes round(ratio * N) kernel weights (more if already zero);
            # GMP's last support update prunes to its final sparsity
            assert ratio - 1e-3 <= sparsity <= ratio + 0.02, (name, points)
    assert set(res["dense"]) == {"sfw", "sgd"}
    for name in ("sfw", "sgd"):
        assert 0.0 <= res["dense"][name] <= 1.0
        assert 0.0 <= res["natural_sparsity"][name] < 0.5
    # SFW starts feasible and its iterates stay in their K-sparse polytopes (every leaf,
    # BatchNorm scales and shifts included); SGD learns something in 8 steps.
    facts = res["facts"]["sfw"]
    assert facts["init_feasible"] and facts["final_feasible"]
    assert res["dense"]["sgd"] > 0.2, res["dense"]

    # the markdown table: a header, a separator, the dense row and one row per ratio
    table = res["table"].splitlines()
    assert table[0] == "| ratio | " + " | ".join(names) + " |"
    assert table[2].startswith("| 0 (dense) |") and len(table) == 5
    assert table[2].split(" | ")[7] == "-"  # GMP has no dense net
    assert table[3].startswith("| 0.5 |") and table[3].endswith(" | - | - | - |")
    assert table[4].startswith("| 0.9 |") and "-" not in table[4]
    assert res["table"] in out
    # the study's table: its figures, ours where computed (dense only here)
    study = res["study_table"].splitlines()
    assert len(study) == 2 + 6 and res["study_table"] in out
    assert study[2] == f"| sgd | no | no | 57.40 | {100 * res['dense']['sgd']:.2f} | dense |"
    assert study[3].endswith(" | layer-wise 40% |")
    assert study[4].startswith("| sgd | yes | yes | 62.97 |")
    assert study[4].endswith(" | - | global 40%, then retrained |")
    plot = Path(res["plot"])
    assert plot.parent == tmp_path and plot.stat().st_size > 10_000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(Path(res["json"]).read_text())
    assert saved["dense"] == res["dense"] and saved["table"] == res["table"]
    for name in ("sfw", "sgd", "gmp_0.9", "sfw_retrain_0.9", "sgd_retrain_0.9"):
        assert (tmp_path / "work_quick" / name / "result.json").exists()
    # the retrained SFW net keeps the pruned support: 90% zeros at least
    assert res["curves"]["sfw global + retrain"][0][2] >= 0.9 - 1e-3

    # Same command again: every run is reused from its workdir, same numbers.
    again = job.main(argv)
    assert all(again["facts"][n]["reused"] for n in ("sfw", "sgd", "gmp 0.9"))
    assert again["dense"] == res["dense"] and again["curves"] == res["curves"]


@needs_fashion_mnist
def test_sfw_init_learns_a_scale_per_constrained_leaf(job: ModuleType) -> None:
    """SFW-Init (the paper's Algorithm 3) on the network with BatchNorm, from overlapping
    batches: one scale per constrained leaf, the BatchNorm scales and shifts included."""
    from flax import nnx

    from sparsejax import constraints as C

    args = job.parse_args(["--quick", "--model", "bn_cnn", "--sfw-init", "--sfw-init-steps", "2"])
    train, _ = job.load_data(args)
    model = job.build_model(args, args.seed)
    cons = job.make_constraints(args)
    params, scales = job.sfw_init_params(args, model, cons, train)
    convs = [f"convs/{i}" for i in range(3)]
    assert sorted(scales) == sorted(
        [f"{c}/conv/kernel" for c in convs] + [f"{c}/bn/{leaf}" for c in convs
                                               for leaf in ("scale", "bias")]
        + [f"classifier/{i}/{leaf}" for i in (0, 1) for leaf in ("kernel", "bias")]), scales
    assert all(0.01 <= v for v in scales.values()) and any(v != 1.0 for v in scales.values())
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    after = dict(sj_paths(params))
    for path, x in sj_paths(before):  # the init, each leaf scaled by its learned factor
        np.testing.assert_allclose(after[path], scales[path] * np.asarray(x), rtol=1e-5, atol=1e-7)
    assert C.is_feasible(C.make_feasible(params, cons), cons)


def _curve(ratios: tuple[float, ...], acc: dict[float, float], default: float) -> list:
    return [(r, acc.get(r, default), r) for r in ratios]


def test_check_wants_a_higher_kept_ratio_a_margin_and_a_close_dense_accuracy(
    job: ModuleType,
) -> None:
    args = job.parse_args(["--scope", "global"])  # ratios 0.5 .. 0.99, tolerances 3 points
    r = args.ratios
    sgd = _curve(r, {0.95: 0.80, 0.97: 0.70, 0.99: 0.30}, 0.88)
    sfw = _curve(r, {0.99: 0.70}, 0.87)

    def results(sfw_curve: list, dense_sfw: float = 0.87) -> dict:
        return {"dense": {"sfw": dense_sfw, "sgd": 0.88},
                "curves": {"sfw global": sfw_curve, "sgd global": sgd}}

    assert job.kept_ratio(sfw, 0.87, 0.03) == 0.97 and job.kept_ratio(sgd, 0.88, 0.03) == 0.9
    assert job.check(results(sfw), args) == []
    failures = job.check(results(sfw, dense_sfw=0.84), args)  # dense too far below
    assert len(failures) == 1 and failures[0].startswith("dense: sfw 84.00%"), failures
    # drops at 0.95 like SGD: kept up to 0.9 only, not beyond SGD's
    failures = job.check(results(_curve(r, {0.95: 0.80, 0.97: 0.75, 0.99: 0.70}, 0.87)), args)
    assert failures == ["global: sfw keeps its accuracy up to ratio 0.9, not beyond sgd's 0.9"]
    # kept longer, but never 10 points above SGD (best: 8 points at 0.97)
    failures = job.check(results(_curve(r, {0.97: 0.78, 0.99: 0.35}, 0.87)), args)
    assert len(failures) == 1 and "at most 8.00% above sgd (at ratio 0.97)" in failures[0]
    # 3.5 points below SGD at 0.7 while still within its own tolerance
    failures = job.check(results(_curve(r, {0.7: 0.845, 0.99: 0.70}, 0.87)), args)
    assert failures == ["global: sfw is 3.50% below sgd at ratio 0.7"]
    # every scope is checked
    both = job.parse_args([])
    res = results(sfw)
    res["curves"].update({"sfw layerwise": sgd, "sgd layerwise": sgd})
    failures = job.check(res, both)
    assert len(failures) == 2 and all(f.startswith("layerwise:") for f in failures), failures


def test_the_reference_scheme_spans_the_run(job: ModuleType) -> None:
    # the run is cut into the reference's 180 epochs: /10 at 1/3 and 2/3 of it
    assert job.scheme_steps_per_epoch(702) == 3 and job.scheme_steps_per_epoch(100) == 1
    assert job.PAPER_DECAYS == (60, 120)
    args = job.parse_args([])
    assert (args.k, args.k_frac, args.biases, args.lr_sfw, args.momentum) == (
        10, 0.05, "constrained", 1.0, 0.9)


def test_command_line_is_validated(job: ModuleType) -> None:
    for bad in (["--ratios", "0.5,1.0"], ["--ratios", "x"], ["--k-frac", "0"], ["--value", "0"],
                ["--epochs", "0"], ["--momentum", "1"], ["--features", "8"], ["--k", "0"],
                ["--biases", "adam"], ["--methods", "sfw,adam"], ["--methods", "sfw,sfw"],
                ["--methods", ""], ["--check", "--methods", "sfw,gmp"], ["--model", "resnet"],
                ["--methods", "gmp", "--gmp-ratios", "1.0"],
                ["--train-subset", "100"], ["--scope", "rows"], ["--retrain-from", "2"]):
        with pytest.raises(SystemExit):
            job.parse_args(bad)
    args = job.parse_args(["--quick", "--epochs", "5"])
    assert args.epochs == 1 and args.train_subset == 1024 and args.scopes == ("global", "layerwise")
    assert args.methods == ("sfw", "sgd") and args.gmp_ratios == args.ratios
    args = job.parse_args(["--methods", "gmp, sgd", "--gmp-ratios", "0.8,0.95"])
    assert args.methods == ("gmp", "sgd") and args.gmp_ratios == (0.8, 0.95)


def test_both_models_and_the_gmp_schedule(job: ModuleType) -> None:
    from flax import nnx

    small = job.build_model(job.parse_args([]), 0)
    bn = job.build_model(job.parse_args(["--model", "bn_cnn"]), 0)
    assert not any(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(small))
    assert sum(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(bn)) == 3
    # the small CNN's run identity is the one of the committed runs; the BN net's names its model
    assert job.run_config("sgd", job.parse_args([]))["model"] == "small_cnn"
    cfg = job.run_config("gmp", job.parse_args(["--model", "bn_cnn"]), final_sparsity=0.9)
    assert cfg["model"] == "bn_cnn" and cfg["features"] is None and cfg["final_sparsity"] == 0.9
    assert cfg["hparams"]["gmp"] == {"begin": 0.1, "end": 0.7, "updates": 20, "scope": "global"}


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.skipif(
    os.environ.get("SPARSEJAX_FULL_EXPERIMENTS") != "1",
    reason="the full default run takes minutes; set SPARSEJAX_FULL_EXPERIMENTS=1 to run it",
)
@pytest.mark.xfail(
    strict=True,
    reason="with the reference defaults (K = 10, 5%, constrained biases, dynamic_change) the full "
    "run of 2026-12-05 keeps SFW's global one-shot accuracy only to 90%, as SGD's "
    "(experiments/results/fashion_mnist_sfw/); if it passes, update the README and FIDELITY.md",
)
def test_defaults_keep_accuracy_to_higher_ratios_than_sgd(job: ModuleType, tmp_path: Path) -> None:
    """The paper's claim with the defaults: --check passes (it exits 1 otherwise)."""
    res = job.main(["--check", "--out", str(tmp_path), "--quiet"])
    assert res["failures"] == []

"""experiments/irda_table7.py and soft_threshold_family.py: the search, the tables, quick runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts import load_script, needs_fashion_mnist

pytestmark = pytest.mark.xdist_group("test_experiment_sparse_reproductions")


@pytest.fixture(scope="module")
def irda_job() -> ModuleType:
    return load_script("experiments/irda_table7.py")


@pytest.fixture(scope="module")
def family_job() -> ModuleType:
    return load_script("experiments/soft_threshold_family.py")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_next_knob_brackets_interpolates_and_extrapolates(family_job: ModuleType) -> None:
    nk = family_job.next_knob
    assert nk([], 0.9, -1.5) == -1.5
    # one point below the target: one unit up; above: one unit down
    assert nk([(0.0, 0.5)], 0.9, 0.0) == 1.0
    assert nk([(0.0, 0.97)], 0.9, 0.0) == -1.0
    # a bracket: the zero of the line in (u, logit sparsity) through its two closest points
    u = nk([(0.0, 0.8), (2.0, 0.95), (5.0, 0.99)], 0.9, 0.0)
    frac = (_logit(0.9) - _logit(0.8)) / (_logit(0.95) - _logit(0.8))
    assert u == pytest.approx(2.0 * frac)
    # ... kept inside the middle 80% of the bracket
    assert nk([(0.0, 0.1), (1.0, 0.9001)], 0.9, 0.0) == pytest.approx(0.9)
    # two points on one side: the secant, at most MAX_STEP and at least 0.25 units beyond
    u = nk([(0.0, 0.5), (1.0, 0.6)], 0.7, 0.0)
    slope = _logit(0.6) - _logit(0.5)
    assert u == pytest.approx(1.0 + (_logit(0.7) - _logit(0.6)) / slope)
    assert nk([(0.0, 0.5), (1.0, 0.51)], 0.95, 0.0) == pytest.approx(1.0 + family_job.MAX_STEP)
    assert nk([(0.0, 0.5), (1.0, 0.8)], 0.801, 0.0) == pytest.approx(1.25)
    # a response falling with u (noise) gives no secant: one unit from the closest point
    assert nk([(0.0, 0.6), (1.0, 0.5)], 0.9, 0.0) == pytest.approx(1.0)


def test_knob_coordinates_round_trip(family_job: ModuleType) -> None:
    for name, method in family_job.METHODS.items():
        k = method.knob
        assert k.from_u(k.to_u(k.start)) == pytest.approx(k.start), name
    gmp = family_job.METHODS["gmp"].knob
    assert gmp.to_u(0.5) == 0.0 and gmp.from_u(_logit(0.95)) == pytest.approx(0.95)
    assert family_job.METHODS["lats"].knob.to_u(math.e) == pytest.approx(1.0)


def test_irda_sweep_table_puts_the_papers_table7_under_our_row(irda_job: ModuleType) -> None:
    rows = [dict(kind="prox_sgd", l1=1e-3, accuracy=0.8512, sparsity=0.031),
            dict(kind="irda", l1=1e-3, accuracy=0.8, sparsity=0.9)]
    lines = irda_job.sweep_table(rows, (1e-3, 3e-3)).splitlines()
    assert lines[2].startswith("| iRDA (Alg. 1, retraining) (ours)")
    assert "80.00 @ 0.90" in lines[2] and lines[2].rstrip().endswith("- |")
    assert lines[3].startswith("| prox-SGD (ours)") and "85.12 @ 0.03" in lines[3]
    # paper Table 7, prox-SGD at lambda = 1e-3: 75.11% at sigma 0.97; no 3e-3 column there
    assert lines[4].startswith("| prox-SGD (paper)") and "75.11 @ 0.97" in lines[4]
    assert lines[4].rstrip().endswith("- |") and len(lines) == 5
    # at another gamma than Table 7's the paper's rows are left out
    other = irda_job.sweep_table(rows, (1e-3,), with_paper=False)
    assert "(paper)" not in other and len(other.splitlines()) == 4


def test_registry_settings_follow_the_papers_parameterisation(irda_job: ModuleType,
                                                              family_job: ModuleType) -> None:
    budget = irda_job.common.FULL
    assert budget.steps_per_epoch * budget.epochs == 400
    for kind in irda_job.SPARSE_METHODS:
        run = irda_job.method_run(kind, 1e-4, budget)
        hp = run.validate()
        assert hp["gamma"] == 1.0 and hp["l1"] == 1e-4, kind
        if kind.startswith("prox") or kind.startswith("sqrt"):
            assert hp["step"] == "inverse_sqrt"
        if kind.startswith("irda"):
            assert hp["center"] == "zero" and hp["init_scale"] == 10.0
            assert hp["retrain_fraction"] == (0.5 if kind == "irda" else 1.0)
    assert irda_job.method_run("rda", 1e-4, budget).validate()["init_scale"] == 0.0
    # the family: one optimizer and schedule for all, warm-up over 10% of the 400 steps
    for name, method in family_job.METHODS.items():
        run = family_job.method_run(method, method.knob.start, budget)
        run.validate()
        assert (run.learning_rate, run.momentum, run.schedule, run.warmup_steps) == (
            0.1, 0.875, "cosine", 40), name


@pytest.mark.slow
@needs_fashion_mnist
def test_quick_irda_study_writes_both_tables_and_the_plot(irda_job: ModuleType,
                                                         tmp_path: Path) -> None:
    res = irda_job.main(["--quick", "--methods", "irda", "--lambdas", "1e-2", "--init-scales",
                         "10", "--init-l1", "1e-2", "--work", str(tmp_path / "w"),
                         "--results", str(tmp_path / "r"), "--quiet"])
    (row,) = res["sweep"]
    (init,) = res["init_scale"]
    assert row["steps"] == 4 and 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["sparsity"] <= 1.0
    assert init["reused"] and init["accuracy"] == row["accuracy"]  # s = 10 is the sweep's run
    assert res["dense"]["sparsity"] == 0.0
    report = (tmp_path / "r" / "table.md").read_text()
    assert "| 10 " in report and "90.67" in report  # the paper's Table 5 row for s = 10
    assert json.loads((tmp_path / "r" / "results.json").read_text())["gamma"] == 1.0
    assert (tmp_path / "r" / "accuracy_vs_sparsity.png").read_bytes()[:4] == b"\x89PNG"


def test_family_search_tunes_every_knob_to_both_targets_with_shared_runs(
        family_job: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main() end to end with training replaced by a known knob -> sparsity response."""
    trained: list[str] = []

    def fake_train(run, work, say=None):  # logistic in the knob's coordinate, 85% at the start
        trained.append(run.name)
        if run.method == "sgd":
            return dict(name=run.name, method="sgd", hparams={}, accuracy=0.86, sparsity=0.0,
                        wall_time=1.0, steps=4, reused=False)
        method = next(m for m in family_job.METHODS.values() if run.name.startswith(m.name + "-"))
        u = method.knob.to_u(run.hparams[method.knob.hparam])
        sparsity = 1 / (1 + math.exp(-(u - method.knob.to_u(method.knob.start) + _logit(0.85))))
        return dict(name=run.name, method=run.method, hparams=dict(run.hparams),
                    accuracy=0.9 - 0.1 * sparsity, sparsity=sparsity, wall_time=1.0, steps=4,
                    reused=False)

    monkeypatch.setattr(family_job.common, "train", fake_train)
    res = family_job.main(["--methods", "lats,str,gmp", "--targets", "0.9,0.95", "--work",
                           str(tmp_path / "w"), "--results", str(tmp_path / "r"), "--quiet"])
    for name in ("lats", "str", "gmp"):
        runs = res["runs"][name]
        for t in (0.9, 0.95):
            chosen = res["chosen"][name][str(t)]
            assert chosen["hit"] and abs(chosen["sparsity"] - t) <= 0.01, (name, t, runs)
        # regula falsi on an exactly logistic response: few runs, none repeated
        assert len(runs) <= 6 and len({r["knob"] for r in runs}) == len(runs), runs
        # one search per method, from its start value, its runs kept for the second target
        assert runs[0]["knob"] == family_job.METHODS[name].knob.start
    assert trained.count("sgd") == 1 and len(trained) == 1 + sum(map(len, res["runs"].values()))
    lines = res["table"].splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["LATS", "STR", "GMP (global)",
                                                                  "SGD (dense)"]
    assert "74.31 @ 90.23" in lines[3]  # STR's published ResNet-50 figure beside ours
    assert (tmp_path / "r" / "accuracy_at_sparsity.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert saved["training"]["warmup_steps"] == 40 and saved["targets"] == [0.9, 0.95]


@pytest.mark.parametrize("folder", ["irda_table7", "irda_table7_gamma0.1"])
def test_committed_irda_tables_are_what_the_script_writes_from_their_runs(
        irda_job: ModuleType, folder: str) -> None:
    """``table.md`` and ``results.json``'s report are the script's current text for the rows
    recorded in ``results.json`` (no stale wording beside the numbers)."""
    root = Path(__file__).resolve().parents[1] / "experiments" / "results" / folder
    r = json.loads((root / "results.json").read_text())
    lambdas = list(dict.fromkeys(row["l1"] for row in r["sweep"]))
    init_l1 = r["init_scale"][0]["l1"] if r["init_scale"] else irda_job.parse_args([]).init_l1
    table, report = irda_job.make_report(r["dense"], r["sweep"], r["init_scale"], lambdas,
                                         r["gamma"], init_l1)
    assert table == r["table"]
    assert report == r["report"]
    assert (root / "table.md").read_text() == report + "\n"

"""experiments/directional_pruning.py (Hessian, DP vs gRDA vs magnitude, SGD-gRDA connectivity), --quick."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.scripts import load_script, needs_fashion_mnist


@pytest.mark.slow
@needs_fashion_mnist
def test_quick_run_reports_every_part_and_writes_the_figures(tmp_path: Path, capsys) -> None:
    job = load_script("experiments/directional_pruning.py")
    res = job.main(["--quick", "--out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out

    hess = res["hessian"]
    ev = np.asarray(hess["eigenvalues"])
    assert len(ev) == 4 and np.all(np.diff(ev) <= 0) and ev[0] > 0
    assert hess["num_params"] == 784 * 16 + 16 + 16 * 10 + 10
    assert 0.0 <= hess["flat_mass"] <= 1.0
    # SLQ's first moment times d is Hutchinson's trace with the same probes only when the probe
    # counts agree; here it is another estimate of the same trace: same sign and order of magnitude
    assert hess["trace"] > 0 and hess["slq_first_moment_times_d"] > 0

    rows = res["pruning"]["rows"]
    assert {"sgd", "grda", "magnitude", "dp_theorem_lambda"} <= set(rows)
    q = res["pruning"]["grda_sparsity"]
    assert 0.0 < q < 1.0
    assert rows["magnitude"]["sparsity"] == pytest.approx(q, abs=1e-3)
    if "dp" in rows:  # DP reaches gRDA's sparsity when enough scores are positive
        assert rows["dp"]["sparsity"] == pytest.approx(q, abs=2e-3)
    for j in res["pruning"]["jaccard"].values():
        assert 0.0 <= j <= 1.0

    conn = res["connectivity"]
    curve, line = conn["curve"], conn["line"]
    assert curve["t"] == line["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # both paths start at w_SGD and end at w_gRDA exactly
    assert curve["train_loss"][0] == line["train_loss"][0]
    assert curve["train_loss"][-1] == line["train_loss"][-1]
    assert curve["train_loss"][-1] == pytest.approx(rows["grda"]["train_loss"], rel=1e-5)

    names = [c["claim"] for c in res["claims"]]
    assert len(names) == 8 and all(c["held"] in (True, False, None) for c in res["claims"])
    assert "| claim | paper | ours | held here? |" in out and res["report"] in out
    for path in res["figures"].values():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "results_quick.json").read_text())
    assert saved["claims"] == res["claims"]
    for run in ("sgd", "grda", "curve"):
        assert (tmp_path / "work_quick" / run / "result.json").exists()

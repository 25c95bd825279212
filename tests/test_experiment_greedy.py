"""experiments/greedy_figure1.py (the paper's Figure 1): exponential decay of the pruned error in n."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.scripts import load_script


@pytest.fixture(scope="module")
def job() -> ModuleType:
    return load_script("experiments/greedy_figure1.py")


@pytest.mark.slow
def test_local_imitation_decays_exponentially_in_n(
    job: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The claim as the paper states it, on the full-size original network (2 x 100 tanh units).

    Setting: seed 0, the original network and the networks trained from scratch all with the
    AdamW weight decay 1.0 (stated in the README: without it, at this size, the pruned curves
    fall like 1/n and the exponential regime is not reached by n = 30; see
    experiments/results/greedy_figure1_wd0.txt). Range n = 1..20 (before the test-set floor
    near 3e-5 that local imitation reaches past n = 20).

    Why the margins: local imitation's steps are closed-form, but the original network is
    trained, and its weights depend on how XLA compiles the training (device count,
    optimisation level, library versions), which moves the fitted figures. Seen on 2026-12-05
    (numpy 2.5.5, jax 0.12.0.1) in three configurations (1 or 8 CPU devices, XLA optimisation
    level 1 as in the test session or the default): for D-bar, slope -0.165 to -0.179 per unit,
    R^2 0.948 to 0.979 for the line against n, 0.825 to 0.868 for a power law; for the
    network-output discrepancy, slope -0.168 to -0.208, R^2 0.909 to 0.952 against 0.787 to
    0.840 (an earlier session saw 0.970 and 0.938). The thresholds sit below every value seen
    with a margin of at least 0.04 in R^2 and 0.04 in slope; the exponential line fits better
    than the power law by at least 0.069 everywhere.
    """
    out = tmp_path / "figure1.png"
    curves = job.main(["--weight-decay", "1.0", "--n-max", "20", "--fit-range", "1,20",
                       "--line-search-steps-per-unit", "0", "--scratch-widths", "8",
                       "--out", str(out)])
    text = capsys.readouterr().out
    assert out.stat().st_size > 10_000 and "figure saved" in text
    assert "weight decay 1" in text and "does pruning beat training from scratch" in text
    assert sorted(curves.local) == list(range(1, 21)) == sorted(curves.global_)
    assert curves.global_ls == {} and sorted(curves.scratch) == [8]  # one width: the report path
    for curve in (curves.local_bar, curves.local, curves.global_, curves.scratch):
        assert all(np.isfinite(v) and v > 0 for v in curve.values())

    # exponential: log10 D is a line in n with a negative slope and a good fit, better
    # described by that line than by a power law n^-p (the rate of training from scratch)
    for curve, max_slope, min_r2, over_pow in ((curves.local_bar, -0.12, 0.9, 0.05),
                                               (curves.local, -0.12, 0.85, 0.03)):
        slope, r2_exp, r2_pow = job.exp_fit(curve, 1, 20)
        assert slope < max_slope, slope
        assert r2_exp >= min_r2, r2_exp
        assert r2_exp > r2_pow + over_pow, (r2_exp, r2_pow)
        assert curve[20] < curve[1] * 1e-2  # more than two decades
    # the paper's global imitation (eq. 8, step 1/(k+1)) decays more slowly here (seen: -0.054)
    assert job.exp_fit(curves.global_, 1, 20)[0] > job.exp_fit(curves.local, 1, 20)[0] / 2

    # the fit itself: an exact exponential and an exact power law
    ns = range(1, 11)
    slope, r2, r2p = job.exp_fit({n: 10.0 ** (-0.3 * n) for n in ns}, 1, 10)
    assert slope == pytest.approx(-0.3) and r2 == pytest.approx(1.0) and r2p < 0.95
    slope, r2, r2p = job.exp_fit({n: 1.0 / n for n in ns}, 1, 10)
    assert r2p == pytest.approx(1.0) and r2 < 0.95


def test_command_line_is_validated(job: ModuleType) -> None:
    for bad in (["--n-max", "0"], ["--width", "10", "--n-max", "11"], ["--scratch-widths", "0,3"],
                ["--global-steps-per-unit", "0"], ["--line-search-steps-per-unit", "-1"],
                ["--minibatch", "-1"], ["--fit-range", "5"], ["--fit-range", "4,2"]):
        with pytest.raises(SystemExit):
            job.parse_args(bad)
    args = job.parse_args(["--quick", "--n-max", "5"])
    assert args.width == 40 and args.n_max == 5 and args.scratch == [1, 2, 4, 8, 12]
    assert args.fit == (1, 5) and args.weight_decay == 0.0 and args.minibatch == 0

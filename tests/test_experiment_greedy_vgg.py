"""experiments/fashion_mnist_greedy_vgg.py (Alg. 2 and GFS on a small VGG) on a tiny real-data run."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from tests.scripts import load_script, needs_fashion_mnist


@pytest.fixture(scope="module")
def job() -> ModuleType:
    return load_script("experiments/fashion_mnist_greedy_vgg.py")


@pytest.mark.slow
@needs_fashion_mnist
def test_tiny_run_prunes_within_the_rule_shrinks_and_reports(
    job: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    tol = 0.05
    out = job.main(["--width-div", "16", "--train-subset", "1024", "--test-subset", "1000",
                    "--epochs", "1",
                    "--imitation-examples", "32", "--tolerance", str(tol),
                    "--finetune-epochs", "1", "--global-step", "line_search", "--quiet",
                    "--groups", "convs/6,convs/7"])
    text = capsys.readouterr().out
    assert "kept channels per layer" in text and "chosen (imitation)" in text
    for name in ("dense", "imitation", "gfs"):
        assert any(line.strip().startswith(name) for line in text.splitlines()), name
    rows = out["rows"]
    dense_params = rows["imitation"]["summary"].params[0]
    for method in ("imitation", "gfs"):
        row = rows[method]
        result, summary = row["result"], row["summary"]
        # every pruned layer met the per-layer rule on the training loss ...
        for group in result.selections:
            before, after = result.losses[group]
            assert after - before <= tol + 1e-5, (method, group, before, after)
        # ... and the shrunk model is that network with fewer parameters
        assert summary.params[1] <= dense_params and summary.flops[1] <= summary.flops[0]
        if result.selections:
            assert summary.params[1] < dense_params
        for acc in (row["accuracy"], row["finetuned"]):
            assert 0.0 <= acc <= 1.0 and np.isfinite(acc)
    imitation = rows["imitation"]["result"]
    assert set(imitation.chosen.values()) <= {"local", "global", "none"}
    assert list(imitation.losses) == ["convs/6", "convs/7"]
    assert any(r.method.startswith("global_line_search")
               for runs in imitation.candidates.values() for m, r in runs.items() if m == "global")
    # the whole network lost at most (pruned layers) x tolerance on the training loss
    assert imitation.final_loss - imitation.base_loss <= tol * len(imitation.losses) + 1e-5


def test_command_line_is_validated(job: ModuleType) -> None:
    for bad in (["--methods", "magnitude"], ["--tolerance", "-1"], ["--width-div", "0"],
                ["--global-step", "exact"], ["--groups", "convs/8"], ["--groups", ","],
                ["--test-subset", "0"]):
        with pytest.raises(SystemExit):
            job.parse_args(bad)
    args = job.parse_args(["--quick"])
    assert args.epochs == 1 and args.train_subset == 12800 and args.global_step == "fixed"
    assert args.group_list is None
    assert job.parse_args(["--groups", "convs/7, convs/2"]).group_list == ["convs/7", "convs/2"]

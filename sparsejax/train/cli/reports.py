"""What the ``sparsejax`` command line prints and writes: tables, result files and plots."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsejax.train.cli.runs import TrainedRun
from sparsejax.tree import weights_only


def pct(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100.0 * x:.2f}%"


def mflops(x: float) -> str:
    return f"{x / 1e6:.3g}M" if x >= 1e5 else f"{x / 1e3:.3g}k"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table (numbers right-aligned).

    Example:
      >>> print(markdown_table(['method', 'acc'], [['sgd', '90.1%']]))
      | method |   acc |
      |--------|------:|
      | sgd    | 90.1% |
    """
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"

    sep = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def summary_line(run: TrainedRun) -> str:
    final = run.result.final
    extras = [f"{k} {v:.4g}" for k, v in final.items()
              if k in ("threshold", "target_sparsity", "l1", "step_size")]
    return (f"{run.settings.name}: test accuracy {pct(final.get('test_accuracy'))}, "
            f"sparsity {pct(final.get('sparsity'))} of the weights "
            f"({pct(final.get('sparsity_all'))} of all parameters)"
            + "".join(f", {e}" for e in extras)
            + f", {run.result.wall_time:.1f} s of training; workdir {run.result.workdir}")


def compare_markdown(rows: Sequence[Mapping[str, Any]], ratios: Sequence[float],
                      scope: str) -> tuple[str, str]:
    table = markdown_table(
        ["method", "test accuracy", "sparsity (weights)", "FLOPs", "FLOPs vs dense", "wall time"],
        [[r["name"], pct(r["test_accuracy"]), pct(r["sparsity"]), mflops(r["flops"]),
          pct(r["flops"] / r["flops_dense"]), f"{r['wall_time']:.0f} s"] for r in rows],
    )
    curve_table = markdown_table(
        ["method"] + [f"{100 * q:g}%" for q in ratios],
        [[r["name"]] + [pct(p["metric"]) for p in r["one_shot"]] for r in rows],
    )
    return table, curve_table


_SETTINGS = ("dataset", "model", "epochs", "batch_size", "seed")
"""The settings the report's header states (those the runs share)."""


def _settings_text(values: Mapping[str, Any]) -> str:
    """``'synthetic, mlp, 2 epochs of batch 64, seed 0'``, of the settings in ``values``."""
    parts = [str(values[k]) for k in ("dataset", "model") if k in values]
    if "epochs" in values and "batch_size" in values:
        parts.append(f"{values['epochs']} epochs of batch {values['batch_size']}")
    elif "epochs" in values:
        parts.append(f"{values['epochs']} epochs")
    elif "batch_size" in values:
        parts.append(f"batch {values['batch_size']}")
    if "seed" in values:
        parts.append(f"seed {values['seed']}")
    return ", ".join(parts)


def shared_settings(
        trained: Sequence[TrainedRun]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(shared, differing)``: the settings of :data:`_SETTINGS` every run has alike, and by
    run name the others (empty when the runs share them all)."""
    values = [{k: getattr(r.settings, k) for k in _SETTINGS} for r in trained]
    shared = {k: values[0][k] for k in _SETTINGS if all(v[k] == values[0][k] for v in values)}
    differing = {r.settings.name: {k: v[k] for k in _SETTINGS if k not in shared}
                 for r, v in zip(trained, values)}
    return shared, differing if len(shared) < len(_SETTINGS) else {}


def write_compare(out: Path, rows: list[dict[str, Any]], curves: Mapping[str, Any],
                   trained: Sequence[TrainedRun], ratios: Sequence[float], scope: str,
                   bn_recalibrate: int = 0) -> None:
    from sparsejax.train import plots

    out.mkdir(parents=True, exist_ok=True)
    table, curve_table = compare_markdown(rows, ratios, scope)
    shared, differing = shared_settings(trained)
    # the header states what the runs share; each run's other settings are listed below it
    head = _settings_text(shared) or "runs of different settings"
    if differing:
        per_run = "Settings that differ between the runs: " + "; ".join(
            f"{name}: {_settings_text(values)}" for name, values in differing.items()) + "."
    what = ", ".join(str(shared[k]) for k in ("dataset", "model") if k in shared)
    plots.plot_accuracy_vs_sparsity([{"method": r["name"], "test_accuracy": r["test_accuracy"],
                                      "sparsity": r["sparsity"]} for r in rows],
                                    out / "accuracy_vs_sparsity.png",
                                    title="accuracy vs sparsity" + (f" ({what})" if what else ""))
    recomputed = [r["name"] for r in rows if r.get("one_shot_bn_recalibrate")]
    plots.plot_one_shot_curves(curves, out / "one_shot_curves.png",
                               title=f"one-shot {scope} magnitude pruning, no retraining"
                               + (", BatchNorm recomputed" if recomputed else ""))
    plots.plot_layer_sparsity_grid({r.settings.name: r.result.params for r in trained},
                                   out / "layer_sparsity.png", columns=3, mask=weights_only)
    bn_note = (f"; BatchNorm statistics recomputed at each pruned net from {bn_recalibrate} "
               f"training batches for {', '.join(recomputed)}" if recomputed else "")
    md = "\n".join([
        f"# sparsejax compare: {head}", "",
        *([per_run, ""] if differing else []),
        "FLOPs: one example through the model, 2 x multiply-accumulates of the conv and dense "
        "layers with the zero weights skipped; sparsity: share of zeros among the conv and "
        "dense kernels.", "",
        table, "",
        f"Test accuracy after one-shot {scope} magnitude pruning at each ratio, no retraining "
        f"(any-sparsity){bn_note}:", "",
        curve_table, "",
        "![accuracy vs sparsity](accuracy_vs_sparsity.png)",
        "![one-shot pruning curves](one_shot_curves.png)",
        "![layer-wise sparsity](layer_sparsity.png)", "",
    ])
    (out / "results.md").write_text(md)
    report: dict[str, Any] = {"settings": head}
    if differing:
        report["settings_per_run"] = differing
    (out / "results.json").write_text(json.dumps(
        {**report, "scope": scope, "ratios": list(ratios),
         "bn_recalibrate": bn_recalibrate, "runs": rows}, indent=2) + "\n")
    print()
    if differing:
        print(per_run)
    print(table)
    print()
    print(f"any-sparsity (one-shot {scope} pruning, no retraining{bn_note}):")
    print(curve_table)
    print(f"\nresults and plots in {out}/ (results.md, results.json, accuracy_vs_sparsity.png, "
          "one_shot_curves.png, layer_sparsity.png)")

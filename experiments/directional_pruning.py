"""Directional pruning on Fashion-MNIST: the Hessian at the SGD minimum, DP vs gRDA vs magnitude
pruning, and the SGD-gRDA Bézier connectivity (Chao, Wang, Xing, Cheng, NeurIPS 2020).

The paper's picture: SGD ends in a flat valley P_0 of the training loss (the span of the
Hessian's near-zero eigenvectors); moving w_SGD along -Pi_0 sign(w_SGD) shrinks weights without
leaving the valley; directional pruning (DP) is argmin_w 1/2 ||w - w_SGD||^2 + lambda sum_j s_j |w_j|
with the scores s_j = sign(w_j) (Pi_0 sign(w))_j; gRDA's iterate is asymptotically DP of SGD's
with lambda = c sqrt(gamma) t^mu; and the SGD and gRDA minima are joined by a Bézier curve of low
training loss (its Figures 1-4). This script measures each of these at a scale a 2-core CPU
allows:

1. an MLP (784-32-10 by default, 25,450 parameters) is trained on Fashion-MNIST with plain SGD
   and with gRDA (``sj.grda``) from the same initialisation, on the same shuffled batches, at the
   same constant learning rate (the theorem compares gRDA with SGD at the same gamma; no
   momentum), each in a resumable workdir;
2. the Hessian of the mean training loss over the first ``--hessian-examples`` training examples
   at w_SGD: the top ``--k`` eigenpairs by Lanczos with full re-orthogonalisation
   (``sj.directional.top_eigenpairs``), the spectral density by stochastic Lanczos quadrature and
   the trace by Hutchinson; figure ``directional_spectrum.png``;
3. the flat projector (the top-k eigenvectors whose eigenvalue exceeds ``--flat-tol`` times the
   largest are the non-flat directions; everything else counts as flat), the DP scores of the
   kernels, DP with lambda chosen to reach gRDA's sparsity (``lambda_for_sparsity``) and with
   the theorem's lambda (``grda_lambda``), and one-shot global magnitude pruning of w_SGD at the
   same sparsity, none retrained: training loss (all training examples), test accuracy, the
   Jaccard overlap of the pruned sets, the scores of gRDA's zeros, the curvature along the
   pruning direction, the share of ||w_gRDA - w_SGD||^2 in the top-k eigenspace (the check of
   the reference repository's ``hess_diff.py``); figure ``directional_pruning.png`` (training
   loss and test accuracy against sparsity for DP and magnitude pruning, gRDA as a point; the
   histogram of the scores);
4. the Bézier curve between w_SGD and w_gRDA, its control point trained with
   ``sparsejax.train.connectivity.train_curve`` (the library's trainer: data-parallel,
   resumable), then the training loss and test error along the curve and the straight line
   (``directional_connectivity.png``) and on the plane of the three points
   (``directional_plane.png``, the paper's Figures 1-4).

It prints a table of the nets and a table of the paper's claims against our measurements,
saying which held here, and writes ``OUT/results.json`` and the four PNGs
``OUT/directional_<name>.png`` (``--figures DIR`` copies them, e.g. to ``experiments/figures``);
the training runs are kept, resumable, in ``OUT/work``. With ``--quick`` the names are
``OUT/results_quick.json``, ``OUT/directional_<name>_quick.png`` (copied under those names by
``--figures``) and ``OUT/work_quick``, so a quick run never overwrites or reuses a full one.

With the defaults (seed 0; 36 s of wall time on 2 shared cores) it printed, at gRDA's sparsity
of the kernels (83.70%), none retrained::

    | net                                                  | training loss | test acc. |
    | SGD (dense)                                          |        0.2773 |    86.93% |
    | gRDA                                                 |        0.3366 |    86.12% |
    | DP of SGD, lambda 0.0843 matched to gRDA's sparsity  |        0.9983 |    77.34% |
    | magnitude pruning of SGD, one-shot                   |        0.5539 |    77.03% |
    | DP's pruned set, survivors at their SGD values       |        0.4135 |    83.44% |
    | DP at the theorem's lambda 0.2182 (99.06% sparse)    |        2.2793 |    10.28% |

Held here: the flat valley (95.5% of the spectral mass within 1e-3 lambda_1 of 0), the flat
pruning direction, gRDA's accuracy at 84% sparsity, a low-loss SGD-gRDA curve (the straight
line has no barrier either). Did not hold: DP keeping the loss better than magnitude pruning
(with 50 of 25,450 directions projected out every score is near 1, DP is nearly soft
thresholding, and shrinking the survivors costs the loss; its pruned set alone beats magnitude
pruning's), the theorem's correspondence at gamma = 0.1 (Jaccard DP-gRDA 0.826 vs
magnitude-gRDA 0.824; DP at the theorem's lambda prunes 99%), w_gRDA - w_SGD avoiding the top
eigendirections more than chance. ``experiments/README_directional.md`` has the tables, the
figures and seed 1.

Run::

    python experiments/directional_pruning.py                  # the defaults, --out runs/directional_pruning
    python experiments/directional_pruning.py --figures experiments/figures
    python experiments/directional_pruning.py --quick --out /tmp/dp   # a smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import sparsejax as sj
from sparsejax import data, pruning
from sparsejax.models import create
from sparsejax.train import fit, make_evaluator
from sparsejax.train import connectivity as conn
from sparsejax.tree import weights_only

dp = sj.directional

DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)
FIGURES = ("spectrum", "pruning", "connectivity", "plane")


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be comma-separated numbers, got {text!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses and checks the command line (see ``--help``)."""
    p = argparse.ArgumentParser(
        description="Directional pruning on Fashion-MNIST with a narrow MLP: the Hessian spectrum at "
        "the SGD minimum, DP vs gRDA vs one-shot magnitude pruning at the same sparsity, and the "
        "SGD-gRDA Bezier connectivity.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("training (SGD and gRDA from the same init, on the same batches)")
    g.add_argument("--hidden", default="32", help="hidden widths of the MLP (comma-separated)")
    g.add_argument("--epochs", type=int, default=10, help="epochs of SGD and of gRDA")
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument("--lr", type=float, default=0.1,
                   help="the constant learning rate gamma of both (the theorem compares gRDA with "
                   "plain SGD at the same gamma: no momentum)")
    g.add_argument("--c", type=float, default=0.03, help="gRDA's c")
    g.add_argument("--mu", type=float, default=0.51, help="gRDA's mu (paper: 0.51)")
    g.add_argument("--seed", type=int, default=0, help="seed of the init and the shuffling")
    g.add_argument("--train-subset", type=int, default=0,
                   help="train on the first N training examples (0: all 60,000)")
    g.add_argument("--test-subset", type=int, default=0, help="evaluate on the first N test examples")
    g = p.add_argument_group("Hessian at the SGD minimum")
    g.add_argument("--hessian-examples", type=int, default=10_000,
                   help="the Hessian of the mean loss over the first N training examples")
    g.add_argument("--hessian-batch", type=int, default=2_000, help="examples per HVP batch")
    g.add_argument("--k", type=int, default=50, help="top eigenpairs by Lanczos")
    g.add_argument("--lanczos-steps", type=int, default=0, help="Lanczos steps (0: 2k + 20)")
    g.add_argument("--flat-tol", type=float, default=1e-3,
                   help="a computed eigenvector is non-flat when its eigenvalue exceeds this times "
                   "the largest; every direction beyond the top k counts as flat")
    g.add_argument("--probes", type=int, default=4, help="SLQ probes")
    g.add_argument("--slq-steps", type=int, default=80, help="Lanczos steps per SLQ probe")
    g.add_argument("--trace-probes", type=int, default=50, help="Hutchinson probes")
    g = p.add_argument_group("pruning and connectivity")
    g.add_argument("--sparsities", default=",".join(str(s) for s in DEFAULT_SPARSITIES),
                   help="sparsities of the DP and magnitude-pruning curves (gRDA's is added)")
    g.add_argument("--curve-epochs", type=int, default=3, help="epochs of training the control point")
    g.add_argument("--curve-lr", type=float, default=0.05, help="its learning rate (SGD)")
    g.add_argument("--curve-momentum", type=float, default=0.9, help="its momentum")
    g.add_argument("--points", type=int, default=21, help="t values along the curve and the line")
    g.add_argument("--grid", type=int, default=21, help="points per axis of the plane")
    g.add_argument("--margin", type=float, default=0.25, help="the plane grid's margin")
    g.add_argument("--plane-examples", type=int, default=10_000,
                   help="training examples behind the plane's train loss (the test set is whole)")
    g = p.add_argument_group("output")
    g.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    g.add_argument("--out", default="runs/directional_pruning",
                   help="folder of results.json, the figures and the resumable runs (OUT/work); "
                        "with --quick: results_quick.json, directional_*_quick.png, OUT/work_quick")
    g.add_argument("--figures", default=None,
                   help="also copy the PNGs here as directional_<name>.png (e.g. experiments/figures)")
    g.add_argument("--quick", action="store_true",
                   help="a smoke test (seconds): 1,024 training and 500 test examples, a 16-unit "
                   "MLP, 1 epoch, small Lanczos/SLQ, 5 points, a 5x5 plane (overrides those flags)")
    g.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = p.parse_args(argv)
    try:
        args.hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
        args.sparsities = _floats(args.sparsities, "--sparsities")
    except (ValueError, argparse.ArgumentTypeError) as e:
        p.error(str(e))
    if args.quick:
        args.hidden, args.epochs, args.train_subset, args.test_subset = (16,), 1, 1024, 500
        args.hessian_examples, args.hessian_batch, args.k, args.lanczos_steps = 500, 500, 4, 10
        args.probes, args.slq_steps, args.trace_probes = 1, 10, 4  # Lanczos's step, compiled once
        args.curve_epochs, args.points, args.grid, args.plane_examples = 1, 5, 5, 500
        args.sparsities = (0.5, 0.9)
        args.c = 0.05  # a visible threshold after 8 steps
    if not args.hidden or min(args.hidden) < 1:
        p.error("--hidden must be positive widths")
    for name in ("epochs", "batch_size", "hessian_examples", "hessian_batch", "k", "probes",
                 "slq_steps", "trace_probes", "curve_epochs", "points", "grid", "plane_examples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("lr", "c", "curve_lr", "flat_tol", "margin", "train_subset", "test_subset",
                 "lanczos_steps", "seed"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if not 0 <= args.curve_momentum < 1:
        p.error("--curve-momentum must be in [0, 1)")
    if any(not 0 < s < 1 for s in args.sparsities):
        p.error("--sparsities must lie in (0, 1)")
    return args


# --- data, models, runs -----------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> dict[str, Any]:
    """Training batches (shuffled from the seed) and in-order evaluation pipelines."""
    train_split = f"train[:{args.train_subset}]" if args.train_subset else "train"
    test_split = f"test[:{args.test_subset}]" if args.test_subset else "test"
    train_ds = data.load("fashion_mnist", train_split, data_dir=args.data_dir)
    test_ds = data.load("fashion_mnist", test_split, data_dir=args.data_dir)
    plane_ds = data.load("fashion_mnist", f"train[:{min(args.plane_examples, len(train_ds))}]",
                         data_dir=args.data_dir)
    return {
        "train": data.batches(train_ds, args.batch_size, train=True, seed=args.seed),
        "train_eval": data.batches(train_ds, 2000, train=False),
        "test": data.batches(test_ds, 2000, train=False),
        "plane_train": data.batches(plane_ds, 2000, train=False),
    }


def build_model(args: argparse.Namespace) -> nnx.Module:
    """The zoo's MLP on 28x28x1 inputs with ``--hidden`` widths, from ``--seed``."""
    return create("mlp", 10, (28, 28, 1), hidden=args.hidden, rngs=args.seed)


def run_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The identity of one training run (its workdir's ``config.json``)."""
    cfg = {"experiment": "directional_pruning", "model": "mlp", "hidden": list(args.hidden),
           "train_subset": args.train_subset, "lr": args.lr, "method": name}
    if name == "grda":
        cfg.update(c=args.c, mu=args.mu)
    return cfg


def train_runs(args: argparse.Namespace, batches: dict[str, Any], work: Path) -> dict[str, Any]:
    """SGD and gRDA from the same init, on the same batches, with the same constant lr."""
    results = {}
    for name in ("sgd", "grda"):
        tx = (optax.sgd(args.lr) if name == "sgd"
              else optax.inject_hyperparams(sj.grda)(learning_rate=args.lr, c=args.c, mu=args.mu))
        log = None if args.quiet else (lambda line, n=name: print(f"  [{n}] {line}", flush=True))
        results[name] = fit(build_model(args), tx, batches["train"], epochs=args.epochs,
                            workdir=work / name, config=run_config(name, args), seed=args.seed,
                            log=log)
    return results


# --- the parts --------------------------------------------------------------------------------


def hessian_part(args: argparse.Namespace, sgd: Any, batches: dict[str, Any]) -> dict[str, Any]:
    """Top-k eigenpairs (Lanczos), the SLQ density and Hutchinson's trace at the SGD minimum."""
    examples = conn.collect_examples(batches["train_eval"], args.hessian_examples)
    loss = dp.DatasetLoss(conn.classifier_loss(sgd.model), examples, batch_size=args.hessian_batch)
    params = sgd.params
    d = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    times = {}
    t0 = time.perf_counter()
    eig = dp.top_eigenpairs(loss, params, k=min(args.k, d), num_steps=(
        min(d, args.lanczos_steps) if args.lanczos_steps else None), seed=args.seed)
    jax.block_until_ready(eig.values)
    times["lanczos"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    density = dp.spectral_density(loss, params, num_probes=args.probes,
                                  num_steps=min(d, args.slq_steps), seed=args.seed)
    times["slq"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trace = dp.hutchinson_trace(loss, params, num_probes=args.trace_probes, seed=args.seed)
    times["trace"] = time.perf_counter() - t0
    values = np.asarray(eig.values, np.float64)
    tol = args.flat_tol * values[0]
    nodes, weights = density.nodes.ravel(), density.weights.ravel()
    return {
        "loss": loss, "eigen": eig, "density": density, "trace": trace, "num_params": d,
        "examples": examples["label"].shape[0], "eigenvalues": values.tolist(),
        "residuals": np.asarray(eig.residuals, np.float64).tolist(), "tol": tol,
        "retained": int(np.sum(values > tol)),
        # the share of the spectrum (SLQ mass) within tol of zero, and above it
        "flat_mass": float(np.sum(weights[np.abs(nodes) <= tol])),
        "outlier_mass": float(np.sum(weights[nodes > tol])),
        "negative_mass": float(np.sum(weights[nodes < -tol])),
        "times": times,
    }


def _zeros(params: Any) -> np.ndarray:
    """A boolean vector: which kernel entries are exactly zero (leaf order)."""
    return np.concatenate([np.asarray(x).ravel() == 0 for x in
                           jax.tree.leaves(jax.tree.map(
                               lambda x, m: x if m else None, params,
                               sj.tree.resolve_mask(weights_only, params)))])


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A & B| / |A | B| of two boolean vectors (1 for two empty sets)."""
    union = np.sum(a | b)
    return float(np.sum(a & b) / union) if union else 1.0


def _flat(tree: Any) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def pruning_part(args: argparse.Namespace, runs: dict[str, Any], hess: dict[str, Any],
                 batches: dict[str, Any]) -> dict[str, Any]:
    """DP, gRDA and one-shot magnitude pruning at the same sparsity, and the sparsity curves."""
    sgd, grda = runs["sgd"].params, runs["grda"].params
    train_eval = make_evaluator(runs["sgd"].model, batches["train_eval"])
    test_eval = make_evaluator(runs["sgd"].model, batches["test"])

    def metrics(params: Any) -> dict[str, float]:
        tr, te = train_eval(params), test_eval(params)
        return {"train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                "test_accuracy": te["accuracy"],
                "sparsity": float(sj.sparsity(params, weights_only))}

    proj = dp.flat_projector(hess["eigen"], tol=hess["tol"])
    scores = dp.dp_scores(sgd, proj, mask=weights_only)
    s = np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(scores)])
    q = float(sj.sparsity(grda, weights_only))
    steps = runs["grda"].steps
    lam_theorem = dp.grda_lambda(args.c, args.mu, args.lr, steps)
    out: dict[str, Any] = {"grda_sparsity": q, "lambda_theorem": lam_theorem, "rank": proj.rank}
    rows = {"sgd": metrics(sgd), "grda": metrics(grda)}
    reachable = float(np.mean(s > 0))
    if q > 0 and round(q * s.size) <= np.sum(s > 0):
        lam = dp.lambda_for_sparsity(sgd, scores, q, mask=weights_only)
        dp_params = dp.directional_prune(sgd, scores, lam, mask=weights_only)
        rows["dp"] = metrics(dp_params)
        out["lambda_matched"] = lam
        # DP's pruned set with the survivors left at their SGD values: what the shrinkage costs
        rows["dp_support_unshrunk"] = metrics(jax.tree.map(
            lambda w, p: jnp.where(p == 0, jnp.zeros_like(w), w), sgd, dp_params))
    else:
        dp_params = None
    mag = pruning.prune(sgd, q, scope="global", mask=weights_only)[0] if q > 0 else sgd
    rows["magnitude"] = metrics(mag)
    dp_theorem = dp.directional_prune(sgd, scores, lam_theorem, mask=weights_only)
    rows["dp_theorem_lambda"] = metrics(dp_theorem)
    out["rows"] = rows

    z = {"grda": _zeros(grda), "magnitude": _zeros(mag)}
    if dp_params is not None:
        z["dp"] = _zeros(dp_params)
    out["jaccard"] = {f"{a} vs {b}": jaccard(z[a], z[b]) for a, b in
                      (("dp", "grda"), ("magnitude", "grda"), ("dp", "magnitude")) if a in z and b in z}
    out["jaccard_chance"] = q / (2 - q) if q > 0 else 0.0
    # do gRDA's zeros follow the DP scores?
    kept = ~z["grda"]
    out["scores"] = {
        "positive_share": reachable,
        "negative_share": float(np.mean(s < 0)),
        "min": float(s.min()), "median": float(np.median(s)), "max": float(s.max()),
        "mean_on_grda_zeros": float(s[z["grda"]].mean()) if z["grda"].any() else float("nan"),
        "mean_on_grda_kept": float(s[kept].mean()) if kept.any() else float("nan"),
        "positive_share_on_grda_zeros": float(np.mean(s[z["grda"]] > 0)) if z["grda"].any() else float("nan"),
    }
    out["score_values"], out["grda_zero_mask"] = s, z["grda"]

    # does w_gRDA - w_SGD avoid the top (non-flat) eigendirections? (the paper's projection check)
    v = np.asarray(jax.vmap(lambda t: jax.flatten_util.ravel_pytree(t)[0])(hess["eigen"].vectors),
                   np.float64)
    w_sgd = _flat(sgd)

    def top_share(params: Any) -> float:
        delta = _flat(params) - w_sgd
        norm = float(delta @ delta)
        return float(np.sum((v @ delta) ** 2) / norm) if norm > 0 else float("nan")

    out["top_k_share"] = {"grda": top_share(grda), "magnitude": top_share(mag)}
    if dp_params is not None:
        out["top_k_share"]["dp"] = top_share(dp_params)
    out["top_k_share"]["random direction (k/d)"] = v.shape[0] / v.shape[1]

    # the curvature along the pruning direction d = Pi_0 sign(w) (kernels), and along sign(w)
    sign = jax.tree.map(lambda x, m: jnp.sign(x) if m else jnp.zeros_like(x), sgd,
                        sj.tree.resolve_mask(weights_only, sgd))

    def rayleigh(d: Any) -> float:
        hd = hess["loss"].hvp(sgd, d)
        return float(_flat(d) @ _flat(hd) / (_flat(d) @ _flat(d)))

    flat_dir = proj(sign)
    out["curvature"] = {"sign": rayleigh(sign), "flat": rayleigh(flat_dir),
                        "mean_eigenvalue": hess["trace"].trace / hess["num_params"],
                        "kept_norm_share": float(_flat(flat_dir) @ _flat(flat_dir)
                                                 / (_flat(sign) @ _flat(sign)))}

    # training loss against sparsity: DP (lambda for each sparsity) and magnitude pruning
    curve = {"dp": [], "magnitude": []}
    for target in sorted(set(args.sparsities) | ({round(q, 4)} if q > 0 else set())):
        curve["magnitude"].append(metrics(pruning.prune(sgd, target, scope="global",
                                                        mask=weights_only)[0]))
        if round(target * s.size) <= np.sum(s > 0):
            lam_t = dp.lambda_for_sparsity(sgd, scores, target, mask=weights_only)
            curve["dp"].append(metrics(dp.directional_prune(sgd, scores, lam_t, mask=weights_only)))
    out["curve"] = curve
    return out


def connectivity_part(args: argparse.Namespace, runs: dict[str, Any], batches: dict[str, Any],
                      work: Path) -> dict[str, Any]:
    """The SGD-gRDA Bézier curve: trained, then evaluated along the curve, the line and the plane."""
    net = runs["sgd"].model
    w1, w2 = runs["sgd"].params, runs["grda"].params
    log = None if args.quiet else (lambda line: print(f"  [curve] {line}", flush=True))
    t0 = time.perf_counter()
    cfg = {"experiment": "directional_pruning", "start": run_config("sgd", args),
           "end": run_config("grda", args), "epochs_of_ends": args.epochs,
           "lr": args.curve_lr, "momentum": args.curve_momentum}
    fitted = conn.train_curve(net, w1, w2, optax.sgd(args.curve_lr, momentum=args.curve_momentum),
                              batches["train"], epochs=args.curve_epochs, workdir=work / "curve",
                              config=cfg, seed=args.seed, log=log)
    train_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = conn.PathEvaluator(net, {"train": batches["train_eval"], "test": batches["test"]})
    ts = np.linspace(0.0, 1.0, args.points)
    curve = conn.evaluate_path(net, w1, w2, fitted.control, evaluator=ev, ts=ts)
    line = conn.evaluate_path(net, w1, w2, None, evaluator=ev, ts=ts)
    path_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    plane_ev = conn.PathEvaluator(net, {"train": batches["plane_train"], "test": batches["test"]})
    plane = conn.evaluate_plane(net, w1, w2, fitted.control, evaluator=plane_ev,
                                num_points=args.grid, margin=args.margin)
    plane_time = time.perf_counter() - t0
    return {"curve": curve, "line": line, "plane": plane, "control": fitted.control,
            "objective": [r["train_loss"] for r in fitted.result.history],
            "times": {"train": train_time, "path": path_time, "plane": plane_time}}


# --- figures and report -----------------------------------------------------------------------


def plot_pruning(part: dict[str, Any], path: Path) -> None:
    """Training loss and test accuracy against sparsity (DP, magnitude, gRDA), and the score histogram."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    rows = part["rows"]
    for name, style in (("dp", "o-"), ("magnitude", "s--")):
        pts = part["curve"][name]
        if pts:
            x = [100 * p["sparsity"] for p in pts]
            label = "DP (no retraining)" if name == "dp" else "magnitude, one-shot (no retraining)"
            ax1.plot(x, [p["train_loss"] for p in pts], style, label=label)
            ax2.plot(x, [100 * p["test_accuracy"] for p in pts], style, label=label)
    for ax, key, scale in ((ax1, "train_loss", 1), (ax2, "test_accuracy", 100)):
        ax.plot([100 * rows["grda"]["sparsity"]], [scale * rows["grda"][key]], "r*", ms=13,
                label="gRDA")
        ax.axhline(scale * rows["sgd"][key], color="gray", lw=0.8, ls=":", label="SGD (dense)")
        ax.set_xlabel("sparsity of the kernels (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax1.set_ylabel("training loss (all training examples)")
    ax1.set_yscale("log")
    ax2.set_ylabel("test accuracy (%)")
    s, zero = part["score_values"], part["grda_zero_mask"]
    lo, hi = np.percentile(s, [0.5, 99.5])
    bins = np.linspace(lo, hi, 60)
    ax3.hist(s[~zero], bins=bins, alpha=0.6, density=True, label="kept by gRDA")
    ax3.hist(s[zero], bins=bins, alpha=0.6, density=True, label="zeroed by gRDA")
    ax3.axvline(0, color="k", lw=0.8)
    ax3.set_xlabel(r"DP score $s_j$ at the SGD minimum")
    ax3.set_ylabel("density")
    ax3.legend(fontsize=7)
    fig.savefig(path, dpi=110)


def plot_plane_pair(conn_part: dict[str, Any], path: Path) -> None:
    """Train loss and test error on the plane of w_SGD, theta_c, w_gRDA (the paper's Figures 1-4)."""
    from matplotlib.figure import Figure

    plane = conn_part["plane"]
    fig = Figure(figsize=(11, 4.3), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    names = (r"$w_{SGD}$", r"$\theta_c$", r"$w_{gRDA}$")
    dp.plot_plane(plane.xs, plane.ys, plane.values["train_loss"], plane.basis, ax=ax1,
                  title="training loss", label="train loss", point_labels=names)
    dp.plot_plane(plane.xs, plane.ys, 100 * plane.values["test_error"], plane.basis, ax=ax2,
                  title="test error (%)", label="test error (%)", log=False, point_labels=names)
    fig.savefig(path, dpi=110)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def report(args: argparse.Namespace, runs: dict[str, Any], hess: dict[str, Any],
           prn: dict[str, Any], cn: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The markdown tables: measurements, and each claim of the paper against ours."""
    rows = prn["rows"]
    lines = ["| net | sparsity (kernels) | training loss | train acc. | test acc. |",
             "|---|---:|---:|---:|---:|"]
    names = {"sgd": "SGD (dense)", "grda": "gRDA", "dp": "DP of SGD, lambda matched to gRDA's sparsity",
             "magnitude": "magnitude pruning of SGD, one-shot, same sparsity",
             "dp_support_unshrunk": "DP's pruned set, survivors kept at their SGD values",
             "dp_theorem_lambda": f"DP of SGD at the theorem's lambda = {prn['lambda_theorem']:.4g}"}
    for key in ("sgd", "grda", "dp", "magnitude", "dp_support_unshrunk", "dp_theorem_lambda"):
        if key in rows:
            r = rows[key]
            lines.append(f"| {names[key]} | {_pct(r['sparsity'])} | {r['train_loss']:.4f} | "
                         f"{_pct(r['train_accuracy'])} | {_pct(r['test_accuracy'])} |")
    table = "\n".join(lines)

    ev = hess["eigenvalues"]
    curve, line = cn["curve"], cn["line"]
    ends = max(curve["train_loss"][0], curve["train_loss"][-1])
    claims = []

    def claim(name: str, paper: str, ours: str, held: bool | None) -> None:
        claims.append({"claim": name, "paper": paper, "ours": ours,
                       "held": None if held is None else bool(held)})

    claim("SGD reaches a flat valley: a few large Hessian eigenvalues, the rest near 0",
          "the premise of DP (Sec. 2; Ghorbani et al. 2019, Sagun et al. 2017 measure it)",
          f"lambda_1..5 = {', '.join(f'{x:.3g}' for x in ev[:5])}; {hess['retained']} of the top "
          f"{len(ev)} exceed {args.flat_tol:g} lambda_1; SLQ mass within that of 0: "
          f"{_pct(hess['flat_mass'])}, above: {_pct(hess['outlier_mass'])}, below: "
          f"{_pct(hess['negative_mass'])}",
          hess["flat_mass"] > 0.9)
    if "dp" in rows:
        d_dp = rows["dp"]["train_loss"] - rows["sgd"]["train_loss"]
        d_mag = rows["magnitude"]["train_loss"] - rows["sgd"]["train_loss"]
        claim("DP keeps the training loss without retraining; magnitude pruning raises it",
              "Sec. 2 and Fig. (poster): pruning in P_0 keeps the loss, magnitude pruning leaves it",
              f"at {_pct(prn['grda_sparsity'])}: training loss +{d_dp:.4f} (DP) vs +{d_mag:.4f} "
              "(magnitude)", d_dp < d_mag)
    else:
        claim("DP keeps the training loss without retraining; magnitude pruning raises it",
              "Sec. 2", f"DP cannot reach gRDA's sparsity {_pct(prn['grda_sparsity'])}: only "
              f"{_pct(prn['scores']['positive_share'])} of the kernel weights have s_j > 0", False)
    j = prn["jaccard"]
    if "dp vs grda" in j:
        theorem_gap = abs(rows["dp_theorem_lambda"]["sparsity"] - prn["grda_sparsity"])
        claim("gRDA's iterate is asymptotically DP of SGD's with lambda = c sqrt(gamma) t^mu (theorem)",
              "Theorem (gamma -> 0, t large)",
              f"Jaccard of the zero sets: DP-gRDA {j['dp vs grda']:.3f}, magnitude-gRDA "
              f"{j['magnitude vs grda']:.3f} (DP-magnitude {j['dp vs magnitude']:.3f}), chance "
              f"{prn['jaccard_chance']:.3f}; DP at the theorem's lambda: sparsity "
              f"{_pct(rows['dp_theorem_lambda']['sparsity'])} vs gRDA's {_pct(prn['grda_sparsity'])}",
              j["dp vs grda"] > j["magnitude vs grda"] + 0.01 and theorem_gap < 0.05)
    else:
        claim("gRDA's iterate is asymptotically DP of SGD's with lambda = c sqrt(gamma) t^mu (theorem)",
              "Theorem (gamma -> 0, t large)",
              f"DP cannot reach gRDA's sparsity {_pct(prn['grda_sparsity'])} (too few positive "
              f"scores); DP at the theorem's lambda: sparsity "
              f"{_pct(rows['dp_theorem_lambda']['sparsity'])}", False)
    sc = prn["scores"]
    vacuous = sc["positive_share"] >= 1.0
    claim("gRDA's zeros have positive DP scores (pruning them does not raise the loss)",
          "s_j > 0 iff pruning w_j keeps the loss (Sec. 2)",
          f"{_pct(sc['positive_share_on_grda_zeros'])} of gRDA's zeros have s_j > 0 "
          f"({_pct(sc['positive_share'])} of all kernel weights; s_j from {sc['min']:.3f} to "
          f"{sc['max']:.3f}, median {sc['median']:.4f}); mean s_j {sc['mean_on_grda_zeros']:.4f} "
          f"on gRDA's zeros, {sc['mean_on_grda_kept']:.4f} on its kept weights"
          + ("; every score is positive, so this says nothing" if vacuous else ""),
          None if vacuous else sc["positive_share_on_grda_zeros"] > sc["positive_share"])
    cv = prn["curvature"]
    claim("-Pi_0 sign(w_SGD) is a flat direction (the pruning direction of DP)",
          "Sec. 2: -Pi_0 sign(w) lies in P_0",
          f"curvature d^T H d / d^T d along d = Pi_0 sign(w) (kernels): {cv['flat']:.4g}, along "
          f"sign(w): {cv['sign']:.4g}; lambda_1 = {ev[0]:.4g}, lambda_{len(ev)} = {ev[-1]:.4g}, "
          f"tr(H)/d = {cv['mean_eigenvalue']:.4g}; ||Pi_0 sign(w)||^2 / ||sign(w)||^2 = "
          f"{cv['kept_norm_share']:.4f}",
          cv["flat"] <= ev[-1] * (1 + 1e-3))
    tk = prn["top_k_share"]
    claim("w_gRDA - w_SGD avoids the steep directions (top-k eigenvectors)",
          "abstract; repo's hess_diff.py: projection on the top eigenvectors is small",
          f"share of ||w_gRDA - w_SGD||^2 in the top-{len(ev)} eigenspace: {tk['grda']:.2e} "
          f"(magnitude pruning: {tk['magnitude']:.2e}, a random direction: "
          f"{tk['random direction (k/d)']:.2e})",
          tk["grda"] < tk["magnitude"])
    claim("gRDA keeps SGD's accuracy at high sparsity",
          "VGG16/C10 90.82 -> 90.86 at density 0.095 (repo logs); ResNet-50: 87% sparsity, 70.35 top-1",
          f"test accuracy {_pct(rows['grda']['test_accuracy'])} at {_pct(prn['grda_sparsity'])} "
          f"vs SGD's {_pct(rows['sgd']['test_accuracy'])}",
          rows["grda"]["test_accuracy"] >= rows["sgd"]["test_accuracy"] - 0.01)
    barrier = np.max(line["train_loss"]) - ends
    claim("SGD and gRDA minima are joined by a Bezier curve of low training loss",
          "Figures 1-4 (VGG16/CIFAR-10, WRN28x10/CIFAR-100): white curve of low loss on the plane",
          f"max training loss along the curve {np.max(curve['train_loss']):.4f} (ends "
          f"{curve['train_loss'][0]:.4f}, {curve['train_loss'][-1]:.4f}); along the line "
          f"{np.max(line['train_loss']):.4f} (barrier {barrier:+.4f} above the higher end); max "
          f"test error: curve {_pct(np.max(curve['test_error']))}, line "
          f"{_pct(np.max(line['test_error']))}",
          np.max(curve["train_loss"]) <= 1.1 * ends + 0.01)
    ctable = ["| claim | paper | ours | held here? |", "|---|---|---|---|"]
    for c in claims:
        held = "n/a" if c["held"] is None else ("yes" if c["held"] else "**no**")
        ctable.append(f"| {c['claim']} | {c['paper']} | {c['ours']} | {held} |")
    return table + "\n\n" + "\n".join(ctable), claims


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the experiment: trains (or reuses) SGD and gRDA, then the three parts; prints the report.

    Returns:
      A dict with ``hessian``, ``pruning``, ``connectivity`` (JSON-able
      summaries), ``claims``, ``report`` (markdown), ``figures`` (paths) and
      ``wall_time_s``.
    """
    args = parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ("work_quick" if args.quick else "work")
    suffix = "_quick" if args.quick else ""
    batches = load_data(args)
    phases = {}
    print(f"MLP {args.hidden} on Fashion-MNIST ({batches['train'].num_examples} training, "
          f"{batches['test'].num_examples} test examples); SGD and gRDA (c {args.c}, mu {args.mu}) "
          f"at lr {args.lr}, {args.epochs} epochs of batch {args.batch_size}", flush=True)
    t0 = time.perf_counter()
    runs = train_runs(args, batches, work)
    phases["training"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    hess = hessian_part(args, runs["sgd"], batches)
    phases["hessian"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prn = pruning_part(args, runs, hess, batches)
    phases["pruning"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cn = connectivity_part(args, runs, batches, work)
    phases["connectivity"] = time.perf_counter() - t0

    figures = {name: out / f"directional_{name}{suffix}.png" for name in FIGURES}
    dp.plot_spectrum(hess["density"], hess["eigenvalues"], path=figures["spectrum"],
                     title=f"Hessian at the SGD minimum (d = {hess['num_params']:,}, "
                     f"{hess['examples']:,} examples)")
    
    plot_pruning(prn, figures["pruning"])
    dp.plot_path(cn["curve"], cn["line"], keys=["train_loss", "test_error"],
                 labels={"train_loss": "training loss", "test_error": "test error"},
                 path=figures["connectivity"], title="SGD (t = 0) to gRDA (t = 1)")
    plot_plane_pair(cn, figures["plane"])
    if args.figures:
        dest = Path(args.figures)
        dest.mkdir(parents=True, exist_ok=True)
        for path in figures.values():
            shutil.copy(path, dest / path.name)

    text, claims = report(args, runs, hess, prn, cn)
    summary = {
        "hessian": {k: v for k, v in hess.items() if k not in ("loss", "eigen", "density", "trace")}
        | {"trace": hess["trace"].trace, "trace_se": hess["trace"].standard_error,
           "slq_first_moment_times_d": hess["density"].moment(1) * hess["num_params"]},
        "pruning": {k: v for k, v in prn.items() if k not in ("score_values", "grda_zero_mask")},
        "connectivity": {"curve": {k: v.tolist() for k, v in cn["curve"].items()},
                         "line": {k: v.tolist() for k, v in cn["line"].items()},
                         "plane_points": cn["plane"].basis.points.tolist(),
                         "objective": cn["objective"], "times": cn["times"]},
        "claims": claims,
        "report": text,
        "figures": {k: os.fspath(v) for k, v in figures.items()},
        "phase_wall_time_s": phases,
        "wall_time_s": time.perf_counter() - start,
    }
    (out / f"results{suffix}.json").write_text(json.dumps(
        summary | {"args": vars(args)}, indent=1, default=lambda o: o.tolist()
        if hasattr(o, "tolist") else str(o)))
    print("\n" + text)
    print(f"\nHessian: d = {hess['num_params']:,}, top-{len(hess['eigenvalues'])} by Lanczos in "
          f"{hess['times']['lanczos']:.1f} s (largest residual "
          f"{max(hess['residuals']) / hess['eigenvalues'][0]:.1e} lambda_1), SLQ {hess['times']['slq']:.1f} s, "
          f"trace {hess['trace'].trace:.4g} +- {hess['trace'].standard_error:.2g} (SLQ: "
          f"{summary['hessian']['slq_first_moment_times_d']:.4g}).")
    print(f"Figures: {', '.join(os.fspath(p) for p in figures.values())}.  Wall time "
          f"{summary['wall_time_s']:.0f} s ("
          + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + ").")
    return summary


if __name__ == "__main__":
    main()

"""SFW, SVRF, SAGA-FW and One-Shot FW at an equal gradient budget on a convex finite sum.

The study of Miao et al.'s SFW (Section 5) presents four stochastic Frank-Wolfe
methods for :math:`\\min_{x\\in\\Omega} \\frac1n\\sum_i f_i(x)`: plain SFW
(Reddi et al.'s Algorithm 2, fixed minibatches, :math:`\\gamma_t = 2/(t+2)`),
SVRF (Hazan and Luo: snapshots with full gradients, :math:`\\gamma_k = 2/(k+1)`
restarted per snapshot, :math:`m_k = \\lceil c(k+1)\\rceil`, :math:`N_t = 2^{t+3}-2`),
SAGA-FW (Reddi et al.: a per-sample gradient table initialised at
:math:`\\nabla f_i(x_0)`, :math:`b = \\lceil n^{2/3}\\rceil`) and One-Shot FW
(Chen et al.: one averaged gradient, :math:`\\eta_t = 2/(t+8)`,
:math:`\\rho_t = 4/(t+8)^{2/3}`). This script runs them on an
:math:`\\ell_1`-ball-constrained multinomial logistic regression on
Fashion-MNIST features (4x4 average-pooled pixels, 49 features and a bias, 10
classes: 500 parameters in the ball :math:`\\|W\\|_1 \\le r`), each until the
same number of per-sample gradient evaluations is spent, and plots
:math:`f(x) - \\hat f^*` against the evaluations (:math:`\\hat f^*`: the best
of a long full-gradient Frank-Wolfe run and every value the methods reached).

Outputs: ``OUT/suboptimality.png``, ``OUT/results.json`` and a markdown table
(the suboptimality of each method at 10%, 30% and 100% of the budget); with
``--quick`` the files are ``OUT/suboptimality_quick.png`` and
``OUT/results_quick.json`` (``OUT/loss_quick.png`` for ``--problem cnn``), so a
quick run never overwrites a full one in the same folder.

``--problem cnn`` runs the same four methods on the nonconvex finite sum of the
study's Section 5 setting: the zoo's ``small_cnn`` at a small width (conv 4 and 8
channels, dense 32 and 16, 13,610 parameters) trained on the first ``--examples``
Fashion-MNIST images through :func:`sparsejax.train.fit_finite_sum`, every
parameter in SFW pruning's K-sparse polytope (K = max(10, 5%), radius scale
``--tau``), all from the same initialisation. There is no :math:`f^*`: the plot
(``OUT/loss.png``) shows the training loss itself and the test accuracy against
the evaluations. The step size (``--step-rule``) is, for every method, either
its convex analysis' open-loop rate (``open_loop``: SFW and SAGA-FW
:math:`2/(t+2)`, SVRF :math:`2/(k+1)`, One-Shot FW :math:`2/(t+8)`; the
``logreg`` default) or the constant :math:`\\gamma = 1/\\sqrt{T}` of Reddi et
al.'s nonconvex analyses with :math:`T` the method's number of steps at the
budget and the unknown constant :math:`(f(x_0) - f^*)/(L D^2 \\beta)` set to 1
(``constant``: the ``cnn`` default, because with the open-loop rates the first
steps, :math:`\\gamma_0 = 1` onto a vertex, kill the convolutions' ReLUs and SFW,
One-Shot FW and SVRF stall at :math:`\\ln 10`; only SAGA-FW trains; see
FIDELITY.md and ``results/fashion_mnist_fw_finite_sum/cnn_open_loop``).

Run::

    python experiments/fashion_mnist_fw_finite_sum.py               # 10,000 examples, 30 passes
    python experiments/fashion_mnist_fw_finite_sum.py --quick --out /tmp/fwfs   # seconds
    python experiments/fashion_mnist_fw_finite_sum.py --problem cnn   # 5,000 examples, 20 passes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax import constraints as C
from sparsejax import data
from sparsejax.optim.fw_finite_sum import METHODS, run_method


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses and checks the command line (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--problem", choices=("logreg", "cnn"), default="logreg",
                   help="l1-ball logistic regression (convex) or the small CNN in K-sparse polytopes")
    p.add_argument("--examples", type=int, default=None,
                   help="training examples (the n of the sum; default logreg 10,000, cnn 5,000)")
    p.add_argument("--passes", type=float, default=None,
                   help="gradient budget in passes over the data (default logreg 30, cnn 20)")
    p.add_argument("--radius", type=float, default=30.0, help="logreg: the l1 ball's radius r")
    p.add_argument("--tau", type=float, default=1.0,
                   help="cnn: the K-sparse polytopes' scale (vertex L2 norm = tau x initial norm)")
    p.add_argument("--test-examples", type=int, default=2000, help="cnn: test images for the accuracy")
    p.add_argument("--step-rule", choices=("open_loop", "constant"), default=None,
                   help="every method's step size: its convex open-loop rate, or 1/sqrt(T) "
                        "(default logreg open_loop, cnn constant)")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch of SFW and One-Shot FW")
    p.add_argument("--svrf-batch-scale", type=float, default=96.0,
                   help="SVRF's c in m_k = ceil(c (k+1)) (Hazan and Luo: 96)")
    p.add_argument("--reference-steps", type=int, default=3000,
                   help="full-gradient Frank-Wolfe steps for the estimate of f*")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="cnn: comma-separated subset of the methods to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/fashion_mnist_fw_finite_sum",
                   help="folder of results.json and the plot (suboptimality.png, or loss.png for "
                        "--problem cnn); with --quick: results_quick.json and *_quick.png")
    p.add_argument("--quick", action="store_true",
                   help="seconds: 1,000 examples, 10 passes, c = 8, 300 reference steps")
    args = p.parse_args(argv)
    cnn = args.problem == "cnn"
    if args.examples is None:
        args.examples = 5000 if cnn else 10_000
    if args.passes is None:
        args.passes = 20.0 if cnn else 30.0
    if args.step_rule is None:
        args.step_rule = "constant" if cnn else "open_loop"
    if args.quick:
        args.examples = min(args.examples, 300 if cnn else 1000)
        args.passes = min(args.passes, 4.0 if cnn else 10.0)
        args.svrf_batch_scale = min(args.svrf_batch_scale, 8.0)
        args.reference_steps = min(args.reference_steps, 300)
        args.test_examples = min(args.test_examples, 200)
    args.methods = tuple(m for m in args.methods.split(",") if m)
    if not args.methods or set(args.methods) - set(METHODS):
        p.error(f"--methods must be a comma-separated subset of {','.join(METHODS)}")
    if not cnn and args.methods != METHODS:
        p.error("--methods applies to --problem cnn only")
    for name in ("examples", "batch_size", "reference_steps", "test_examples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("passes", "radius", "svrf_batch_scale", "tau"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.examples > 60_000:
        p.error("--examples must be at most 60,000")
    return args


def features(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """4x4 average-pooled pixels in [0, 1] and a constant 1 (50 features), and the labels."""
    ds = data.load("fashion_mnist", f"train[:{args.examples}]", data_dir=args.data_dir)
    images, labels = ds.arrays()
    x = images.reshape(-1, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(len(labels), 49) / 255.0
    x = np.concatenate([x, np.ones((len(labels), 1))], axis=1).astype(np.float32)
    return {"x": x, "y": labels.astype(np.int32)}


def per_example_loss(params: dict, batch: dict) -> jax.Array:
    """Cross-entropy of the linear model ``x @ W`` (convex in W)."""
    logits = batch["x"] @ params["w"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])


def reference_value(args: argparse.Namespace, d: dict, cons: Any, start: dict) -> float:
    """f after ``--reference-steps`` full-gradient Frank-Wolfe steps (2/(t+2)), jitted."""
    x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
    full = lambda p: jnp.mean(per_example_loss(p, {"x": x, "y": y}))  # noqa: E731

    def body(p, t):
        g = jax.grad(full)(p)
        v = {"w": cons.lmo(g["w"])}
        gamma = 2.0 / (t + 2.0)
        return jax.tree.map(lambda a, b: (1 - gamma) * a + gamma * b, p, v), None

    p, _ = jax.jit(lambda p: jax.lax.scan(body, p, jnp.arange(args.reference_steps, dtype=jnp.float32)))(start)
    return float(full(p))


def planned_steps(method: str, n: int, budget: int, args: argparse.Namespace) -> int:
    """The Frank-Wolfe steps ``method`` takes within ``budget`` (the runs' own budget rules)."""
    if method in ("sfw", "one_shot_fw"):
        return budget // args.batch_size
    if method == "saga_fw":
        return max(0, (budget - n) // math.ceil(n ** (2.0 / 3.0)))
    evals, steps, t = n, 0, 0  # SVRF: w0 = LMO(full gradient), then snapshots and inner loops
    while evals + n <= budget:
        t += 1
        evals += n
        for k in range(1, 2 ** (t + 3) - 1):
            m = math.ceil(args.svrf_batch_scale * (k + 1))
            if evals + 2 * m > budget:
                return steps
            evals += 2 * m
            steps += 1
    return steps


def step_size(method: str, n: int, budget: int, args: argparse.Namespace) -> float | None:
    """``None`` (the method's open-loop rate) or the constant 1/sqrt(T) of the nonconvex analyses."""
    if args.step_rule == "open_loop":
        return None
    return 1.0 / math.sqrt(max(1, planned_steps(method, n, budget, args)))


def at(curve: list, fraction: float, budget: int) -> float:
    """The last value recorded at or before ``fraction`` of the budget (the start if none)."""
    reached = [v for e, v in curve if e <= fraction * budget]
    return reached[-1] if reached else curve[0][1]


def run_cnn(args: argparse.Namespace, out: Path, start_time: float) -> dict[str, Any]:
    """The small-CNN comparison through :func:`sparsejax.train.fit_finite_sum` (see the docstring)."""
    from sparsejax.models import create
    from sparsejax.train import fit_finite_sum

    train = data.load("fashion_mnist", f"train[:{args.examples}]", data_dir=args.data_dir)
    test = data.load("fashion_mnist", f"test[:{args.test_examples}]", data_dir=args.data_dir)
    n = len(train)
    budget = int(args.passes * n)
    marks = sorted({int(v) for v in np.geomspace(max(1, n // 10), budget, 30)})
    curves, accuracy, steps, times, gammas = {}, {}, {}, {}, {}
    for name in args.methods:
        model = create("small_cnn", 10, (28, 28, 1), rngs=args.seed, features=(4, 8),
                       hidden=(32, 16), pool_every=1)
        gammas[name] = step_size(name, n, budget, args)
        t0 = time.perf_counter()
        res = fit_finite_sum(model, train, name, budget=budget, test=test, tau=args.tau,
                             batch_size=args.batch_size, svrf_batch_scale=args.svrf_batch_scale,
                             learning_rate=gammas[name], seed=args.seed, record_at=marks)
        times[name] = time.perf_counter() - t0
        if gammas[name] is not None and res.steps != planned_steps(name, n, budget, args):
            raise RuntimeError(f"{name}: {res.steps} steps, planned {planned_steps(name, n, budget, args)}")
        curves[name] = list(zip(res.evaluations, res.train_loss))
        accuracy[name] = list(zip(res.evaluations, res.test_accuracy))
        steps[name] = res.steps
    lines = ["| method | FW steps | step size | train loss at 10% of budget | at 30% | at 100% "
             "| test acc. at 100% |", "|---|---:|---|---:|---:|---:|---:|"]
    for name in args.methods:
        gamma = "open loop" if gammas[name] is None else f"{gammas[name]:.4f}"
        lines.append(f"| {name} | {steps[name]} | {gamma} | " + " | ".join(
            f"{at(curves[name], f, budget):.4f}" for f in (0.1, 0.3, 1.0))
            + f" | {accuracy[name][-1][1]:.4f} |")
    table = "\n".join(lines)
    plot_path = out / ("loss_quick.png" if args.quick else "loss.png")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 4.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name in args.methods:
        e, v = zip(*curves[name])
        ax_loss.plot(np.maximum(np.asarray(e), 1) / n, v, marker=".", label=name)
        e, a = zip(*accuracy[name])
        ax_acc.plot(np.maximum(np.asarray(e), 1) / n, a, marker=".", label=name)
    for ax, label in ((ax_loss, "training loss f(x)"), (ax_acc, "test accuracy")):
        ax.set_xscale("log")
        ax.set_xlabel("per-sample gradient evaluations / n")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(f"small CNN in K-sparse polytopes (tau = {args.tau:g}), n = {n}, "
                 f"step rule {args.step_rule}")
    fig.savefig(plot_path, dpi=100)
    results = {"problem": "cnn", "curves": curves, "test_accuracy": accuracy, "budget": budget,
               "steps": steps, "step_sizes": gammas, "method_wall_time_s": times, "table": table}
    return save(results, args, out, plot_path, start_time,
                f"small CNN, n = {n}, budget {budget} per-sample gradients ({args.passes:g} "
                f"passes), tau {args.tau:g}, step rule {args.step_rule}")


def save(results: dict[str, Any], args: argparse.Namespace, out: Path, plot_path: Path,
         start_time: float, header: str) -> dict[str, Any]:
    """Adds the table's, plot's and wall time's entries, writes the JSON, prints the summary."""
    results.update(plot=os.fspath(plot_path), wall_time_s=time.perf_counter() - start_time,
                   args=dict(vars(args)))
    results["json"] = os.fspath(out / ("results_quick.json" if args.quick else "results.json"))
    Path(results["json"]).write_text(json.dumps(results, indent=1, default=str))
    print(header + "\n")
    print(results["table"])
    print(f"\nPlot: {plot_path}.  Wall time {results['wall_time_s']:.0f} s.")
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the comparison; returns ``curves`` ({method: [(evaluations, f(x))...]}),
    ``f_star`` (logreg), ``test_accuracy`` (cnn), ``table``, ``plot``, ``json`` and ``wall_time_s``.

    Example:
      >>> res = main(['--quick', '--out', '/tmp/fwfs'])  # doctest: +SKIP
    """
    args = parse_args(argv)
    start_time = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.problem == "cnn":
        return run_cnn(args, out, start_time)
    d = features(args)
    n = len(d["y"])
    budget = int(args.passes * n)
    cons = C.l1_ball(args.radius)
    x0 = {"w": jnp.zeros((50, 10), jnp.float32)}  # the centre of the ball: feasible
    marks = sorted({int(v) for v in np.geomspace(max(1, n // 10), budget, 40)})
    full_x, full_y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
    value = jax.jit(lambda p: jnp.mean(per_example_loss(p, {"x": full_x, "y": full_y})))
    curves, steps, times = {}, {}, {}
    for name in METHODS:
        t0 = time.perf_counter()
        run = run_method(name, per_example_loss, x0, d, cons, budget=budget,
                         batch_size=args.batch_size, svrf_batch_scale=args.svrf_batch_scale,
                         learning_rate=step_size(name, n, budget, args), seed=args.seed,
                         record_at=marks)
        curves[name] = [(e, float(value(p))) for e, p in zip(run.evaluations, run.iterates)]
        steps[name] = run.steps
        times[name] = time.perf_counter() - t0
    f_ref = reference_value(args, d, cons, x0)
    f_star = min([f_ref] + [v for c in curves.values() for _, v in c])
    lines = ["| method | FW steps | f - f* at 10% of budget | at 30% | at 100% |",
             "|---|---:|---:|---:|---:|"]

    for name in METHODS:
        lines.append(f"| {name} | {steps[name]} | " + " | ".join(
            f"{at(curves[name], f, budget) - f_star:.4f}" for f in (0.1, 0.3, 1.0)) + " |")
    table = "\n".join(lines)
    plot_path = out / ("suboptimality_quick.png" if args.quick else "suboptimality.png")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for name in METHODS:
        e, v = zip(*curves[name])
        ax.plot(np.maximum(np.asarray(e), 1) / n, np.maximum(np.asarray(v) - f_star, 1e-6),
                marker=".", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("per-sample gradient evaluations / n")
    ax.set_ylabel("f(x) - f*  (estimated)")
    ax.set_title(f"l1-ball logistic regression, n = {n}, r = {args.radius:g}")
    ax.legend()
    fig.savefig(plot_path, dpi=100)
    results = {"curves": curves, "f_star": f_star, "f_reference_fw": f_ref, "budget": budget,
               "steps": steps, "method_wall_time_s": times, "table": table}
    return save(results, args, out, plot_path, start_time,
                f"n = {n}, budget {budget} per-sample gradients ({args.passes:g} passes), "
                f"f* ~ {f_star:.5f} (full FW after {args.reference_steps} steps: {f_ref:.5f})")


if __name__ == "__main__":
    main()

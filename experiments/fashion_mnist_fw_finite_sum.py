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
(the suboptimality of each method at 10%, 30% and 100% of the budget).

Run::

    python experiments/fashion_mnist_fw_finite_sum.py               # 10,000 examples, 30 passes
    python experiments/fashion_mnist_fw_finite_sum.py --quick --out /tmp/fwfs   # seconds
"""

from __future__ import annotations

import argparse
import json
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
from sparsejax.optim.frank_wolfe import frank_wolfe_step_size, one_shot_fw, sfw
from sparsejax.optim.fw_finite_sum import saga_fw_run, stochastic_fw_run, svrf_run

METHODS = ("sfw", "one_shot_fw", "svrf", "saga_fw")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses and checks the command line (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--examples", type=int, default=10_000, help="training examples (the n of the sum)")
    p.add_argument("--passes", type=float, default=30.0, help="gradient budget in passes over the data")
    p.add_argument("--radius", type=float, default=30.0, help="the l1 ball's radius r")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch of SFW and One-Shot FW")
    p.add_argument("--svrf-batch-scale", type=float, default=96.0,
                   help="SVRF's c in m_k = ceil(c (k+1)) (Hazan and Luo: 96)")
    p.add_argument("--reference-steps", type=int, default=3000,
                   help="full-gradient Frank-Wolfe steps for the estimate of f*")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/fashion_mnist_fw_finite_sum")
    p.add_argument("--quick", action="store_true",
                   help="seconds: 1,000 examples, 10 passes, c = 8, 300 reference steps")
    args = p.parse_args(argv)
    if args.quick:
        args.examples, args.passes = min(args.examples, 1000), min(args.passes, 10.0)
        args.svrf_batch_scale = min(args.svrf_batch_scale, 8.0)
        args.reference_steps = min(args.reference_steps, 300)
    for name in ("examples", "batch_size", "reference_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("passes", "radius", "svrf_batch_scale"):
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the comparison; returns ``curves`` ({method: [(evaluations, f(x))...]}),
    ``f_star``, ``table``, ``plot``, ``json`` and ``wall_time_s``.

    Example:
      >>> res = main(['--quick', '--out', '/tmp/fwfs'])  # doctest: +SKIP
    """
    args = parse_args(argv)
    start_time = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = features(args)
    n = len(d["y"])
    budget = int(args.passes * n)
    cons = C.l1_ball(args.radius)
    x0 = {"w": jnp.zeros((50, 10), jnp.float32)}  # the centre of the ball: feasible
    marks = sorted({int(v) for v in np.geomspace(max(1, n // 10), budget, 40)})
    full_x, full_y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
    value = jax.jit(lambda p: jnp.mean(per_example_loss(p, {"x": full_x, "y": full_y})))
    runs = {
        "sfw": lambda: stochastic_fw_run(
            per_example_loss, x0, d, sfw(frank_wolfe_step_size(), cons, momentum=0.0, rescale=None),
            budget=budget, batch_size=args.batch_size, seed=args.seed, record_at=marks),
        "one_shot_fw": lambda: stochastic_fw_run(
            per_example_loss, x0, d, one_shot_fw(frank_wolfe_step_size(shift=8.0), cons),
            budget=budget, batch_size=args.batch_size, seed=args.seed, record_at=marks),
        "svrf": lambda: svrf_run(per_example_loss, x0, d, cons, budget=budget,
                                 batch_scale=args.svrf_batch_scale, seed=args.seed,
                                 record_at=marks),
        "saga_fw": lambda: saga_fw_run(per_example_loss, x0, d, cons, budget=budget,
                                       seed=args.seed, record_at=marks),
    }
    curves, steps, times = {}, {}, {}
    for name in METHODS:
        t0 = time.perf_counter()
        run = runs[name]()
        curves[name] = [(e, float(value(p))) for e, p in zip(run.evaluations, run.iterates)]
        steps[name] = run.steps
        times[name] = time.perf_counter() - t0
    f_ref = reference_value(args, d, cons, x0)
    f_star = min([f_ref] + [v for c in curves.values() for _, v in c])
    lines = ["| method | FW steps | f - f* at 10% of budget | at 30% | at 100% |",
             "|---|---:|---:|---:|---:|"]

    def at(curve: list, fraction: float) -> float:
        target = fraction * budget
        reached = [v for e, v in curve if e <= target]
        return (reached[-1] if reached else curve[0][1]) - f_star

    for name in METHODS:
        lines.append(f"| {name} | {steps[name]} | " + " | ".join(
            f"{at(curves[name], f):.4f}" for f in (0.1, 0.3, 1.0)) + " |")
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
               "steps": steps, "method_wall_time_s": times, "table": table,
               "plot": os.fspath(plot_path),
               "wall_time_s": time.perf_counter() - start_time,
               "args": {k: v for k, v in vars(args).items()}}
    results["json"] = os.fspath(out / ("results_quick.json" if args.quick else "results.json"))
    Path(results["json"]).write_text(json.dumps(results, indent=1, default=str))
    print(f"n = {n}, budget {budget} per-sample gradients ({args.passes:g} passes), "
          f"f* ~ {f_star:.5f} (full FW after {args.reference_steps} steps: {f_ref:.5f})\n")
    print(table)
    print(f"\nPlot: {plot_path}.  Wall time {results['wall_time_s']:.0f} s.")
    return results


if __name__ == "__main__":
    main()

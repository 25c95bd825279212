"""Figure 1 of Ye, Wu, Liu (NeurIPS 2020): pruning by greedy imitation against training from scratch.

A network with two hidden layers of ``--width`` (100) tanh units is trained
on synthetic regression data, ``y = teacher(x)`` with a random one-hidden-layer
tanh teacher (``--teacher-units``) on ``--dim``-dimensional Gaussian inputs. Its first hidden layer is
then pruned to ``n = 1 ... --n-max`` units with

* local imitation (:func:`sparsejax.structured.local_imitation`, line search,
  eq. 4) — the Gram matrix of the units' contributions is computed once and
  every budget ``n`` is a run of up to ``--local-steps-per-unit * n`` closed-form steps;
* global imitation (:func:`sparsejax.structured.global_imitation`, exact, squared
  error on the network output) with its step searched over ``U_i`` (eq. 7,
  ``step='line_search'``: a Gauss-Newton step per candidate, checked exactly),
  one run of ``--global-steps-per-unit * --n-max`` steps, the curve at ``n``
  being its best step with at most ``n`` units;
* the same with the paper's fixed step ``gamma_k = 1/(k+1)`` (eq. 8), for
  comparison,

and the same architecture with ``n`` units in that layer is trained from
scratch on the same data with the same optimizer. Every curve is the
discrepancy ``E (f(x) - F(x))^2`` to the original network ``F`` on fresh
test inputs, on a log scale. The paper's claim: the pruned curves fall
about linearly (exponentially in ``n``), the trained-from-scratch one like ``1/n``.
The script prints the table, the least-squares slopes of ``log10 D`` against
``n`` and against ``log10 n``, and saves the figure to ``--out``.

The original network is trained with full-batch AdamW and a strong decoupled
weight decay (``--weight-decay 1.0``): it removes the random part of the
initial weights, which otherwise makes the units' contributions full-rank
(then no greedy selection gets far below the single-unit error with a few
units). The teacher has 64 units, so a network trained from scratch needs
many units too (its error falls like ``1/n``).

Seed 0 and the defaults (about 2 min of computing, 6 min on 2 busy CPU
cores), discrepancy on 1,000 test inputs (every row of ``n`` is printed; a
few are shown)::

      n       local      global  global eq8     scratch
      1   3.774e-01   2.037e-01   2.037e-01   1.959e-02
      2   1.621e-01   1.539e-01   2.024e-01   4.831e-03
      5   6.383e-02   2.424e-02   1.590e-01   1.674e-03
      8   2.152e-02   1.644e-02   3.805e-02   3.936e-04
     12   2.111e-03   7.713e-03   3.162e-02   4.204e-04
     17   6.662e-05   1.858e-03   2.371e-02   1.619e-04
     23   3.994e-05   4.409e-04   2.371e-02   2.686e-04
     30   3.012e-05   2.708e-04   2.371e-02   5.071e-04
    slopes of log10 D: per unit / per decade of n (n >= 2)
      local      -0.146 / -4.02
      global     -0.100 / -2.68
      global eq8 -0.026 / -0.86
      scratch    -0.035 / -1.05

Local imitation falls about linearly on the log scale (4 decades from
``n = 1`` to ``n = 20``, then it levels off near ``3e-5``) and is below the
networks trained from scratch from ``n = 13`` on; those fall like ``1/n``
(slope -1.05 per decade of ``n``) and stop improving past ``n = 17``.
Global imitation with the line search falls about linearly too (3 decades
from ``n = 1`` to ``n = 25``, -0.10 per unit; it stops at 25 units because
its 300 steps are spent) and crosses the trained networks at ``n = 23``.
With the paper's fixed step ``1/(k+1)`` (eq. 8; the paper proves only
``O(k^-2)`` for it) global imitation decays much more slowly: after the
first picks its 120 steps mostly re-weight about 13 units (each weight a
multiple of ``1/k``, a new unit entering with weight ``1/(k+1)``), so its
curve is flat past ``n = 13``. In this low-dimensional problem the networks
trained from scratch are better than pruning for small ``n``: a 2-D input
passes through a first layer of 2 or more tanh units with no loss of
information, and the 100-unit second layer is trained too. Local imitation
also needs many steps per unit (``--local-steps-per-unit 100``): with 20 the
curve levels off near ``5e-5`` from ``n = 22``, as its single-unit line
searches re-weight slowly once the support is fixed.

Run::

    python experiments/greedy_figure1.py --out figure1.png          # about 6 min on 2 busy CPU cores
    python experiments/greedy_figure1.py --quick --out fig_quick.png  # a small version, ~1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sparsejax.models import create
from sparsejax.structured import (
    contribution_gram,
    global_imitation,
    local_imitation_from_gram,
    output_discrepancy,
)

GROUP = "layers/0"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a small version: width 40, n <= 12, fewer steps and examples")
    p.add_argument("--width", type=int, default=100, help="units in each hidden layer")
    p.add_argument("--dim", type=int, default=2, help="input dimension")
    p.add_argument("--teacher-units", type=int, default=64, help="hidden units of the teacher")
    p.add_argument("--train-examples", type=int, default=1000)
    p.add_argument("--test-examples", type=int, default=1000)
    p.add_argument("--steps", type=int, default=4000, help="full-batch training steps")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (cosine decay)")
    p.add_argument("--weight-decay", type=float, default=1.0, help="AdamW decoupled weight decay")
    p.add_argument("--n-max", type=int, default=30, help="largest pruned width")
    p.add_argument("--scratch-widths", type=str, default="1,2,3,5,8,12,17,23,30",
                   help="comma-separated widths trained from scratch")
    p.add_argument("--local-steps-per-unit", type=int, default=100,
                   help="local imitation runs at most this many steps per kept unit")
    p.add_argument("--global-steps-per-unit", type=int, default=10,
                   help="global imitation (line search) runs at most this many steps per unit "
                        "of --n-max")
    p.add_argument("--fixed-steps-per-unit", type=int, default=4,
                   help="global imitation with the fixed step 1/(k+1) (eq. 8) runs at most "
                        "this many steps per unit of --n-max (0: skip it)")
    p.add_argument("--no-global", action="store_true", help="skip global imitation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=str, default=None, help="where to save the figure (.png/.pdf)")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in (("width", 40), ("steps", 1500), ("train_examples", 400),
                            ("test_examples", 400), ("n_max", 12),
                            ("scratch_widths", "1,2,4,8,12")):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    widths = [int(w) for w in args.scratch_widths.split(",") if w.strip()]
    if args.width < 2 or not 1 <= args.n_max <= args.width:
        p.error(f"need --width >= 2 and 1 <= --n-max <= --width, got {args.width}, {args.n_max}")
    if min(args.local_steps_per_unit, args.global_steps_per_unit) < 1 or args.fixed_steps_per_unit < 0:
        p.error("--local-steps-per-unit and --global-steps-per-unit must be >= 1, "
                "--fixed-steps-per-unit >= 0")
    if any(w < 1 for w in widths):
        p.error(f"--scratch-widths must be positive, got {args.scratch_widths}")
    args.scratch = widths
    return args


def make_data(args: argparse.Namespace) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(x_train, y_train, x_test)``: Gaussian inputs, a random tanh teacher's outputs."""
    kx, kt, kw, kb, kv = jax.random.split(jax.random.key(args.seed), 5)
    x = jax.random.normal(kx, (args.train_examples + args.test_examples, args.dim))
    w = jax.random.normal(kw, (args.dim, args.teacher_units))
    b = jax.random.normal(kb, (args.teacher_units,))
    v = jax.random.normal(kv, (args.teacher_units,)) / np.sqrt(args.teacher_units)
    y = (jnp.tanh(x @ w + b) @ v)[:, None]
    m = args.train_examples
    return x[:m], y[:m], x[m:]


def make_model(width: int, args: argparse.Namespace, seed: int) -> nnx.Module:
    """The zoo's MLP: ``dim -> width -> args.width -> 1``, tanh."""
    return create("mlp", num_classes=1, input_shape=(args.dim,),
                  hidden=(width, args.width), activation=jnp.tanh, rngs=seed)


def _fit_fn(graphdef: Any, rest: Any, x: jax.Array, y: jax.Array,
            args: argparse.Namespace) -> Any:
    """``fit(params, gate) -> (params, losses)``: full-batch AdamW on the squared error."""
    tx = optax.adamw(optax.cosine_decay_schedule(args.lr, args.steps),
                     weight_decay=args.weight_decay)

    def loss(p: Any, gate: jax.Array) -> jax.Array:
        return jnp.mean((nnx.merge(graphdef, p, rest)(x, gates={GROUP: gate}) - y) ** 2)

    def fit(p: Any, gate: jax.Array) -> tuple[Any, jax.Array]:
        def body(carry: Any, _: Any) -> tuple[Any, jax.Array]:
            p, s = carry
            value, g = jax.value_and_grad(loss)(p, gate)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), value

        (p, _), values = jax.lax.scan(body, (p, tx.init(p)), None, length=args.steps)
        return p, values

    return fit


def train(model: nnx.Module, x: jax.Array, y: jax.Array, args: argparse.Namespace) -> float:
    """Trains ``model`` in place; returns the final training loss."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    size = model.group(GROUP).size
    params, values = jax.jit(_fit_fn(graphdef, rest, x, y, args))(params, jnp.ones(size))
    nnx.update(model, params)
    return float(values[-1])


@dataclasses.dataclass
class Curves:
    """Discrepancy to the original network against the pruned (or trained) width."""

    local: dict[int, float]
    global_: dict[int, float]
    global_fixed: dict[int, float]
    scratch: dict[int, float]
    train_loss: float
    seconds: dict[str, float]


def _by_width(model: nnx.Module, x_test: jax.Array, r: Any, n_max: int) -> dict[int, float]:
    """Test discrepancy of the best step with at most ``n`` units (by training discrepancy)."""
    out = {}
    for n in range(1, n_max + 1):
        ok = np.flatnonzero(r.support <= n)
        k = int(ok[np.argmin(r.history[ok])])
        out[n] = output_discrepancy(model, x_test, {GROUP: r.size * r.weights_at(k)})
    return out


def prune_curves(model: nnx.Module, x_train: jax.Array, x_test: jax.Array,
                 args: argparse.Namespace) -> tuple[dict[int, float], dict[int, float],
                                                    dict[int, float], dict]:
    seconds = {}
    t = time.perf_counter()
    gram = contribution_gram(model, GROUP, x_train)
    local = {}
    for n in range(1, args.n_max + 1):
        r = local_imitation_from_gram(gram, n=n, max_steps=args.local_steps_per_unit * n)
        local[n] = output_discrepancy(model, x_test, {GROUP: r.gate})
    seconds["local"] = time.perf_counter() - t
    curves: dict[str, dict[int, float]] = {"global": {}, "global_fixed": {}}
    runs = (("global", "line_search", args.global_steps_per_unit),
            ("global_fixed", "fixed", args.fixed_steps_per_unit))
    for key, step, per_unit in runs:
        if args.no_global or per_unit == 0:
            continue
        t = time.perf_counter()
        r = global_imitation(model, GROUP, x_train, n=args.n_max, step=step,
                             max_steps=per_unit * args.n_max, taylor_start=None, criterion="mse")
        curves[key] = _by_width(model, x_test, r, args.n_max)
        seconds[key] = time.perf_counter() - t
    return local, curves["global"], curves["global_fixed"], seconds


def scratch_curve(x_train: jax.Array, y_train: jax.Array, x_test: jax.Array,
                  reference: jax.Array, args: argparse.Namespace) -> dict[int, float]:
    """Trains the network with ``n`` first-layer units from scratch (same data, optimizer, steps)."""
    out = {}
    for n in args.scratch:
        model = make_model(n, args, args.seed + 1)
        train(model, x_train, y_train, args)
        out[n] = float(jnp.mean((model(x_test) - reference) ** 2))
    return out


def run(args: argparse.Namespace) -> Curves:
    x_train, y_train, x_test = make_data(args)
    model = make_model(args.width, args, args.seed)
    t = time.perf_counter()
    loss = train(model, x_train, y_train, args)
    seconds = {"train": time.perf_counter() - t}
    local, glob, fixed, s = prune_curves(model, x_train, x_test, args)
    seconds.update(s)
    t = time.perf_counter()
    scratch = scratch_curve(x_train, y_train, x_test, model(x_test), args)
    seconds["scratch"] = time.perf_counter() - t
    return Curves(local, glob, fixed, scratch, loss, seconds)


def slopes(curve: dict[int, float], lo: int = 1) -> tuple[float, float]:
    """Least-squares slopes of ``log10 D`` against ``n`` and against ``log10 n`` (n >= lo)."""
    ns = np.array([n for n in sorted(curve) if n >= lo], np.float64)
    d = np.log10(np.maximum([curve[int(n)] for n in ns], 1e-300))
    if ns.size < 2:
        return float("nan"), float("nan")
    return float(np.polyfit(ns, d, 1)[0]), float(np.polyfit(np.log10(ns), d, 1)[0])


def table(c: Curves) -> str:
    ns = sorted(set(c.local) | set(c.scratch))
    lines = [f"{'n':>3}  {'local':>10}  {'global':>10}  {'global eq8':>10}  {'scratch':>10}"]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3e}"

    for n in ns:
        lines.append(f"{n:>3}  {f(c.local.get(n)):>10}  {f(c.global_.get(n)):>10}  "
                     f"{f(c.global_fixed.get(n)):>10}  {f(c.scratch.get(n)):>10}")
    lines.append("slopes of log10 D: per unit / per decade of n (n >= 2)")
    for name, curve in (("local", c.local), ("global", c.global_),
                        ("global eq8", c.global_fixed), ("scratch", c.scratch)):
        if curve:
            a, b = slopes(curve, 2)
            lines.append(f"  {name:<10} {a:+.3f} / {b:+.2f}")
    return "\n".join(lines)


def plot(c: Curves, path: str, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for name, curve, style in (("local imitation (eq. 4)", c.local, "o-"),
                               ("global imitation, line search (eq. 7)", c.global_, "s-"),
                               ("global imitation, step 1/(k+1) (eq. 8)", c.global_fixed, "x:"),
                               ("trained from scratch", c.scratch, "^--")):
        if curve:
            ns = sorted(curve)
            ax.plot(ns, [np.log10(max(curve[n], 1e-300)) for n in ns], style, ms=3, label=name)
    ax.set_xlabel("number of neurons n in the first hidden layer")
    ax.set_ylabel("log10 discrepancy to the original network")
    ax.set_title(f"2 hidden layers of {args.width}: pruning vs training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> Curves:
    args = parse_args(argv)
    curves = run(args)
    print(f"original network: {args.dim} -> {args.width} -> {args.width} -> 1 (tanh), "
          f"training loss {curves.train_loss:.3e}")
    print(table(curves))
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in curves.seconds.items()))
    if args.out:
        plot(curves, args.out, args)
        print(f"figure saved to {args.out}")
    return curves


if __name__ == "__main__":
    main(sys.argv[1:])

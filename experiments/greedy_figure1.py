"""Figure 1 of Ye, Wu, Liu (NeurIPS 2020): pruning by greedy imitation against training from scratch.

A network ``F`` with two hidden layers of ``--width`` (100) tanh units is
trained on synthetic regression data, ``y = teacher(x)`` with a random
one-hidden-layer tanh teacher (``--teacher-units``) on ``--dim``-dimensional
Gaussian inputs. Its first hidden layer is then pruned to ``n = 1 ... --n-max``
units with

* local imitation (:func:`sparsejax.structured.local_imitation`, line search,
  eq. 4): one run of up to ``--local-steps-per-unit * n`` closed-form steps per
  budget ``n``;
* global imitation as the paper states it (:func:`sparsejax.structured.global_imitation`,
  the step ``gamma_k = 1/(k+1)`` of eq. 8, exact, squared error on the network
  output), labelled ``global``: one run of ``--global-steps-per-unit * --n-max``
  steps, the curve at ``n`` being its best step with at most ``n`` units;
* our extension, labelled ``global+ls (ours)``: the same with the step
  searched over ``U_i`` (eq. 7, ``step='line_search'``, a Gauss-Newton step
  per candidate, checked exactly);

and the same architecture with ``n`` units in that layer is trained from
scratch to fit ``F`` itself (its outputs on the training inputs, the paper's
comparison), with the same optimizer, steps and weight decay as ``F``. Every
curve is the discrepancy ``E (f(x) - F(x))^2`` to ``F`` on fresh test inputs,
on a log scale; ``local D-bar`` is the quantity Theorem 1 bounds, local
imitation's layer-output discrepancy on the training inputs. The script
prints the table, for every curve the least-squares line of ``log10 D``
against ``n`` over ``--fit-range`` (its slope, the decay rate ``lambda``
and R²) and the R² of a power law (``log10 D`` against ``log10 n``), and
whether pruning beats training from scratch at each trained width.

Greedy steps use all training inputs by default (``--minibatch 0``): the
data set is 1,000 inputs, and the paper does not give the batch of this
experiment (its Appendix 5.5 is not in our text); ``--minibatch b`` draws
``b`` fresh inputs for every step (Alg. 1, line 4).

Results (seed 0, defaults; ``experiments/results/greedy_figure1_wd0.txt`` and
``..._wd1.txt``, about 40 s of computing each):

* **No weight decay** (the default): no curve is exponential here. Over
  ``n = 1..20`` the pruned curves fall like ``1/n`` (about -0.9 to -1.3
  decades per decade of ``n``) and networks trained from scratch to fit ``F``
  have a smaller discrepancy than every pruned network at every width
  trained (1 to 30), by one to three orders of magnitude.
* **Weight decay 1.0 for every network** (``--weight-decay 1.0``, applied to
  ``F`` and to every network trained from scratch; this value was first
  chosen because it makes the units' contributions nearly low-rank and the
  pruned curves straight): local imitation falls exponentially, about -0.2
  decades per unit (``lambda`` about 0.45, R² 0.94 for the line against
  0.83 for a power law over ``n = 1..20``), to a floor near ``5e-5``; it beats
  training from scratch from ``n = 17`` on. The paper's global imitation
  (eq. 8) falls slowly (-0.05 decades per unit, its weights stay multiples of
  ``1/(k+1)``) and never beats training from scratch; our line-search
  extension falls about exponentially (-0.13 per unit) and beats it at
  ``n = 30`` only.

The paper's Figure 1 shows pruning below training at every size; here that
holds only for local imitation past ``n = 17``, and only with the strong
weight decay.

Run::

    python experiments/greedy_figure1.py --out figure1.png        # about 1 min on 2 busy CPU cores
    python experiments/greedy_figure1.py --weight-decay 1.0 --out figure1_wd1.png
    python experiments/greedy_figure1.py --quick --out fig_quick.png  # a small version
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
    local_imitation,
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
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="AdamW decoupled weight decay, the same for the original network and "
                        "every network trained from scratch")
    p.add_argument("--n-max", type=int, default=30, help="largest pruned width")
    p.add_argument("--scratch-widths", type=str, default="1,2,3,5,8,12,17,23,30",
                   help="comma-separated widths trained from scratch")
    p.add_argument("--local-steps-per-unit", type=int, default=100,
                   help="local imitation runs at most this many steps per kept unit")
    p.add_argument("--global-steps-per-unit", type=int, default=4,
                   help="global imitation (the paper's, fixed step 1/(k+1), eq. 8) runs at most "
                        "this many steps per unit of --n-max")
    p.add_argument("--line-search-steps-per-unit", type=int, default=10,
                   help="our extension, global imitation with its step searched over U_i "
                        "(eq. 7), runs at most this many steps per unit of --n-max (0: skip it)")
    p.add_argument("--minibatch", type=int, default=0,
                   help="examples drawn afresh for every greedy step (Alg. 1, line 4); 0: all "
                        "the training inputs at every step")
    p.add_argument("--fit-range", type=str, default="1,20",
                   help="lo,hi: the widths n over which log10 D is fit by a line")
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
    if args.quick and args.fit_range == p.get_default("fit_range"):
        args.fit_range = "1,10"
    widths = [int(w) for w in args.scratch_widths.split(",") if w.strip()]
    if args.width < 2 or not 1 <= args.n_max <= args.width:
        p.error(f"need --width >= 2 and 1 <= --n-max <= --width, got {args.width}, {args.n_max}")
    if (min(args.local_steps_per_unit, args.global_steps_per_unit) < 1
            or args.line_search_steps_per_unit < 0 or args.minibatch < 0):
        p.error("--local-steps-per-unit and --global-steps-per-unit must be >= 1, "
                "--line-search-steps-per-unit and --minibatch >= 0")
    try:
        lo, hi = (int(v) for v in args.fit_range.split(","))
    except ValueError:
        p.error(f"--fit-range must be lo,hi, got {args.fit_range!r}")
    if not 1 <= lo < hi:
        p.error(f"--fit-range needs 1 <= lo < hi, got {args.fit_range!r}")
    args.fit = (lo, min(hi, args.n_max))
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
    global_ls: dict[int, float]
    scratch: dict[int, float]
    train_loss: float
    seconds: dict[str, float]
    fit: tuple[int, int] = (1, 20)
    local_bar: dict[int, float] = dataclasses.field(default_factory=dict)

    def named(self) -> list[tuple[str, dict[int, float]]]:
        """``(label, curve)`` of every non-empty curve, in table order."""
        out = [("local D-bar", self.local_bar), ("local", self.local), ("global", self.global_),
               ("global+ls (ours)", self.global_ls), ("scratch", self.scratch)]
        return [(k, v) for k, v in out if v]


def _by_width(model: nnx.Module, x_test: jax.Array, r: Any, n_max: int) -> dict[int, float]:
    """Test discrepancy of the best step with at most ``n`` units (by the run's own discrepancy)."""
    out = {}
    for n in range(1, n_max + 1):
        ok = np.flatnonzero(r.support <= n)
        k = int(ok[np.argmin(r.history[ok])])
        out[n] = output_discrepancy(model, x_test, {GROUP: r.size * r.weights_at(k)})
    return out


def prune_curves(model: nnx.Module, x_train: jax.Array, x_test: jax.Array,
                 args: argparse.Namespace) -> tuple[dict[str, dict[int, float]], dict]:
    """Local imitation (one run per budget ``n``) and global imitation (one run, read at each ``n``)."""
    seconds = {}
    mb = args.minibatch or None
    t = time.perf_counter()
    gram = contribution_gram(model, GROUP, x_train)
    local, local_bar = {}, {}
    for n in range(1, args.n_max + 1):
        steps = args.local_steps_per_unit * n
        if mb is None:
            r = local_imitation_from_gram(gram, n=n, max_steps=steps)
        else:
            r = local_imitation(model, GROUP, x_train, n=n, max_steps=steps, minibatch=mb,
                                seed=args.seed)
        local[n] = output_discrepancy(model, x_test, {GROUP: r.gate})
        local_bar[n] = r.discrepancy if mb is None else float(
            (r.gate / r.size - 1.0 / r.size) @ gram @ (r.gate / r.size - 1.0 / r.size))
    seconds["local"] = time.perf_counter() - t
    curves: dict[str, dict[int, float]] = {"local": local, "global": {}, "global_ls": {},
                                           "local_bar": local_bar}
    runs = (("global", "fixed", args.global_steps_per_unit),
            ("global_ls", "line_search", args.line_search_steps_per_unit))
    for key, step, per_unit in runs:
        if args.no_global or per_unit == 0:
            continue
        t = time.perf_counter()
        r = global_imitation(model, GROUP, x_train, n=args.n_max, step=step,
                             max_steps=per_unit * args.n_max, taylor_start=None, criterion="mse",
                             minibatch=mb, seed=args.seed)
        curves[key] = _by_width(model, x_test, r, args.n_max)
        seconds[key] = time.perf_counter() - t
    return curves, seconds


def scratch_curve(x_train: jax.Array, target: jax.Array, x_test: jax.Array,
                  reference: jax.Array, args: argparse.Namespace) -> dict[int, float]:
    """Networks with ``n`` first-layer units trained from scratch to fit the original network.

    Each is fit to ``target = F(x_train)``, the original network's outputs (not the
    teacher's labels), with the original's optimizer, steps and weight decay, and
    scored by its discrepancy to ``reference = F(x_test)``.
    """
    out = {}
    for n in args.scratch:
        model = make_model(n, args, args.seed + 1)
        train(model, x_train, target, args)
        out[n] = float(jnp.mean((model(x_test) - reference) ** 2))
    return out


def run(args: argparse.Namespace) -> Curves:
    x_train, y_train, x_test = make_data(args)
    model = make_model(args.width, args, args.seed)
    t = time.perf_counter()
    loss = train(model, x_train, y_train, args)
    seconds = {"train": time.perf_counter() - t}
    curves, s = prune_curves(model, x_train, x_test, args)
    seconds.update(s)
    t = time.perf_counter()
    scratch = scratch_curve(x_train, model(x_train), x_test, model(x_test), args)
    seconds["scratch"] = time.perf_counter() - t
    return Curves(curves["local"], curves["global"], curves["global_ls"], scratch, loss,
                  seconds, args.fit, curves["local_bar"])


def slopes(curve: dict[int, float], lo: int = 1) -> tuple[float, float]:
    """Least-squares slopes of ``log10 D`` against ``n`` and against ``log10 n`` (n >= lo)."""
    ns = np.array([n for n in sorted(curve) if n >= lo], np.float64)
    d = np.log10(np.maximum([curve[int(n)] for n in ns], 1e-300))
    if ns.size < 2:
        return float("nan"), float("nan")
    return float(np.polyfit(ns, d, 1)[0]), float(np.polyfit(np.log10(ns), d, 1)[0])


def exp_fit(curve: dict[int, float], lo: int, hi: int) -> tuple[float, float, float]:
    """``(slope, R² of the line, R² of a power law)`` of ``log10 D`` for ``lo <= n <= hi``.

    The line is the least-squares fit of ``log10 D`` against ``n``: an exponential decay
    ``D = C·exp(-λ n)`` is a line of slope ``-λ/ln 10`` with ``R² = 1``. The power law is
    the least-squares line of ``log10 D`` against ``log10 n`` (``D = C·n^-p``, the rate of
    training from scratch): a larger R² for the line than for the power law says the curve
    is better described as exponential.
    """
    ns = np.array([n for n in sorted(curve) if lo <= n <= hi], np.float64)
    if ns.size < 3:
        return float("nan"), float("nan"), float("nan")
    d = np.log10(np.maximum([curve[int(n)] for n in ns], 1e-300))
    total = float(np.sum((d - d.mean()) ** 2))

    def r2(u: np.ndarray) -> tuple[float, float]:
        slope, icept = np.polyfit(u, d, 1)
        resid = d - (slope * u + icept)
        return float(slope), (1.0 - float(resid @ resid) / total) if total > 0 else float("nan")

    slope, r2_exp = r2(ns)
    return slope, r2_exp, r2(np.log10(ns))[1]


def table(c: Curves) -> str:
    named = c.named()
    ns = sorted(set().union(*(curve for _, curve in named)))
    lines = [f"{'n':>3}" + "".join(f"  {name:>16}" for name, _ in named)]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3e}"

    for n in ns:
        lines.append(f"{n:>3}" + "".join(f"  {f(curve.get(n)):>16}" for _, curve in named))
    lo, hi = c.fit
    lines.append(f"fit of log10 D over {lo} <= n <= {hi}: slope per unit (decay rate lambda = "
                 f"-ln(10)·slope) and R^2 of the line (exponential) against n; R^2 of the "
                 f"line against log10 n (power law); slope per decade of n (n >= 2)")
    for name, curve in named:
        a, r2, r2_pow = exp_fit(curve, lo, hi)
        lines.append(f"  {name:<16} {a:+.3f}  lambda {-np.log(10) * a:.3f}  R^2 exp {r2:.3f}"
                     f"  power {r2_pow:.3f}   {slopes(curve, 2)[1]:+.2f}")
    if c.scratch:
        lines.append("does pruning beat training from scratch (smaller discrepancy) at this n?")
        for n in sorted(c.scratch):
            cells = []
            for name, curve in named:
                if curve is not c.scratch and curve is not c.local_bar and n in curve:
                    cells.append(f"{name} {'yes' if curve[n] < c.scratch[n] else 'no'}")
            lines.append(f"  n = {n:>3}: " + ", ".join(cells))
    return "\n".join(lines)


def plot(c: Curves, path: str, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for name, curve, style in (("local: its layer-output D-bar (train)", c.local_bar, "o:"),
                               ("local imitation (eq. 4)", c.local, "o-"),
                               ("global imitation (eq. 8)", c.global_, "s-"),
                               ("global + line search (ours, eq. 7)", c.global_ls, "x:"),
                               ("trained from scratch to fit F", c.scratch, "^--")):
        if curve:
            ns = sorted(curve)
            ax.plot(ns, [np.log10(max(curve[n], 1e-300)) for n in ns], style, ms=3, label=name)
    ax.set_xlabel("number of neurons n in the first hidden layer")
    ax.set_ylabel("log10 discrepancy to the original network")
    ax.set_title(f"2 hidden layers of {args.width}: pruning vs training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> Curves:
    args = parse_args(argv)
    curves = run(args)
    print(f"original network: {args.dim} -> {args.width} -> {args.width} -> 1 (tanh), "
          f"weight decay {args.weight_decay:g}, training loss {curves.train_loss:.3e}; "
          f"greedy steps on {'all inputs' if not args.minibatch else f'mini-batches of {args.minibatch}'}")
    print(table(curves))
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in curves.seconds.items()))
    if args.out:
        plot(curves, args.out, args)
        print(f"figure saved to {args.out}")
    return curves


if __name__ == "__main__":
    main(sys.argv[1:])

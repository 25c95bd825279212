"""The ``sparsejax hessian`` and ``sparsejax connect`` sub-commands (directional pruning).

::

  sparsejax hessian --workdir runs/fashion_mnist-mlp-sgd-s0 --k 20 --examples 5000
  sparsejax connect --a runs/cmp/sgd --b runs/cmp/grda --epochs 2 --out runs/cmp/connect

``hessian`` reloads a finished run (as ``sparsejax prune`` does: its
``config.json`` rebuilds model and data, its last checkpoint the weights:
:func:`sparsejax.train.cli.load_finished_run`) and
computes the Hessian of the mean training loss over the first ``--examples``
training examples at its weights (the model in eval mode, as PyHessian does):
the top ``--k`` eigenvalues by Lanczos, the spectral density by stochastic
Lanczos quadrature and the trace by Hutchinson's estimator
(:mod:`sparsejax.directional`). It writes ``OUT/spectrum.json`` and
``OUT/density.png`` (default ``OUT = WORKDIR/hessian``).

``connect`` reloads two finished runs of the same model and data, trains the
control point of the quadratic Bézier curve between their weights with
:func:`sparsejax.train.connectivity.train_curve` (resumable, in ``OUT/curve``),
evaluates training loss and test error along the curve and the straight line
(BatchNorm statistics recomputed at every point) and on the plane of the
three points, and writes ``OUT/connect.json``, ``OUT/path.png`` and
``OUT/plane.png``.

The parsers are added to the ``sparsejax`` command line by
:func:`add_subcommands`; each sets ``func`` to its handler
(:func:`cmd_hessian`, :func:`cmd_connect`), which takes the parsed arguments
and returns the exit status. Bad input raises
:class:`sparsejax.train.cli.UsageError` (a ``ValueError``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from sparsejax.train.distributed import is_primary

__all__ = ["add_subcommands", "cmd_connect", "cmd_hessian"]


def add_subcommands(subparsers: Any) -> None:
    """Adds the ``hessian`` and ``connect`` parsers to ``subparsers`` (``set_defaults(func=...)``).

    Args:
      subparsers: what ``argparse.ArgumentParser.add_subparsers`` returned.

    Example:
      >>> import argparse
      >>> from sparsejax.train.cli.directional import add_subcommands, cmd_hessian
      >>> parser = argparse.ArgumentParser(prog='sparsejax')
      >>> add_subcommands(parser.add_subparsers(dest='command'))
      >>> args = parser.parse_args(['hessian', '--workdir', 'runs/x', '--k', '5'])
      >>> args.func is cmd_hessian, args.k
      (True, 5)
    """
    p = subparsers.add_parser(
        "hessian", help="Hessian spectrum of a finished run (top eigenvalues, density, trace)",
        description="Reload a finished run and compute the Hessian of its mean training loss at "
                    "its weights: top eigenvalues (Lanczos), spectral density (stochastic Lanczos "
                    "quadrature), trace (Hutchinson). Writes OUT/spectrum.json and OUT/density.png.")
    p.add_argument("--workdir", "--checkpoint", dest="workdir", required=True,
                   help="the run's directory (of `sparsejax train` or a compare entry)")
    p.add_argument("--k", type=int, default=20, help="top eigenvalues by Lanczos (default 20)")
    p.add_argument("--lanczos-steps", type=int, default=None,
                   help="Lanczos steps (default 2k + 20, at most the parameter count)")
    p.add_argument("--examples", type=int, default=10_000,
                   help="the loss is averaged over the first N training examples (default 10000)")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="examples per Hessian-vector-product batch (default 1000)")
    p.add_argument("--probes", type=int, default=2,
                   help="probes of the spectral density (default 2; 0: no density)")
    p.add_argument("--slq-steps", type=int, default=80, help="Lanczos steps per probe (default 80)")
    p.add_argument("--trace-probes", type=int, default=20,
                   help="Hutchinson probes of the trace (default 20; 0: no trace)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random vectors")
    p.add_argument("--out", default=None, help="output folder (default WORKDIR/hessian)")
    _add_common(p)
    p.set_defaults(func=cmd_hessian)

    p = subparsers.add_parser(
        "connect", help="train and plot the Bézier curve between two finished runs",
        description="Train the control point of the quadratic Bezier curve between the weights "
                    "of two finished runs of the same model and data (resumable), then evaluate "
                    "training loss and test error along the curve, the straight line and the "
                    "plane of the three points. Writes OUT/connect.json, OUT/path.png, "
                    "OUT/plane.png.")
    p.add_argument("--a", required=True, help="the first run's directory (t = 0)")
    p.add_argument("--b", required=True, help="the second run's directory (t = 1)")
    p.add_argument("--out", default=None,
                   help="output folder and curve workdir (default: A's parent/connect-A-B)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of curve training (default 2)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="training batch size (default: run A's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the t draws and the shuffling")
    p.add_argument("--points", type=int, default=21, help="t values evaluated (default 21)")
    p.add_argument("--grid", type=int, default=11,
                   help="plane grid points per axis (default 11; 0: no plane)")
    p.add_argument("--margin", type=float, default=0.2, help="the plane grid's margin (default 0.2)")
    p.add_argument("--eval-examples", type=int, default=10_000,
                   help="training examples behind the training loss (whole batches; default 10000)")
    p.add_argument("--bn-batches", type=int, default=None,
                   help="training batches per point for BatchNorm statistics (default: one epoch)")
    _add_common(p)
    p.set_defaults(func=cmd_connect)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="where the runs' dataset is (if moved)")
    p.add_argument("--source", default="auto", choices=("auto", "tfds", "files"))
    p.add_argument("--eval-batch-size", type=int, default=None, help="test batch size")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")


def _check(name: str, value: Any, low: float, *, integer: bool = True) -> None:
    from sparsejax.train.cli import UsageError

    bad = (isinstance(value, bool) or not isinstance(value, int)) if integer else False
    if bad or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= low):
        raise UsageError(f"--{name} must be {'an integer ' if integer else 'a number '}>= {low:g}, "
                         f"got {value!r}")


def cmd_hessian(args: argparse.Namespace) -> int:
    """``sparsejax hessian``: the Hessian spectrum of a finished run; returns the exit status."""
    import jax

    from sparsejax import data
    from sparsejax import directional as dp
    from sparsejax.train import connectivity as conn
    from sparsejax.train.cli import UsageError
    from sparsejax.train.cli.reports import markdown_table
    from sparsejax.train.cli.runs import load_finished_run
    from sparsejax.train.cli.settings import check_output_dir

    for name in ("k", "examples", "batch_size", "slq_steps"):
        _check(name.replace("_", "-"), getattr(args, name), 1)
    for name in ("probes", "trace_probes", "seed"):
        _check(name.replace("_", "-"), getattr(args, name), 0)
    if args.lanczos_steps is not None:
        _check("lanczos-steps", args.lanczos_steps, 1)
    run = load_finished_run(args.workdir, data_dir=args.data_dir, source=args.source,
                            eval_batch_size=args.eval_batch_size)
    out = Path(args.out) if args.out else Path(args.workdir) / "hessian"
    check_output_dir(out, f"--out {out}" if args.out else f"the output folder {out}")
    in_order = data.batches(run.train_batches.dataset, args.batch_size, train=False)
    examples = conn.collect_examples(in_order, args.examples)
    n = int(examples["label"].shape[0])
    loss = dp.DatasetLoss(conn.classifier_loss(run.result.model, run.result.model_state),
                          examples, batch_size=args.batch_size)
    params = run.result.params
    d = sum(int(x.size) for x in jax.tree.leaves(params))
    if args.k > d:
        raise UsageError(f"--k={args.k} exceeds the run's {d} parameters")
    steps = None if args.lanczos_steps is None else min(args.lanczos_steps, d)
    if steps is not None and steps < args.k:
        raise UsageError(f"--lanczos-steps={steps} must be at least --k={args.k}")
    say = (lambda line: None) if args.quiet or not is_primary() else print
    say(f"{args.workdir}: Hessian of the mean training loss over {n} examples at its weights "
        f"({d:,} parameters)")
    eig = dp.top_eigenpairs(loss, params, args.k, num_steps=steps, seed=args.seed)
    result: dict[str, Any] = {
        "workdir": str(args.workdir), "num_params": d, "examples": n, "k": args.k,
        "eigenvalues": [float(v) for v in eig.values],
        "residual_bounds": [float(v) for v in eig.residuals],
    }
    density = None
    if args.probes:
        density = dp.spectral_density(loss, params, num_probes=args.probes,
                                      num_steps=min(args.slq_steps, d), seed=args.seed)
        result["slq"] = {"nodes": density.nodes.tolist(), "weights": density.weights.tolist(),
                         "first_moment": density.moment(1)}
    if args.trace_probes:
        tr = dp.hutchinson_trace(loss, params, num_probes=args.trace_probes, seed=args.seed)
        result["trace"], result["trace_standard_error"] = tr.trace, tr.standard_error
    if is_primary():
        out.mkdir(parents=True, exist_ok=True)
        (out / "spectrum.json").write_text(json.dumps(result, indent=1) + "\n")
        if density is not None:
            dp.plot_spectrum(density, eig.values, path=out / "density.png",
                             title=f"Hessian spectrum of {Path(args.workdir).name} ({n} examples)")
        table = markdown_table(["i", "eigenvalue", "residual bound"],
                               [[i + 1, f"{v:.6g}", f"{r:.2g}"] for i, (v, r) in
                                enumerate(zip(result["eigenvalues"], result["residual_bounds"]))])
        print(table)
        extra = []
        if "trace" in result:
            extra.append(f"trace {result['trace']:.6g} +- {result['trace_standard_error']:.2g} "
                         f"(mean eigenvalue {result['trace'] / d:.4g})")
        if density is not None:
            extra.append(f"SLQ mean eigenvalue {density.moment(1):.4g}")
        print("; ".join(extra + [f"written to {out}/ (spectrum.json"
                                 + (", density.png)" if density is not None else ")")]))
    return 0


class _Head:
    """The first ``num_batches`` batches of an in-order pipeline (a :class:`BatchSource`)."""

    def __init__(self, batches: Any, num_batches: int) -> None:
        self.inner, self.batch_size = batches, batches.batch_size
        self.num_batches = max(1, min(num_batches, len(batches)))

    def __len__(self) -> int:
        return self.num_batches

    def epoch(self, epoch: int, start: int = 0) -> Any:
        it = iter(self.inner.epoch(epoch, start))
        for _ in range(self.num_batches - start):
            try:
                yield next(it)
            except StopIteration:
                return
        getattr(it, "close", lambda: None)()


def _out_not_workdir(e: Exception) -> str:
    """The trainer's refusal of the curve's workdir, in the words of ``connect``'s ``--out``."""
    return (str(e).replace("use another workdir", "use another --out")
            .replace("choose another --workdir", "choose another --out"))


def cmd_connect(args: argparse.Namespace) -> int:
    """``sparsejax connect``: train and plot the Bézier curve between two finished runs."""
    import optax

    from sparsejax import data
    from sparsejax import directional as dp
    from sparsejax.train import CheckpointRestoreError, WorkdirMismatchError
    from sparsejax.train import connectivity as conn
    from sparsejax.train.cli import UsageError
    from sparsejax.train.cli.reports import markdown_table, pct
    from sparsejax.train.cli.runs import load_finished_run
    from sparsejax.train.cli.settings import check_output_dir

    for name in ("epochs", "points"):
        _check(name, getattr(args, name), 1)
    for name in ("grid", "eval_examples", "seed"):
        _check(name.replace("_", "-"), getattr(args, name), 0)
    _check("lr", args.lr, 0, integer=False)
    if not 0 <= args.momentum < 1:
        raise UsageError(f"--momentum must be in [0, 1), got {args.momentum}")
    _check("margin", args.margin, 0, integer=False)
    if args.batch_size is not None:
        _check("batch-size", args.batch_size, 1)
    if args.bn_batches is not None:
        _check("bn-batches", args.bn_batches, 1)
    if args.grid == 1:
        raise UsageError("--grid must be 0 (no plane) or at least 2")
    if Path(args.a).resolve() == Path(args.b).resolve():
        raise UsageError("--a and --b name the same run: a curve needs two end points")
    out = Path(args.out) if args.out else (
        Path(args.a).parent / f"connect-{Path(args.a).name}-{Path(args.b).name}")
    check_output_dir(out, f"--out {out}" if args.out else f"the output folder {out}")
    check_output_dir(out / "curve", f"the curve's workdir {out / 'curve'}")
    a, b = (load_finished_run(w, data_dir=args.data_dir, source=args.source,
                              eval_batch_size=args.eval_batch_size) for w in (args.a, args.b))
    for key in ("model", "dataset", "train_split", "test_split", "data_options"):
        va, vb = getattr(a.settings, key), getattr(b.settings, key)
        if va != vb:
            raise UsageError(f"the runs differ in {key} ({va!r} in {args.a}, {vb!r} in {args.b}): "
                             "a curve joins two weights of one model on one dataset")
    batch_size = args.batch_size or a.settings.batch_size
    train_ds = a.train_batches.dataset
    train = data.batches(train_ds, batch_size, train=True, seed=args.seed)
    net, w1, w2 = a.result.model, a.result.params, b.result.params
    config = {"a": a.settings.config(), "b": b.settings.config(), "epochs": args.epochs,
              "lr": args.lr, "momentum": args.momentum, "batch_size": batch_size,
              "seed": args.seed}
    log = None if args.quiet else (lambda line: print(f"  [curve] {line}", flush=True))
    try:
        fitted = conn.train_curve(net, w1, w2, optax.sgd(args.lr, momentum=args.momentum or None),
                                  train, epochs=args.epochs, workdir=out / "curve", config=config,
                                  seed=args.seed, log=log, progress=args.progress)
    except WorkdirMismatchError as e:
        raise WorkdirMismatchError(_out_not_workdir(e)) from None
    except CheckpointRestoreError as e:
        raise CheckpointRestoreError(_out_not_workdir(e), step=e.step, where=e.where,
                                     reason=e.reason) from None
    in_order = data.batches(train_ds, a.test_batches.batch_size, train=False)
    head = _Head(in_order, -(-args.eval_examples // in_order.batch_size)) if args.eval_examples \
        else in_order
    evaluator = conn.PathEvaluator(net, {"train": head, "test": a.test_batches}, bn_data=train,
                                   max_bn_batches=args.bn_batches)
    ts = [i / (args.points - 1) for i in range(args.points)] if args.points > 1 else [0.0]
    curve = conn.evaluate_path(net, w1, w2, fitted.control, evaluator=evaluator, ts=ts)
    line = conn.evaluate_path(net, w1, w2, None, evaluator=evaluator, ts=ts)
    plane = None
    if args.grid:
        plane = conn.evaluate_plane(net, w1, w2, fitted.control, evaluator=evaluator,
                                    num_points=args.grid, margin=args.margin)
    result = {
        "a": str(args.a), "b": str(args.b), "config": config,
        "objective": [r["train_loss"] for r in fitted.result.history],
        "curve": {k: v.tolist() for k, v in curve.items()},
        "line": {k: v.tolist() for k, v in line.items()},
        "max_train_loss": {"curve": float(max(curve["train_loss"])),
                           "line": float(max(line["train_loss"]))},
        "max_test_error": {"curve": float(max(curve["test_error"])),
                           "line": float(max(line["test_error"]))},
    }
    if plane is not None:
        result["plane"] = {"xs": plane.xs.tolist(), "ys": plane.ys.tolist(),
                           "points": plane.basis.points.tolist(),
                           **{k: v.tolist() for k, v in plane.values.items()}}
    if is_primary():
        out.mkdir(parents=True, exist_ok=True)
        (out / "connect.json").write_text(json.dumps(result, indent=1) + "\n")
        names = (Path(args.a).name, Path(args.b).name)
        dp.plot_path(curve, line, keys=["train_loss", "test_error"],
                     labels={"train_loss": "training loss", "test_error": "test error"},
                     path=out / "path.png", title=f"{names[0]} (t = 0) to {names[1]} (t = 1)")
        if plane is not None:
            dp.plot_plane(plane.xs, plane.ys, plane.values["train_loss"], plane.basis,
                          path=out / "plane.png", title="training loss", label="train loss",
                          point_labels=(names[0], "control", names[1]))
        print(markdown_table(
            ["t", "train loss (curve)", "train loss (line)", "test error (curve)",
             "test error (line)"],
            [[f"{t:.2f}", f"{c:.4f}", f"{s:.4f}", pct(ce), pct(se)] for t, c, s, ce, se in zip(
                curve["t"], curve["train_loss"], line["train_loss"], curve["test_error"],
                line["test_error"])]))
        print(f"max training loss: curve {result['max_train_loss']['curve']:.4f}, line "
              f"{result['max_train_loss']['line']:.4f} (ends {curve['train_loss'][0]:.4f}, "
              f"{curve['train_loss'][-1]:.4f}); written to {out}/ (connect.json, path.png"
              + (", plane.png)" if plane is not None else ")"))
    return 0

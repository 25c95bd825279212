"""``sparsejax export`` and ``sparsejax bench``: a finished run as a smaller, compressed model.

``export`` reloads a finished run, removes the units it no longer uses
(:func:`sparsejax.export.shrink_structured`, exact) and writes
``WORKDIR/export/sparse.npz`` (:func:`sparsejax.export.save_sparse`, the
run's full-size weights with sparse kernels compressed) and
``WORKDIR/export/export.json`` (units per group before and after, parameters,
FLOPs, bytes on disk against the dense weights).

``bench`` times the run's model in evaluation mode at each ``--batch``:
dense, sparse (:func:`sparsejax.export.sparsify` with ``policy="measure"``:
a layer is sparse only where it was measured faster, and the dense model is
kept when the whole sparse model is not faster) and structurally shrunk,
prints the table and writes ``WORKDIR/export/bench.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_export_subcommands", "cmd_bench", "cmd_export"]


def add_export_subcommands(subparsers: Any) -> None:
    """Adds the ``export`` and ``bench`` parsers to ``subparsers`` (``set_defaults(func=...)``).

    Example:
      >>> import argparse
      >>> from sparsejax.train.cli.export import add_export_subcommands, cmd_bench
      >>> parser = argparse.ArgumentParser(prog='sparsejax')
      >>> add_export_subcommands(parser.add_subparsers(dest='command'))
      >>> args = parser.parse_args(['bench', '--workdir', 'runs/x', '--batch', '1,32'])
      >>> args.func is cmd_bench, args.batch
      (True, '1,32')
    """
    for name, func, text in (
        ("export", cmd_export, "a finished run as a smaller model and compressed weights"),
        ("bench", cmd_bench, "time a finished run's model dense, sparse and shrunk"),
    ):
        p = subparsers.add_parser(name, help=text, description=__doc__.split("\n\n")[1 if
                                  name == "export" else 2].replace("``", "`"))
        p.add_argument("--workdir", "--checkpoint", dest="workdir", required=True,
                       help="the run's directory (of `sparsejax train` or a compare entry)")
        p.add_argument("--max-density", type=float, default=0.5,
                       help="kernels at most this dense are compressed (default 0.5)")
        if name == "bench":
            p.add_argument("--batch", default="1,128", help="batch sizes (default 1,128)")
            p.add_argument("--rounds", type=int, default=10, help="timed calls per figure")
        p.add_argument("--data-dir", default=None, help="where the run's dataset is (if moved)")
        p.add_argument("--source", default="auto", choices=("auto", "tfds", "files"))
        p.add_argument("--quiet", action="store_true")
        p.add_argument("--debug", action="store_true")
        p.set_defaults(func=func)


def _load(args: argparse.Namespace) -> tuple[Any, Any, tuple[int, ...]]:
    from sparsejax.train.cli.runs import load_finished_run, model_with_params
    from sparsejax.train.cli.settings import UsageError, check_output_dir

    if not 0.0 <= args.max_density <= 1.0:
        raise UsageError(f"--max-density must lie in [0, 1], got {args.max_density}")
    run = load_finished_run(args.workdir, data_dir=args.data_dir, source=args.source)
    out = Path(args.workdir) / "export"
    check_output_dir(out, f"the output folder {out}")  # before any work is done
    model = model_with_params(run.result.model, run.result.params)
    return run, model, tuple(run.image_shape)


def _example(shape: tuple[int, ...], batch: int) -> Any:
    import jax

    return jax.random.normal(jax.random.key(0), (batch, *shape))


def cmd_export(args: argparse.Namespace) -> int:
    """``sparsejax export``."""
    from sparsejax.export import dense_bytes, save_sparse, shrink_structured
    from sparsejax.models import macs, param_count

    run, model, shape = _load(args)
    out = Path(args.workdir) / "export"
    out.mkdir(exist_ok=True)
    small, info = shrink_structured(model, _example(shape, 8))
    spec = {"name": run.settings.model, "num_classes": int(model_output_size(model, shape)),
            "input_shape": list(shape)}
    save_sparse(out / "sparse.npz", model, max_density=args.max_density, spec=spec)
    size = (out / "sparse.npz").stat().st_size
    report = {
        "groups": [list(g) for g in info.groups],
        "folded_units": len(info.folded),
        "max_abs_diff": info.max_abs_diff,
        "params": [param_count(model), param_count(small)],
        "macs_dense": [sum(m.dense for m in macs(model, shape)),
                       sum(m.dense for m in macs(small, shape))],
        "macs_sparse": sum(m.sparse for m in macs(model, shape)),
        "bytes_sparse_npz": size,
        "bytes_dense": dense_bytes(model),
    }
    (out / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.quiet:
        print(f"{args.workdir}: structured shrink (exact, max |diff| {info.max_abs_diff:.1e}):")
        print(info)
        p, m = report["params"], report["macs_dense"]
        print(f"params {p[0]:,} -> {p[1]:,}; dense MACs/example {m[0]:,} -> {m[1]:,}; "
              f"MACs with zeros skipped {report['macs_sparse']:,}")
        print(f"compressed weights {out / 'sparse.npz'}: {size:,} bytes "
              f"({size / report['bytes_dense']:.1%} of the dense {report['bytes_dense']:,})")
    return 0


def model_output_size(model: Any, shape: tuple[int, ...]) -> int:
    """The number of outputs (classes) of ``model`` on one example of ``shape``."""
    import jax

    from sparsejax.export import eval_copy

    return int(jax.eval_shape(eval_copy(model), jax.ShapeDtypeStruct((1, *shape), "float32"))
               .shape[-1])


def cmd_bench(args: argparse.Namespace) -> int:
    """``sparsejax bench``."""
    import jax
    from flax import nnx

    from sparsejax.export import median_seconds, shrink_structured, sparsify
    from sparsejax.train.cli.args import parse_positive_ints
    from sparsejax.train.cli.settings import UsageError

    batches = parse_positive_ints(args.batch, "--batch")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {args.rounds}")
    _, model, shape = _load(args)
    small, _ = shrink_structured(model, _example(shape, 8))

    def timed(m: Any, x: Any) -> float:
        graphdef, state = nnx.split(m)
        return median_seconds(jax.jit(lambda s, z: nnx.merge(graphdef, s)(z)), state, x,
                              rounds=args.rounds)

    rows = []
    for b in batches:
        x = _example(shape, b)
        sparse, report = sparsify(model, x, policy="measure", max_density=args.max_density,
                                  rounds=args.rounds)
        dense_t = report.dense_seconds or timed(sparse, x)
        sparse_t = report.sparse_seconds if not report.fell_back and report.sparse_seconds \
            else dense_t
        small_t = timed(small, x)
        rows.append({"batch": b, "dense_ms": dense_t * 1e3, "sparse_ms": sparse_t * 1e3,
                     "shrunk_ms": small_t * 1e3, "formats": report.formats(),
                     "fell_back": report.fell_back, "device": report.device,
                     "nm": report.nm[1]})
        if not args.quiet:
            print(report)
    out = Path(args.workdir) / "export"
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    if not args.quiet:
        print(f"{'batch':>5s} {'dense ms':>9s} {'sparse ms':>9s} {'x sparse':>8s} "
              f"{'shrunk ms':>9s} {'x shrunk':>8s}")
        for r in rows:
            print(f"{r['batch']:5d} {r['dense_ms']:9.3f} {r['sparse_ms']:9.3f} "
                  f"{r['dense_ms'] / r['sparse_ms']:8.2f} {r['shrunk_ms']:9.3f} "
                  f"{r['dense_ms'] / r['shrunk_ms']:8.2f}")
    return 0

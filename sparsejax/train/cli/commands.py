"""The ``sparsejax`` sub-commands and :func:`main`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sparsejax.train.cli.args import (
    build_parser,
    compare_runs,
    init_distributed,
    key_values,
    with_pattern,
    parse_floats,
    say_for,
    setting_flags,
    settings_from,
)
from sparsejax.train.cli.reports import markdown_table, pct, summary_line, write_compare
from sparsejax.train.cli.directional import cmd_connect, cmd_hessian
from sparsejax.train.cli.export import cmd_bench, cmd_export
from sparsejax.train.cli.runs import (
    accuracy_of,
    compare_methods,
    load_finished_run,
    model_has_batch_stats,
    model_with_params,
    run_training,
)
from sparsejax.train.cli.settings import (
    DEFAULT_RATIOS,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    RETRAIN_LR,
    RETRAIN_MOMENTUM,
    UsageError,
    check_output_dir,
    load_config,
)
from sparsejax.train.distributed import is_primary
from sparsejax.tree import weights_only

_HERE = os.path.dirname(os.path.abspath(__file__))

def print_error(prog: str, message: str) -> None:
    one_line = " ".join(str(message).split())
    print(f"{prog}: error: {one_line}", file=sys.stderr)


def os_error_message(e: OSError) -> str:
    """``e`` in one line: ``'runs/x: File exists'`` for the errors of system calls on a path
    (whose text otherwise starts with ``[Errno N]``), else ``str(e)``."""
    if e.errno is None or not e.strerror or e.filename is None:
        return str(e)
    names = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
    return f"{names}: {e.strerror}"


def one_line_warnings(prog: str) -> Callable[..., None]:
    """``warnings.showwarning`` printing the trainer's warnings about this CLI's calls in one line.

    With ``--quiet`` (no ``log``), :func:`sparsejax.train.fit` reports a damaged
    checkpoint as a ``RuntimeWarning`` at its caller, i.e. in a module of this package.
    """
    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if os.path.dirname(os.path.abspath(filename)) == _HERE:
            print(f"{prog}: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def cmd_train(args: argparse.Namespace) -> int:
    """``sparsejax train``."""
    init_distributed(args)
    config = load_config(args.config) if args.config else {}
    entries = config.get("methods", {})
    entry = dict(entries.get(args.method, {"method": args.method}))
    entry.setdefault("method", args.method)
    settings = settings_from(config, entry, args.method, setting_flags(args),
                              with_pattern(args, key_values(args.hp, "--hp", raw=True)))
    settings.validate()
    workdir = Path(args.workdir) if args.workdir else settings.default_workdir()
    run = run_training(settings, workdir, data_dir=args.data_dir, source=args.source,
                       download=args.download, checkpoint_every_steps=args.checkpoint_every_steps,
                       keep_checkpoints=args.keep_checkpoints, progress=args.progress,
                       log=say_for(args))
    if is_primary():
        print(summary_line(run))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``sparsejax compare``."""
    init_distributed(args)
    config = load_config(args.config) if args.config else {}
    runs = compare_runs(args, config)
    out = Path(args.out or config.get("out") or
               f"runs/compare-{runs[0].dataset}-{runs[0].model}")
    check_output_dir(out, f"--out {out}" if args.out else f"the output folder {out}")
    ratios = (parse_floats(args.ratios, "--ratios") if args.ratios is not None
              else list(config.get("ratios", DEFAULT_RATIOS)))
    if not ratios:
        what, given = (("--ratios", args.ratios) if args.ratios is not None
                       else ("ratios", config.get("ratios")))
        raise UsageError(f"{what} must hold at least one pruning ratio in [0, 1), got {given!r}")
    for r in ratios:
        if not 0 <= r < 1:
            raise UsageError(f"--ratios must lie in [0, 1), got {r:g}")
    scope = args.scope or config.get("scope", "global")
    if scope not in ("global", "layerwise"):
        raise UsageError(f"scope must be 'global' or 'layerwise', got {scope!r}")
    bn = args.bn_recalibrate if args.bn_recalibrate is not None else config.get("bn_recalibrate", 0)
    if isinstance(bn, bool) or not isinstance(bn, int) or bn < 0:
        raise UsageError(f"bn_recalibrate must be an integer >= 0 (training batches), got {bn!r}")
    if bn and not any(model_has_batch_stats(r.model) for r in runs):
        names = ", ".join(sorted({r.model for r in runs}))
        raise UsageError(f"bn_recalibrate: no run's model ({names}) has BatchNorm statistics "
                         "to recompute")
    say = (lambda line: None) if args.quiet or not is_primary() else print

    rows, curves, trained = compare_methods(
        runs, out, ratios, scope, bn_recalibrate=bn, data_dir=args.data_dir, source=args.source,
        download=args.download, checkpoint_every_steps=args.checkpoint_every_steps,
        keep_checkpoints=args.keep_checkpoints, progress=args.progress,
        say=say, log_for=lambda name: say_for(args, f"  [{name}] "))
    if is_primary():
        write_compare(out, rows, curves, trained, ratios, scope, bn)
    return 0


def ratio_name(ratio: float) -> str:
    """``ratio`` as written in a retraining workdir's name: distinct ratios get distinct names.

    The short ``:g`` form (``0.5`` -> ``'0.5'``, ``0`` -> ``'0'``) where it reads back as
    ``ratio``, else the shortest text that does (``repr``: ``0.1234561`` -> ``'0.1234561'``).
    """
    short = f"{ratio:g}"
    return short if float(short) == ratio else repr(float(ratio))


def retrain_name(scope: str, ratio: float, epochs: int, lr: float = RETRAIN_LR,
                 momentum: float = RETRAIN_MOMENTUM) -> str:
    """The retraining folder's name: ``<scope>-r<ratio>-e<epochs>``, then ``-lr<lr>`` and
    ``-m<momentum>`` where they differ from the defaults (default runs keep their names).

    Example:
      >>> retrain_name('global', 0.5, 1), retrain_name('global', 0.5, 1, 0.02, 0.0)
      ('global-r0.5-e1', 'global-r0.5-e1-lr0.02-m0')
    """
    name = f"{scope}-r{ratio_name(ratio)}-e{epochs}"
    if lr != RETRAIN_LR:
        name += f"-lr{ratio_name(lr)}"
    if momentum != RETRAIN_MOMENTUM:
        name += f"-m{ratio_name(momentum)}"
    return name


def cmd_prune(args: argparse.Namespace) -> int:
    """``sparsejax prune``."""
    import jax
    import optax

    import sparsejax as sj
    from sparsejax import pruning
    from sparsejax.train import fit

    workdir = Path(args.workdir)
    ratios = parse_floats(args.ratios, "--ratios")
    if not ratios or not all(0 <= r < 1 for r in ratios):
        raise UsageError(f"--ratios must be numbers in [0, 1), got {args.ratios!r}")
    if args.retrain_epochs < 0:
        raise UsageError(f"--retrain-epochs must be >= 0, got {args.retrain_epochs}")
    if not 0 <= args.retrain_momentum < 1:
        raise UsageError(f"--retrain-momentum must be in [0, 1), got {args.retrain_momentum}")
    if not args.retrain_lr >= 0:
        raise UsageError(f"--retrain-lr must be >= 0, got {args.retrain_lr}")
    if args.bn_recalibrate < 0:
        raise UsageError(f"--bn-recalibrate must be >= 0, got {args.bn_recalibrate}")
    run = load_finished_run(workdir, data_dir=args.data_dir, source=args.source,
                            eval_batch_size=args.eval_batch_size)
    settings = run.settings
    config = settings.config()  # the run's identity (fit has checked it equals the stored one)
    accuracy = accuracy_of(run)
    recalibrated = accuracy_of(run, args.bn_recalibrate) if args.bn_recalibrate else None
    base = run.result.final
    say = (lambda line: None) if args.quiet or not is_primary() else print
    say(f"{workdir}: {settings.method} on {settings.dataset}/{settings.model}: test accuracy "
        f"{pct(base.get('test_accuracy'))} at sparsity {pct(base.get('sparsity'))}")
    rows = []
    for ratio in ratios:
        pruned, support = pruning.prune(run.result.params, ratio, scope=args.scope,
                                        mask=weights_only)
        row = {"ratio": ratio, "sparsity": float(sj.sparsity(pruned, weights_only)),
               "test_accuracy": accuracy(pruned)}
        if recalibrated is not None:
            row["bn_recalibrated_accuracy"] = recalibrated(pruned)
        if args.retrain_epochs:
            # The weights already zero stay zero: below the run's sparsity, prune keeps some
            # zeros among its largest entries, which must not grow back.
            kept = jax.tree.map(lambda s, w: None if s is None else s & (w != 0), support, pruned,
                                is_leaf=lambda x: x is None)
            tx = optax.chain(optax.sgd(args.retrain_lr, momentum=args.retrain_momentum or None),
                             pruning.fixed_support(kept))
            sub = workdir / "retrain" / retrain_name(args.scope, ratio, args.retrain_epochs,
                                                     args.retrain_lr, args.retrain_momentum)
            retrain_cfg = {"pruned_from": config, "ratio": ratio, "scope": args.scope,
                           "epochs": args.retrain_epochs, "learning_rate": args.retrain_lr,
                           "momentum": args.retrain_momentum}
            res = fit(model_with_params(run.result.model, pruned), tx, run.train_batches,
                      epochs=args.retrain_epochs, eval_data=run.test_batches, workdir=sub,
                      config=retrain_cfg, seed=settings.seed, sparsity_mask=weights_only,
                      progress=args.progress, log=None if args.quiet else
                      (lambda line, r=ratio: print(f"  [retrain {ratio_name(r)}] {line}", flush=True)))
            row["retrained_accuracy"] = res.final.get("test_accuracy")
            row["retrained_sparsity"] = res.final.get("sparsity")
            if (row["retrained_sparsity"] is not None
                    and row["retrained_sparsity"] < row["sparsity"] - 1e-6):
                raise UsageError(
                    f"{sub} holds a retraining by an earlier version of sparsejax that let pruned "
                    f"weights grow back (sparsity {pct(row['retrained_sparsity'])} after, "
                    f"{pct(row['sparsity'])} pruned); delete that folder to retrain")
        rows.append(row)
    header = ["ratio", "sparsity", "test accuracy (no retraining)"]
    if recalibrated is not None:
        header += [f"BatchNorm recomputed ({args.bn_recalibrate} batches)"]
    if args.retrain_epochs:
        header += [f"after {args.retrain_epochs} epoch(s) of retraining", "sparsity after"]
    table = markdown_table(header, [
        [ratio_name(r["ratio"]), pct(r["sparsity"]), pct(r["test_accuracy"])]
        + ([pct(r["bn_recalibrated_accuracy"])] if recalibrated is not None else [])
        + ([pct(r["retrained_accuracy"]), pct(r["retrained_sparsity"])]
           if args.retrain_epochs else []) for r in rows])
    if is_primary():
        name = f"prune-{args.scope}" + (f"-e{args.retrain_epochs}" if args.retrain_epochs else "")
        report = {"scope": args.scope, "retrain_epochs": args.retrain_epochs}
        if args.retrain_epochs:
            report.update(retrain_lr=args.retrain_lr, retrain_momentum=args.retrain_momentum)
        (workdir / f"{name}.json").write_text(json.dumps(
            {**report, "bn_recalibrate": args.bn_recalibrate, "rows": rows}, indent=2) + "\n")
        print(f"one-shot {args.scope} magnitude pruning of {workdir}:")
        print(table)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    """``sparsejax methods``."""
    from sparsejax.train import methods

    if args.method:
        print(methods.describe(args.method))
        return 0
    width = max(len(m) for m in methods.available_methods())
    for name in methods.available_methods():
        print(f"{name:<{width}}  {methods.get_method(name).summary}")
    print("\n`sparsejax methods NAME` shows a method's hyperparameters, defaults and sources.")
    return 0


COMMANDS = {"train": cmd_train, "compare": cmd_compare, "prune": cmd_prune,
            "methods": cmd_methods, "hessian": cmd_hessian, "connect": cmd_connect,
            "export": cmd_export, "bench": cmd_bench}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``sparsejax`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    0: success; 2: bad input (a one-line message on stderr; argparse errors
    too; also a workdir whose checkpoints are all damaged); 1: training
    diverged; 130: interrupted.

    Example:
      >>> main(['methods']) == 0  # doctest: +ELLIPSIS
      fixed_threshold_reparam ...
      True
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"sparsejax {args.command}"
    if getattr(args, "debug", False):
        return COMMANDS[args.command](args)
    from sparsejax.train import CheckpointRestoreError, TrainingDivergedError

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warnings(prog)
            return COMMANDS[args.command](args)
    except TrainingDivergedError as e:
        print_error(prog, str(e))
        return EXIT_FAILED
    except (ValueError, CheckpointRestoreError) as e:
        print_error(prog, str(e))
        return EXIT_BAD_INPUT
    except OSError as e:  # a path that cannot be read or written (an output folder that is a file)
        print_error(prog, os_error_message(e))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print_error(prog, "interrupted; run the same command again to resume")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``sparsejax`` command line's arguments: the parser, and settings from flags and configs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sparsejax.train.cli.directional import add_subcommands
from sparsejax.train.cli.export import add_export_subcommands
from sparsejax.train.cli.settings import (
    DATA_SOURCES,
    DEFAULT_RATIOS,
    DEFAULTS,
    RETRAIN_LR,
    RETRAIN_MOMENTUM,
    SETTING_KEYS,
    RunSettings,
    UsageError,
    default_augment_as_none,
)


def parse_value(text: str) -> Any:
    """A ``KEY=VALUE`` value: an int, a float, true/false/none, a JSON list, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text.strip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def key_values(items: Sequence[str] | None, what: str, *, raw: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} takes NAME=VALUE, got {item!r}")
        out[key.strip()] = value.strip() if raw else parse_value(value)
    return out


def parse_floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{what} takes comma-separated numbers, got {text!r}") from None


def parse_positive_ints(text: str, what: str) -> list[int]:
    """Comma-separated integers >= 1 (at least one); a :class:`UsageError` names ``what`` otherwise."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UsageError(f"{what} takes comma-separated integers >= 1, got {text!r}")
    return values


def add_setting_flags(p: argparse.ArgumentParser, *, model_required: bool) -> None:
    from sparsejax.train.schedules import SCHEDULES

    g = p.add_argument_group("model and data")
    g.add_argument("--model", required=model_required, default=None,
                   help="a model of the zoo (sparsejax.models.available(), e.g. lenet5, resnet20)")
    g.add_argument("--dataset", required=model_required, default=None,
                   help="fashion_mnist, mnist, cifar10, cifar100, imagenet2012 or synthetic")
    g.add_argument("--data-dir", default=None,
                   help="a folder with the dataset (TFDS data dir or the dataset's files) "
                        "looked at first")
    g.add_argument("--source", default="auto", choices=DATA_SOURCES,
                   help="where the data may come from")
    g.add_argument("--download", action="store_true",
                   help="allow TFDS to download a missing dataset (network needed)")
    g.add_argument("--data-opt", action="append", metavar="NAME=VALUE",
                   help="an option of sparsejax.data.load (e.g. num_examples=512 for synthetic); "
                        "repeatable")
    g.add_argument("--train-split", default=None, help="training split (default train; "
                   "TFDS slices like 'train[:10%%]' work)")
    g.add_argument("--test-split", default=None, help="test split (default test)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop + flip (default: the dataset's choice: on for CIFAR/ImageNet)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=None, help=f"default {DEFAULTS['epochs']}")
    g.add_argument("--batch-size", type=int, default=None,
                   help=f"global training batch size (default {DEFAULTS['batch_size']})")
    g.add_argument("--eval-batch-size", type=int, default=None,
                   help=f"test batch size (default {DEFAULTS['eval_batch_size']})")
    g.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float, default=None,
                   help="base learning rate (default: the method's, see `sparsejax methods M`; "
                        "ignored by methods without a learning rate: rda, irda, and "
                        "prox_sgd/sqrt_t_prox_sgd unless --hp step=lr)")
    g.add_argument("--momentum", type=float, default=None,
                   help="momentum (default: the method's; ignored by methods without momentum)")
    g.add_argument("--schedule", default=None, choices=SCHEDULES,
                   help="learning-rate schedule (default constant; ignored by methods without "
                        "a learning rate)")
    g.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default 0)")
    g.add_argument("--decay-at", default=None, metavar="F1,F2",
                   help="step schedule: fractions of training where the lr drops, at least one "
                        "(default 0.5,0.75)")
    g.add_argument("--decay-factor", type=float, default=None,
                   help="step schedule: the factor (default 0.1)")
    g.add_argument("--seed", type=int, default=None, help="seed of init, shuffling, dropout (default 0)")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--checkpoint-every-steps", type=int, default=None,
                   help="also checkpoint every N steps (default: after every epoch)")
    g.add_argument("--keep-checkpoints", type=int, default=3,
                   help="checkpoints kept (default 3); with 1, a damaged checkpoint has no "
                        "older one to fall back to")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (default: when stderr is a terminal)")
    g.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    g.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    g = p.add_argument_group("several hosts (see sparsejax.train.distributed)")
    g.add_argument("--coordinator", default=None, help="host:port of process 0")
    g.add_argument("--num-processes", type=int, default=None, help="number of processes")
    g.add_argument("--process-id", type=int, default=None, help="this process's index")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sparsejax`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="sparsejax",
        description="Train sparse networks, compare sparse-training methods, prune trained runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one model with one method",
                       description="Train one model with one method (resumable; see "
                                   "`sparsejax methods` for the methods and their hyperparameters).")
    p.add_argument("--method", required=True,
                   help="the method (sgd, gmp, grda, irda, lats, ...; `sparsejax methods` lists "
                        "them), or the name of an entry of --config")
    p.add_argument("--hp", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter of the method, e.g. --hp c=0.02 (repeatable)")
    p.add_argument("--config", default=None,
                   help="a comparison config (TOML/JSON): settings and the method's entry are "
                        "taken from it; flags override")
    p.add_argument("--workdir", default=None,
                   help="run directory (default runs/<dataset>-<model>-<method>-s<seed>)")
    p.add_argument("--pattern", default=None,
                   help="sparsity pattern of the method's masks (methods with a 'pattern' "
                        "hyperparameter: gmp, static, set, rigl, ste): 'unstructured', '2:4', "
                        "'4x4', 'channel', ...; the same as --hp pattern=...")
    add_setting_flags(p, model_required=False)
    add_run_flags(p)

    p = sub.add_parser("compare", help="train several methods and compare them",
                       description="Train several methods one after the other (resumable; a rerun "
                                   "skips finished runs), then write a table and plots to --out.")
    p.add_argument("--methods", default=None,
                   help="comma-separated runs: method names, or names of the config's entries "
                        "(default: every entry of --config)")
    p.add_argument("--config", default=None, help="a comparison config (TOML/JSON), e.g. "
                   "experiments/configs/fashion_mnist_lenet5.toml")
    p.add_argument("--hp", action="append", metavar="RUN.NAME=VALUE",
                   help="a hyperparameter of one run, e.g. --hp grda.c=0.02 (repeatable)")
    p.add_argument("--pattern", default=None,
                   help="sparsity pattern for every run whose method has a 'pattern' "
                        "hyperparameter (gmp, static, set, rigl, ste), e.g. '2:4'; the others "
                        "(dense or threshold-based methods) are left as they are")
    p.add_argument("--out", default=None, help="output directory (default runs/compare-<dataset>-"
                   "<model>)")
    p.add_argument("--ratios", default=None,
                   help="one-shot pruning ratios of the any-sparsity curves (default "
                        + ",".join(f"{r:g}" for r in DEFAULT_RATIOS) + ")")
    p.add_argument("--scope", default=None, choices=("global", "layerwise"),
                   help="one-shot pruning scope of the curves (default global)")
    p.add_argument("--bn-recalibrate", type=int, default=None, metavar="N",
                   help="evaluate the curves' pruned nets with their BatchNorm statistics "
                        "recomputed on N training batches (runs whose model has BatchNorm; "
                        "default 0: the trained statistics)")
    add_setting_flags(p, model_required=False)
    add_run_flags(p)

    p = sub.add_parser("prune", help="one-shot magnitude pruning of a trained run",
                       description="Prune a finished run one-shot at several ratios; report test "
                                   "accuracy without and (--retrain-epochs) with retraining.")
    p.add_argument("--workdir", "--checkpoint", dest="workdir", required=True,
                   help="the run's directory (of `sparsejax train` or a compare entry)")
    p.add_argument("--ratios", default="0.5,0.8,0.9", help="pruning ratios (default 0.5,0.8,0.9)")
    p.add_argument("--scope", default="global", choices=("global", "layerwise"))
    p.add_argument("--retrain-epochs", type=int, default=0,
                   help="epochs of retraining with the support fixed (default 0: none)")
    p.add_argument("--retrain-lr", type=float, default=RETRAIN_LR,
                   help=f"retraining learning rate (default {RETRAIN_LR:g})")
    p.add_argument("--retrain-momentum", type=float, default=RETRAIN_MOMENTUM,
                   help=f"retraining momentum (default {RETRAIN_MOMENTUM:g})")
    p.add_argument("--bn-recalibrate", type=int, default=0, metavar="N",
                   help="also report each pruned net's accuracy with its BatchNorm statistics "
                        "recomputed on N training batches (models with BatchNorm; default 0: no)")
    p.add_argument("--data-dir", default=None, help="where the run's dataset is (if moved)")
    p.add_argument("--source", default="auto", choices=DATA_SOURCES)
    p.add_argument("--eval-batch-size", type=int, default=None)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--debug", action="store_true")

    p = sub.add_parser("methods", help="list the methods, or describe one",
                       description="List the training methods, or describe one (hyperparameters, "
                                   "defaults and where they come from).")
    p.add_argument("method", nargs="?", default=None)
    add_subcommands(sub)  # hessian, connect
    add_export_subcommands(sub)  # export, bench
    return parser


def settings_from(common: Mapping[str, Any], entry: Mapping[str, Any], name: str,
                   flags: Mapping[str, Any], hp_flags: Mapping[str, Any]) -> RunSettings:
    """One run's settings: defaults < config (shared) < config (run entry) < flags."""
    merged: dict[str, Any] = dict(DEFAULTS)
    for source in (common, entry):
        merged.update({k: v for k, v in source.items() if k in SETTING_KEYS})
    opts = merged["data_options"]
    if opts is not None and not isinstance(opts, Mapping):
        raise UsageError(f"data_options must be a table of options of sparsejax.data.load, got "
                         f"{opts!r}")
    merged.update({k: v for k, v in flags.items() if v is not None})
    # --data-opt changes single options: the config's other options are kept
    opts = {**(opts or {}), **(flags.get("data_options") or {})}
    for key in ("model", "dataset"):
        if not merged.get(key):
            raise UsageError(f"--{key} is required (or a --config that sets it)")
    hparams = dict(entry.get("hparams") or {})
    hparams.update(hp_flags)
    decay_at = merged["decay_at"]
    if not isinstance(decay_at, list | tuple):
        raise UsageError("decay_at must be a list of fractions of training (numbers > 0 and "
                         f"< 1), got {decay_at!r}")
    if merged["schedule"] == "step" and not decay_at:
        raise UsageError("the step schedule needs at least one decay point, got an empty "
                         "decay_at: pass --decay-at with fractions of training in (0, 1), e.g. "
                         "--decay-at 0.5,0.75 (the default when left out), or --schedule "
                         "constant for no decay")
    return RunSettings(
        name=name, method=entry.get("method", name), hparams=hparams, model=merged["model"],
        dataset=merged["dataset"], epochs=merged["epochs"], batch_size=merged["batch_size"],
        eval_batch_size=merged["eval_batch_size"], learning_rate=merged["learning_rate"],
        momentum=merged["momentum"], schedule=merged["schedule"],
        warmup_steps=merged["warmup_steps"], decay_at=tuple(decay_at),
        decay_factor=merged["decay_factor"], seed=merged["seed"],
        augment=default_augment_as_none(merged["dataset"], merged["augment"]),
        train_split=merged["train_split"], test_split=merged["test_split"], data_options=opts,
    )


def setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    flags = {k: getattr(args, k) for k in ("model", "dataset", "epochs", "batch_size",
                                           "eval_batch_size", "learning_rate", "momentum",
                                           "schedule", "warmup_steps", "decay_factor", "seed",
                                           "augment", "train_split", "test_split")}
    if args.decay_at is not None:
        flags["decay_at"] = parse_floats(args.decay_at, "--decay-at")
    if args.data_opt:
        flags["data_options"] = key_values(args.data_opt, "--data-opt", raw=False)
    return flags


def say_for(args: argparse.Namespace, prefix: str = "") -> Callable[[str], None] | None:
    if getattr(args, "quiet", False):
        return None
    return lambda line: print(prefix + line, flush=True)


def init_distributed(args: argparse.Namespace) -> None:
    from sparsejax.train import initialize_distributed

    initialize_distributed(args.coordinator, args.num_processes, args.process_id)


def compare_runs(args: argparse.Namespace, config: Mapping[str, Any]) -> list[RunSettings]:
    entries: dict[str, Any] = dict(config.get("methods", {}))
    if args.methods:
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
    elif entries:
        names = list(entries)
    else:
        raise UsageError("--methods is required (or a --config with a [methods] table)")
    if not names:
        raise UsageError("--methods names no method")
    if len(set(names)) != len(names):
        raise UsageError(f"--methods names a run twice: {args.methods}")
    hp_by_run: dict[str, dict[str, Any]] = {}
    for key, value in key_values(args.hp, "--hp", raw=True).items():
        run, dot, hp = key.partition(".")
        if not dot or run not in names:
            raise UsageError(f"compare's --hp takes RUN.NAME=VALUE with RUN one of "
                             f"{', '.join(names)}, got {key!r}")
        hp_by_run.setdefault(run, {})[hp] = value
    if getattr(args, "pattern", None) is not None:
        takes = [n for n in names if _has_pattern(dict(entries.get(n, {"method": n})).get("method", n))]
        if not takes:
            raise UsageError(f"--pattern: none of the runs ({', '.join(names)}) has a 'pattern' "
                             "hyperparameter (gmp, static, set, rigl, ste have one)")
        for n in takes:
            given = hp_by_run.setdefault(n, {}).setdefault("pattern", args.pattern)
            if given != args.pattern:
                raise UsageError(f"--pattern {args.pattern} and --hp {n}.pattern={given} disagree")
    flags = setting_flags(args)
    runs = []
    for name in names:
        entry = dict(entries.get(name, {"method": name}))
        runs.append(settings_from(config, entry, name, flags, hp_by_run.get(name, {})))
    for r in runs:
        r.validate()  # every run is checked before the first one starts
    return runs


def _has_pattern(method: str) -> bool:
    """Whether the registered method ``method`` has a ``pattern`` hyperparameter."""
    from sparsejax.train.methods import METHODS

    spec = METHODS.get(method)
    return spec is not None and any(h.name == "pattern" for h in spec.hparams)


def with_pattern(args: argparse.Namespace, hp: dict[str, Any]) -> dict[str, Any]:
    """``train``'s hyperparameters with ``--pattern`` folded in (as ``--hp pattern=...``)."""
    if getattr(args, "pattern", None) is None:
        return hp
    if "pattern" in hp and hp["pattern"] != args.pattern:
        raise UsageError(f"--pattern {args.pattern} and --hp pattern={hp['pattern']} disagree")
    return {**hp, "pattern": args.pattern}

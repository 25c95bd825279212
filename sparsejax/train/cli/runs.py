"""Building, training and evaluating the runs of the ``sparsejax`` command line."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sparsejax.train.cli.settings import DEFAULTS, RunSettings, UsageError, default_augment_as_none
from sparsejax.tree import weights_only


@dataclasses.dataclass
class TrainedRun:
    """A finished run with what the reports need."""

    settings: RunSettings
    result: Any  # FitResult
    image_shape: tuple[int, ...]
    test_batches: Any
    train_batches: Any
    finished_before: bool


def load_data(settings: RunSettings, data_dir: str | None, source: str, download: bool):
    from sparsejax import data

    opts = dict(settings.data_options)
    if settings.augment is not None:
        opts["augment"] = settings.augment
    try:
        train_ds = data.load(settings.dataset, settings.train_split, data_dir=data_dir,
                             source=source, download=download, **opts)
        test_ds = data.load(settings.dataset, settings.test_split, data_dir=data_dir,
                            source=source, download=download, **opts)
    except TypeError as e:  # an option the dataset does not take
        raise UsageError(f"dataset {settings.dataset!r}: {e}") from None
    train_b = data.batches(train_ds, settings.batch_size, train=True, seed=settings.seed)
    test_b = data.batches(test_ds, settings.eval_batch_size, train=False)
    return train_ds, train_b, test_b


def run_training(
    settings: RunSettings,
    workdir: str | os.PathLike[str],
    *,
    data_dir: str | None = None,
    source: str = "auto",
    download: bool = False,
    checkpoint_every_steps: int | None = None,
    keep_checkpoints: int = 3,
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainedRun:
    """Builds model, data and optimizer of ``settings`` and trains (or resumes, or reloads) in ``workdir``."""
    from flax import nnx

    from sparsejax import models
    from sparsejax.train import fit, methods

    hp = settings.validate()
    settings = _stored_augment_spelling(settings, workdir)
    finished_before = (Path(workdir) / "result.json").exists()
    train_ds, train_b, test_b = load_data(settings, data_dir, source, download)
    model = models.create(settings.model, num_classes=train_ds.num_classes,
                          input_shape=train_ds.image_shape, rngs=settings.seed)

    def sample_params(seed: int) -> Any:
        """A fresh initialisation of the run's model (for sfw's polytope radii)."""
        fresh = models.create(settings.model, num_classes=train_ds.num_classes,
                              input_shape=train_ds.image_shape, rngs=seed)
        return nnx.to_pure_dict(nnx.state(fresh, nnx.Param))

    methods.prepare_model(settings.method, model, hp, seed=settings.seed,
                          sample_params=sample_params)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    tx, extra = methods.make_optimizer(
        settings.method, hp, learning_rate=settings.learning_rate, momentum=settings.momentum,
        steps_per_epoch=len(train_b), epochs=settings.epochs, params=params,
        schedule=settings.schedule, warmup_steps=settings.warmup_steps,
        decay_at=settings.decay_at, decay_factor=settings.decay_factor,
        sample_params=sample_params,
    )
    # RigL, SET and STE: the host picks the mask-update steps (two compiled steps, the ordinary
    # one without the selection); the same computation as leaving it to the device.
    due = methods.mask_update_schedule(settings.method, hp, steps_per_epoch=len(train_b),
                                       epochs=settings.epochs)
    result = fit(model, tx, train_b, epochs=settings.epochs, eval_data=test_b, workdir=workdir,
                 config=settings.config(), seed=settings.seed, keep_checkpoints=keep_checkpoints,
                 checkpoint_every_steps=checkpoint_every_steps, extra_metrics=extra,
                 sparsity_mask=weights_only, progress=progress, log=log, mask_update_due=due)
    return TrainedRun(settings, result, tuple(train_ds.image_shape), test_b, train_b,
                      finished_before)


def _stored_augment_spelling(settings: RunSettings, workdir: str | os.PathLike[str]) -> RunSettings:
    """``settings`` with ``augment`` spelled as the workdir's ``config.json`` spells it.

    ``augment`` equal to the dataset's default is stored as ``None``
    (:func:`~sparsejax.train.cli.settings.default_augment_as_none`); a workdir
    written before, by ``--no-augment`` on a dataset that does not augment by
    default (or ``--augment`` on one that does), holds the value itself. That run
    is the same experiment, so it is reused as it is, not refused.
    """
    if settings.augment is not None:
        return settings
    try:
        stored = json.loads((Path(workdir) / "config.json").read_text())
    except (OSError, ValueError):
        return settings
    if not isinstance(stored, dict) or not isinstance(stored.get("augment"), bool) \
            or default_augment_as_none(settings.dataset, stored["augment"]) is not None:
        return settings
    spelled = dataclasses.replace(settings, augment=stored["augment"])
    return spelled if json.loads(json.dumps(spelled.config())) == stored else settings


def load_finished_run(workdir: str | os.PathLike[str], *, data_dir: str | None = None,
                      source: str = "auto", eval_batch_size: int | None = None) -> TrainedRun:
    """Reloads a finished run (model, weights, data) from its workdir, training nothing.

    Args:
      workdir: the run's directory (of ``sparsejax train`` or a ``compare`` entry).
      data_dir: where its dataset is, if moved.
      source: ``'auto'``, ``'tfds'`` or ``'files'``.
      eval_batch_size: the test batch size (default the command line's).

    Returns:
      The :class:`TrainedRun` (``finished_before`` is ``True``).

    Raises:
      UsageError: if the folder holds no run, its run has not finished, or
        ``eval_batch_size`` is not an integer >= 1.
    """
    ebs = eval_batch_size
    if ebs is not None and (isinstance(ebs, bool) or not isinstance(ebs, int) or ebs < 1):
        raise UsageError(f"--eval-batch-size must be an integer >= 1, got {ebs!r}")
    workdir = Path(workdir)
    cfg_file = workdir / "config.json"
    if not cfg_file.is_file():
        raise UsageError(f"{workdir} holds no config.json: not a run of `sparsejax train`")
    if not (workdir / "result.json").is_file():
        raise UsageError(f"the run in {workdir} has not finished; finish it first (run its "
                         "`sparsejax train` command again to resume)")
    try:
        config = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read {cfg_file}: {e}") from None
    settings = RunSettings.from_config(
        config, eval_batch_size=DEFAULTS["eval_batch_size"] if ebs is None else ebs)
    return run_training(settings, workdir, data_dir=data_dir, source=source, log=None)


def model_has_batch_stats(model: str) -> bool:
    """Whether the zoo model ``model`` has BatchNorm statistics (built abstractly: no weights)."""
    from flax import nnx

    from sparsejax import models
    from sparsejax.train.connectivity import has_batch_stats

    return has_batch_stats(nnx.eval_shape(lambda: models.create(model, rngs=0)))


def accuracy_of(run: TrainedRun, bn_recalibrate: int = 0) -> Callable[[Any], float]:
    """``params -> test accuracy`` of the run's model (compiled once).

    With ``bn_recalibrate = N > 0`` the BatchNorm statistics are first
    recomputed at the given params from ``N`` training batches
    (:class:`sparsejax.train.connectivity.BatchStats`): pruning shifts every
    layer's activations, so the trained statistics no longer describe them.
    Otherwise the run's trained statistics are used.
    """
    import jax

    from sparsejax.train import make_evaluator
    from sparsejax.train.connectivity import BatchStats, has_batch_stats

    evaluator = make_evaluator(run.result.model, run.test_batches)
    if not bn_recalibrate:
        return evaluator.accuracy
    if not has_batch_stats(run.result.model):
        raise UsageError(f"--bn-recalibrate: model {run.settings.model!r} has no BatchNorm "
                         "statistics to recompute")
    stats_at = BatchStats(run.result.model, run.train_batches, max_batches=bn_recalibrate)
    return lambda params: evaluator(params, jax.device_get(stats_at(params)))["accuracy"]


def flops(run: TrainedRun) -> tuple[float, float]:
    """FLOPs (2 x multiply-accumulates) of one example through the sparse and the dense model."""
    from sparsejax.models import macs

    layers = macs(run.result.model, run.image_shape)
    return 2.0 * sum(m.sparse for m in layers), 2.0 * sum(m.dense for m in layers)


def model_with_params(model: Any, params: Any) -> Any:
    """A copy of an NNX ``model`` whose ``nnx.Param`` s are ``params`` (a pure dict)."""
    from flax import nnx

    copy = nnx.merge(*nnx.split(model))
    state = nnx.state(copy, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(copy, state)
    return copy


def compare_methods(
    runs: Sequence[RunSettings], out: Path, ratios: Sequence[float], scope: str, *,
    bn_recalibrate: int = 0, data_dir: str | None = None, source: str = "auto",
    download: bool = False,
    checkpoint_every_steps: int | None = None, keep_checkpoints: int = 3,
    progress: bool | None = None, say: Callable[[str], None] = lambda line: None,
    log_for: Callable[[str], Callable[[str], None] | None] = lambda name: None,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[TrainedRun]]:
    """Trains each run in ``out/<name>`` (resuming or reusing finished ones), then evaluates them.

    Each trained model is pruned one-shot by magnitude at every ratio of
    ``ratios`` and evaluated without retraining (one compiled evaluator per
    run); with ``bn_recalibrate = N > 0``, the pruned nets of the runs whose
    model has BatchNorm are evaluated with their statistics recomputed from
    ``N`` training batches (:func:`accuracy_of`). FLOPs are counted with the
    zero weights skipped.

    Returns:
      ``(rows, curves, trained)``: one row of figures per run (what
      ``results.json`` holds), the any-sparsity curve of each run by name, and
      the trained runs.
    """
    from tqdm import tqdm

    from sparsejax import pruning
    from sparsejax.train.connectivity import has_batch_stats
    from sparsejax.train.loop import progress_enabled

    trained: list[TrainedRun] = []
    for i, settings in enumerate(runs):
        workdir = out / settings.name
        say(f"== [{i + 1}/{len(runs)}] {settings.name} ({settings.method}) -> {workdir}")
        run = run_training(settings, workdir, data_dir=data_dir, source=source,
                           download=download, checkpoint_every_steps=checkpoint_every_steps,
                           keep_checkpoints=keep_checkpoints, progress=progress,
                           log=log_for(settings.name))
        if run.finished_before:
            say(f"  [{settings.name}] finished before: skipped")
        trained.append(run)

    say(f"== evaluating: FLOPs, one-shot pruning curves ({len(trained)} runs x {len(ratios)} ratios)")
    rows, curves = [], {}
    bar = tqdm(total=len(trained) * len(ratios), desc="one-shot pruning", unit="eval", leave=False,
               disable=not progress_enabled(progress), dynamic_ncols=True, file=sys.stderr)
    for run in trained:
        final = run.result.final
        sparse, dense = flops(run)
        recalibrate = bn_recalibrate if has_batch_stats(run.result.model) else 0
        accuracy = accuracy_of(run, recalibrate)

        def counted(params: Any, accuracy: Callable[[Any], float] = accuracy) -> float:
            value = accuracy(params)
            bar.update()
            return value

        bar.set_postfix_str(run.settings.name, refresh=False)
        curve = pruning.one_shot_curve(run.result.params, counted, ratios, scope=scope,
                                       mask=weights_only)
        curves[run.settings.name] = curve
        rows.append({
            "name": run.settings.name,
            "method": run.settings.method,
            "test_accuracy": final.get("test_accuracy"),
            "sparsity": final.get("sparsity"),
            "sparsity_all": final.get("sparsity_all"),
            "nonzero_params": final.get("nonzero_params"),
            "num_params": final.get("num_params"),
            "flops": sparse,
            "flops_dense": dense,
            "wall_time": run.result.wall_time,
            "epochs": run.settings.epochs,
            "config": run.settings.config(),
            "workdir": str(run.result.workdir),
            "one_shot": [c._asdict() for c in curve],
            "one_shot_bn_recalibrate": recalibrate,
        })
    bar.close()
    return rows, curves, trained

"""The training loop: :func:`fit`.

:func:`fit` trains a Flax NNX model with any Optax transform on batches from
:mod:`sparsejax.data` (any :class:`~sparsejax.train.evaluation.BatchSource`: ``len``,
``batch_size`` and ``epoch(epoch, start=0)`` yielding dicts of ``image``,
``label`` and ``mask``), data-parallel over every device
(:mod:`sparsejax.train.step`, :mod:`sparsejax.train.distributed`). With a
``workdir`` it is resumable (:mod:`sparsejax.train.checkpoint`): the same call
after an interruption continues from the newest checkpoint and ends with the
same parameters as an uninterrupted run; after a finished run it returns the
stored result without training.

Host synchronisation. The loop never waits for the step it has just
dispatched: losses and accuracies are summed on device, and before dispatching
a step it only waits for the step two before it (so the device always has
the next step queued, while the progress bar stays true and batches cannot
pile up in memory). It reads two scalars (the first step with a NaN/inf loss, and the running loss for the
progress bar) every ``check_every_steps`` steps (default 100), before every
checkpoint and at the end of each epoch. So a diverging run stops at most
``check_every_steps`` steps after its first non-finite loss, and a checkpoint
is only ever written from a state whose losses and parameters are all finite.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from tqdm import tqdm

from sparsejax._validation import check_number
from sparsejax.train.checkpoint import CheckpointRestoreError, Workdir, WorkdirMismatchError
from sparsejax.train.distributed import DATA_AXIS, data_mesh, is_primary
from sparsejax.train.evaluation import BatchSource, Evaluator
from sparsejax.train.metrics import (
    format_epoch,
    hyperparameters,
    scalar,
    sparsity_metrics,
)
from sparsejax.train.step import (
    ModelParts,
    TrainState,
    init_train_state,
    make_train_step,
    shard_batch,
    split_model,
    zero_totals,
)
from sparsejax.tree import Mask, PyTree, weights_only

__all__ = ["FitResult", "TrainingDivergedError", "fit"]

# Steps dispatched but not finished. Waiting for step t - 2 before dispatching
# step t + 1 keeps the device busy (the next step is always queued) while the
# progress bar tracks the computation and queued batches cannot pile up.
_MAX_IN_FLIGHT = 2

_BUILTIN_KEYS = (
    "epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "sparsity",
    "sparsity_all", "sparsity_per_layer", "nonzero_params", "num_params", "epoch_time",
    "wall_time",
)


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is intact."""


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      model: the trained model (a new module sharing nothing mutable with the
        one given to ``fit``), in eval mode.
      params: the trained parameters, a plain nested dict.
      opt_state: the final optimizer state; ``None`` when ``fit`` returned a
        finished run whose saved optimizer state does not fit the optimizer
        (see :func:`fit`).
      history: one dict per epoch (the lines of ``metrics.jsonl``).
      wall_time: seconds spent training (summed over resumed runs).
      workdir: the absolute workdir, or ``None``.
      model_state: the final non-parameter variables (BatchNorm statistics).
      steps: the number of train steps taken.
      resumed_from: the global step the run resumed from (``None``: it
        started from scratch; equal to ``steps`` for a finished workdir).
    """

    model: nnx.Module
    params: PyTree
    opt_state: PyTree
    history: list[dict[str, Any]]
    wall_time: float
    workdir: Path | None
    model_state: PyTree = None
    steps: int = 0
    resumed_from: int | None = None

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's metrics."""
        return self.history[-1] if self.history else {}


def _host(x: Any) -> Any:
    return jax.tree.map(lambda a: np.asarray(a).item(), jax.device_get(x))


@jax.jit
def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def progress_enabled(progress: bool | None) -> bool:
    """Whether to show a progress bar: on process 0 only; ``None`` means "when stderr is a terminal"."""
    return is_primary() and (sys.stderr.isatty() if progress is None else bool(progress))


def _result_model(parts: ModelParts, state: TrainState) -> nnx.Module:
    rngs = jax.tree.map(lambda x: x, parts.rngs)
    return parts.merge(state.params, state.model_state, rngs, train=False)


def _diverged_message(
    bad_step: int, bad_loss: float, steps_per_epoch: int, opt_state: PyTree, workdir: Workdir | None,
    last_good: int | None,
) -> str:
    epoch, batch = divmod(bad_step, steps_per_epoch)
    hp = hyperparameters(opt_state)
    if "learning_rate" in hp:
        remedy = f"Lower the learning rate (now {hp['learning_rate']:.3g})"
    else:  # e.g. rda/irda and the prox-SGD baselines, whose step 1/(gamma sqrt(t)) gamma sets
        remedy = ("Take smaller steps (this optimizer injects no learning rate; for rda/irda "
                  "and prox_sgd/sqrt_t_prox_sgd with step='inverse_sqrt', raise gamma)")
    msg = (f"training diverged: the loss was {bad_loss} at step {bad_step + 1} (epoch {epoch + 1}, "
           f"batch {batch + 1} of {steps_per_epoch}); training stopped. "
           f"{remedy}, or add gradient clipping (optax.clip_by_global_norm).")
    if workdir is not None:
        if last_good is None:
            msg += f" No checkpoint had been written in {workdir.checkpoint_dir}."
        else:
            msg += (f" The last good checkpoint (step {last_good}) in {workdir.checkpoint_dir} "
                    "is intact.")
    return msg


def _finished_weights(
    wd: Workdir, state: TrainState, epochs: int
) -> tuple[int, TrainState, list[dict[str, Any]]] | None:
    """A finished run's final weights when only its optimizer state does not fit, else ``None``.

    ``(step, state without opt_state, history)`` if the newest checkpoint is the
    run's last one and its params and model state restore; ``None`` otherwise
    (the caller raises the original mismatch).
    """
    step = wd.latest_step()
    if step is None:
        return None
    try:
        weights, meta = wd.restore_weights(step, state)
    except (WorkdirMismatchError, CheckpointRestoreError):
        return None
    if (int(meta["epoch"]), int(meta["batch"])) != (epochs, 0):
        return None
    return step, weights, list(meta["history"])


def _pipeline_identity(data: BatchSource) -> dict[str, Any]:
    """What of a training pipeline changes the batches: its dataset, split, size, seed, augmentation.

    Read from the attributes of :class:`sparsejax.data.Batches` where the
    source has them (another :class:`BatchSource` may have none of them).
    """
    out: dict[str, Any] = {}
    dataset = getattr(data, "dataset", None)
    for key, value in (("dataset", getattr(dataset, "name", None)),
                       ("split", getattr(dataset, "split", None)),
                       ("num_examples", getattr(data, "num_examples", None)),
                       ("seed", getattr(data, "seed", None)),
                       ("augment", getattr(data, "augment", None))):
        if isinstance(value, (str, bool, int, np.integer, np.bool_)):
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def fit(
    model: nnx.Module,
    optimizer: optax.GradientTransformation,
    train_data: BatchSource,
    *,
    epochs: int,
    eval_data: BatchSource | None = None,
    workdir: str | os.PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    keep_checkpoints: int = 3,
    checkpoint_every_steps: int | None = None,
    extra_metrics: Callable[[PyTree, PyTree], Mapping[str, float]] | None = None,
    sparsity_mask: Mask = weights_only,
    progress: bool | None = None,
    mesh: Mesh | None = None,
    log: Callable[[str], None] | None = print,
    check_every_steps: int = 100,
    mask_update_due: Callable[[int], bool] | None = None,
) -> FitResult:
    r"""Trains ``model`` with ``optimizer``, data-parallel, resumable, with per-epoch metrics.

    Each step minimises the masked mean softmax cross-entropy

    .. math::

      L(w) = \frac{\sum_i m_i \ell_i(w)}{\sum_i m_i}

    of a global batch sharded over all devices and calls
    ``optimizer.update(grads, opt_state, params, value=L)`` (after
    :func:`optax.with_extra_args_support`), with ``params`` a plain nested dict
    of the model's ``nnx.Param`` s. BatchNorm statistics are updated in train
    mode and used by the evaluation; dropout keys come from ``(seed, step)``.
    Training is deterministic for a given seed, data and device count.

    With ``workdir``: ``config`` is stored as ``config.json``, and the
    trainer's settings (epochs, seed, batch size, and the training pipeline's
    dataset, split, size, shuffling seed and augmentation) as
    ``trainer.json``; a workdir holding others raises
    :class:`~sparsejax.train.WorkdirMismatchError` and is left untouched (a
    ``trainer.json`` written before the pipeline was recorded is compared on
    the rest); a checkpoint is written after every epoch (and every
    ``checkpoint_every_steps`` steps), keeping the newest ``keep_checkpoints``;
    running the same call again resumes from the newest checkpoint; a finished
    workdir returns its result without training (if its optimizer state does
    not fit the optimizer, e.g. a state layout changed by a newer version of
    the library, the run's params and model state are returned with
    ``opt_state=None``, reported like damage; an unfinished run with such a
    state raises). A checkpoint that is damaged
    (unreadable, truncated or missing files, arrays that differ from their
    saved checksums) is reported in one line (to ``log``, or as a
    ``RuntimeWarning`` when ``log`` is ``None``), moved to
    ``workdir/damaged_checkpoints/`` (never deleted), and the next older one is
    restored instead (a finished run whose final checkpoint is damaged trains
    again from there, ending with the same result). Each epoch appends a line to
    ``metrics.jsonl`` and prints one on the console; a tqdm bar shows the steps.

    Args:
      model: a Flax NNX classifier returning logits (not modified; the trained
        model is ``result.model``).
      optimizer: any Optax transform (sparsejax transforms included).
      train_data: training batches (:func:`sparsejax.data.batches` with ``train=True``).
      epochs: number of passes over the training data.
      eval_data: test batches evaluated after every epoch (``test_loss``,
        ``test_accuracy``; ``None`` when not given).
      workdir: directory of checkpoints and metrics; ``None`` keeps nothing.
      config: the JSON-able identity of the experiment (stored in ``config.json``).
      seed: seed of the dropout keys.
      keep_checkpoints: how many checkpoints to keep (>= 1); with 1 there is no
        older checkpoint to fall back to when the newest one is damaged.
      checkpoint_every_steps: also save every this many steps (mid-epoch
        checkpoints resume at the next batch of the epoch); ``None``: once per epoch.
      extra_metrics: ``extra_metrics(opt_state, params) -> {name: scalar}``
        logged every epoch (e.g. a method's threshold).
      sparsity_mask: the leaves the ``sparsity`` figure and the per-layer
        table cover, in the library's ``mask=`` forms (default
        :func:`sparsejax.tree.weights_only`, the kernels; ``None``: every
        parameter; a path regex; a pytree of booleans; a callable).
      progress: show a tqdm progress bar; ``None``: only when stderr is a terminal.
      mesh: a 1-D mesh with axis ``'data'`` (default: every device, :func:`data_mesh`).
      log: called with each console line (``None``: silent); process 0 only.
      check_every_steps: how often the loop checks the loss for NaN/inf.
      mask_update_due: ``step -> bool`` for the 0-based step, ``True`` where
        the optimizer's mask-based transform updates its mask
        (:func:`sparsejax.pruning.dst_update_due` for RigL and SET,
        :func:`sparsejax.pruning.ste_update_due` for STE, with the
        transform's own arguments). The step is then compiled twice, passing
        ``mask_update=False`` or ``True`` to ``optimizer.update``, and the
        host picks the program: the ordinary steps hold no selection and no
        control flow. The computation is that of ``None`` (the transform
        decides on the device) provided that the rule is the transform's; the
        two are compiled separately, so a few weights may differ in the last
        bit.

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError: for out-of-range arguments or a batch size the devices do not divide.
      WorkdirMismatchError: if ``workdir`` holds another experiment.
      CheckpointRestoreError: if ``workdir`` holds checkpoints but every one of them
        is damaged (all moved to ``damaged_checkpoints/``; nothing was deleted).
      TrainingDivergedError: if the loss becomes NaN or inf.

    Example:
      >>> import optax, sparsejax as sj
      >>> from sparsejax import data
      >>> from sparsejax.models import create
      >>> from sparsejax.train import fit
      >>> train = data.batches(data.load('synthetic', 'train', num_examples=256), 64, train=True)
      >>> tx = optax.inject_hyperparams(sj.grda)(learning_rate=0.1, c=0.01, mu=0.51)
      >>> result = fit(create('mlp', hidden=(16,), rngs=0), tx, train, epochs=2, log=None)
      >>> [r['step'] for r in result.history], result.final['learning_rate']
      ([4, 8], 0.1)
      >>> 0.0 < result.final['sparsity'] < 1.0
      True
    """
    check_number("epochs", epochs, ge=1, integer=True)
    check_number("keep_checkpoints", keep_checkpoints, ge=1, integer=True)
    check_number("check_every_steps", check_every_steps, ge=1, integer=True)
    check_number("seed", seed, ge=0, integer=True)
    if checkpoint_every_steps is not None:
        check_number("checkpoint_every_steps", checkpoint_every_steps, ge=1, integer=True)
    epochs, seed = int(epochs), int(seed)
    steps_per_epoch = len(train_data)
    if steps_per_epoch < 1:
        raise ValueError("train_data has no batch: the dataset is smaller than one batch")
    mesh = mesh or data_mesh()
    if mesh.axis_names != (DATA_AXIS,):
        raise ValueError(f"mesh must be 1-D with the axis {DATA_AXIS!r} (see data_mesh), "
                         f"got axes {mesh.axis_names}")
    for name, d in (("train_data", train_data), ("eval_data", eval_data)):
        if d is not None and d.batch_size % mesh.size:
            raise ValueError(
                f"{name}.batch_size ({d.batch_size}) must be a multiple of the number of "
                f"devices ({mesh.size}); choose another batch size or pass a smaller mesh"
            )
    if getattr(train_data, "train", True) is False:
        warnings.warn(
            "fit: train_data is an evaluation pipeline (built with train=False): its batches "
            "come in the same order every epoch, unshuffled and without augmentation, and "
            "its last batch is padded; build it with sparsejax.data.batches(..., train=True)",
            UserWarning, stacklevel=2)
    mask = sparsity_mask
    say = log if (log is not None and is_primary()) else (lambda line: None)
    show_bar = progress_enabled(progress)

    def report(line: str, stacklevel: int = 4) -> None:
        """A damaged checkpoint is never silent: ``log``, or a warning when ``log`` is ``None``.

        ``stacklevel`` 4 points the warning at fit's caller when ``report`` is
        called from one of the workdir's methods, 3 when called from ``fit``.
        """
        if log is not None:
            say(line)
        elif is_primary():
            warnings.warn(line, RuntimeWarning, stacklevel=stacklevel)

    parts = split_model(model)
    state = init_train_state(parts, optimizer, mesh)
    totals = zero_totals(mesh)
    history: list[dict[str, Any]] = []
    start_epoch = start_batch = 0
    wall_time = epoch_elapsed = 0.0
    resumed_from = None

    wd = None
    if workdir is not None:
        trainer = {"epochs": epochs, "seed": seed, "batch_size": int(train_data.batch_size),
                   "steps_per_epoch": steps_per_epoch, "train_data": _pipeline_identity(train_data)}
        wd = Workdir(workdir, config, trainer, keep=keep_checkpoints)
        status = wd.inspect()
        wd.prepare(status)
        try:
            restored = wd.restore_latest(state, totals, report) if status != "new" else None
        except WorkdirMismatchError:
            finished = _finished_weights(wd, state, epochs) if status == "finished" else None
            wd.close()
            if finished is None:
                raise
            latest, state, history = finished
            report(f"{wd.path} holds a finished run whose optimizer state does not fit this "
                   "optimizer (saved by another version of the method?); returning its params "
                   "and model state without it (result.opt_state is None)", stacklevel=3)
            return FitResult(_result_model(parts, state), state.params, None, history,
                             float(wd.read_result()["wall_time"]), wd.path, state.model_state,
                             latest, latest)
        except BaseException:
            wd.close()
            raise
        if status == "finished" and restored is None:
            wd.close()
            raise ValueError(f"{wd.path} holds result.json but no checkpoint to rebuild the model "
                             "from; delete the workdir to train again")
        if restored is not None:
            latest, state, totals, meta = restored
            history = list(meta["history"])
            start_epoch, start_batch = int(meta["epoch"]), int(meta["batch"])
            epoch_elapsed = float(meta["epoch_elapsed"])
            # a mid-epoch checkpoint's wall time includes the epoch's elapsed part, which the
            # resumed epoch counts again in its own time (its clock starts epoch_elapsed back)
            wall_time = float(meta["wall_time"]) - epoch_elapsed
            resumed_from = latest
            if status == "finished" and (start_epoch, start_batch) == (epochs, 0):
                wd.close()
                say(f"{wd.path} holds a finished run; returning its result")
                return FitResult(_result_model(parts, state), state.params, state.opt_state,
                                 history, float(wd.read_result()["wall_time"]), wd.path,
                                 state.model_state, latest, latest)
            wd.rewrite_metrics(history)
            again = " to rebuild the final state" if status == "finished" else ""
            say(f"resuming {wd.path} from step {latest} (epoch {start_epoch + 1}, "
                f"batch {start_batch + 1} of {steps_per_epoch}){again}")
        elif wd is not None:
            wd.rewrite_metrics([])

    if mask_update_due is None:
        programs = {None: make_train_step(parts, optimizer, mesh, seed=seed)}
    elif not callable(mask_update_due):
        raise TypeError(f"mask_update_due must be a callable step -> bool or None, "
                        f"got {type(mask_update_due).__name__}")
    else:  # each program compiles on its first use
        programs = {flag: make_train_step(parts, optimizer, mesh, seed=seed,
                                          extra_args={"mask_update": flag})
                    for flag in (False, True)}
    evaluator = Evaluator(parts, eval_data, mesh, cache=False) if eval_data is not None else None
    bar = None
    completed = False
    in_flight: collections.deque = collections.deque()

    def check(epoch: int, done: int) -> None:
        """Raises if a loss was NaN/inf; updates the bar. Waits for the dispatched steps."""
        bad_step, bad_loss, loss_sum, count = _host(
            (totals.bad_step, totals.bad_loss, totals.loss_sum, totals.count))
        if bad_step >= 0:
            last_good = None
            if wd is not None:
                wd.wait()
                last_good = wd.latest_step()
            raise TrainingDivergedError(_diverged_message(
                bad_step, bad_loss, steps_per_epoch, state.opt_state, wd, last_good))
        if bar is not None and count:
            bar.set_postfix_str(f"loss {loss_sum / count:.4f}", refresh=False)

    def save(step: int, epoch: int, batch: int, elapsed: float) -> None:
        if not bool(_all_finite(state.params)):
            raise TrainingDivergedError(
                f"training diverged: the parameters became NaN or inf by step {step} "
                f"(epoch {epoch + 1}); nothing was saved. Lower the learning rate.")
        meta = {"epoch": epoch, "batch": batch, "history": list(history),
                "wall_time": wall_time + (elapsed if batch else 0.0),
                "epoch_elapsed": elapsed if batch else 0.0}
        wd.save(step, state, totals, meta)

    try:
        # One bar for the whole run, so that its ETA is the run's; epoch lines print above it.
        bar = tqdm(total=epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch + start_batch,
                   disable=not show_bar, leave=False, dynamic_ncols=True, file=sys.stderr, unit="step")
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter() - epoch_elapsed
            batches = iter(train_data.epoch(epoch, start=start_batch))
            bar.set_description(f"epoch {epoch + 1}/{epochs}", refresh=False)
            for b in range(start_batch, steps_per_epoch):
                try:
                    batch = next(batches)
                except StopIteration:
                    raise ValueError(
                        f"train_data.epoch({epoch}, start={start_batch}) yielded only {b - start_batch} "
                        f"batches; len(train_data) says {steps_per_epoch - start_batch}") from None
                program = (None if mask_update_due is None
                           else bool(mask_update_due(epoch * steps_per_epoch + b)))
                state, totals, loss = programs[program](state, totals, shard_batch(batch, mesh))
                in_flight.append(loss)
                if len(in_flight) > _MAX_IN_FLIGHT:
                    in_flight.popleft().block_until_ready()
                done, gstep = b + 1, epoch * steps_per_epoch + b + 1
                bar.update()
                mid_save = (wd is not None and checkpoint_every_steps is not None
                            and gstep % checkpoint_every_steps == 0 and done < steps_per_epoch)
                if done % check_every_steps == 0 or mid_save:
                    check(epoch, done)
                if mid_save:
                    save(gstep, epoch, done, time.perf_counter() - t0)
            getattr(batches, "close", lambda: None)()  # stops a pipeline's prefetching
            check(epoch, steps_per_epoch)
            if not bool(_all_finite(state.params)):
                raise TrainingDivergedError(
                    f"training diverged: the parameters became NaN or inf in epoch {epoch + 1}. "
                    "Lower the learning rate.")

            loss_sum, correct, count = _host((totals.loss_sum, totals.correct, totals.count))
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": (epoch + 1) * steps_per_epoch,
                "train_loss": loss_sum / max(count, 1.0),
                "train_accuracy": correct / max(count, 1.0),
                "test_loss": None,
                "test_accuracy": None,
            }
            if evaluator is not None:
                ev = evaluator.run(state.params, state.model_state)
                record["test_loss"], record["test_accuracy"] = ev["loss"], ev["accuracy"]
            record.update(sparsity_metrics(state.params, mask))
            for key, value in hyperparameters(state.opt_state).items():
                record[key if key not in record else f"hp_{key}"] = value
            if extra_metrics is not None:
                for key, value in dict(extra_metrics(state.opt_state, state.params)).items():
                    if key in _BUILTIN_KEYS:
                        raise ValueError(f"extra_metrics returned {key!r}, a name fit uses itself")
                    record[key] = scalar(value)
            epoch_time = time.perf_counter() - t0
            wall_time += epoch_time
            record["epoch_time"], record["wall_time"] = epoch_time, wall_time
            history.append(record)
            with tqdm.external_write_mode():  # the line goes above the bar
                say(format_epoch(record, epochs))

            totals = zero_totals(mesh)
            start_batch, epoch_elapsed = 0, 0.0
            if wd is not None:
                save((epoch + 1) * steps_per_epoch, epoch + 1, 0, 0.0)
                wd.append_metrics(record)
        completed = True
    finally:
        if bar is not None:
            bar.close()
        if wd is not None and not completed:
            try:  # let pending saves of good states finish; the original error matters more
                wd.close()
            except Exception:  # noqa: BLE001
                pass

    steps = epochs * steps_per_epoch
    if wd is not None:
        wd.wait()
        wd.write_result({"epochs": epochs, "steps": steps, "wall_time": wall_time,
                         "final": history[-1] if history else {}})
        wd.close()
        say(f"finished: {epochs} epochs ({steps} steps) in {wall_time:.1f} s; results in {wd.path}")
    return FitResult(_result_model(parts, state), state.params, state.opt_state, history,
                     wall_time, wd.path if wd is not None else None, state.model_state, steps,
                     resumed_from)

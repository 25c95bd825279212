"""The trainer used by experiments and the ``sparsejax`` command line.

:func:`fit` trains a Flax NNX model with any Optax transform, data-parallel
over all devices (and hosts: :func:`initialize_distributed`), with Orbax
checkpoints, automatic resume, per-epoch metrics in ``metrics.jsonl`` and a
progress bar; :func:`make_evaluator` (compiled once, for many evaluations) and
:func:`evaluate` give exact test loss and accuracy; :func:`fit_finite_sum` runs
the finite-sum Frank-Wolfe methods (SFW, One-Shot FW, SVRF, SAGA-FW) on a model
and a dataset held in memory.

Example:
  >>> import optax
  >>> from sparsejax import data
  >>> from sparsejax.models import create
  >>> from sparsejax.train import evaluate, fit
  >>> train = data.batches(data.load('synthetic', 'train', num_examples=256), 64, train=True)
  >>> test = data.batches(data.load('synthetic', 'test', num_examples=100), 64, train=False)
  >>> result = fit(create('mlp', hidden=(16,), rngs=0), optax.sgd(0.1, momentum=0.9), train,
  ...              epochs=2, eval_data=test, log=None)
  >>> evaluate(result.model, test)['accuracy'] == result.final['test_accuracy']
  True
"""

from sparsejax.train.checkpoint import CheckpointRestoreError, Workdir, WorkdirMismatchError
from sparsejax.train.distributed import data_mesh, initialize_distributed
from sparsejax.train.evaluation import BatchSource, Evaluator, evaluate, make_evaluator
from sparsejax.train.finite_sum import FiniteSumResult, classifier_loss, dataset_arrays, fit_finite_sum
from sparsejax.train.loop import FitResult, TrainingDivergedError, fit
from sparsejax.train.metrics import hyperparameters, sparsity_metrics
from sparsejax.train.step import TrainState, make_eval_step, make_train_step, shard_batch, split_model

__all__ = [
    "BatchSource",
    "CheckpointRestoreError",
    "Evaluator",
    "FiniteSumResult",
    "FitResult",
    "TrainState",
    "TrainingDivergedError",
    "Workdir",
    "WorkdirMismatchError",
    "classifier_loss",
    "data_mesh",
    "dataset_arrays",
    "evaluate",
    "fit",
    "fit_finite_sum",
    "hyperparameters",
    "initialize_distributed",
    "make_eval_step",
    "make_evaluator",
    "make_train_step",
    "shard_batch",
    "sparsity_metrics",
    "split_model",
]

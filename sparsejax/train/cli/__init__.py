"""The ``sparsejax`` command line: train one method, compare several, prune a trained run.

::

  sparsejax train   --method grda --model lenet5 --dataset fashion_mnist --epochs 4 --hp c=0.02
  sparsejax compare --config experiments/configs/fashion_mnist_lenet5.toml --out runs/compare
  sparsejax compare --methods sgd,grda,lats --model lenet5 --dataset fashion_mnist --out DIR
  sparsejax prune   --workdir runs/fashion_mnist-lenet5-sgd-s0 --ratios 0.5,0.8,0.9 --retrain-epochs 1
  sparsejax methods [METHOD]          # the methods, their hyperparameters, defaults and sources
  sparsejax hessian --workdir RUN     # the Hessian spectrum of a finished run (directional pruning)
  sparsejax connect --a RUN --b RUN   # the Bezier curve of low loss between two finished runs
  sparsejax export  --workdir RUN     # a smaller model and compressed weights (sparsejax.export)
  sparsejax bench   --workdir RUN     # dense vs sparse vs shrunk inference time of a finished run

``train`` builds the model (:func:`sparsejax.models.create`), the data
(:func:`sparsejax.data.load` and :func:`sparsejax.data.batches`) and the
optimizer (:func:`sparsejax.train.methods.make_optimizer`, which also applies
a method's own initialisation), and calls :func:`sparsejax.train.fit` in a
workdir (default ``runs/<dataset>-<model>-<method>-s<seed>``). The workdir
holds the experiment's identity (``config.json``): running the same command
again resumes an interrupted run or, once finished, just prints its result;
a workdir holding another experiment is refused and left untouched.

``compare`` runs several methods one after the other, each in its own workdir
``OUT/<name>`` (so an interrupted comparison resumes and a rerun skips the
finished runs), then writes ``OUT/results.md`` and ``OUT/results.json`` (test
accuracy, sparsity, FLOPs of the sparse model, wall time, any-sparsity curves)
and three plots: ``accuracy_vs_sparsity.png``, ``one_shot_curves.png`` and
``layer_sparsity.png``. Its settings come from flags or from a TOML/JSON config
(``--config``, see ``experiments/configs/``); flags override the config.

``prune`` reloads a finished run from its workdir, prunes it one-shot by
magnitude at each ratio, and reports test accuracy without and, with
``--retrain-epochs``, after a short retraining with the support fixed
(:func:`sparsejax.pruning.fixed_support` last in the chain). For a model with
BatchNorm, ``--bn-recalibrate N`` adds each pruned net's accuracy with its
BatchNorm statistics recomputed at the pruned weights from ``N`` training
batches (:class:`sparsejax.train.connectivity.BatchStats`), since the trained
statistics no longer describe the pruned net's activations; ``compare
--bn-recalibrate N`` (or ``bn_recalibrate = N`` in its config) does the same for
its any-sparsity curves.

Bad input (an unknown method, model or dataset, a hyperparameter out of range,
a workdir holding another experiment, missing data, a workdir whose checkpoints
are all damaged) gives a one-line message on stderr and exit status 2; a
diverged training run gives status 1. A damaged checkpoint with an older good
one is reported in one line, moved to ``WORKDIR/damaged_checkpoints/`` and the
run resumes from the older one.
"""

from sparsejax.train.cli.args import build_parser, compare_runs
from sparsejax.train.cli.commands import main
from sparsejax.train.cli.runs import TrainedRun, compare_methods, load_finished_run, run_training
from sparsejax.train.cli.settings import RunSettings, UsageError, load_config

__all__ = [
    "RunSettings",
    "TrainedRun",
    "UsageError",
    "build_parser",
    "compare_methods",
    "compare_runs",
    "load_config",
    "load_finished_run",
    "main",
    "run_training",
]

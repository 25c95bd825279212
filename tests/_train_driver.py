"""A small training run for the trainer's subprocess tests (multi-process, SIGKILL resume).

Run as ``python -m tests._train_driver --out result.json [--workdir DIR] ...`` from
the repository root. It joins a multi-process run when the ``SPARSEJAX_*``
variables are set (:func:`sparsejax.train.initialize_distributed`), trains a
tiny MLP on synthetic 28x28 data and, on process 0, writes the history and the
final params to ``--out`` (JSON). With ``SPARSEJAX_TEST_KILL_AT=E:B`` the
process kills itself with SIGKILL when batch ``B`` of epoch ``E`` is requested,
after waiting until a checkpoint has been committed to the workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

KILL_ENV = "SPARSEJAX_TEST_KILL_AT"


class ArrayBatches:
    """The ``Batches`` interface of :mod:`sparsejax.data` over in-memory arrays (no normalisation).

    Train: a permutation per epoch from ``(seed, epoch)``, the last incomplete
    batch dropped. Eval: dataset order, the last batch padded with ``mask = 0``.
    Every process computes the same global batch and yields its own rows.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, *, train: bool,
                 seed: int = 0, process_index: int | None = None,
                 process_count: int | None = None) -> None:
        import jax

        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels, np.int32)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if batch_size % self.process_count:
            raise ValueError("batch_size must be divisible by the process count")
        self.local_batch_size = batch_size // self.process_count

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        n = len(self.labels)
        order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.train
                 else np.arange(n))
        lo = self.process_index * self.local_batch_size
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            mask = np.ones(self.batch_size, np.float32)
            if len(idx) < self.batch_size:
                mask[len(idx):] = 0.0
                idx = np.concatenate([idx, np.zeros(self.batch_size - len(idx), idx.dtype)])
            rows = idx[lo : lo + self.local_batch_size]
            yield {"image": self.images[rows], "label": self.labels[rows],
                   "mask": mask[lo : lo + self.local_batch_size]}


def synthetic(split: str, num_examples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 28x28x1 images scaled to [0, 1] (float32) and their labels, as arrays."""
    from sparsejax.data.synthetic import synthetic_arrays

    x, y = synthetic_arrays(split, num_examples, (28, 28, 1), 10, seed)
    return x.astype(np.float32) / 255.0, y


def make_data(batch_size: int, n_train: int, n_test: int, *, seed: int = 0,
              eval_batch_size: int | None = None):
    """Train and test batches of sparsejax.data's synthetic set (the real input pipeline)."""
    from sparsejax import data

    train = data.batches(data.load("synthetic", "train", num_examples=n_train, seed=seed),
                         batch_size, train=True, seed=seed)
    test = data.batches(data.load("synthetic", "test", num_examples=n_test, seed=seed),
                        eval_batch_size or batch_size, train=False)
    return train, test


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--workdir", default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--static-sparsity", type=float, default=None,
                   help="wrap the optimizer in static_sparse (boolean supports in the state)")
    return p.parse_args(argv)


def build(args: argparse.Namespace):
    """(model, optimizer, train batches, test batches, config) of a driver command line."""
    import optax

    from sparsejax.models import create

    model = create("mlp", hidden=(args.hidden,), dropout_rate=args.dropout, rngs=args.seed)
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=args.lr, momentum=0.9)
    train, test = make_data(args.batch_size, args.n_train, args.n_test, seed=args.seed)
    config = {"model": "mlp", "hidden": args.hidden, "dropout": args.dropout, "lr": args.lr,
              "n_train": args.n_train}
    if args.static_sparsity is not None:
        from sparsejax import pruning, tree

        optimizer = pruning.static_sparse(optimizer, args.static_sparsity, mask=tree.weights_only)
        config["static_sparsity"] = args.static_sparsity
    return model, optimizer, train, test, config


class _KillAt:
    """Wraps batches; SIGKILLs this process at batch ``B`` of epoch ``E`` once a checkpoint exists."""

    def __init__(self, inner, epoch: int, batch: int, workdir: str) -> None:
        self.inner, self.at, self.workdir = inner, (epoch, batch), Path(workdir)
        self.batch_size = inner.batch_size

    def __len__(self) -> int:
        return len(self.inner)

    def epoch(self, epoch: int, start: int = 0):
        for b, batch in enumerate(self.inner.epoch(epoch, start), start):
            if (epoch, b) == self.at:
                ckpts = self.workdir / "checkpoints"
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not (
                        ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())):
                    time.sleep(0.05)
                print("KILLING", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


def main(argv: Sequence[str] | None = None) -> int:
    from sparsejax.train import initialize_distributed

    initialize_distributed()
    import jax

    from sparsejax.train import fit

    args = parse_args(argv)
    model, optimizer, train, test, config = build(args)
    if os.environ.get(KILL_ENV):
        e, b = (int(v) for v in os.environ[KILL_ENV].split(":"))
        train = _KillAt(train, e, b, args.workdir)
    result = fit(model, optimizer, train, epochs=args.epochs, eval_data=test,
                 workdir=args.workdir, config=config, seed=args.seed,
                 checkpoint_every_steps=args.checkpoint_every, progress=False,
                 log=lambda line: print(line, flush=True))
    if jax.process_index() == 0:
        params = {path: np.asarray(x).tolist()
                  for path, x in __import__("sparsejax").tree.leaves_with_paths(result.params)}
        with open(args.out, "w") as f:
            json.dump({"history": result.history, "params": params,
                       "devices": jax.device_count(), "processes": jax.process_count(),
                       "resumed_from": result.resumed_from}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

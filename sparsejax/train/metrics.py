"""Per-epoch metrics of a training run: hyperparameters, sparsity, the console line."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import optax

from sparsejax.summary import sparsity, sparsity_summary
from sparsejax.tree import Mask, PyTree

__all__ = [
    "format_epoch", "hyperparameters", "scalar", "sparsity_metrics",
]

_INJECT_STATES = tuple(
    t for t in (getattr(optax, "InjectHyperparamsState", None),
                getattr(optax, "InjectStatefulHyperparamsState", None)) if t is not None
)


def _is_inject_state(x: Any) -> bool:
    return isinstance(x, _INJECT_STATES)


def hyperparameters(opt_state: PyTree) -> dict[str, float]:
    """The scalar hyperparameters of every ``optax.inject_hyperparams`` state in ``opt_state``.

    Walks the optimizer state (chains, nested wrappers) and collects the
    current value of each scalar hyperparameter, e.g. the learning rate that a
    schedule gives at the current step. A name met again in a later injected
    state gets a suffix ``_2``, ``_3``, ...

    Args:
      opt_state: an Optax optimizer state.

    Returns:
      ``{name: value}`` (empty when nothing is injected).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from sparsejax.train.metrics import hyperparameters
      >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.5)
      >>> hyperparameters(tx.init({'w': jnp.ones(2)}))
      {'learning_rate': 0.5}
    """
    found: dict[str, float] = {}
    for node in jax.tree.leaves(opt_state, is_leaf=_is_inject_state):
        if not _is_inject_state(node):
            continue
        for name, value in node.hyperparams.items():
            if np.ndim(value) != 0:
                continue
            key, i = name, 1
            while key in found:
                i += 1
                key = f"{name}_{i}"
            found[key] = scalar(value)
    return found


def scalar(value: Any) -> float:
    """A scalar as a Python float; float32 values by their shortest decimal (0.1, not 0.10000000149).

    Example:
      >>> import numpy as np
      >>> from sparsejax.train.metrics import scalar
      >>> scalar(np.float32(0.1)), scalar(3)
      (0.1, 3.0)
    """
    x = np.asarray(value)
    if x.dtype in (np.float32, np.float16) or x.dtype.name == "bfloat16":
        return float(str(np.float32(x)))
    return float(x)


def sparsity_metrics(params: PyTree, mask: Mask) -> dict[str, Any]:
    """Sparsity of ``params``: over the filtered leaves, over all, and per leaf.

    Args:
      params: the parameters (a plain dict).
      mask: the leaves the headline figure and the per-layer table cover.

    Returns:
      ``sparsity`` (share of zeros in the selected leaves), ``sparsity_all``
      (over every parameter), ``sparsity_per_layer`` (``{path: share}`` for the
      selected leaves), ``nonzero_params`` and ``num_params`` (over all).

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.train.metrics import sparsity_metrics
      >>> m = sparsity_metrics({'kernel': jnp.array([[0.0, 1.0]]), 'bias': jnp.ones(2)}, None)
      >>> m['sparsity'], m['sparsity_per_layer'], m['num_params']
      (0.25, {'bias': 0.0, 'kernel': 0.5}, 4)
    """
    rows = sparsity_summary(params, mask)
    everything = sparsity_summary(params) if mask is not None else rows
    return {
        "sparsity": float(sparsity(params, mask)),
        "sparsity_all": float(sparsity(params)),
        "sparsity_per_layer": {r.path: float(r.sparsity) for r in rows},
        "nonzero_params": int(sum(r.nonzeros for r in everything)),
        "num_params": int(sum(r.size for r in everything)),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isfinite(value) and value != 0 and not 1e-3 <= abs(value) < 1e4:
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def format_epoch(record: Mapping[str, Any], epochs: int) -> str:
    """One console line for an epoch's record (scalar extras such as the learning rate included).

    Args:
      record: a history entry of :func:`sparsejax.train.fit`.
      epochs: the number of epochs of the run.

    Returns:
      The line, without a newline.

    Example:
      >>> from sparsejax.train.metrics import format_epoch
      >>> print(format_epoch({'epoch': 1, 'step': 10, 'train_loss': 0.5, 'train_accuracy': 0.8,
      ...                     'test_loss': None, 'test_accuracy': None, 'sparsity': 0.25,
      ...                     'epoch_time': 1.5, 'learning_rate': 0.1}, epochs=3))
      epoch 1/3 (step 10): train loss 0.5000 acc 80.00% | sparsity 25.00% | learning_rate 0.1 | 1.5 s
    """
    parts = [f"epoch {record['epoch']}/{epochs} (step {record['step']}): "
             f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.2%}"]
    if record.get("test_loss") is not None:
        parts.append(f"test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.2%}")
    parts.append(f"sparsity {record['sparsity']:.2%}")
    shown = {"epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
             "sparsity", "sparsity_all", "sparsity_per_layer", "nonzero_params", "num_params",
             "epoch_time", "wall_time"}
    for key, value in record.items():
        if key not in shown and isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key} {_fmt(value)}")
    parts.append(f"{record['epoch_time']:.1f} s")
    return " | ".join(parts)

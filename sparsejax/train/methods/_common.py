"""Helpers and hyperparameters shared by the method families of the registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

import sparsejax as sj
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.patterns import check_pattern_shape, parse_pattern
from sparsejax.train.registry import Context, ExtraMetrics, HParam
from sparsejax.tree import PyTree


def sparsify_mask(hp: Mapping[str, Any]) -> Any:
    """The ``mask`` of a transform from the ``sparsify`` hyperparameter."""
    return sj.tree.weights_only if hp["sparsify"] == "weights" else None


def state_value(opt_state: PyTree, key: str) -> Any:
    """The field ``key`` of the (nested) optimizer state, by :func:`optax.tree_utils.tree_get`."""
    value = optax.tree_utils.tree_get(opt_state, key)
    if value is None:
        raise ValueError(f"no {key!r} in the optimizer state")
    return value


def scalar(x: Any) -> jax.Array:
    """A float32 scalar: the value itself, or the mean of a per-leaf pytree of values."""
    leaves = [jnp.asarray(v, jnp.float32) for v in jax.tree.leaves(x)]
    return leaves[0] if len(leaves) == 1 else jnp.mean(jnp.stack(leaves))


def base_sgd(ctx: Context, weight_decay: float, nesterov: bool) -> optax.GradientTransformation:
    """PyTorch's SGD (coupled weight decay, heavy-ball or Nesterov momentum)."""
    return pytorch_sgd(ctx.learning_rate, ctx.momentum or None, nesterov, weight_decay)


SPARSIFY = HParam(
    "sparsify", "weights",
    "which leaves are sparsified: 'weights' (conv and dense kernels) or 'all' "
    "(biases and normalisation scales too)",
    "the pruning literature's usual choice (kernels only); gRDA's reference code thresholds all",
    kind=("weights", "all"),
)
PATTERNS = ("unstructured", "1:2", "2:4", "1:4", "4:8", "2:8", "1:8", "1x4", "4x1", "2x2", "4x4",
            "8x8", "channel", "channel:l1")
PATTERN = HParam(
    "pattern", "unstructured",
    "sparsity pattern of the masks: 'unstructured', N:M along the input axis (e.g. '2:4'), "
    "RxC blocks (e.g. '4x4') or 'channel' / 'channel:l1' (whole output units)",
    "library default (unstructured, as in the papers)", kind=PATTERNS,
)
UNTILEABLE = HParam(
    "untileable", "error",
    "selected kernels the pattern cannot tile (an N:M input dimension not divisible by M, a "
    "block that does not divide the kernel): 'error' (a ValueError naming the leaf) or 'dense' "
    "(left out of the mask and trained dense, as NVIDIA's ASP leaves such layers)",
    "library default: a pattern is never silently weaker than asked", kind=("error", "dense"),
)


def pattern_mask(hp: Mapping[str, Any]) -> Any:
    """The ``mask`` of a pattern method: :func:`sparsify_mask`, narrowed with ``untileable='dense'``
    to the selected leaves that ``pattern`` tiles (``sparsejax.patterns.check_pattern_shape``)."""
    base = sparsify_mask(hp)
    if hp["untileable"] == "error" or hp["pattern"] == "unstructured":
        return base
    structure = parse_pattern(hp["pattern"])

    def tiles(leaf: Any) -> bool:
        try:
            check_pattern_shape(structure, tuple(jnp.shape(leaf)))
        except ValueError:
            return False
        return True

    def select(params: PyTree) -> PyTree:
        flags = sj.tree.resolve_mask(base, params)
        return jax.tree.map(lambda f, x: bool(f) and tiles(x), flags, params)

    return select


NESTEROV = HParam("nesterov", False, "Nesterov momentum", "the papers use heavy-ball momentum",
                  kind=bool)


def weight_decay_hparam(default: float, source: str) -> HParam:
    return HParam("weight_decay", default, "coupled L2 weight decay (added to the gradient)",
                  source, ge=0)


def reads_state(**fields: str) -> Callable[[dict], ExtraMetrics]:
    """Metrics that report state fields: ``reads_state(threshold='threshold')`` logs each step's
    ``threshold`` field of the optimizer state (the mean, when it is held per leaf)."""

    def metrics(hp: dict[str, Any]) -> ExtraMetrics:
        del hp

        def extra(opt_state: PyTree, params: PyTree) -> dict[str, jax.Array]:
            del params
            return {name: scalar(state_value(opt_state, key)) for name, key in fields.items()}

        return extra

    return metrics


THRESHOLD = reads_state(threshold="threshold")

"""Parameter counts, FLOPs and multiply-accumulates of the zoo's models, dense and sparse."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.extend import core as jex_core

from sparsejax.tree import path_str

__all__ = ["LayerMacs", "macs", "param_count", "xla_flops"]


def param_count(model: nnx.Module, filter: Any = nnx.Param) -> int:
    """Number of entries of the model's variables of a kind (default: ``nnx.Param``).

    BatchNorm running statistics are ``nnx.BatchStat``, not counted by default
    (like PyTorch's ``parameters()``, which leaves buffers out). Works on the
    abstract models of ``nnx.eval_shape`` too.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import param_count
      >>> param_count(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      8
    """
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, filter))))


def _eval_fn(model: nnx.Module):
    view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    graphdef, state = nnx.split(view)

    def fn(state: nnx.State, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(x)

    return fn, state


def xla_flops(model: nnx.Module, input_shape: Sequence[int], batch_size: int = 1) -> float:
    """FLOPs of one inference forward pass, from XLA's cost analysis of the lowered program.

    Counts every operation (a multiply-accumulate is 2 FLOPs), dense: XLA does
    not know which weights are zero. The model runs in evaluation mode.

    Args:
      model: the model.
      input_shape: shape of one example, e.g. ``(32, 32, 3)``.
      batch_size: examples per forward pass.

    Returns:
      The FLOPs XLA reports.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import MLP, xla_flops
      >>> xla_flops(MLP(4, (8,), 2, rngs=nnx.Rngs(0)), (4,)) >= 2 * (4 * 8 + 8 * 2)
      True
    """
    fn, state = _eval_fn(model)
    x = jax.ShapeDtypeStruct((batch_size, *input_shape), jnp.float32)
    cost = jax.jit(fn).lower(state, x).cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX returned one dict per device
        cost = cost[0]
    return float(cost["flops"])


@dataclasses.dataclass(frozen=True)
class LayerMacs:
    """Multiply-accumulates of one convolution or dense layer for one example.

    Attributes:
      path: the kernel's path in ``nnx.state(model)``.
      kernel_shape: its shape.
      positions: output positions per example (``h*w`` for a convolution, 1 for a dense layer).
      dense: ``positions * kernel.size``.
      sparse: ``positions * nonzeros(kernel)`` — what a sparse kernel costs.
    """

    path: str
    kernel_shape: tuple[int, ...]
    positions: int
    dense: int
    sparse: int


_PASS_THROUGH = {"convert_element_type", "copy", "copy_p"}


def _walk(jaxpr: Any, names: dict[Any, str], out: list[tuple[str, Any]]) -> None:
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        first = eqn.invars[0] if eqn.invars else None
        if name in _PASS_THROUGH and isinstance(first, jex_core.Var) and first in names:
            names[eqn.outvars[0]] = names[first]
        elif name in ("conv_general_dilated", "dot_general"):
            rhs = eqn.invars[1]
            if isinstance(rhs, jex_core.Var) and rhs in names:
                out.append((names[rhs], eqn.outvars[0].aval))
        for key in ("jaxpr", "call_jaxpr"):
            sub = eqn.params.get(key)
            if sub is None:
                continue
            inner = getattr(sub, "jaxpr", sub)
            if len(inner.invars) == len(eqn.invars):
                sub_names = {
                    v_in: names[v_out]
                    for v_in, v_out in zip(inner.invars, eqn.invars)
                    if isinstance(v_out, jex_core.Var) and v_out in names
                }
                _walk(inner, sub_names, out)


def macs(model: nnx.Module, input_shape: Sequence[int]) -> list[LayerMacs]:
    """Per-layer multiply-accumulates for one example, dense and with the kernels' zeros skipped.

    Traces one evaluation-mode forward pass and finds every convolution and
    matrix product whose right operand is a kernel of the model; a layer's
    cost is its output positions times the kernel's entries (dense) or
    nonzeros (sparse). Element-wise work (BatchNorm, activations, pooling) is
    not counted; padding is counted as if it were data.

    Args:
      model: the model; for an abstract one (``nnx.eval_shape``) the sparse
        count equals the dense one.
      input_shape: shape of one example.

    Returns:
      One :class:`LayerMacs` per layer, in forward order; sum ``.dense`` or
      ``.sparse`` for the totals.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import lenet_300_100, macs
      >>> model = nnx.eval_shape(lambda: lenet_300_100(rngs=nnx.Rngs(0)))  # shapes suffice
      >>> layers = macs(model, (28, 28, 1))
      >>> [m.dense for m in layers], sum(m.sparse for m in layers)
      ([235200, 30000, 1000], 266200)
    """
    fn, state = _eval_fn(model)
    leaves, _ = jax.tree_util.tree_flatten_with_path(state)
    paths = [path_str(p) for p, _ in leaves]
    values = [x for _, x in leaves]
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    closed = jax.make_jaxpr(fn)(state, x)
    jaxpr = closed.jaxpr
    names = {v: p for v, p in zip(jaxpr.invars[: len(paths)], paths)}
    found: list[tuple[str, Any]] = []
    _walk(jaxpr, names, found)
    by_path = dict(zip(paths, values))
    result = []
    for path, out_aval in found:
        kernel = by_path[path]
        positions = math.prod(out_aval.shape) // kernel.shape[-1]
        if isinstance(kernel, jax.ShapeDtypeStruct):  # an nnx.eval_shape model
            nnz = math.prod(kernel.shape)
        else:
            nnz = int(np.count_nonzero(np.asarray(kernel)))
        result.append(LayerMacs(path, tuple(kernel.shape), positions,
                                positions * math.prod(kernel.shape), positions * nnz))
    return result

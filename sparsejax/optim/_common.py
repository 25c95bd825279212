"""Small pieces shared by the transforms of several families."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def copy_as(x: jax.Array, dtype: Any) -> jax.Array:
    """A real copy of ``x`` in ``dtype`` (default: its own), so state never aliases params.

    Optimizer state that starts as a copy of the params must not be the same
    buffer, or donating both to a jitted step fails.
    """
    return jnp.array(x, dtype=dtype or x.dtype, copy=True)


def opaque_one(dtype: Any) -> jax.Array:
    """A scalar 1 of ``dtype`` that XLA cannot fold away (behind ``optimization_barrier``).

    ``x * opaque_one(x.dtype)`` is ``x`` bit for bit (IEEE multiplication by
    one is exact, NaN, infinities and signed zeros included), but the loop
    XLA fuses around it gets a broadcast scalar operand. XLA:CPU (jax 0.12)
    compiles a loop fusion of plain array additions and subtractions, with no
    such operand, through its older IR emitter (objects ``__compute_module_*``
    in an ``--xla_dump_to`` dump), and such loops ran 10-25% slower inside
    optimizer steps on the 2-vCPU Intel host of ``benchmarks/README.md``
    (issue 15); with the operand they go through the fusion emitter like
    SGD-momentum's loops. Elsewhere it costs one multiplication per entry in
    a memory-bound loop.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sparsejax.optim._common import opaque_one
      >>> x = jnp.array([-0.0, 1.5, jnp.inf])
      >>> jax.jit(lambda x: x * opaque_one(x.dtype))(x)
      Array([-0. ,  1.5,  inf], dtype=float32)
    """
    return jax.lax.optimization_barrier(jnp.ones([], dtype))


def compute_dtype(dtype: Any) -> Any:
    """The dtype hyperparameter arithmetic uses for a leaf of ``dtype``.

    ``promote_types(dtype, float32)``: float64 leaves (under ``jax_enable_x64``)
    get float64 steps and thresholds; bf16, f16 and f32 leaves get float32.
    """
    return jnp.promote_types(dtype, jnp.float32)


def tree_compute_dtype(tree: Any) -> Any:
    """The widest :func:`compute_dtype` over the leaves of ``tree`` (float32 if it has none).

    Scalars shared by every leaf (a step size, a threshold kept in the state)
    are computed in this dtype and cast to each leaf's :func:`compute_dtype`
    where they are used, so a tree of bf16/f32 leaves computes exactly in float32.
    """
    dtype = jnp.dtype(jnp.float32)
    for leaf in jax.tree.leaves(tree):
        dtype = jnp.promote_types(dtype, jnp.result_type(leaf))
    return dtype

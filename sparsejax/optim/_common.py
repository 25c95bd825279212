"""Small pieces shared by the transforms of several families."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import as_float32


def copy_as(x: jax.Array, dtype: Any) -> jax.Array:
    """A real copy of ``x`` in ``dtype`` (default: its own), so state never aliases params.

    Optimizer state that starts as a copy of the params must not be the same
    buffer, or donating both to a jitted step fails.
    """
    return jnp.array(x, dtype=dtype or x.dtype, copy=True)


def sgd(
    learning_rate: optax.ScalarOrSchedule, momentum: float | None, nesterov: bool
) -> optax.GradientTransformation:
    """``optax.sgd`` whose momentum buffer keeps each gradient's dtype.

    Hyperparameters are float32 arrays whether given as numbers or injected by
    :func:`optax.inject_hyperparams`, so both compute alike; ``optax.trace``
    alone would then promote a bf16 buffer to float32 after the first step.
    """
    scale = optax.scale_by_learning_rate(as_float32(learning_rate))
    if momentum is None:
        return scale
    trace = optax.trace(decay=as_float32(momentum), nesterov=nesterov)

    def update_fn(updates, state, params=None):
        new_updates, new_state = trace.update(updates, state, params)
        cast = lambda t, g: t.astype(g.dtype)  # noqa: E731
        new_state = optax.TraceState(trace=jax.tree.map(cast, new_state.trace, updates))
        return jax.tree.map(cast, new_updates, updates), new_state

    return optax.chain(optax.GradientTransformation(trace.init, update_fn), scale)

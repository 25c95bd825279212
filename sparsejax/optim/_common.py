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

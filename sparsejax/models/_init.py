"""Kernel initialisers that compile once per size bucket, not once per shape (private).

``jax.random`` samplers are jitted per output shape, and on a CPU each of those
compilations takes about a second (the Threefry hash dominates), so building a
network with fifty distinct kernel shapes used to spend most of its time in
XLA. These initialisers draw a flat sample whose length is the next power of
two and cut, reshape and scale it on the host, so a process compiles the
sampler for a few dozen sizes in all. Under a trace (``jax.jit``,
``nnx.eval_shape``) they fall back to doing the same with ``jax.numpy``.
The distribution is that of :func:`jax.nn.initializers.variance_scaling` with
a truncated normal.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Standard deviation of a standard normal truncated to [-2, 2].
_TRUNCATED_STD = 0.87962566103423978


@functools.partial(jax.jit, static_argnums=1)
def _standard_truncated_normal(key: jax.Array, size: int) -> jax.Array:
    return jax.random.truncated_normal(key, -2.0, 2.0, (size,), jnp.float32)


def variance_scaling(scale: float, mode: str) -> nnx.Initializer:
    """Truncated-normal variance scaling, ``std = sqrt(scale / fan)``, fan ``mode`` in/out."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        shape = tuple(int(d) for d in shape)
        receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
        fan_in = shape[-2] * receptive if len(shape) > 1 else shape[-1]
        fan = fan_in if mode == "fan_in" else shape[-1] * receptive
        std = math.sqrt(scale / max(fan, 1)) / _TRUNCATED_STD
        n = math.prod(shape)
        if n == 0:
            return jnp.zeros(shape, dtype)
        flat = _standard_truncated_normal(key, 1 << (n - 1).bit_length())
        try:
            host = np.asarray(flat)
        except jax.errors.TracerArrayConversionError:
            return (flat[:n].reshape(shape) * std).astype(dtype)
        return jnp.asarray((host[:n].reshape(shape) * np.float32(std)).astype(dtype))

    return init


def he_normal() -> nnx.Initializer:
    """He et al. (2015): truncated normal with variance ``2 / fan_in`` (ReLU layers)."""
    return variance_scaling(2.0, "fan_in")


def lecun_normal() -> nnx.Initializer:
    """LeCun: truncated normal with variance ``1 / fan_in`` (Flax's default for dense layers)."""
    return variance_scaling(1.0, "fan_in")

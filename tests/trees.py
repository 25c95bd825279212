"""Parameter pytrees with every kind of leaf the transforms must handle."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def make_params(seed: int = 0) -> dict[str, Any]:
    """A pytree with f32 and bf16 kernels, a bias vector, a scalar, a list and a None leaf.

    Last dimensions are multiples of 8 where possible, so leaves can be sharded
    over 8 devices.
    """
    rng = np.random.default_rng(seed)

    def normal(shape, dtype=jnp.float32, scale=0.3):
        return jnp.asarray(rng.normal(0.0, scale, shape), dtype)

    return {
        "dense": {"kernel": normal((6, 8)), "bias": normal((8,), scale=0.05)},
        "conv": {"kernel": normal((3, 3, 2, 8), jnp.bfloat16)},
        "layers": [{"kernel": normal((8, 16)), "bias": normal((16,), jnp.bfloat16, 0.05)}],
        "scale": jnp.asarray(0.7, jnp.float32),
        "frozen": None,
    }


def make_grads(params: Any, seed: int) -> Any:
    """Random gradients with the params' structure and dtypes."""
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(1000 + seed)
    return jax.tree.unflatten(
        treedef, [jnp.asarray(rng.normal(0.0, 0.5, np.shape(x)), x.dtype) for x in leaves]
    )


def to_f64(tree: Any) -> Any:
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def np_soft_threshold(x: np.ndarray, tau: float) -> np.ndarray:
    """Independent float64 reference: sign(x) * max(|x| - tau, 0)."""
    return np.sign(x) * np.maximum(np.abs(x) - tau, 0.0)


def tolerance(dtype: Any) -> dict[str, float]:
    return dict(rtol=3e-2, atol=3e-2) if dtype == jnp.bfloat16 else dict(rtol=2e-5, atol=2e-6)


def assert_tree_close(actual: Any, expected: Any, ref_dtypes: Any = None) -> None:
    """Leaf-wise closeness, with bf16 tolerances for bf16 leaves."""
    ref_dtypes = actual if ref_dtypes is None else ref_dtypes
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e, r in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), jax.tree.leaves(ref_dtypes)):
        np.testing.assert_allclose(
            np.asarray(a, np.float64), np.asarray(e, np.float64), **tolerance(jnp.asarray(r).dtype)
        )

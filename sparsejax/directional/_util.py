"""Pytree helpers shared by the modules of :mod:`sparsejax.directional`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from sparsejax.tree import PyTree


def check_same_structure(a: PyTree, b: PyTree, name_a: str, name_b: str) -> None:
    """Raises ``ValueError`` unless ``a`` and ``b`` have the same tree structure and leaf shapes."""
    sa, sb = jax.tree.structure(a), jax.tree.structure(b)
    if sa != sb:
        raise ValueError(
            f"{name_b} does not match {name_a}: the two pytrees must have the same structure.\n"
            f"  {name_a}: {sa}\n  {name_b}: {sb}"
        )
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        if jnp.shape(x) != jnp.shape(y):
            from sparsejax.tree import path_str

            raise ValueError(
                f"{name_b} does not match {name_a} at {path_str(path)!r}: shape "
                f"{jnp.shape(y)} against {jnp.shape(x)}"
            )


def num_params(tree: PyTree) -> int:
    """The number of scalars in the array leaves of ``tree``."""
    return int(sum(jnp.size(x) for x in jax.tree.leaves(tree)))


def tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
    """``sum_leaves <a, b>`` (real inner product over every leaf)."""
    parts = [jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    return sum(parts[1:], parts[0]) if parts else jnp.zeros([])


def stacked_coefficients(vectors: PyTree, v: PyTree) -> jax.Array:
    """``c_i = <vectors[i], v>`` for a pytree ``vectors`` whose leaves have a leading axis ``r``."""
    parts = []
    for big, x in zip(jax.tree.leaves(vectors), jax.tree.leaves(v)):
        r = big.shape[0]
        dtype = jnp.result_type(big.dtype, x.dtype)
        parts.append(big.reshape(r, -1).astype(dtype) @ x.reshape(-1).astype(dtype))
    return sum(parts[1:], parts[0])


def stacked_combination(vectors: PyTree, coefficients: jax.Array, like: PyTree) -> PyTree:
    """``sum_i coefficients[i] * vectors[i]`` with the structure of ``like`` (in the wider dtype)."""

    def leaf(big: jax.Array, x: jax.Array) -> jax.Array:
        dtype = jnp.result_type(big.dtype, x.dtype, coefficients.dtype)
        flat = coefficients.astype(dtype) @ big.reshape(big.shape[0], -1).astype(dtype)
        return flat.reshape(x.shape)

    return jax.tree.map(leaf, vectors, like)


def is_concrete(x: Any) -> bool:
    """Whether ``x`` holds no tracer (so it can be read on the host)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))

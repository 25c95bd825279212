"""Naming and selecting the leaves of parameter pytrees.

Every part of sparsejax that chooses *which* leaves to sparsify goes through this
module, so that a plain nested dict, a list of layers and a Flax NNX ``State``
all read the same:

* :func:`path_str` turns a key path into ``"layers/0/kernel"``: dict keys,
  sequence indices and attribute names are joined with ``/``, and the trailing
  ``.value`` of an NNX variable is dropped.
* A *mask* says which leaves take part. Every function of sparsejax that
  chooses leaves takes it as ``mask=``, with the same default (``None``) and
  the same accepted forms, all resolved by :func:`resolve_mask`:

  - ``None``: every array leaf (the default, as in :func:`optax.masked`);
  - a ``str``: a regular expression searched (:func:`re.search`) in each
    leaf's normalised path, e.g. ``'kernel'``;
  - a pytree of booleans with the structure of the params or a prefix of it
    (``True`` or ``False`` alone is a prefix of every tree);
  - a callable ``params -> such a pytree``: :func:`weights_only` (kernels and
    weight matrices, not biases or normalisation scales, the choice of the
    pruning literature) or one built by :func:`path_filter`.

  A selection that is empty where the params have leaves is an error saying
  which paths exist and what to pass.

A mask selects *leaves*. The per-element boolean arrays that say which entries
of a pruned leaf are kept are called *supports* (:mod:`sparsejax.pruning`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp

PyTree: TypeAlias = Any
KeyPath: TypeAlias = tuple[Any, ...]
Mask: TypeAlias = PyTree | Callable[[PyTree], PyTree] | str | bool | None
PathPredicate: TypeAlias = Callable[[str, Any], bool]

__all__ = [
    "Mask",
    "PyTree",
    "broadcast_prefix",
    "leaves_with_paths",
    "path_filter",
    "path_str",
    "resolve_mask",
    "weights_only",
]


def _key_name(key: Any) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_str(path: KeyPath) -> str:
    """Returns the normalised, ``/``-joined name of a key path.

    Dict keys, sequence indices and attribute names all become plain path
    components, and a trailing ``value`` attribute (how Flax NNX variables
    appear in a flattened ``nnx.State``) is dropped, so
    ``{'dense': {'kernel': w}}``, ``nnx.State`` of a ``Linear`` named ``dense``
    and ``[{'kernel': w}]`` give ``dense/kernel``, ``dense/kernel`` and
    ``0/kernel``.

    Args:
      path: a key path, as produced by :func:`jax.tree_util.tree_flatten_with_path`.

    Returns:
      The path as a string; ``""`` for the root.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import sparsejax as sj
      >>> tree = {'layers': [{'kernel': jnp.ones((2, 2))}]}
      >>> [sj.tree.path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
      ['layers/0/kernel']
    """
    parts = [_key_name(k) for k in path]
    if parts and isinstance(path[-1], jax.tree_util.GetAttrKey) and parts[-1] == "value":
        parts = parts[:-1]
    return "/".join(parts)


def leaves_with_paths(tree: PyTree) -> list[tuple[str, Any]]:
    """Returns ``(path_str, leaf)`` for every leaf of ``tree`` (``None`` leaves skipped).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.tree.leaves_with_paths({'b': jnp.zeros(2), 'w': jnp.ones((2, 2))})[1][0]
      'w'
    """
    return [(path_str(p), x) for p, x in jax.tree_util.tree_leaves_with_path(tree)]


def path_filter(predicate: PathPredicate | str) -> Callable[[PyTree], PyTree]:
    """Builds a mask callable from a predicate on normalised paths.

    Args:
      predicate: ``predicate(path, leaf) -> bool``, or a regular expression that
        is searched for (:func:`re.search`) in each leaf's path.

    Returns:
      ``params -> pytree of bools``, usable as the ``mask=`` of any sparsejax
      transform or of :func:`optax.masked`.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'conv': {'kernel': jnp.ones((3, 3, 1, 4)), 'bias': jnp.ones(4)}}
      >>> sj.tree.path_filter(r'kernel$')(params)
      {'conv': {'bias': False, 'kernel': True}}
    """
    if isinstance(predicate, str):
        pattern = re.compile(predicate)

        def predicate(path: str, leaf: Any) -> bool:  # noqa: F811 - deliberate rebinding
            del leaf
            return pattern.search(path) is not None

    def mask_fn(params: PyTree) -> PyTree:
        return jax.tree_util.tree_map_with_path(
            lambda p, x: bool(predicate(path_str(p), x)), params
        )

    return mask_fn


def _is_weight(path: str, leaf: Any) -> bool:
    del path
    return jnp.ndim(leaf) > 1


weights_only: Callable[[PyTree], PyTree] = path_filter(_is_weight)
weights_only.__doc__ = """Mask selecting weight matrices and kernels (leaves with ``ndim > 1``).

Biases, normalisation scales and scalars are left out. This is the default
choice of the pruning literature and of the papers behind sparsejax.

Example:
  >>> import jax.numpy as jnp
  >>> import sparsejax as sj
  >>> sj.tree.weights_only({'kernel': jnp.ones((2, 3)), 'bias': jnp.ones(3)})
  {'bias': False, 'kernel': True}
"""


def resolve_mask(mask: Mask, tree: PyTree, *, nonempty: bool = False) -> PyTree:
    """Expands a leaf selection (``mask=``) to a pytree of booleans with ``tree``'s structure.

    The one place where sparsejax reads a ``mask=`` argument: the transforms,
    pruning, summaries and the trainer all call it.

    Args:
      mask: ``None`` (every leaf), a regular expression searched in each
        leaf's normalised path (:func:`path_str`), a pytree of booleans whose
        structure is ``tree``'s or a prefix of it, or a callable ``tree ->
        such a pytree`` (e.g. :func:`weights_only`).
      tree: the params (or updates) the mask refers to.
      nonempty: raise if the mask selects no leaf of a tree that has leaves
        (what the transforms and pruning functions ask for: a selection that
        is empty is almost always a mistake).

    Returns:
      A pytree with ``tree``'s structure and a Python ``bool`` at each leaf.

    Raises:
      ValueError: if the mask's structure is not a prefix of ``tree``'s, a
        mask leaf is not a boolean, or (with ``nonempty``) nothing is
        selected; the message lists the paths and what to pass.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'a': jnp.ones((2, 2)), 'b': [jnp.ones(1)]}
      >>> sj.tree.resolve_mask({'a': True, 'b': False}, params)
      {'a': True, 'b': [False]}
      >>> sj.tree.resolve_mask('^b/', params)
      {'a': False, 'b': [True]}
      >>> sj.tree.resolve_mask(sj.tree.weights_only, params)
      {'a': True, 'b': [False]}
    """
    if mask is None:
        return jax.tree.map(lambda _: True, tree)
    if isinstance(mask, (jax.Array, jax.core.Tracer)):
        # What optax.inject_hyperparams makes of a mask callable it took for a schedule.
        raise ValueError(
            "mask is an array, not a pytree of booleans or a callable. With "
            "optax.inject_hyperparams, pass the mask as a static argument: "
            "optax.inject_hyperparams(factory, static_args=('mask',))(..., mask=...)."
        )
    what = f"mask={mask!r}" if isinstance(mask, str) else "mask"
    if isinstance(mask, str):
        mask = path_filter(mask)
    if callable(mask):
        mask = mask(tree)

    def as_bool(m: Any) -> bool:
        if isinstance(m, bool):
            return m
        if jnp.ndim(m) == 0 and jnp.issubdtype(jnp.asarray(m).dtype, jnp.bool_):
            return bool(m)  # numpy / concrete jax booleans
        raise ValueError(f"mask leaves must be booleans, got {m!r}")

    selected = broadcast_prefix(jax.tree.map(as_bool, mask), tree, what="mask")
    if nonempty and jax.tree.leaves(tree) and not any(jax.tree.leaves(selected)):
        paths = [p for p, _ in leaves_with_paths(tree)]
        shown = ", ".join(repr(p) for p in paths[:8]) + (", ..." if len(paths) > 8 else "")
        raise ValueError(
            f"{what} selects no leaf of the params (their paths: {shown}). Pass "
            "mask=None for every leaf, a regular expression on these paths (e.g. "
            "'kernel'), a pytree of booleans, or a callable such as "
            "sparsejax.tree.weights_only (leaves with ndim > 1). With "
            "optax.inject_hyperparams, pass the mask as a static argument: "
            "optax.inject_hyperparams(factory, static_args=('mask',))(..., mask=...)."
        )
    return selected


def broadcast_prefix(prefix: PyTree, tree: PyTree, *, what: str = "prefix tree") -> PyTree:
    """Repeats each leaf of ``prefix`` over the matching subtree of ``tree``.

    Args:
      prefix: a pytree whose structure is ``tree``'s or a prefix of it.
      tree: the full pytree.
      what: how to call ``prefix`` in the error message.

    Returns:
      A pytree with ``tree``'s structure whose leaves come from ``prefix``.

    Raises:
      ValueError: if ``prefix`` is not a prefix of ``tree``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.tree.broadcast_prefix({'a': 0.1, 'b': 0.2}, {'a': jnp.ones(2), 'b': (jnp.ones(1), jnp.ones(1))})
      {'a': 0.1, 'b': (0.2, 0.2)}
    """
    try:
        return jax.tree.map(lambda leaf, sub: jax.tree.map(lambda _: leaf, sub), prefix, tree)
    except ValueError as e:
        raise ValueError(
            f"{what} does not match the params: its structure must equal the params' "
            f"structure or a prefix of it.\n  {what}: {jax.tree.structure(prefix)}\n"
            f"  params: {jax.tree.structure(tree)}"
        ) from e

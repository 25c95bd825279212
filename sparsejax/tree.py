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

  - ``None`` (the default): every floating-point leaf, i.e. every leaf of an
    inexact dtype (float or complex arrays, Python floats). Integer, boolean
    and PRNG-key leaves (step counters, flags, the ``RngState`` of an
    ``nnx.state(model)``) are left out: they are not parameters to sparsify
    or count (``mask=True`` takes every leaf, integer ones included);
  - a ``str``: a regular expression searched (:func:`re.search`) in each
    leaf's normalised path, e.g. ``'kernel'``;
  - a pytree of booleans with the structure of the params or a prefix of it
    (``True`` or ``False`` alone is a prefix of every tree);
  - a callable ``params -> such a pytree``: :func:`weights_only` (kernels,
    weight matrices and embeddings, not biases or normalisation scales, the
    choice of the pruning literature) or one built by :func:`path_filter`.

  A regular expression or a callable works on a plain dict and on an
  ``nnx.State`` alike; a pytree of booleans must be the same kind of tree as
  the params (build it from them, or convert the params with
  ``nnx.to_pure_dict``).

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
import numpy as np

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


_NOT_WEIGHTS = frozenset({"bias", "scale"})


def _is_weight(path: str, leaf: Any) -> bool:
    return path.rsplit("/", 1)[-1] not in _NOT_WEIGHTS and jnp.ndim(leaf) > 1


weights_only: Callable[[PyTree], PyTree] = path_filter(_is_weight)
weights_only.__doc__ = """Mask selecting weight matrices and kernels.

A leaf is selected when it has ``ndim > 1`` and the last component of its
normalised path (:func:`path_str`) is neither ``bias`` nor ``scale``. So
biases and normalisation scales are left out even where they have two
dimensions (the ``(heads, head_dim)`` query/key/value biases of
``nnx.MultiHeadAttention``, the bias of ``nnx.LinearGeneral``), as are
vectors and scalars. Embedding tables (``nnx.Embed``'s ``embedding``) are
weight matrices and are selected. This is the default choice of the pruning
literature and of the papers behind sparsejax.

Args:
  params: a pytree of arrays (a dict, a list, an ``nnx.State``, ...).

Returns:
  A pytree with ``params``' structure and a Python ``bool`` at each leaf.

Example:
  >>> import jax.numpy as jnp
  >>> import sparsejax as sj
  >>> sj.tree.weights_only({'kernel': jnp.ones((2, 3)), 'bias': jnp.ones((2, 3))})
  {'bias': False, 'kernel': True}
"""


def _is_floating(leaf: Any) -> bool:
    """Whether ``leaf`` is of an inexact dtype (float or complex, Python floats included)."""
    if isinstance(leaf, (float, complex)):
        return True
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        return False
    try:
        return bool(jax.dtypes.issubdtype(dtype, np.inexact))
    except TypeError:
        return False


def _is_flax_node(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "flax"


def _has_flax_nodes(tree: Any) -> bool:
    """Whether ``tree`` is or holds an ``nnx.State``, a Flax ``Variable`` or another Flax node."""
    return any(_is_flax_node(x) for x in jax.tree.leaves(tree, is_leaf=_is_flax_node))


def resolve_mask(mask: Mask, tree: PyTree, *, nonempty: bool = False) -> PyTree:
    """Expands a leaf selection (``mask=``) to a pytree of booleans with ``tree``'s structure.

    The one place where sparsejax reads a ``mask=`` argument: the transforms,
    pruning, summaries and the trainer all call it.

    Args:
      mask: ``None`` (every floating-point leaf: float or complex arrays and
        Python floats; integer, boolean and PRNG-key leaves are left out), a
        regular expression searched in each leaf's normalised path
        (:func:`path_str`), a pytree of booleans (one per leaf, or one per
        subtree) whose structure is ``tree``'s or a prefix of it and of the
        same kind (a plain dict for a dict, an ``nnx.State`` for an
        ``nnx.State``), or a callable ``tree -> such a pytree`` (e.g.
        :func:`weights_only`). Regular expressions and callables work on
        every kind of tree.
      tree: the params (or updates) the mask refers to.
      nonempty: raise if the mask selects no leaf of a tree that has leaves
        (what the transforms and pruning functions ask for: a selection that
        is empty is almost always a mistake).

    Returns:
      A pytree with ``tree``'s structure and a Python ``bool`` at each leaf.

    Raises:
      ValueError: if the mask's structure is not a prefix of ``tree``'s, a
        mask leaf is not a boolean, a regular expression is invalid, or (with
        ``nonempty``) nothing is selected; the message lists the paths and
        what to pass.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'a': jnp.ones((2, 2)), 'b': [jnp.ones(1)], 'step': jnp.int32(0)}
      >>> sj.tree.resolve_mask(None, params)
      {'a': True, 'b': [True], 'step': False}
      >>> params = {'a': jnp.ones((2, 2)), 'b': [jnp.ones(1)]}
      >>> sj.tree.resolve_mask({'a': True, 'b': False}, params)
      {'a': True, 'b': [False]}
      >>> sj.tree.resolve_mask('^b/', params)
      {'a': False, 'b': [True]}
      >>> sj.tree.resolve_mask(sj.tree.weights_only, params)
      {'a': True, 'b': [False]}
    """
    if mask is None:
        selected = jax.tree.map(_is_floating, tree)
    else:
        selected = _resolve_given_mask(mask, tree)
    if nonempty and jax.tree.leaves(tree) and not any(jax.tree.leaves(selected)):
        what = (
            "mask=None (the default: floating-point leaves only)"
            if mask is None
            else f"mask={mask!r}" if isinstance(mask, str) else "mask"
        )
        paths = [p for p, _ in leaves_with_paths(tree)]
        shown = ", ".join(repr(p) for p in paths[:8]) + (", ..." if len(paths) > 8 else "")
        raise ValueError(
            f"{what} selects no leaf of the params (their paths: {shown}). Pass "
            "mask=None for every floating-point leaf, a regular expression on these paths (e.g. "
            "'kernel'), a pytree of booleans, or a callable such as "
            "sparsejax.tree.weights_only (weight matrices and kernels). With "
            "optax.inject_hyperparams, pass the mask as a static argument: "
            "optax.inject_hyperparams(factory, static_args=('mask',))(..., mask=...)."
        )
    return selected


def _resolve_given_mask(mask: Mask, tree: PyTree) -> PyTree:
    """:func:`resolve_mask` for a mask other than ``None``, without the emptiness check."""
    if isinstance(mask, (jax.Array, jax.core.Tracer)):
        # What optax.inject_hyperparams makes of a mask callable it took for a schedule.
        raise ValueError(
            "mask is an array, not a pytree of booleans or a callable. With "
            "optax.inject_hyperparams, pass the mask as a static argument: "
            "optax.inject_hyperparams(factory, static_args=('mask',))(..., mask=...)."
        )
    if isinstance(mask, str):
        try:
            re.compile(mask)
        except re.error as e:
            raise ValueError(
                f"mask={mask!r} is not a valid regular expression ({e}); pass a regular "
                "expression searched in the leaves' paths, e.g. mask='kernel' (escape "
                "special characters with re.escape)"
            ) from e
        mask = path_filter(mask)
    if callable(mask):
        mask = mask(tree)

    def as_bool(m: Any) -> bool:
        if isinstance(m, bool):
            return m
        if jnp.ndim(m) == 0 and jnp.issubdtype(jnp.asarray(m).dtype, jnp.bool_):
            return bool(m)  # numpy / concrete jax booleans
        raise ValueError(
            f"mask leaves must be booleans, got {m!r}. A mask selects whole leaves "
            "(one bool per leaf, or per subtree); a per-element support (boolean arrays "
            "shaped like the leaves, saying which entries are kept) goes to "
            "sparsejax.pruning.apply_support instead"
        )

    return broadcast_prefix(jax.tree.map(as_bool, mask), tree, what="mask")


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
        prefix_flax, tree_flax = _has_flax_nodes(prefix), _has_flax_nodes(tree)
        if prefix_flax != tree_flax:
            kinds = ("a plain pytree (dict, list, ...)", "an nnx.State (Flax variables)")
            hint = (
                "Pass a regular expression on the leaves' paths (e.g. mask='kernel') or a "
                "callable such as sparsejax.tree.weights_only, which work on both kinds, "
                "or build the mask from the params themselves (e.g. jax.tree.map over them)"
                if what == "mask"
                else f"Build the {what} from the params themselves (e.g. jax.tree.map over them)"
            )
            raise ValueError(
                f"{what} does not match the params: {what} is {kinds[prefix_flax]} while "
                f"the params are {kinds[tree_flax]}, and the two kinds of trees never match. "
                f"{hint}, or convert the params with nnx.to_pure_dict (and back with "
                "nnx.replace_by_pure_dict)."
            ) from e
        raise ValueError(
            f"{what} does not match the params: its structure must equal the params' "
            f"structure or a prefix of it.\n  {what}: {jax.tree.structure(prefix)}\n"
            f"  params: {jax.tree.structure(tree)}"
        ) from e

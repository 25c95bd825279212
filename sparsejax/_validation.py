"""Checks of hyperparameters at construction time, shared by every factory.

A value is checked only when it is concrete: numbers and concrete arrays are
checked, schedules (callables) and traced values are let through. That keeps
:func:`optax.inject_hyperparams` working, which calls the factories again with
traced hyperparameters inside ``jit``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_lazy(value: Any) -> bool:
    return callable(value) or isinstance(value, jax.core.Tracer)


def concrete_value(value: Any) -> float | None:
    """Returns a scalar ``value`` as a float, or ``None`` if it is a schedule or traced."""
    if value is None or _is_lazy(value) or np.ndim(value) != 0:
        return None
    return float(np.asarray(value))


def describe_range(gt: float | None, ge: float | None, lt: float | None, le: float | None) -> str:
    """The accepted range in words, e.g. ``'> 0 and < 1'`` (``'finite'`` without bounds)."""
    lo = f"> {gt}" if gt is not None else f">= {ge}" if ge is not None else None
    hi = f"< {lt}" if lt is not None else f"<= {le}" if le is not None else None
    return " and ".join(p for p in (lo, hi) if p) or "finite"


def check_number(
    name: str,
    value: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    integer: bool = False,
    scalar: bool = False,
    schedule: bool = True,
) -> None:
    """Raises ``ValueError`` naming ``name`` when a concrete ``value`` is out of range.

    ``value`` may be a number, an array, or a pytree of them (a per-leaf
    hyperparameter): every element must be finite and in range. Schedules and
    traced values pass unchecked.

    With ``scalar=True`` the value must be one number for every leaf (a 0-d
    array included): ``None``, a dict, a list or an array with dimensions is
    refused, instead of failing later with a bare ``TypeError`` or broadcasting
    silently against the leaves. With ``schedule=False`` a schedule (callable)
    is refused too, for a hyperparameter that is used as a number (a schedule
    given through :func:`optax.inject_hyperparams` arrives as a number and passes).
    """
    if callable(value) and not schedule:
        kind = "a single number" if scalar else "a number"
        raise ValueError(
            f"{name} must be {kind} {describe_range(gt, ge, lt, le)}, not a schedule; got "
            f"{value!r} (optax.inject_hyperparams evaluates a schedule given for it)"
        )
    if scalar and not _is_lazy(value) and (
        value is None or jax.tree.structure(value).num_nodes != 1 or np.ndim(value) != 0
    ):
        kind = "integer" if integer else "number"
        either = " or a schedule (count -> number)" if schedule else ""
        raise ValueError(
            f"{name} must be a single {kind} {describe_range(gt, ge, lt, le)}{either}, the same "
            f"for every leaf; got {value!r}. Per-leaf values are not accepted: choose the leaves "
            "with mask=, or give groups of leaves their own transform with optax.partition"
        )
    if value is None or _is_lazy(value):
        return
    wanted = ("an integer " if integer else "") + describe_range(gt, ge, lt, le)
    for leaf in jax.tree.leaves(value):
        if _is_lazy(leaf):
            continue
        arr = np.asarray(leaf)
        # jnp.issubdtype knows the ml_dtypes floats (bfloat16, float8: what optax.inject_hyperparams
        # makes of a hyperparameter for such params); np.issubdtype calls them non-numbers
        if arr.dtype == np.bool_ or not jnp.issubdtype(arr.dtype, jnp.number):
            raise ValueError(f"{name} must be a number {wanted}, got {leaf!r}")
        arr = arr.astype(np.float64)
        ok = bool(np.all(np.isfinite(arr)))
        ok &= not integer or bool(np.all(arr == np.round(arr)))
        ok &= gt is None or bool(np.all(arr > gt))
        ok &= ge is None or bool(np.all(arr >= ge))
        ok &= lt is None or bool(np.all(arr < lt))
        ok &= le is None or bool(np.all(arr <= le))
        if not ok:
            raise ValueError(f"{name} must be {wanted}, got {leaf!r}")


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raises ``ValueError`` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def warn_outside(
    name: str, value: Any, low: float, high: float, why: str, *, stacklevel: int = 3
) -> None:
    """Warns (``UserWarning``) when a concrete ``value`` lies outside ``(low, high)``."""
    v = concrete_value(value)
    if v is not None and not (low < v < high):
        warnings.warn(f"{name}={v} is outside ({low}, {high}): {why}", stacklevel=stacklevel)


def as_float32(value: Any) -> Any:
    """A number as a float32 array; schedules, ``None`` and traced values unchanged.

    Hyperparameters handed to Optax transforms go through this, so that a
    Python number and the array :func:`optax.inject_hyperparams` passes give the
    same arithmetic (a Python float would otherwise compute bf16 leaves in bf16).
    """
    if value is None or callable(value) or isinstance(value, jax.core.Tracer):
        return value
    return jnp.asarray(value, jnp.float32)


def as_schedule(value: Any) -> Callable[[jax.Array], Any]:
    """Turns a number into a constant schedule; schedules are returned as they are."""
    return value if callable(value) else (lambda count: value)


def require_params(params: Any, transform: str) -> None:
    """Raises the error every parameter-space transform gives when ``params`` is missing."""
    if params is None:
        raise ValueError(
            f"sparsejax.{transform} acts in parameter space and needs the current params: "
            "call tx.update(grads, state, params), and put it last in an optax.chain "
            "(first, for freeze_zeros)."
        )

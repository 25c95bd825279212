"""PyTorch-style SGD: the inner optimizer every sparsejax method builds on.

The papers behind sparsejax train with PyTorch's ``torch.optim.SGD`` (coupled
weight decay, heavy-ball or Nesterov momentum with no dampening).
:func:`pytorch_sgd` is that rule as one Optax transform, used by prox-SGD, the
soft-threshold reparameterisations and the trainer's registry alike.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import as_float32, check_number
from sparsejax.optim._common import compute_dtype
from sparsejax.tree import PyTree, broadcast_prefix

__all__ = ["pytorch_sgd"]


def _wide(g: jax.Array) -> bool:
    """Whether ``g`` computes wider than float32 (a float64 leaf under ``jax_enable_x64``)."""
    return compute_dtype(g.dtype) != jnp.float32


def _per_dtype(narrow: Any, wide: Any, updates: Any) -> Any:
    """Leaf by leaf: ``wide``'s value for float64 leaves, else ``narrow``'s (float32 arithmetic)."""
    return jax.tree.map(lambda n, w, g: w if _wide(g) else n, narrow, wide, updates)


def _momentum(momentum: Any, nesterov: bool) -> optax.GradientTransformation:
    """``optax.trace`` whose buffer keeps each gradient's dtype (bf16 stays bf16).

    The decay computes in float32 for bf16/f32 leaves and at full precision for
    float64 leaves (the unused branch of each leaf is removed by XLA).
    """
    trace = optax.trace(decay=as_float32(momentum), nesterov=nesterov)
    trace_wide = optax.trace(decay=momentum, nesterov=nesterov)

    def update_fn(updates, state, params=None):
        new_updates, new_state = trace.update(updates, state, params)
        wide_updates, wide_state = trace_wide.update(updates, state, params)
        new_updates = _per_dtype(new_updates, wide_updates, updates)
        new_trace = _per_dtype(new_state.trace, wide_state.trace, updates)
        cast = lambda t, g: t.astype(g.dtype)  # noqa: E731
        new_state = optax.TraceState(trace=jax.tree.map(cast, new_trace, updates))
        return jax.tree.map(cast, new_updates, updates), new_state

    return optax.GradientTransformation(trace.init, update_fn)


def _learning_rate(learning_rate: Any) -> optax.GradientTransformation:
    """``optax.scale_by_learning_rate`` in float32 (float64 for float64 leaves).

    Each update is cast back to its gradient's dtype.
    """
    scale = optax.scale_by_learning_rate(as_float32(learning_rate))
    scale_wide = optax.scale_by_learning_rate(learning_rate)

    def update_fn(updates, state, params=None):
        new_updates, new_state = scale.update(updates, state, params)
        wide_updates, _ = scale_wide.update(updates, state, params)
        new_updates = _per_dtype(new_updates, wide_updates, updates)
        return jax.tree.map(lambda u, g: u.astype(g.dtype), new_updates, updates), new_state

    return optax.GradientTransformation(scale.init, update_fn)


def _coupled_weight_decay(rates: Any) -> optax.GradientTransformation:
    """``g + rate * params`` in each gradient's dtype; ``rates``: a prefix pytree of the params."""

    def init_fn(params: optax.Params) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "sparsejax.pytorch_sgd with weight_decay adds weight_decay * params to the "
                "gradient and needs the params: call tx.update(grads, state, params)."
            )
        per_leaf = broadcast_prefix(rates, updates, what="weight_decay")
        new = jax.tree.map(
            lambda g, p, r: (g + jnp.asarray(r, compute_dtype(p.dtype)) * p).astype(g.dtype),
            updates,
            params,
            per_leaf,
        )
        return new, state

    return optax.GradientTransformation(init_fn, update_fn)


def _is_zero(rates: Any) -> bool:
    """Whether every rate is a Python number equal to 0.

    Arrays (concrete or traced, as :func:`optax.inject_hyperparams` passes them)
    always keep the weight-decay stage, so the state has the same structure in
    ``init`` and ``update``.
    """
    return all(isinstance(r, (int, float)) and r == 0 for r in jax.tree.leaves(rates))


def pytorch_sgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    weight_decay: float | PyTree = 0.0,
) -> optax.GradientTransformation:
    r"""SGD as ``torch.optim.SGD`` computes it (coupled weight decay, no dampening).

    .. math::

      g_t &\leftarrow \nabla f(w_t) + \lambda\, w_t, \\
      b_t &= \mu\, b_{t-1} + g_t \quad (b_0 = g_1), \\
      u_t &= -\eta_t \cdot \begin{cases} g_t + \mu\, b_t & \text{Nesterov} \\
                                     b_t & \text{heavy ball} \end{cases}

    Unlike ``optax.sgd`` with momentum, the momentum buffer keeps each
    gradient's dtype (a bf16 leaf keeps a bf16 buffer), and the
    hyperparameters compute in float32 whether they are numbers or injected by
    :func:`optax.inject_hyperparams` (in float64 for float64 leaves).

    Args:
      learning_rate: :math:`\eta`, a number or an ``optax`` schedule.
      momentum: :math:`\mu` in ``[0, 1)``, or ``None`` for plain SGD.
      nesterov: Nesterov momentum instead of heavy ball.
      weight_decay: :math:`\lambda \ge 0`, coupled (added to the gradient, as
        in PyTorch; not AdamW's decoupled decay). A number, or a pytree of
        numbers that is a prefix of the params (per-leaf rates). Needs
        ``params`` in ``update`` when non-zero.

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> tx = sj.pytorch_sgd(learning_rate=0.1, momentum=0.9, weight_decay=1e-4)
      >>> params = {'w': jnp.ones(3)}
      >>> updates, state = tx.update({'w': jnp.ones(3)}, tx.init(params), params)
      >>> print(updates['w'])
      [-0.10001 -0.10001 -0.10001]

    References:
      Sutskever, Martens, Dahl, Hinton, `On the importance of initialization and
      momentum in deep learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, 2013
      (the momentum form PyTorch implements).
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    if momentum is not None:
        check_number("momentum", momentum, ge=0, lt=1, scalar=True)
    for r in jax.tree.leaves(weight_decay):
        check_number("weight_decay", r, ge=0)
    parts = []
    if not _is_zero(weight_decay):
        parts.append(_coupled_weight_decay(weight_decay))
    if momentum is not None:
        parts.append(_momentum(momentum, nesterov))
    parts.append(_learning_rate(learning_rate))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)

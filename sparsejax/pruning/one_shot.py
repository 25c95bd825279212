"""Any-sparsity evaluation: a trained network pruned one-shot at several ratios, without retraining."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np

from sparsejax._validation import check_choice
from sparsejax.pruning.magnitude import prune
from sparsejax.tree import Mask, resolve_mask
from sparsejax.tree import PyTree

__all__ = ["CurvePoint", "one_shot_curve"]


class CurvePoint(NamedTuple):
    """One point of :func:`one_shot_curve`.

    Attributes:
      ratio: the pruning ratio asked for (share of the selected weights removed).
      metric: what ``evaluate`` returned for the pruned params (e.g. test accuracy).
      sparsity: the share of exact zeros among the selected weights after
        pruning; above ``ratio`` when the network already had more zeros.
    """

    ratio: float
    metric: float
    sparsity: float


def _zero_share(params: PyTree, selected: PyTree) -> float:
    chosen = [x for x, s in zip(jax.tree.leaves(params), jax.tree.leaves(selected)) if s]
    total = sum(int(np.size(x)) for x in chosen)
    zeros = sum(int(np.size(x)) - int(np.count_nonzero(np.asarray(x))) for x in chosen)
    return zeros / max(total, 1)


def one_shot_curve(
    params: PyTree,
    evaluate: Callable[[PyTree], float],
    ratios: Sequence[float],
    *,
    scope: str = "global",
    mask: Mask = None,
) -> list[CurvePoint]:
    r"""Evaluates ``params`` pruned one-shot by magnitude at each ratio: an "any-sparsity" curve.

    For each ratio :math:`r`, the :math:`\operatorname{round}(rN)` selected
    weights of smallest magnitude are set to zero (:func:`sparsejax.pruning.prune`,
    ``scope='global'``: one threshold for all selected leaves, or
    ``'layerwise'``: every leaf at :math:`r`), and the pruned params, with no
    retraining, are passed to ``evaluate``. Exact zeros are the smallest
    magnitudes, so a network that is already sparser than :math:`r` is
    evaluated as it is. A method whose accuracy holds up to high ratios
    ("one-shot, any-sparsity, no retraining", Miao et al.) has a flat curve.

    Args:
      params: the trained parameter pytree (e.g. ``FitResult.params``).
      evaluate: ``params -> metric`` (e.g. test accuracy of the model with these params).
      ratios: pruning ratios in ``[0, 1)``.
      scope: ``'global'`` or ``'layerwise'``.
      mask: which leaves are pruned and counted: ``None`` (the default) for
        every leaf, a path regex, a pytree of booleans or a callable such as
        :func:`sparsejax.tree.weights_only` (conv and dense kernels, the
        usual choice).

    Returns:
      One :class:`CurvePoint` ``(ratio, metric, sparsity)`` per ratio, in the
      order given.

    Raises:
      ValueError: for an unknown scope, a ratio outside ``[0, 1)`` or no ratios.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.1, -2.0], [0.5, 0.0]]), 'bias': jnp.ones(2)}
      >>> curve = sj.pruning.one_shot_curve(params, lambda p: float(jnp.sum(jnp.abs(p['kernel']))),
      ...                                   [0.0, 0.5, 0.75], mask=sj.tree.weights_only)
      >>> [(round(r, 2), round(m, 2), round(s, 2)) for r, m, s in curve]
      [(0.0, 2.6, 0.25), (0.5, 2.5, 0.5), (0.75, 2.0, 0.75)]

    References:
      Miao et al., *Learning Pruning-Friendly Networks via Frank-Wolfe:
      One-Shot, Any-Sparsity, and No Retraining*, ICLR 2022 (the any-sparsity
      evaluation); Han, Pool, Tran and Dally, *Learning both Weights and
      Connections for Efficient Neural Networks*, NeurIPS 2015.
    """
    check_choice("scope", scope, ("global", "layerwise"))
    if not len(ratios):
        raise ValueError("ratios must hold at least one pruning ratio in [0, 1)")
    for r in ratios:
        if isinstance(r, bool) or not isinstance(r, (int, float, np.floating)) or not 0 <= r < 1:
            raise ValueError(f"each pruning ratio must be a number in [0, 1), got {r!r}")
    selected = resolve_mask(mask, params, nonempty=True)
    points = []
    for r in ratios:
        pruned, _ = prune(params, float(r), scope=scope, mask=mask)
        points.append(CurvePoint(float(r), float(evaluate(pruned)), _zero_share(pruned, selected)))
    return points

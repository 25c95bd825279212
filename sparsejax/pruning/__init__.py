"""Functional pruning of parameter pytrees: supports, magnitude pruning, retraining, gradual pruning.

Everything here works on plain pytrees (nested dicts, lists, Flax NNX states
as pure dicts) and never imports Flax:

* supports (:mod:`~sparsejax.pruning.support`): which entries are kept, as
  pytrees of booleans with ``None`` for dense leaves; :func:`apply_support`, :func:`support_from_zeros`,
  :func:`support_intersection`, :func:`support_union`, packing, sparsity;
* one-shot magnitude pruning, global or layer-wise, uniform or ERK
  (:func:`prune`), on a fast threshold selection (:func:`select_global`);
* any-sparsity evaluation (:func:`one_shot_curve`): a trained network pruned
  one-shot at several ratios and evaluated without retraining;
* retraining with a fixed support (:func:`fixed_support`), gradual magnitude
  pruning (:func:`gradual_pruning`) and pruning at initialisation
  (:func:`lats_prune_at_init`), all Optax transforms;
* sparsity patterns (``pattern=``: unstructured, N:M, blocks, channels; see
  :mod:`sparsejax.patterns`) and mask-based sparse training around any
  optimizer: :func:`static_sparse`, :func:`set_`, :func:`rigl` and
  :func:`ste_pruning` (:mod:`~sparsejax.pruning.dynamic`, :mod:`~sparsejax.pruning.ste`);
* summaries (:func:`format_sparsity`, re-exported from :mod:`sparsejax.summary`)
  and plots (:func:`plot_layer_sparsity`, :func:`plot_weight_histogram`).

Greedy structured pruning of the zoo's Flax models (local and global imitation,
:func:`~sparsejax.structured.greedy_prune`, :func:`~sparsejax.structured.shrink`)
lives in :mod:`sparsejax.structured`; its names are also reachable here
(``pruning.local_imitation``), imported on first use.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import sparsejax as sj
  >>> params = {'dense': {'kernel': jax.random.normal(jax.random.key(0), (4, 5)),
  ...                     'bias': jnp.zeros(5)}}
  >>> pruned, support = sj.pruning.prune(params, 0.75, mask=sj.tree.weights_only)
  >>> print(sj.pruning.format_sparsity(pruned, sj.tree.weights_only))
  path          shape   nonzeros / size  sparsity
  dense/kernel  (4, 5)         5 / 20      75.00%
  total                        5 / 20      75.00%
"""

from sparsejax.pruning.distribution import erk_densities, layer_remove_counts
from sparsejax.pruning.gradual import GradualPruningState, gradual_pruning, polynomial_sparsity
from sparsejax.pruning.magnitude import num_to_remove, prune
from sparsejax.pruning.support import (
    Support,
    apply_support,
    check_support,
    support_intersection,
    support_sparsity,
    support_sparsity_per_leaf,
    support_union,
    support_from_zeros,
    pack_support,
    unpack_support,
    pack_bits,
    unpack_bits,
)
from sparsejax.pruning.one_shot import CurvePoint, one_shot_curve
from sparsejax.pruning.plots import plot_layer_sparsity, plot_weight_histogram
from sparsejax.pruning.retrain import FixedSupportState, fixed_support
from sparsejax.select import (
    order_keys,
    select_global,
    select_global_argsort,
    select_layerwise,
)
from sparsejax.summary import format_sparsity, sparsity_summary
from sparsejax.patterns import is_n_m_sparse
from sparsejax.pruning.saliency import random_scores, saliency_scores, snip_scores, uniform_scores
from sparsejax.pruning.dynamic import (
    SparseTrainingState,
    cosine_drop_fraction,
    dst_update_due,
    reset_state_entries,
    rigl,
    set_,
    static_sparse,
)
from sparsejax.pruning.ste import STEState, ste_dense_params, ste_pruning, ste_update_due

# After fixed_support, which it builds on.
from sparsejax.pruning.at_init import PruneAtInitState, lats_prune_at_init

__all__ = [
    "CurvePoint",
    "FixedSupportState",
    "GradualPruningState",
    "PruneAtInitState",
    "Support",
    "apply_support",
    "check_support",
    "erk_densities",
    "fixed_support",
    "format_sparsity",
    "gradual_pruning",
    "lats_prune_at_init",
    "layer_remove_counts",
    "support_intersection",
    "support_sparsity",
    "support_sparsity_per_leaf",
    "support_union",
    "support_from_zeros",
    "num_to_remove",
    "one_shot_curve",
    "order_keys",
    "pack_support",
    "plot_layer_sparsity",
    "plot_weight_histogram",
    "polynomial_sparsity",
    "prune",
    "select_global",
    "select_global_argsort",
    "select_layerwise",
    "sparsity_summary",
    "unpack_support",
    "pack_bits",
    "unpack_bits",
    # sparsity patterns and mask-based sparse training (static, SET, RigL, STE)
    "STEState",
    "SparseTrainingState",
    "cosine_drop_fraction",
    "dst_update_due",
    "is_n_m_sparse",
    "reset_state_entries",
    "random_scores",
    "rigl",
    "saliency_scores",
    "set_",
    "snip_scores",
    "static_sparse",
    "ste_dense_params",
    "ste_pruning",
    "ste_update_due",
    "uniform_scores",
]


# Greedy structured pruning (Ye, Wu, Liu 2020) lives in sparsejax.structured, which
# imports Flax and the model zoo; its names are forwarded from here on first use, so
# ``import sparsejax.pruning`` stays free of Flax.
_STRUCTURED = (
    "GreedyPruneResult",
    "ImitationResult",
    "ShrinkSummary",
    "contribution_gram",
    "format_shrink_summary",
    "gfs",
    "global_imitation",
    "greedy_prune",
    "local_discrepancy",
    "local_imitation",
    "local_imitation_from_gram",
    "output_discrepancy",
    "shrink",
    "shrink_summary",
)
__all__ += _STRUCTURED


def __getattr__(name: str):
    if name in _STRUCTURED:
        import importlib

        try:
            structured = importlib.import_module("sparsejax.structured")
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] != "flax":
                raise
            raise ModuleNotFoundError(
                f"sparsejax.pruning.{name} is greedy structured pruning (sparsejax.structured), "
                "which needs Flax: pip install 'sparsejax[models]'",
                name=e.name,
            ) from e
        return getattr(structured, name)
    raise AttributeError(f"module 'sparsejax.pruning' has no attribute {name!r}")

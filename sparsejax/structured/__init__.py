"""Greedy structured pruning of the zoo's models: imitation, layer-wise pruning, physical shrinking.

Ye, Wu and Liu (NeurIPS 2020) prune a trained network one prunable group
(neurons or channels) at a time, replacing the group's units by a sparse
convex combination of them chosen greedily, then remove the unchosen units.
This package works on :class:`sparsejax.models.PrunableModel` instances and
needs Flax (``pip install 'sparsejax[models]'``); :mod:`sparsejax.pruning`
forwards the same names here on first use, so ``import sparsejax`` stays free
of Flax.

* :mod:`~sparsejax.structured.imitation`: the result of pruning one group
  (:class:`ImitationResult`) and what the methods share: the greedy path on
  the simplex, argument checks, the network-output discrepancy
  (:func:`output_discrepancy`);
* :mod:`~sparsejax.structured.imitation_local`: local imitation in closed form
  on a Gram matrix (:func:`contribution_gram`, :func:`local_imitation`,
  :func:`local_imitation_from_gram`, :func:`local_discrepancy`);
* :mod:`~sparsejax.structured.imitation_global`: global imitation of the
  network output (:func:`global_imitation`);
* :mod:`~sparsejax.structured.greedy`: the whole network group by group
  (:func:`greedy_prune`, Algorithm 2), greedy forward selection (:func:`gfs`),
  and physical removal of the unchosen units (:func:`shrink`,
  :func:`shrink_summary`).

Example:
  >>> import jax
  >>> from sparsejax.models import create
  >>> from sparsejax import structured
  >>> model = create('mlp', num_classes=2, input_shape=(4,), hidden=(16,), rngs=0)
  >>> x = jax.random.normal(jax.random.key(0), (32, 4))
  >>> r = structured.local_imitation(model, 'layers/0', x, n=5)
  >>> structured.shrink(model, [r]).layers[0].kernel.shape == (4, r.n)
  True
"""

from sparsejax.structured.greedy import (
    GreedyPruneResult,
    ShrinkSummary,
    format_shrink_summary,
    gfs,
    greedy_prune,
    shrink,
    shrink_summary,
)
from sparsejax.structured.imitation import ImitationResult, output_discrepancy
from sparsejax.structured.imitation_global import global_imitation
from sparsejax.structured.imitation_local import (
    contribution_gram,
    local_discrepancy,
    local_imitation,
    local_imitation_from_gram,
)

__all__ = [
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
]

"""Choosing the k smallest (or largest) entries of a pytree without sorting it.

Magnitude pruning needs the set of the :math:`k` smallest scores, over one
leaf (layer-wise) or over all leaves together (global). A full sort of
millions of weights is not needed for that: the :math:`k`-th smallest score
:math:`\\tau` is enough, and it is found by bisection with counting passes.

* Each score (as float32) is mapped to an unsigned 32-bit *key* whose integer
  order is the float order (``-0.0`` reads as ``0.0``; NaN is larger than
  ``+inf``).
* A strided sample of at most ``sample_size`` keys is sorted (cheap), and
  the keys around rank :math:`k\\,m/n` in it give a bracket for :math:`\\tau`;
  one counting pass checks the bracket (a wrong guess costs one pass and falls
  back to the full key range).
* Bisection on the key range, one counting pass per halving, finds the
  smallest key :math:`\\tau` with :math:`\\#\\{\\text{key} \\le \\tau\\} \\ge k`.
  For groups of at most :math:`2^{24}` entries the passes count on float32
  digits of the keys (the top 24 bits, then the low 8 bits among the entries
  whose top bits equal :math:`\\tau`'s, unless all of those are removed), each
  count an exact float32 sum of zeros and ones that XLA:CPU vectorises; a sum
  of comparisons runs element by element, about 5x slower per pass. A group
  whose search is over is not counted again. Larger groups count on the
  integer keys.
* Everything below :math:`\\tau` is pruned, and among the entries equal to
  :math:`\\tau` the first ones in position order (leaves in ``jax.tree.leaves``
  order, entries in row-major order) until :math:`k` are reached; a second
  bisection, over positions, finds them, and runs only when :math:`\\tau` is
  actually tied.

The result is *identical* to taking the first :math:`k` entries of a stable
``argsort`` of all the scores (:func:`select_global_argsort`, the reference),
ties included.

Float32 keys order ``float32``, ``bfloat16`` and ``float16`` scores exactly,
but not ``float64`` ones (two values one float32 apart read as equal) nor
integers beyond :math:`2^{24}`. A group (a leaf, or all leaves for a global
selection) holding a leaf of a *wide* dtype (a float of more than 32 bits or an
integer of more than 16) is therefore ranked exactly, by one stable sort of
the whole group on a pair of keys: the order key of the value rounded to
float64 (float32 when no leaf of the group has 64 bits), then the exact
integer difference between an integer and that rounded value (0 for floats).
Ties go to the lower position and NaN is largest, as with the float32 keys.
That sort is :math:`O(n \\log n)`; the search above serves the narrow dtypes.
All counts may be traced, so both run under ``jit`` with counts that change
from step to step (gradual pruning); a group of at most ``sample_size``
entries is simply sorted.

The same search gives the :math:`k` *largest* entries of one array
(:func:`top_k_mask`, the set ``jax.lax.top_k`` returns, as a mask), which is
what the linear minimisation oracle of Frank-Wolfe's K-sparse polytope needs at
every step. This module depends on nothing else in sparsejax but
:mod:`sparsejax.tree`, so that :mod:`sparsejax.constraints` can use it;
:mod:`sparsejax.pruning` re-exports the selection functions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.tree import PyTree

__all__ = [
    "order_keys",
    "select_global",
    "select_global_argsort",
    "select_layerwise",
    "top_k_mask",
]

_SAMPLE_SIZE = 1 << 16
_MAX_KEY = np.uint32(0xFFFFFFFF)
_MAX_HI = np.uint32(0xFFFFFF)  # the largest top-24-bit digit of a key
_F32_EXACT = 1 << 24  # float32 holds every integer up to this exactly


def order_keys(scores: jax.Array) -> jax.Array:
    """Maps scores to flat ``uint32`` keys whose integer order is the scores' float order.

    Scores are compared as float32. ``-0.0`` and ``0.0`` get the same key,
    every NaN gets one key above ``+inf`` (where a sort puts NaN). Subnormal
    values may read as zero where XLA flushes them (CPU, GPU), as they do in
    XLA's own sort.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> keys = sj.pruning.order_keys(jnp.array([-jnp.inf, -1.0, -0.0, 0.0, 2.0, jnp.inf, jnp.nan]))
      >>> bool(jnp.all(keys[1:] >= keys[:-1])), bool(keys[2] == keys[3])
      (True, True)
    """
    x = jnp.ravel(scores).astype(jnp.float32)
    x = jnp.where(x == 0, jnp.float32(0), x)
    x = jnp.where(jnp.isnan(x), jnp.float32(jnp.nan), x)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    negative = (bits >> 31) == 1
    return jnp.where(negative, ~bits, bits | np.uint32(0x80000000))


def _count(pred: jax.Array) -> jax.Array:
    return jnp.sum(pred, dtype=jnp.int32)


def _bisect(
    lo: jax.Array, hi: jax.Array, enough: Callable[[jax.Array, jax.Array], jax.Array]
) -> jax.Array:
    """Smallest ``v`` in ``[lo, hi]`` with ``enough(v)``, per group, in one while loop.

    ``enough(v, active)`` maps a vector of candidates (one per group) to
    booleans and must be monotone in ``v`` and true at ``hi``; ``active``
    marks the groups still searching (``lo < hi``), whose answers are used:
    ``enough`` may skip the work of the others. The loop runs until every
    group is done.
    """
    one = jnp.ones([], lo.dtype)

    def body(bounds: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        lo, hi = bounds
        active = lo < hi
        mid = lo + (hi - lo) // (one + one)
        ok = enough(mid, active)
        return jnp.where(active & ~ok, mid + one, lo), jnp.where(active & ok, mid, hi)

    lo, _ = jax.lax.while_loop(lambda b: jnp.any(b[0] < b[1]), body, (lo, hi))
    return lo


def _smallest_by_sort(flat: jax.Array, k: jax.Array) -> jax.Array:
    """The k smallest of a small group, by a stable argsort (no control flow to compile)."""
    rank = jnp.argsort(jnp.argsort(flat, stable=True))  # the inverse permutation
    return rank < k


def _sample_bracket(
    keys: list[jax.Array], k: jax.Array, sample_size: int, shift: int, top: np.uint32
) -> tuple[jax.Array, jax.Array]:
    """Per group, a guess ``[lo, hi]`` for the ``k``-th smallest of ``keys >> shift``.

    The values around rank :math:`k\\,m/n` (plus or minus :math:`2\\sqrt m + 2`)
    in a sorted strided sample of :math:`m \\le` ``sample_size`` entries; 0 and
    ``top`` where that rank range leaves the sample. The caller checks the guess.
    """
    lo, hi = [], []
    for x, kk in zip(keys, k):
        n = int(x.size)
        sample = jnp.sort(x[:: math.ceil(n / sample_size)] >> shift)
        m = int(sample.size)
        rank = kk.astype(jnp.float32) * (m / n)
        margin = 2.0 * math.sqrt(m) + 2.0
        lo_i = jnp.floor(rank - margin).astype(jnp.int32)
        hi_i = jnp.ceil(rank + margin).astype(jnp.int32)
        lo.append(jnp.where(lo_i >= 0, sample[jnp.clip(lo_i, 0, m - 1)], np.uint32(0)))
        hi.append(jnp.where(hi_i < m, sample[jnp.clip(hi_i, 0, m - 1)], top))
    return jnp.stack(lo), jnp.stack(hi)


def _smallest_by_bisection_int(
    flats: list[jax.Array], k: jax.Array, sample_size: int
) -> list[jax.Array]:
    """The k[g] smallest entries of each large group g, by bisection on the uint32 keys.

    The general path (any group size); :func:`_smallest_by_bisection_f32` is the fast one.
    """
    sizes = [int(x.size) for x in flats]
    g = range(len(flats))

    def counts(pred: Any, values: jax.Array) -> jax.Array:
        return jnp.stack([_count(pred(flats[i], values[i])) for i in g])

    # A bracket [lo, hi] for the k-th key from a sorted strided sample of each group.
    lo, hi = _sample_bracket(flats, k, sample_size, 0, _MAX_KEY)
    # One pass checks the brackets: count(key < lo) < k <= count(key <= hi).
    ok = (counts(jnp.less, lo) < k) & (counts(jnp.less_equal, hi) >= k)
    lo = jnp.where(ok, lo, np.uint32(0))
    hi = jnp.where(ok, hi, _MAX_KEY)
    tau = _bisect(lo, hi, lambda v, _: counts(jnp.less_equal, v) >= k)

    # Entries below tau are removed, and the first `need` entries equal to tau in position
    # order: a second bisection finds the position bound, for the groups where tau is tied
    # (for the others the loop does nothing). A prefix sum would do it in one pass, but
    # XLA compiles it slowly for millions of entries.
    need = k - counts(jnp.less, tau)
    tied = need != counts(jnp.equal, tau)
    total = jnp.asarray(sizes, jnp.int32)
    eqs = [x == tau[i] for i, x in enumerate(flats)]
    positions = [jnp.arange(n, dtype=jnp.int32) for n in sizes]

    def enough(bound: jax.Array, _: jax.Array) -> jax.Array:
        return jnp.stack([_count(eqs[i] & (positions[i] < bound[i])) for i in g]) >= need

    bound = _bisect(jnp.where(tied, 0, total), total, enough)
    return [
        ((x < tau[i]) | (eqs[i] & (positions[i] < bound[i]))) & (k[i] > 0)
        for i, x in enumerate(flats)
    ]


def _count_ge(f: jax.Array, a: jax.Array) -> jax.Array:
    """``#{f >= a}`` for float32 arrays of integers below ``2**24`` (exact, as int32).

    ``min(max(f, a - 1), a) - (a - 1)`` is exactly 1 where ``f >= a`` and 0
    elsewhere, and a float32 sum of at most ``2**24`` zeros and ones is exact.
    XLA:CPU vectorises this sum; a sum of comparisons (``jnp.sum(f >= a)``) or
    of integer arithmetic runs element by element, about 5x slower (so does
    this sum when ``a`` is a compile-time constant: XLA rewrites it into a
    comparison; the bisections' thresholds are runtime values).
    """
    a = a.astype(jnp.float32)
    below = a - 1
    return jnp.sum(jnp.minimum(jnp.maximum(f, below), a) - below).astype(jnp.int32)


def _smallest_by_bisection_f32(
    keys: list[jax.Array], k: jax.Array, sample_size: int
) -> list[jax.Array]:
    """:func:`_smallest_by_bisection_int`'s result, with counting passes on float32 digits.

    For groups of at most ``2**24`` entries. Each key is split into its top 24
    bits ``H`` and its low 8 bits ``L``, exact as float32 integers, and every
    count is a :func:`_count_ge` sum. The threshold is found in two bisections:
    ``H``'s value :math:`\\tau_H`, then, among the entries with
    :math:`H = \\tau_H`, ``L``'s value :math:`\\tau_L` (255 without a search
    where all of them are removed: often a single entry has :math:`\\tau_H`); ties at
    :math:`\\tau = 2^8\\tau_H + \\tau_L` are resolved by position, as in the integer path.
    """
    sizes = [int(x.size) for x in keys]
    g = range(len(keys))
    hi_digits = [(x >> 8).astype(jnp.float32) for x in keys]

    def count_ge(arrays: list[jax.Array], values: jax.Array,
                 active: jax.Array | None = None) -> jax.Array:
        # Inside a bisection a group that is done is not counted (its count is not used).
        if active is None:
            return jnp.stack([_count_ge(arrays[i], values[i]) for i in g])
        return jnp.stack([
            jax.lax.cond(active[i], lambda i=i: _count_ge(arrays[i], values[i]),
                         lambda: jnp.zeros([], jnp.int32))
            for i in g
        ])

    def count_le(arrays: list[jax.Array], values: jax.Array,
                 active: jax.Array | None = None) -> jax.Array:
        return total - count_ge(arrays, values + 1, active)

    total = jnp.asarray(sizes, jnp.int32)
    # A bracket [lo, hi] for tau_H from a sorted strided sample of each group.
    lo, hi = _sample_bracket(keys, k, sample_size, 8, _MAX_HI)
    lo, hi = lo.astype(jnp.int32), hi.astype(jnp.int32)
    # One pass checks the brackets: #{H < lo} < k <= #{H <= hi}.
    ok = (total - count_ge(hi_digits, lo) < k) & (count_le(hi_digits, hi) >= k)
    lo = jnp.where(ok, lo, 0)
    hi = jnp.where(ok, hi, np.int32(_MAX_HI))
    tau_hi = _bisect(lo, hi, lambda v, active: count_le(hi_digits, v, active) >= k)
    below_hi = total - count_ge(hi_digits, tau_hi)  # #{H < tau_H} < k
    upto_hi = total - count_ge(hi_digits, tau_hi + 1)  # #{H <= tau_H} >= k

    # Among the entries with H = tau_H, the low digit (256 elsewhere, above every digit).
    # Where all of them are removed (often: one entry has this H), tau_L = 255 from the start.
    lo_digits = [
        jnp.where((x >> 8) == tau_hi[i].astype(jnp.uint32),
                  (x & np.uint32(0xFF)).astype(jnp.float32), jnp.float32(256))
        for i, x in enumerate(keys)
    ]
    rest = k - below_hi
    tau_lo = _bisect(jnp.where(rest == upto_hi - below_hi, np.int32(255), np.int32(0)),
                     jnp.full_like(k, 255),
                     lambda v, active: count_le(lo_digits, v, active) >= rest)
    ge_lo = count_ge(lo_digits, tau_lo)
    below = below_hi + (total - ge_lo)  # #{key < tau}
    equal = ge_lo - count_ge(lo_digits, tau_lo + 1)  # #{key == tau}
    tau = (tau_hi.astype(jnp.uint32) << 8) | tau_lo.astype(jnp.uint32)

    # Ties at tau: the first `need` equal entries in position order (positions < 2**24 are
    # exact float32 integers), found by a third bisection where tau is actually tied.
    need = k - below
    tied = need != equal
    eqs = [x == tau[i] for i, x in enumerate(keys)]
    positions = [
        jnp.where(e, jnp.arange(n, dtype=jnp.float32), jnp.float32(n)) for e, n in zip(eqs, sizes)
    ]
    bound = _bisect(jnp.where(tied, 0, total), total,
                    lambda b, active: total - count_ge(positions, b, active) >= need)
    return [
        ((x < tau[i]) | (eqs[i] & (jnp.arange(sizes[i], dtype=jnp.int32) < bound[i]))) & (k[i] > 0)
        for i, x in enumerate(keys)
    ]


def _smallest_by_bisection(
    flats: list[jax.Array], k: jax.Array, sample_size: int
) -> list[jax.Array]:
    """The k[g] smallest entries of each large group g, found by bisection on the keys."""
    if max(int(x.size) for x in flats) <= _F32_EXACT:
        return _smallest_by_bisection_f32(flats, k, sample_size)
    return _smallest_by_bisection_int(flats, k, sample_size)


def _smallest(flats: list[jax.Array], k: jax.Array, sample_size: int) -> list[jax.Array]:
    """Flat boolean arrays: the ``k[g]`` smallest keys of each flat array ``flats[g]``."""
    k = jnp.clip(k.astype(jnp.int32), 0, jnp.asarray([x.size for x in flats], jnp.int32))
    out: list[Any] = [None] * len(flats)
    large = [i for i, x in enumerate(flats) if x.size > sample_size]
    for i, x in enumerate(flats):
        if x.size == 0:
            out[i] = jnp.zeros(0, bool)
        elif i not in large:
            out[i] = _smallest_by_sort(x, k[i])
    if large:
        found = _smallest_by_bisection(
            [flats[i] for i in large], k[jnp.asarray(large)], sample_size
        )
        for i, p in zip(large, found):
            out[i] = p
    return out


def _is_wide(x: jax.Array) -> bool:
    """Whether float32 keys may misorder ``x``'s dtype: floats over 32 bits, integers over 16."""
    dtype = jnp.dtype(x.dtype)
    if jnp.issubdtype(dtype, jnp.integer):
        return dtype.itemsize > 2
    return jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize > 4


def _float_bits_keys(h: jax.Array) -> jax.Array:
    """:func:`order_keys` of a float32 or float64 array without a cast (unsigned keys of its width).

    Zeros and NaNs are found on the bits, so no value is flushed on the way.
    """
    wide = jnp.dtype(h.dtype).itemsize == 8
    udt = np.uint64 if wide else np.uint32
    sign = udt(1 << (63 if wide else 31))
    inf = udt(0x7FF0000000000000 if wide else 0x7F800000)
    nan = udt(0x7FF8000000000000 if wide else 0x7FC00000)
    bits = jax.lax.bitcast_convert_type(h, udt)
    magnitude = bits & ~sign
    bits = jnp.where(magnitude == 0, udt(0), bits)  # -0.0 reads as 0.0
    bits = jnp.where(magnitude > inf, nan, bits)  # every NaN, one key above +inf
    return jnp.where((bits & sign) != 0, ~bits, bits | sign)


def _int_residual(x: jax.Array, h: jax.Array) -> jax.Array:
    """``x - h`` exactly, as int32, for integers ``x`` and their float rounding ``h``.

    ``|x - h|`` is at most half a unit in the last place of ``h``: below
    :math:`2^{11}` for 64-bit integers and float64, :math:`2^{7}` for 32-bit
    ones and float32. ``h`` is clipped into the integer range (it may round up
    to :math:`2^b`) before the exact integer subtraction.
    """
    info = jnp.iinfo(x.dtype)
    fdt = np.dtype(h.dtype)
    top = np.asarray(info.max, fdt)
    if int(top) > info.max:  # the largest float of h's dtype that is at most info.max
        top = np.nextafter(top, fdt.type(-np.inf))
    clipped = jnp.clip(h, fdt.type(info.min), fdt.type(top))
    c = clipped.astype(x.dtype)
    above = (h - clipped).astype(jnp.int32)  # 0, or h - top where h rounded past info.max
    diff = jnp.where(x >= c, (x - c).astype(jnp.int32), -(c - x).astype(jnp.int32))
    return diff - above


def _smallest_exact(leaves: list[jax.Array], k: jax.Array) -> jax.Array:
    """Flat booleans over the concatenated ``leaves``: the ``k`` smallest, ranked exactly.

    One stable sort on two keys (see the module docstring): the order key of
    each value rounded to float64 (float32 when no leaf has 64 bits), then the
    exact difference between an integer and its rounding. Ties go to the lower
    position, NaN is largest.
    """
    wide = any(jnp.dtype(x.dtype).itemsize == 8 for x in leaves)
    fdt = jnp.float64 if wide else jnp.float32
    primary, secondary = [], []
    for x in leaves:
        x = jnp.ravel(x)
        if jnp.issubdtype(x.dtype, jnp.complexfloating):
            x = jnp.real(x)
        h = x.astype(fdt)
        primary.append(_float_bits_keys(h))
        if jnp.issubdtype(x.dtype, jnp.integer):
            secondary.append(_int_residual(x, h))
        else:
            secondary.append(jnp.zeros(x.shape, jnp.int32))
    primary_keys = jnp.concatenate(primary) if len(primary) > 1 else primary[0]
    secondary_keys = jnp.concatenate(secondary) if len(secondary) > 1 else secondary[0]
    n = int(primary_keys.size)
    positions = jnp.arange(n, dtype=jnp.int32)
    if n == 0:
        return jnp.zeros(0, bool)
    *_, order = jax.lax.sort((primary_keys, secondary_keys, positions), num_keys=3)
    rank = jnp.zeros(n, jnp.int32).at[order].set(positions)
    return rank < jnp.clip(jnp.asarray(k, jnp.int32), 0, n)


def _leaves(scores: PyTree) -> tuple[list[Any], Any]:
    leaves, treedef = jax.tree.flatten(scores)
    return leaves, treedef


def _keep_support(leaves: list[Any], pruned: list[jax.Array], treedef: Any) -> PyTree:
    return jax.tree.unflatten(
        treedef, [~p.reshape(jnp.shape(x)) for x, p in zip(leaves, pruned)]
    )


@functools.partial(jax.jit, static_argnames=("layerwise", "sample_size"))
def pruned_entries(
    scores: list[jax.Array], counts: jax.Array, layerwise: bool, sample_size: int = _SAMPLE_SIZE
) -> list[jax.Array]:
    """Flat boolean arrays, True for the removed entries (jitted once per tree shape).

    ``counts`` holds one count (global) or one per leaf (``layerwise``). A
    group with a leaf of a wide dtype (float64, integers over 16 bits) is
    ranked exactly by :func:`_smallest_exact`; the others by their float32 keys.
    """
    counts = jnp.reshape(counts, (-1,))
    if layerwise:
        narrow = [i for i, x in enumerate(scores) if not _is_wide(x)]
        out: list[Any] = [None] * len(scores)
        if narrow:
            found = _smallest([order_keys(scores[i]) for i in narrow],
                              counts[jnp.asarray(narrow)], sample_size)
            for i, p in zip(narrow, found):
                out[i] = p
        for i, x in enumerate(scores):
            if out[i] is None:
                out[i] = _smallest_exact([x], counts[i])
        return out
    if any(_is_wide(x) for x in scores):
        pruned = _smallest_exact(list(scores), counts[0])
    else:
        # Global: one flat array; one reduction per pass compiles and runs faster than one
        # per leaf.
        keys = [order_keys(x) for x in scores]
        flat = jnp.concatenate(keys) if len(keys) > 1 else keys[0]
        pruned = _smallest([flat], counts[:1], sample_size)[0]
    offsets = np.cumsum([0] + [int(np.size(x)) for x in scores])
    return [pruned[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def select_global(scores: PyTree, num_remove: Any, *, sample_size: int = _SAMPLE_SIZE) -> PyTree:
    r"""Keep-support that remove the ``num_remove`` smallest scores over all leaves together.

    .. math::

      m_j = \mathbb{1}\big[\operatorname{rank}(s_j) > k\big],

    with ranks taken over the concatenation of all leaves (``jax.tree.leaves``
    order, row-major within a leaf) and ties ranked by position, so the result
    equals :func:`select_global_argsort`. No full sort is done (see the module
    docstring); ``num_remove`` may be traced.

    Args:
      scores: a pytree of arrays (``None`` leaves are skipped), compared as
        float32, or exactly where a leaf is float64 or an integer of more than
        16 bits (one full sort then, see the module docstring).
      num_remove: :math:`k`, the number of entries to remove (clipped to ``[0, n]``).
      sample_size: groups of at most this many entries are sorted directly;
        larger ones are sampled with this many entries to bracket the threshold.

    Returns:
      A pytree of boolean arrays with the scores' structure: ``False`` for the
      removed entries.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> scores = {'a': jnp.array([3.0, 1.0]), 'b': jnp.array([[1.0, 0.5]])}
      >>> sj.pruning.select_global(scores, 2)
      {'a': Array([ True, False], dtype=bool), 'b': Array([[ True, False]], dtype=bool)}
    """
    leaves, treedef = _leaves(scores)
    counts = jnp.reshape(jnp.asarray(num_remove, jnp.int32), (1,))
    return _keep_support(leaves, pruned_entries(leaves, counts, False, sample_size), treedef)


def select_layerwise(
    scores: PyTree, num_remove: PyTree, *, sample_size: int = _SAMPLE_SIZE
) -> PyTree:
    """Keep-support that remove, in each leaf separately, its ``num_remove`` smallest scores.

    Ties inside a leaf are ranked by position (row-major), as a stable
    ``argsort`` of the leaf would.

    Args:
      scores: a pytree of arrays (``None`` leaves are skipped).
      num_remove: a pytree with the scores' structure holding one count per
        leaf (integers, possibly traced).
      sample_size: see :func:`select_global`.

    Returns:
      A pytree of boolean arrays with the scores' structure.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> scores = {'a': jnp.array([3.0, 1.0, 2.0]), 'b': jnp.array([1.0, 0.5])}
      >>> sj.pruning.select_layerwise(scores, {'a': 2, 'b': 0})
      {'a': Array([ True, False, False], dtype=bool), 'b': Array([ True,  True], dtype=bool)}
    """
    leaves, treedef = _leaves(scores)
    counts = jnp.stack([jnp.asarray(k, jnp.int32) for k in treedef.flatten_up_to(num_remove)])
    return _keep_support(leaves, pruned_entries(leaves, counts, True, sample_size), treedef)


@functools.partial(jax.jit, static_argnames=("k", "sample_size"))
def top_k_mask(x: jax.Array, k: int, *, sample_size: int = _SAMPLE_SIZE) -> jax.Array:
    r"""Boolean mask, with ``x``'s shape, of the entries ``jax.lax.top_k(x.ravel(), k)`` returns.

    .. math::

      m_j = \mathbb{1}\big[\#\{i : x_i \succ x_j\} + \#\{i < j : x_i = x_j\} < k\big],

    the :math:`k` largest entries in IEEE total order (:math:`-\mathrm{NaN} <
    -\infty < \dots < -0 < +0 < \dots < +\infty < \mathrm{NaN}`, subnormals
    kept apart from zero), ties going to the lower flattened position: the same
    set as ``lax.top_k``, which is what its tests check. Arrays of more than
    ``sample_size`` entries are not sorted: their keys (the float32 bit patterns,
    mapped so that integer order is total order, then complemented) go through
    the sampled-bracket bisection of :func:`select_layerwise` when the program
    runs on a CPU: on a 2-core XLA:CPU host the K-sparse LMO of a ResNet-18's
    21 kernels (:math:`k` = 5% of each) took 0.18 s this way against 0.88 s
    through ``lax.top_k`` (``benchmarks/pruning_select.py``). On other
    platforms (not measured), for smaller arrays and for dtypes wider than 32
    bits, ``lax.top_k`` itself marks them (``jax.lax.platform_dependent``
    decides when the program is lowered).

    Args:
      x: a float array (compared as float32 unless wider; ``bfloat16`` and
        ``float16`` convert exactly).
      k: how many entries to mark, ``0 <= k <= x.size`` (static).
      sample_size: see :func:`select_global`.

    Returns:
      A boolean array of ``x``'s shape with exactly ``k`` True entries.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.select.top_k_mask(jnp.array([[1.0, -3.0], [3.0, 2.0]]), 2)
      Array([[False, False],
             [ True,  True]], dtype=bool)
    """
    x = jnp.asarray(x)
    n = int(x.size)
    if not 0 <= k <= n:
        raise ValueError(f"top_k_mask: k must be in [0, {n}] for an array of {n} entries, got {k}")

    def by_top_k(x: jax.Array) -> jax.Array:
        mask = jnp.zeros(n, bool)
        if k > 0:
            _, idx = jax.lax.top_k(jnp.ravel(x), k)
            mask = mask.at[idx].set(True)
        return mask.reshape(x.shape)

    def by_search(x: jax.Array) -> jax.Array:
        # Bit patterns, no arithmetic: nothing is flushed or canonicalised on the way.
        bits = jax.lax.bitcast_convert_type(jnp.ravel(x).astype(jnp.float32), jnp.uint32)
        total_order = jnp.where((bits >> 31) == 1, ~bits, bits | np.uint32(0x80000000))
        largest_first = ~total_order
        found = _smallest([largest_first], jnp.full((1,), k, jnp.int32), sample_size)[0]
        return found.reshape(x.shape)

    if n <= sample_size or jnp.dtype(x.dtype).itemsize > 4:
        return by_top_k(x)
    # The search where it was measured faster (XLA:CPU); lax.top_k on the other platforms.
    return jax.lax.platform_dependent(x, cpu=by_search, default=by_top_k)


def select_global_argsort(scores: PyTree, num_remove: int) -> PyTree:
    """Reference for :func:`select_global`: a full stable ``argsort`` of all scores.

    Used by the tests and the benchmark; :math:`O(n \\log n)`. Scores are
    compared as float32, or exactly (the sort :func:`select_global` uses for
    them) where a leaf is float64 or an integer of more than 16 bits.

    Args:
      scores: a pytree of arrays.
      num_remove: the number of entries to remove (may be traced).

    Returns:
      Keep-support with the scores' structure.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.pruning.select_global_argsort({'a': jnp.array([2.0, 2.0, 1.0])}, 2)
      {'a': Array([False,  True, False], dtype=bool)}
    """
    leaves, treedef = _leaves(scores)
    if any(_is_wide(x) for x in leaves):  # exact ranks, as select_global
        pruned = _smallest_exact(leaves, jnp.asarray(num_remove, jnp.int32))
        offsets = np.cumsum([0] + [int(x.size) for x in leaves])
        out = [pruned[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        return _keep_support(leaves, out, treedef)
    flat = jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])
    order = jnp.argsort(flat, stable=True)
    pruned = jnp.zeros(flat.shape, bool).at[order].set(jnp.arange(flat.size) < num_remove)
    offsets = np.cumsum([0] + [int(x.size) for x in leaves])
    out = [pruned[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return _keep_support(leaves, out, treedef)

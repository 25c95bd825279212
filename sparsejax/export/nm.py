r"""N:M (2:4) kernels: detection, compression, metadata, and the GPU product where JAX has it.

A kernel :math:`W \in \mathbb{R}^{K \times N}` is *N:M sparse along its
inputs* when every output unit reads at most ``n`` nonzeros in each block of
``m`` consecutive inputs (Mishra et al. 2021). Sparse tensor cores (NVIDIA
Ampere and later) multiply such a matrix in half the time of a dense one;
JAX exposes them, in the versions that ship ``jax.experimental.sparse.nm``,
as ``nm_spmm`` (inputs in 16-bit types: bf16 here) with ``nm_pack`` building
the 2-bit-per-entry metadata. :func:`nm_support` says whether this process
can use it; sparse inference falls back to the dense product everywhere else
(and says why in its report).

Deviation: the metadata is packed on the host in NumPy (:func:`nm_metadata`,
the encoding of ``nm_pack``: the in-block positions of the kept entries,
``n`` per block, 2 bits each, four blocks per ``uint16``, first position in
the lowest bits) because ``nm_pack`` itself loops in Python over the
contracting dimension and takes minutes for an 8192-wide kernel.

References:
  Mishra, Latorre, Pool, Stosic, Stosic, Venkatesh, Yu, Micikevicius.
  "Accelerating Sparse Deep Neural Networks", arXiv:2104.08378, 2021.
"""

from __future__ import annotations

import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["is_nm", "nm_compress", "nm_matmul", "nm_metadata", "nm_support"]


def _module() -> Any | None:
    try:
        return importlib.import_module("jax.experimental.sparse.nm")
    except ImportError:
        return None


def nm_support() -> tuple[bool, str]:
    """Whether the N:M product ``nm_spmm`` can run here, and why (not).

    Returns:
      ``(available, reason)``: available only when the installed JAX ships
      ``jax.experimental.sparse.nm`` and the default backend is a GPU.

    Example:
      >>> from sparsejax.export import nm_support
      >>> ok, why = nm_support()
      >>> isinstance(ok, bool) and isinstance(why, str)
      True
    """
    mod = _module()
    if mod is None or not hasattr(mod, "nm_spmm"):
        return False, f"jax {jax.__version__} has no jax.experimental.sparse.nm.nm_spmm"
    backend = jax.default_backend()
    if backend not in ("gpu", "cuda", "rocm"):
        return False, f"nm_spmm runs only on GPU; the default backend is {backend}"
    return True, f"nm_spmm (jax {jax.__version__}, {backend})"


def _blocks(kernel: np.ndarray, m: int) -> np.ndarray:
    """``W^T`` as ``(N, K / m, m)`` blocks along the inputs."""
    w = np.asarray(kernel)
    if w.ndim != 2 or w.shape[0] % m:
        raise ValueError(f"an N:M kernel is 2-D (K, N) with K divisible by {m}, got {w.shape}")
    return w.T.reshape(w.shape[1], w.shape[0] // m, m)


def is_nm(kernel: np.ndarray, n: int = 2, m: int = 4) -> bool:
    """True if every block of ``m`` consecutive inputs of every output has at most ``n`` nonzeros.

    Example:
      >>> import numpy as np
      >>> from sparsejax.export import is_nm
      >>> w = np.array([[1.0], [0.0], [2.0], [0.0]])
      >>> is_nm(w), is_nm(np.ones((4, 1)))
      (True, False)
    """
    w = np.asarray(kernel)
    if w.ndim != 2 or w.shape[0] % m:
        return False
    return bool((np.count_nonzero(_blocks(w, m), axis=-1) <= n).all())


def nm_compress(kernel: np.ndarray, n: int = 2, m: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The kept values ``(N, K n / m)`` and the keep mask ``(N, K)`` of an N:M kernel ``(K, N)``.

    In each block exactly ``n`` entries are kept: the nonzeros, completed with
    zeros of the lowest in-block positions when a block has fewer.

    Raises:
      ValueError: if the kernel is not N:M sparse along its inputs.

    Example:
      >>> import numpy as np
      >>> from sparsejax.export import nm_compress
      >>> values, mask = nm_compress(np.array([[0.0], [3.0], [0.0], [0.0]]))
      >>> values.tolist(), mask.astype(int).tolist()
      ([[0.0, 3.0]], [[1, 1, 0, 0]])
    """
    if not is_nm(kernel, n, m):
        raise ValueError(f"the kernel is not {n}:{m} sparse along its inputs")
    blocks = _blocks(kernel, m)
    # Nonzeros first, then by position: a stable sort on "is zero".
    order = np.argsort(blocks == 0, axis=-1, kind="stable")[..., :n]
    order = np.sort(order, axis=-1)
    mask = np.zeros(blocks.shape, bool)
    np.put_along_axis(mask, order, True, axis=-1)
    values = np.take_along_axis(blocks, order, axis=-1)
    return values.reshape(blocks.shape[0], -1), mask.reshape(blocks.shape[0], -1)


def nm_metadata(mask: np.ndarray, n: int = 2, m: int = 4) -> np.ndarray:
    """The ``uint16`` metadata of an N:M keep mask ``(rows, K)``, as ``nm_pack`` encodes it.

    Each ``uint16`` holds the in-block positions of the ``n`` kept entries of
    ``16 / (n log2 m)`` consecutive blocks, position ``t`` (in order) times
    :math:`m^t`.

    Example:
      >>> import numpy as np
      >>> from sparsejax.export import nm_metadata
      >>> mask = np.array([[1, 1, 0, 0] * 4], bool)   # positions 0, 1 in each block
      >>> int(nm_metadata(mask)[0, 0]) == sum(j * 4 ** t for t, j in enumerate([0, 1] * 4))
      True
    """
    mask = np.asarray(mask, bool)
    bits = n * (m.bit_length() - 1)
    per = 16 // bits  # blocks per uint16
    width = m * per
    if mask.ndim != 2 or mask.shape[1] % width:
        raise ValueError(f"the mask must be (rows, K) with K divisible by {width}, got {mask.shape}")
    if not (mask.reshape(mask.shape[0], -1, m).sum(-1) == n).all():
        raise ValueError(f"each block of {m} must keep exactly {n} entries")
    pos = np.nonzero(mask.reshape(-1, m))[1].reshape(mask.shape[0], -1, n * per) % m
    weights = (m ** np.arange(n * per, dtype=np.int64))
    return (pos.astype(np.int64) * weights).sum(-1).astype(np.uint16)


def nm_matmul(x: jax.Array, values: jax.Array, metadata: jax.Array) -> jax.Array:
    """``x @ W`` for a 2:4 kernel given by its kept values ``(N, K/2)`` and metadata, on GPU.

    ``x`` and the values are cast to bf16 (``nm_spmm`` takes 16-bit inputs);
    the result is accumulated and returned in float32.

    Raises:
      RuntimeError: where :func:`nm_support` says the product is unavailable.
    """
    ok, why = nm_support()
    if not ok:
        raise RuntimeError(why)
    mod = _module()
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]).astype(jnp.bfloat16)
    y = mod.nm_spmm(x2, values.astype(jnp.bfloat16), metadata,
                    dimension_numbers=(((1,), (1,)), ((), ())), sparse_operand_idx=1,
                    output_dtype=jnp.float32)
    return y.reshape(*lead, values.shape[0])

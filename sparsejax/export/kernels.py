r"""Compressed kernels and the sparse matrix products of sparse inference.

A dense layer computes :math:`y = x W` with a kernel :math:`W \in \mathbb{R}^{K \times N}`
(``K`` input features, ``N`` outputs); a convolution computes the same product
on the image patches (im2col), with :math:`W` the kernel reshaped to
``(k_h k_w C_{in}, C_{out})``. :class:`CSRKernel` holds :math:`W^\top` in
compressed sparse row form (one row per output unit: the indices of the inputs
it reads and their weights), from which every format below is built:

* ``"bcsr"``: ``jax.experimental.sparse.BCSR`` of :math:`W^\top`,
  :math:`y = (W^\top x^\top)^\top`;
* ``"bcoo"``: ``jax.experimental.sparse.BCOO`` of :math:`W`, :math:`y = x W`;
* ``"segment"``: a ``jax.numpy`` kernel,
  :math:`y_{:, j} = \sum_{p:\ \mathrm{row}_p = j} x_{:, \mathrm{col}_p} v_p`
  with ``jax.ops.segment_sum`` over the nonzeros;
* ``"dense"``: the dense product.

All four give :math:`x W` up to float summation order, an empty row or column
and a kernel without any nonzero included.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse

__all__ = [
    "FORMATS",
    "CSRKernel",
    "conv_matrix",
    "conv_patches",
    "matmul_arrays",
    "sparse_matmul",
]

FORMATS = ("dense", "bcsr", "bcoo", "segment")


@dataclasses.dataclass(frozen=True)
class CSRKernel:
    r"""A kernel :math:`W \in \mathbb{R}^{K \times N}` stored as CSR of :math:`W^\top`.

    Attributes:
      shape: ``(K, N)``, the shape of :math:`W` (inputs, outputs).
      indptr: ``(N + 1,)`` row pointers of :math:`W^\top` (int32).
      indices: ``(nnz,)`` input index of each nonzero (int32), sorted within a row.
      data: ``(nnz,)`` the nonzero weights.
    """

    shape: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @classmethod
    def from_dense(cls, w: np.ndarray | jax.Array) -> CSRKernel:
        """Compresses a 2-D kernel ``(K, N)``; exact zeros are dropped.

        Example:
          >>> import numpy as np
          >>> from sparsejax.export import CSRKernel
          >>> k = CSRKernel.from_dense(np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 3.0]]))
          >>> k.indptr.tolist(), k.indices.tolist(), k.data.tolist()
          ([0, 2, 3], [0, 2, 2], [1.0, 2.0, 3.0])
        """
        w = np.asarray(w)
        if w.ndim != 2:
            raise ValueError(f"a CSR kernel is 2-D (inputs, outputs), got shape {w.shape}")
        wt = w.T
        rows, cols = np.nonzero(wt)
        indptr = np.zeros(wt.shape[0] + 1, np.int32)
        np.cumsum(np.bincount(rows, minlength=wt.shape[0]), out=indptr[1:])
        return cls((int(w.shape[0]), int(w.shape[1])), indptr, cols.astype(np.int32),
                   wt[rows, cols])

    @property
    def nnz(self) -> int:
        """The number of stored nonzeros."""
        return int(self.data.size)

    @property
    def density(self) -> float:
        """``nnz / (K N)``."""
        return self.nnz / max(1, math.prod(self.shape))

    def rows(self) -> np.ndarray:
        """The output index of each nonzero (the CSR row of :math:`W^\\top`), int32."""
        return np.repeat(np.arange(self.shape[1], dtype=np.int32), np.diff(self.indptr))

    def todense(self) -> np.ndarray:
        """The dense kernel ``(K, N)``.

        Example:
          >>> import numpy as np
          >>> from sparsejax.export import CSRKernel
          >>> w = np.array([[0.0, 1.0], [4.0, 0.0]])
          >>> bool((CSRKernel.from_dense(w).todense() == w).all())
          True
        """
        w = np.zeros(self.shape[::-1], self.data.dtype)
        w[self.rows(), self.indices] = self.data
        return w.T

    def arrays(self, fmt: str) -> dict[str, np.ndarray]:
        """The arrays format ``fmt`` computes with (see :func:`matmul_arrays`).

        ``"dense"``: ``{"dense"}``; ``"bcsr"``: ``{"data", "indices", "indptr"}``;
        ``"bcoo"`` and ``"segment"``: ``{"data", "indices", "rows"}``.
        """
        if fmt == "dense":
            return {"dense": self.todense()}
        if fmt == "bcsr":
            return {"data": self.data, "indices": self.indices, "indptr": self.indptr}
        if fmt in ("bcoo", "segment"):
            return {"data": self.data, "indices": self.indices, "rows": self.rows()}
        raise ValueError(f"unknown sparse format {fmt!r}; the formats are {FORMATS}")


def sparse_matmul(x: jax.Array, kernel: CSRKernel, fmt: str) -> jax.Array:
    r"""``x @ W`` for a kernel in CSR form, computed in format ``fmt``.

    .. math::

      y_{b j} = \sum_{i} x_{b i} W_{i j}, \qquad
      \text{only the stored } W_{i j} \ne 0 \text{ are visited (except ``"dense"``)}.

    Args:
      x: ``(..., K)`` inputs.
      kernel: the :class:`CSRKernel` of :math:`W` ``(K, N)``.
      fmt: one of :data:`FORMATS`.

    Returns:
      ``(..., N)`` outputs, in the dtype ``x @ W`` has: the promotion of ``x``'s
      and the kernel's dtypes.

    Raises:
      ValueError: for an unknown format or a wrong input width.

    Example:
      >>> import numpy as np, jax.numpy as jnp
      >>> from sparsejax.export import CSRKernel, sparse_matmul
      >>> w = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 3.0]], np.float32)
      >>> x = jnp.ones((1, 3))
      >>> [sparse_matmul(x, CSRKernel.from_dense(w), f).tolist() for f in ('bcsr', 'segment')]
      [[[3.0, 3.0]], [[3.0, 3.0]]]
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown sparse format {fmt!r}; the formats are {FORMATS}")
    return matmul_arrays(x, fmt, kernel.shape, kernel.arrays(fmt))


def matmul_arrays(
    x: jax.Array, fmt: str, shape: tuple[int, int], arrays: dict[str, jax.Array]
) -> jax.Array:
    """``x @ W`` from the arrays of :meth:`CSRKernel.arrays` (which may be traced).

    Args:
      x: ``(..., K)`` inputs.
      fmt: one of :data:`FORMATS`.
      shape: ``(K, N)``.
      arrays: ``kernel.arrays(fmt)``.

    Returns:
      ``(..., N)`` outputs, in the promotion of ``x``'s and the kernel's dtypes
      (as ``x @ W``); 16-bit floats are multiplied and summed in float32 and
      rounded once, as XLA's dense matmul accumulates them.
    """
    k, n = shape
    if x.shape[-1] != k:
        raise ValueError(f"the kernel reads {k} features, the input has {x.shape[-1]}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown sparse format {fmt!r}; the formats are {FORMATS}")
    weights = arrays["dense"] if fmt == "dense" else arrays["data"]
    dtype = jnp.result_type(x.dtype, weights.dtype)
    # The sums run in at least float32, as XLA's dense matmul accumulates bf16/f16 products:
    # the sparse paths would otherwise round to 16 bits after every addition.
    acc = jnp.promote_types(dtype, jnp.float32) if jnp.issubdtype(dtype, jnp.floating) else dtype
    weights = jnp.asarray(weights).astype(dtype).astype(acc)
    lead = x.shape[:-1]
    x2 = jnp.asarray(x).reshape(-1, k).astype(dtype).astype(acc)
    if fmt == "dense":
        y = x2 @ weights
    elif weights.shape[0] == 0:  # no nonzero: the product is zero
        y = jnp.zeros((x2.shape[0], n), acc)
    elif fmt == "bcsr":
        m = jsparse.BCSR((weights, arrays["indices"], arrays["indptr"]),
                         shape=(n, k), indices_sorted=True, unique_indices=True)
        y = (m @ x2.T).T
    elif fmt == "bcoo":
        idx = jnp.stack([arrays["indices"], arrays["rows"]], axis=1)
        m = jsparse.BCOO((weights, idx), shape=(k, n), unique_indices=True)
        y = x2 @ m
    else:  # "segment"
        gathered = x2.T[arrays["indices"]] * weights[:, None]
        y = jax.ops.segment_sum(gathered, arrays["rows"], num_segments=n,
                                indices_are_sorted=True).T
    return y.reshape(*lead, n).astype(dtype)


def conv_matrix(kernel: np.ndarray) -> np.ndarray:
    """A conv kernel ``(kh, kw, C, O)`` as the matrix ``(C kh kw, O)`` of :func:`conv_patches`.

    ``jax.lax.conv_general_dilated_patches`` orders a patch's features channel
    first (``c * kh * kw + i * kw + j``), so the kernel is transposed to
    ``(C, kh, kw, O)`` before the reshape.

    Example:
      >>> import numpy as np
      >>> from sparsejax.export import conv_matrix
      >>> conv_matrix(np.zeros((3, 3, 2, 5))).shape
      (18, 5)
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"a conv kernel is (kh, kw, in, out), got shape {kernel.shape}")
    kh, kw, c, o = kernel.shape
    return kernel.transpose(2, 0, 1, 3).reshape(c * kh * kw, o)


def conv_patches(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
) -> jax.Array:
    """The im2col patches of an NHWC batch: ``(n, h', w', C kh kw)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.export import conv_patches
      >>> conv_patches(jnp.ones((1, 5, 5, 2)), (3, 3), (1, 1), 'VALID').shape
      (1, 3, 3, 18)
    """
    return jax.lax.conv_general_dilated_patches(
        x, tuple(window), tuple(strides), padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))

"""Export of sparse models: smaller dense models, compressed weights, sparse inference.

* :func:`shrink_structured` removes the units (neurons, channels) a trained
  model no longer uses, or that a unit-norm criterion or a greedy selection
  removes, and returns a smaller model of the same class;
* :func:`sparsify` / :func:`sparse_apply` run dense and conv layers with
  compressed kernels (BCSR, BCOO, a ``segment_sum`` kernel, or the N:M product
  on GPU) where measured, or a benchmark-derived rule says, that it is faster;
* :func:`save_sparse` / :func:`load_sparse` store the weights compressed
  (an ``.npz`` of index and value arrays with a JSON header, no pickle).

Needs the ``models`` extra (Flax).
"""

from sparsejax.export.inference import (
    CPU_RULE,
    LayerChoice,
    SparseConv,
    SparseLinear,
    SparseReport,
    eval_copy,
    median_seconds,
    rule_format,
    sparse_apply,
    sparsify,
)
from sparsejax.export.kernels import (
    FORMATS,
    CSRKernel,
    conv_matrix,
    conv_patches,
    matmul_arrays,
    sparse_matmul,
)
from sparsejax.export.nm import is_nm, nm_compress, nm_matmul, nm_metadata, nm_support
from sparsejax.export.storage import (
    FORMAT_NAME,
    FORMAT_VERSION,
    dense_bytes,
    load_sparse,
    save_sparse,
)
from sparsejax.export.structured import StructuredExport, shrink_structured, unit_norms

__all__ = [
    "CPU_RULE",
    "CSRKernel",
    "FORMATS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LayerChoice",
    "SparseConv",
    "SparseLinear",
    "SparseReport",
    "StructuredExport",
    "conv_matrix",
    "conv_patches",
    "dense_bytes",
    "eval_copy",
    "is_nm",
    "load_sparse",
    "matmul_arrays",
    "median_seconds",
    "nm_compress",
    "nm_matmul",
    "nm_metadata",
    "nm_support",
    "rule_format",
    "save_sparse",
    "sparse_apply",
    "shrink_structured",
    "sparse_matmul",
    "sparsify",
    "unit_norms",
]

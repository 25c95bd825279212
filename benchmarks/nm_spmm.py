"""The 2:4 sparse product (``nm_spmm``, sparse tensor cores) against the dense bf16 matmul.

A random ``size x size`` bf16 kernel is pruned to 2:4 along its inputs
(the two largest of every four), packed with :func:`sparsejax.export.nm_compress`
and :func:`sparsejax.export.nm_metadata`, and ``x @ W`` (``x``: ``size x size``
bf16) is timed dense and through :func:`sparsejax.export.nm_matmul` (median of
``--rounds`` calls after warm-up, ``block_until_ready``); the two results are
compared. Where :func:`sparsejax.export.nm_support` says the product cannot run
(no ``jax.experimental.sparse.nm`` in the installed JAX, or no GPU), only the
dense time and the reason are printed.

::

  python benchmarks/nm_spmm.py              # 8192 x 8192 (benchmarks/device_check.sh, GPU)
  python benchmarks/nm_spmm.py --quick      # 256 x 256 (smoke test)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import device_description  # noqa: E402

from sparsejax.export import median_seconds, nm_compress, nm_matmul, nm_metadata, nm_support  # noqa: E402


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="256 x 256, 3 rounds")
    args = p.parse_args(argv)
    n, rounds = (256, 3) if args.quick else (args.size, args.rounds)
    if n % 16:
        raise SystemExit("--size must be a multiple of 16")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((n, n), dtype=np.float32)
    blocks = w.T.reshape(n, n // 4, 4)
    small = np.argsort(np.abs(blocks), axis=-1)[..., :2]
    np.put_along_axis(blocks, small, 0.0, axis=-1)
    w = blocks.reshape(n, n).T
    w = np.asarray(jnp.asarray(w, jnp.bfloat16).astype(jnp.float32))  # bf16-representable
    x = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32), jnp.bfloat16)
    wd = jnp.asarray(w, jnp.bfloat16)
    dense = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    t_dense = median_seconds(dense, x, wd, rounds=rounds)
    flops = 2.0 * n ** 3
    print(f"2:4 product, {n}x{n} bf16; device: {device_description()}; jax {jax.__version__}")
    print(f"dense bf16 matmul: {t_dense * 1e3:.3f} ms ({flops / t_dense / 1e12:.1f} TFLOP/s)")
    ok, why = nm_support()
    result: dict[str, Any] = {"size": n, "dense_ms": t_dense * 1e3, "nm_available": ok,
                              "nm_reason": why}
    if not ok:
        print(f"nm_spmm: unavailable here ({why}); sparse inference keeps the dense product")
        return result
    values, mask = nm_compress(w)
    vals = jnp.asarray(values, jnp.bfloat16)
    meta = jnp.asarray(nm_metadata(mask))
    sparse = jax.jit(nm_matmul)
    t_nm = median_seconds(sparse, x, vals, meta, rounds=rounds)
    err = float(jnp.abs(sparse(x, vals, meta) - dense(x, wd)).max())
    scale = float(jnp.abs(dense(x, wd)).max())
    print(f"nm_spmm 2:4:        {t_nm * 1e3:.3f} ms; speed-up {t_dense / t_nm:.2f}x; "
          f"max |diff| {err:.3g} (max |y| {scale:.3g})")
    result.update(nm_ms=t_nm * 1e3, speedup=t_dense / t_nm, max_abs_diff=err)
    return result


if __name__ == "__main__":
    main()

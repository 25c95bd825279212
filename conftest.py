"""Test-suite set-up that must happen before JAX initialises.

Multi-device code is tested on 8 simulated CPU devices (``JAX_NUM_CPU_DEVICES=8``):
the mesh code paths run as on 8 accelerators, on any machine.

Compiled programs are shared within one run of the suite through JAX's persistent
compilation cache in a fresh temporary directory: the pytest-xdist workers and the
processes the tests start (the CLI, the experiment scripts, the notebooks' kernels)
inherit ``JAX_COMPILATION_CACHE_DIR`` and reuse each other's compilations of the same
program (the same LeNet-5 train step, for instance) instead of compiling it again. The
directory is removed when the run ends, so no run depends on an earlier one. Set
``JAX_COMPILATION_CACHE_DIR`` yourself to use another directory (kept), or to an empty
string to turn the cache off.

Most of the suite's time is compiling small programs, so the tests ask XLA for LLVM
optimisation level 1 (``--xla_backend_optimization_level=1`` in ``XLA_FLAGS``, unless
``XLA_FLAGS`` already sets a level): XLA's graph passes, fusion included, run as usual;
only LLVM's work on the fused loops' machine code is lighter. On 2 cores the zoo's tests
took 40 s at level 1 against 46 s at the default (3) and 39 s at level 0, while the
run-bound greedy-imitation experiment took 14 s at levels 1 and 3 and 29 s at level 0.
No check may depend on it: every tolerance holds at any optimisation level (the rounding
of a fused multiply-add, for instance).
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1"
    ).strip()

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # Imported first by the xdist controller (or the single pytest process), whose
    # environment the workers and every subprocess inherit.
    _cache = tempfile.mkdtemp(prefix="sparsejax-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    # Every program is cached, however fast it compiles: most of the suite's programs
    # compile in well under JAX's default 1 s threshold, and each process (two workers, the
    # notebooks' kernels, the CLI runs) otherwise compiles the same small ones again. Measured
    # on 2 cores (2026-12-05) against a 0.1 s threshold: the notebook and CLI tests 54.8 s ->
    # 49.9 s, the battery and the zoo 137 s -> 129 s (cache writes included).
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

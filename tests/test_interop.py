"""The interoperability battery: every transform in tests/registry.py must pass it.

jit without recompiling, inject_hyperparams, schedules, MultiSteps, masked and
partition, apply_if_finite, dtypes, lax.cond, 8 simulated devices (batch- and
fully-sharded) and Flax NNX (nnx.Optimizer and pure pytrees). Every case runs
the checks of its state and hyperparameters; the composition checks run on every
case but the option variants of another (``VARIANT_OF``), and the 8-device check
on one case per kind of state and computation (``SHARDED_CASES``), since each
costs seconds of compilation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import sparsejax as sj
from sparsejax.models import MLP
from tests.registry import CASES, SHARDED_CASES, VARIANT_OF, Case
from tests.trees import assert_tree_close, make_grads, make_params


def _params(selected):
    """One parameter per case, each in an xdist group of its own: a case's checks run in one
    worker, where they share the case's transform and its compiled steps (see ``plain``)."""
    return [pytest.param(c, id=c.name, marks=pytest.mark.xdist_group(f"interop-{c.name}"))
            for c in selected]


cases = pytest.mark.parametrize("case", _params(CASES))
# The composition checks: on every case but the option variants of another (VARIANT_OF).
representative_cases = pytest.mark.parametrize(
    "case", _params([c for c in CASES if c.name not in VARIANT_OF]))

# The battery compiles hundreds of tiny programs, and compiling is most of its time: at LLVM
# optimisation level 0 (XLA's graph passes, fusion included, still run) the battery took a
# fifth less time on 2 cores, and every check compares with a tolerance that does not depend
# on how the backend orders its arithmetic.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

_PLAIN: dict[str, optax.GradientTransformation] = {}
_SGD = optax.sgd(0.05)  # the dense part of the partition check, one object for every case
_JITTED: dict = {}
_SINGLE: dict = {}  # the eight-device check's single-device result, per case


def plain(case: Case) -> optax.GradientTransformation:
    """``case.make()``, built once per case, so that the checks comparing against the plain
    transform reuse its compiled steps (compilation is most of the battery's time)."""
    if case.name not in _PLAIN:
        _PLAIN[case.name] = case.make()
    return _PLAIN[case.name]


def run(tx, params, grads_seq, *, jit=True):
    """Applies ``tx`` to a sequence of gradients; returns the final params and state.

    The jitted step is made once per transform object, so runs of the same
    transform on trees of the same structure compile once.
    """

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    if jit:
        step = _JITTED.setdefault(tx, _jit(step))
    state = tx.init(params)
    for grads in grads_seq:
        params, state = step(params, state, grads)
    return params, state


def grads_seq(params, n, start=0):
    return [make_grads(params, k) for k in range(start, start + n)]


def assert_trees_equal(a, b):
    """Equal up to a few units in the last place of each leaf's largest entry.

    XLA folds constants differently when a hyperparameter is a traced array
    rather than a Python number, so the two runs differ by rounding of the
    operands: a soft threshold ``w - tau`` that nearly cancels keeps the
    absolute rounding error of ``w`` (about one ulp of the leaf's scale),
    which is a large relative error of the small result.
    """
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        eps = float(jnp.finfo(x.dtype).eps) if jnp.issubdtype(x.dtype, jnp.floating) else 0.0
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        scale = max(float(np.abs(x64).max(initial=0.0)), float(np.abs(y64).max(initial=0.0)))
        np.testing.assert_allclose(x64, y64, rtol=4 * eps, atol=4 * eps * scale)


def injected(case: Case, **overrides) -> optax.GradientTransformation:
    factory = optax.inject_hyperparams(case.factory, static_args=tuple(case.static))
    return factory(**{**case.hyper, **case.static, **overrides})


@cases
def test_jit_compiles_once_and_matches_eager(case):
    params, tx = make_params(), case.make()
    traces = []

    def step(params, state, grads):
        traces.append(None)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    jitted = _jit(step)
    state = tx.init(params)
    p = params
    for grads in grads_seq(params, 3):
        p, state = jitted(p, state, grads)
    assert len(traces) == 1, "the second step recompiled: the state changed type or shape"
    eager, _ = run(tx, params, grads_seq(params, 3), jit=False)
    assert_tree_close(p, eager, params)


def _buffers(tree):
    """``(pointer, path)`` of every non-empty array leaf's device buffer."""
    out = []
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        if isinstance(x, jax.Array) and x.size:
            out.extend((s.data.unsafe_buffer_pointer(), jax.tree_util.keystr(path))
                       for s in x.addressable_shards)
    return out


@cases
def test_state_shares_no_buffer_and_can_be_donated(case):
    """A loop that donates the optimizer state to its jitted step (``donate_argnums``) fails
    on the first call ("donate the same buffer twice") if two leaves of the state, or a leaf
    of the state and one of the params, are one buffer; checked on ``init``'s state (plain and
    under ``inject_hyperparams``, whose hyperparameters are state too), without compiling."""
    params = make_params()
    for tx in (plain(case), injected(case)):
        state = tx.init(params)
        seen = {}
        for pointer, path in _buffers(state):
            assert pointer not in seen, f"{path} and {seen[pointer]} are one buffer"
            seen[pointer] = path
        for pointer, path in _buffers(params):
            assert pointer not in seen, f"the state's {seen[pointer]} is the params' {path}"


@cases
def test_inject_hyperparams_gives_identical_results(case):
    params = make_params()
    seq = grads_seq(params, 3)
    reference, _ = run(plain(case), params, seq)
    inj, state = run(injected(case), params, seq)
    assert_trees_equal(reference, inj)
    for name, value in case.hyper.items():
        np.testing.assert_allclose(state.hyperparams[name], value, rtol=1e-6)


@representative_cases
def test_inject_hyperparams_takes_bfloat16_params(case):
    # inject_hyperparams gives the hyperparameters the params' dtype: bfloat16 arrays, which the
    # argument checks once refused as "not a number" (every transform failed in init)
    params = jax.tree.map(
        lambda x: x.astype(jnp.bfloat16) if jnp.issubdtype(x.dtype, jnp.floating) else x,
        make_params())
    tx = injected(case)
    out, state = run(tx, params, grads_seq(params, 2), jit=False)
    floats = [jnp.asarray(v).dtype for v in jax.tree.leaves(state.hyperparams)
              if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)]
    assert all(d == jnp.bfloat16 for d in floats)  # the case the checks once refused
    for x in jax.tree.leaves(out):
        assert x.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(x.astype(jnp.float32))))


@representative_cases
def test_schedules_match_inject_hyperparams_and_constants(case):
    if case.schedule_arg is None:
        pytest.skip("no schedule argument")
    params = make_params()
    seq = grads_seq(params, 4)
    value = case.hyper[case.schedule_arg]
    sched = optax.linear_schedule(value, 0.5 * value, transition_steps=3)
    with_schedule, _ = run(case.make(**{case.schedule_arg: sched}), params, seq)
    via_inject, _ = run(injected(case, **{case.schedule_arg: sched}), params, seq)
    assert_tree_close(with_schedule, via_inject, params)
    constant, _ = run(case.make(**{case.schedule_arg: lambda count: value}), params, seq)
    scalar, _ = run(plain(case), params, seq)
    assert_tree_close(constant, scalar, params)


@representative_cases
def test_multisteps_equals_averaged_gradients(case):
    params = make_params()
    micro = grads_seq(params, 4)
    multi, _ = run(optax.MultiSteps(case.make(), every_k_schedule=2), params, micro)
    averaged = [jax.tree.map(lambda a, b: (a + b) / 2, micro[i], micro[i + 1]) for i in (0, 2)]
    direct, _ = run(plain(case), params, averaged)
    assert_tree_close(multi, direct, params)


def _is_kernel(path, leaf):
    return jnp.ndim(leaf) > 1


def _subtree(tree, keep):
    """``tree`` with the leaves where ``keep`` is False replaced by None."""
    return jax.tree.map(lambda x, k: x if k else None, tree, keep)


@representative_cases
def test_masked_applies_only_to_selected_leaves(case):
    params = make_params()
    seq = grads_seq(params, 2)
    keep = sj.tree.path_filter(_is_kernel)(params)
    masked, _ = run(optax.masked(case.make(), keep), params, seq)
    alone, _ = run(plain(case), _subtree(params, keep), [_subtree(g, keep) for g in seq])
    assert_tree_close(_subtree(masked, keep), alone, _subtree(params, keep))
    # optax.masked passes the other leaves' gradients through unchanged
    raw = jax.tree.map(lambda p, *gs: p + sum(gs), params, *seq)
    drop = jax.tree.map(lambda k: not k, keep)
    assert_tree_close(_subtree(masked, drop), _subtree(raw, drop), _subtree(params, drop))


@representative_cases
def test_partition_with_dense_sgd_for_biases(case):
    params = make_params()
    seq = grads_seq(params, 2)
    keep = sj.tree.path_filter(_is_kernel)(params)
    labels = jax.tree.map(lambda k: "sparse" if k else "dense", keep)
    tx = optax.partition({"sparse": case.make(), "dense": optax.sgd(0.05)}, labels)
    out, _ = run(tx, params, seq)
    alone, _ = run(plain(case), _subtree(params, keep), [_subtree(g, keep) for g in seq])
    assert_tree_close(_subtree(out, keep), alone, _subtree(params, keep))
    drop = jax.tree.map(lambda k: not k, keep)
    sgd, _ = run(_SGD, _subtree(params, drop), [_subtree(g, drop) for g in seq])
    assert_tree_close(_subtree(out, drop), sgd, _subtree(params, drop))


@representative_cases
def test_apply_if_finite_skips_a_nan_step_without_corrupting_state(case):
    params = make_params()
    g0, g1 = grads_seq(params, 2)
    nan = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), g0)
    tx = optax.apply_if_finite(case.make(), max_consecutive_errors=5)
    with_nan, state = run(tx, params, [g0, nan, g1])
    without, ref_state = run(tx, params, [g0, g1])
    assert_trees_equal(with_nan, without)
    assert_trees_equal(state.inner_state, ref_state.inner_state)
    assert int(state.total_notfinite) == 1
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(with_nan))


@cases
def test_dtypes_are_preserved(case):
    params = make_params()
    tx = case.make()
    state0 = tx.init(params)
    updates, state1 = tx.update(make_grads(params, 0), state0, params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        assert u.dtype == p.dtype and u.shape == p.shape
    as_types = lambda s: jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), s)  # noqa: E731
    assert as_types(state0) == as_types(state1)
    new = optax.apply_updates(params, updates)
    assert jax.tree.map(lambda x: x.dtype, new) == jax.tree.map(lambda x: x.dtype, params)


@cases
def test_state_is_stable_under_lax_cond(case):
    params = make_params()
    tx = case.make()
    grads = make_grads(params, 0)

    @_jit
    def maybe_step(pred, state):
        def do(s):
            return tx.update(grads, s, params)

        def skip(s):
            return jax.tree.map(jnp.zeros_like, grads), s

        return jax.lax.cond(pred, do, skip, state)

    state = tx.init(params)
    skipped_updates, skipped = maybe_step(False, state)
    assert_trees_equal(skipped, state)
    updates, stepped = maybe_step(True, state)
    ref_updates, ref_state = tx.update(grads, state, params)
    assert_tree_close(updates, ref_updates, params)


def _loss(params, x):
    """A loss whose gradient depends on the batch mean, so sharding the batch matters."""
    leaves = jax.tree.leaves(params)
    total = 0.0
    for i, leaf in enumerate(leaves):
        target = x[:, i].reshape((-1,) + (1,) * leaf.ndim)
        total += jnp.mean((leaf.astype(jnp.float32)[None] - target) ** 2)
    return total


def _train(tx, params, xs, param_sharding=None, batch_sharding=None):
    @_jit
    def step(params, state, x):
        grads = jax.grad(_loss)(params, x)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    if param_sharding is not None:
        params = jax.device_put(params, param_sharding)
    state = _jit(tx.init)(params)
    for x in xs:
        if batch_sharding is not None:
            x = jax.device_put(x, batch_sharding)
        params, state = step(params, state, x)
    return params


def _leaf_spec(leaf):
    if leaf.ndim >= 1 and leaf.shape[-1] % 8 == 0:
        return P(*([None] * (leaf.ndim - 1)), "data")
    return P()


def test_sharded_cases_and_variants_are_registered():
    names = {c.name for c in CASES}
    assert set(SHARDED_CASES) <= names
    for variant, base in VARIANT_OF.items():
        assert variant in names and base in names and base not in VARIANT_OF
        by_name = {c.name: c for c in CASES}
        assert by_name[variant].factory is by_name[base].factory, (variant, base)


@pytest.mark.parametrize("case", _params([c for c in CASES if c.name in SHARDED_CASES]))
@pytest.mark.parametrize("shard_params", [False, True], ids=["replicated", "fully_sharded"])
def test_eight_devices_match_one(case, shard_params):
    assert jax.device_count() == 8, "tests must run with JAX_NUM_CPU_DEVICES=8 (see conftest.py)"
    params = make_params()
    n_leaves = len(jax.tree.leaves(params))
    rng = np.random.default_rng(0)
    xs = [jnp.asarray(rng.normal(0, 1, (16, n_leaves)), jnp.float32) for _ in range(3)]
    tx = plain(case)
    if case.name not in _SINGLE:  # the same reference for both shardings of a case
        _SINGLE[case.name] = _train(tx, jax.device_put(params, jax.devices()[0]), xs)
    single = _SINGLE[case.name]
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    if shard_params:
        param_sharding = jax.tree.map(lambda x: NamedSharding(mesh, _leaf_spec(x)), params)
    else:
        param_sharding = jax.tree.map(lambda x: NamedSharding(mesh, P()), params)
    sharded = _train(tx, params, xs, param_sharding, NamedSharding(mesh, P("data")))
    assert_tree_close(sharded, single, params)
    if shard_params:
        kernel = sharded["layers"][0]["kernel"]
        assert len(kernel.sharding.device_set) == 8


@representative_cases
def test_flax_nnx_optimizer_matches_pure_pytrees(case):
    def make_model():
        return MLP(6, (8,), 3, rngs=nnx.Rngs(0))

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(0, 1, (4, 6)), jnp.float32)
    y = jnp.asarray(rng.normal(0, 1, (4, 3)), jnp.float32)

    model = make_model()
    optimizer = nnx.Optimizer(model, case.make(), wrt=nnx.Param)

    @nnx.jit
    def nnx_step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)

    for _ in range(3):
        nnx_step(model, optimizer)

    graphdef, params, rest = nnx.split(make_model(), nnx.Param, ...)
    params = nnx.to_pure_dict(params)

    def pure_loss(p):
        state = nnx.State(p)
        return jnp.mean((nnx.merge(graphdef, state, rest)(x) - y) ** 2)

    tx = case.make()

    @_jit
    def pure_step(p, s):
        updates, s = tx.update(jax.grad(pure_loss)(p), s, p)
        return optax.apply_updates(p, updates), s

    state = tx.init(params)
    for _ in range(3):
        params, state = pure_step(params, state)
    assert_tree_close(nnx.to_pure_dict(nnx.state(model, nnx.Param)), params)


def _public_transform_factories() -> dict[str, object]:
    """Every public callable of sparsejax (and sparsejax.pruning) whose return annotation is an
    Optax gradient transformation: what a user can put in a chain."""
    import inspect

    from sparsejax import pruning

    found = {}
    for module in (sj, pruning):
        for name in module.__all__:
            obj = getattr(module, name)
            if not inspect.isfunction(obj):
                continue
            returns = str(inspect.signature(obj).return_annotation)
            if "GradientTransformation" in returns:
                found[name] = obj
    return found


def test_every_public_transform_factory_is_in_the_battery():
    factories = _public_transform_factories()
    assert {"grda", "lats", "sfw", "fixed_support", "pytorch_sgd"} <= set(factories)
    # a factory is covered directly, or through a battery wrapper that builds on it (the
    # variance-reduced Frank-Wolfe methods need extra arguments on every update)
    tested = {c.factory for c in CASES} | {f for c in CASES for f in c.covers}
    missing = sorted(n for n, f in factories.items() if f not in tested)
    assert not missing, f"public transform factories missing from tests/registry.py: {missing}"


def _fw_constraints():
    return {"w": sj.constraints.KSparsePolytope(k=2, radius=1.0)}


# Every hyperparameter that is one number (or schedule) for the whole tree: a factory taking it.
SINGLE_VALUES = {
    "dual_averaging.learning_rate": lambda v: sj.dual_averaging(v),
    "grda.learning_rate": lambda v: sj.grda(v),
    "grda.c": lambda v: sj.grda(0.1, c=v),
    "grda.mu": lambda v: sj.grda(0.1, mu=v),
    "rda.gamma": lambda v: sj.rda(v, 0.1),
    "rda.l1": lambda v: sj.rda(1.0, v),
    "irda.gamma": lambda v: sj.irda(v, 0.1, retrain_step=5),
    "prox_sgd.l1": lambda v: sj.prox_sgd(0.1, v),
    "prox_sgd.momentum": lambda v: sj.prox_sgd(0.1, 0.1, momentum=v),
    "sqrt_t_prox_sgd.gamma": lambda v: sj.sqrt_t_prox_sgd(0.1, v, 0.1),
    "inverse_sqrt.gamma": lambda v: sj.inverse_sqrt(v),
    "pytorch_sgd.momentum": lambda v: sj.pytorch_sgd(0.1, momentum=v),
    "sfw.learning_rate": lambda v: sj.sfw(v, _fw_constraints()),
    "sfw.momentum": lambda v: sj.sfw(0.1, _fw_constraints(), momentum=v),
    "one_shot_fw.rho": lambda v: sj.one_shot_fw(0.1, _fw_constraints(), rho=v),
    "svrf.learning_rate": lambda v: sj.svrf(v, _fw_constraints()),
}


@pytest.mark.parametrize("bad", [{"w": 0.1}, [0.1, 0.2]], ids=["dict", "list"])
@pytest.mark.parametrize("where", sorted(SINGLE_VALUES))
def test_single_hyperparameters_refuse_per_leaf_values(where, bad):
    # A dict failed in init/update with a bare TypeError from float(); a list was broadcast
    # against the leaves (an error here, a silently per-entry value on leaves of length 2).
    name = where.split(".")[1]
    with pytest.raises(ValueError, match=rf"^{name} must be a single number"):
        SINGLE_VALUES[where](bad)
    SINGLE_VALUES[where](0.6)  # one number is accepted (0.6: inside every range, gRDA's mu too)

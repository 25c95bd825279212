"""Mask-based sparse training (static, SET, RigL, STE) against hand and argsort references."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import pruning
from sparsejax.pruning.pattern_masks import group_any
from tests.interruption import Interrupt, StopAt

pytestmark = pytest.mark.xdist_group("test_dynamic_sparse")


def _tree(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a": {"kernel": jnp.asarray(rng.normal(size=(8, 6)), jnp.float32),
              "bias": jnp.asarray(rng.normal(size=6), jnp.float32)},
        "b": {"kernel": jnp.asarray(rng.normal(size=(2, 2, 4, 8)), jnp.float32)},
        "none": None,
    }


def _grads(params, k):
    rng = np.random.default_rng(100 + k)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


KERNELS = ("a", "b")


def _ref_drop_grow(w, g, m, fraction):
    """Argsort reference of one RigL layer update: (kept, grown) boolean arrays."""
    w, g, m = np.ravel(np.asarray(w)), np.ravel(np.asarray(g)), np.ravel(np.asarray(m))
    n_active = int(m.sum())
    k = int(math.floor(np.float32(n_active) * np.float32(fraction)))
    drop_score = np.where(m, np.abs(w), -np.inf)
    order = np.argsort(drop_score, kind="stable")
    removed = order[: m.size - n_active + k]  # the inactive, then the k smallest active
    kept = np.ones(m.size, bool)
    kept[removed] = False
    grow_score = np.where(kept, -np.inf, np.abs(g))
    grown = np.zeros(m.size, bool)
    grown[np.argsort(grow_score, kind="stable")[m.size - k:]] = True
    return kept, grown, k


@pytest.fixture(scope="module")
def rigl_run():
    """Six steps of RigL (ΔT=2, T_end=6, α=0.5, cosine) with momentum SGD, recording everything."""
    tx = pruning.rigl(optax.sgd(0.05, momentum=0.9), 0.7, end_step=6, update_freq=2,
                      drop_fraction=0.5, mask=sj.tree.weights_only)
    step = jax.jit(tx.update)
    params = _tree()
    state = tx.init(params)
    records = []
    for t in range(6):
        grads = _grads(params, t)
        updates, new_state = step(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        records.append((params, grads, state, new_params, new_state))
        params, state = new_params, new_state
    return tx, records


def test_rigl_keeps_exact_counts_and_matches_argsort_reference(rigl_run):
    tx, records = rigl_run
    init_counts = {n: int(records[0][2].support[n]["kernel"].sum()) for n in KERNELS}
    shapes = [records[0][0][n]["kernel"].shape for n in KERNELS]
    expected = pruning.layer_remove_counts(shapes, round(0.7 * sum(math.prod(s) for s in shapes)), "erk")
    assert [math.prod(s) - init_counts[n] for s, n in zip(shapes, KERNELS)] == list(expected)
    updates_seen = 0
    for t, (params, grads, state, new_params, new_state) in enumerate(records):
        tau = t + 1
        for n in KERNELS:
            m_old = np.asarray(state.support[n]["kernel"])
            m_new = np.asarray(new_state.support[n]["kernel"])
            w_new = np.asarray(new_params[n]["kernel"])
            # exact count of active weights, and nothing outside the mask
            assert int(m_new.sum()) == init_counts[n]
            assert np.all(w_new[~m_new] == 0)
            assert int(np.count_nonzero(w_new)) <= init_counts[n]
            if tau % 2 == 0 and tau < 6:
                fraction = 0.5 * 0.5 * (1 + math.cos(math.pi * tau / 6))
                kept, grown, k = _ref_drop_grow(params[n]["kernel"], grads[n]["kernel"], m_old, fraction)
                assert k > 0
                np.testing.assert_array_equal(m_new.ravel(), kept | grown)
                fresh = grown & ~m_old.ravel()
                assert fresh.any()
                # grown weights start at zero; kept ones do not move (the update replaces the step)
                assert np.all(w_new.ravel()[fresh] == 0)
                np.testing.assert_array_equal(w_new.ravel()[kept], np.asarray(params[n]["kernel"]).ravel()[kept])
                # the momentum of the grown entries is reset, the rest is unchanged
                trace_old = np.asarray(state.inner_state[0].trace[n]["kernel"]).ravel()
                trace_new = np.asarray(new_state.inner_state[0].trace[n]["kernel"]).ravel()
                assert np.all(trace_new[fresh] == 0)
                np.testing.assert_array_equal(trace_new[~fresh], trace_old[~fresh])
                updates_seen += 1
            else:
                np.testing.assert_array_equal(m_new, m_old)
        if not (tau % 2 == 0 and tau < 6):
            # ordinary steps: momentum SGD on the active weights and on the dense bias
            np.testing.assert_allclose(
                new_params["a"]["bias"],
                params["a"]["bias"] - 0.05 * np.asarray(new_state.inner_state[0].trace["a"]["bias"]),
                rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(new_params["a"]["bias"], params["a"]["bias"])
    assert updates_seen == 4  # two layers at steps 2 and 4 (the step 6 = T_end is not updated)


def test_cosine_drop_fraction_formula():
    f = pruning.cosine_drop_fraction(0.3, 75)
    for t in (0, 1, 10, 37, 74, 75, 100):
        expected = 0.15 * (1 + math.cos(math.pi * min(t, 75) / 75))
        np.testing.assert_allclose(float(f(t)), expected, rtol=1e-6, atol=1e-7)


def test_set_drops_smallest_new_weights_and_regrows_at_random():
    tx = pruning.set_(optax.sgd(0.1, momentum=0.9), 0.6, end_step=100, update_freq=1,
                      drop_fraction=0.3, mask=sj.tree.weights_only, distribution="uniform")
    params = _tree(1)
    state = tx.init(params)
    grads = _grads(params, 0)
    updates, new_state = tx.update(grads, state, params)
    new_params = optax.apply_updates(params, updates)
    inner_updates, _ = optax.sgd(0.1, momentum=0.9).update(grads, state.inner_state, params)
    for n in KERNELS:
        m_old = np.asarray(state.support[n]["kernel"]).ravel()
        m_new = np.asarray(new_state.support[n]["kernel"]).ravel()
        v = np.asarray(params[n]["kernel"] + inner_updates[n]["kernel"]).ravel()
        kept, _, k = _ref_drop_grow(v, np.zeros_like(v), m_old, 0.3)
        assert int(m_new.sum()) == int(m_old.sum()) and k > 0
        np.testing.assert_array_equal(m_new & kept, kept)  # the kept ones are the largest |w + u|
        grown = m_new & ~kept
        assert int(grown.sum()) == k
        w = np.asarray(new_params[n]["kernel"]).ravel()
        np.testing.assert_allclose(w[kept], v[kept], rtol=1e-6)
        # a weight active before and after (dropped, then drawn again) keeps its value and its
        # momentum, as in the reference (reinit_when_same=False); only new connections start at 0
        stay, new = m_new & m_old, m_new & ~m_old
        np.testing.assert_allclose(w[stay], v[stay], rtol=1e-6)
        assert np.all(w[~m_new] == 0) and np.all(w[new] == 0)
        trace = np.asarray(new_state.inner_state[0].trace[n]["kernel"]).ravel()
        assert np.all(trace[new] == 0)
        np.testing.assert_allclose(trace[stay], np.asarray(grads[n]["kernel"]).ravel()[stay], rtol=1e-6)


@pytest.mark.parametrize("sparsity,distribution", [(0.0, "uniform"), (0.8, "erk")])
def test_set_leaves_layers_it_keeps_dense_as_plain_training(sparsity, distribution):
    # A dense layer (sparsity 0, or one ERK keeps dense) drops its smallest weights and can only
    # regrow those same weights: its mask stays all-True and its step must be the inner
    # optimizer's, with nothing zeroed and no momentum reset (the mask update once zeroed them).
    params = {"small": jnp.asarray(np.arange(1.0, 11.0).reshape(2, 5), jnp.float32),
              "big": jnp.asarray(np.random.default_rng(0).normal(size=(64, 64)), jnp.float32)}
    tx = pruning.set_(optax.sgd(0.1, momentum=0.9), sparsity, end_step=100, update_freq=1,
                      drop_fraction=0.3, distribution=distribution)
    ref = optax.sgd(0.1, momentum=0.9)
    state, ref_state = tx.init(params), ref.init(params)
    assert bool(jnp.all(state.support["small"]))
    p, q = params, params
    for k in range(3):
        g = {n: jnp.ones_like(x) * (1.0 + k) for n, x in params.items()}
        u, state = tx.update(g, state, p)
        r, ref_state = ref.update(g, ref_state, q)
        p, q = optax.apply_updates(p, u), optax.apply_updates(q, r)
        assert bool(jnp.all(state.support["small"]))
        np.testing.assert_array_equal(p["small"], q["small"])
        np.testing.assert_array_equal(state.inner_state[0].trace["small"], ref_state[0].trace["small"])


def test_static_sparse_mask_is_fixed_and_n_m_static_is_valid():
    params = _tree(2)
    tx = pruning.static_sparse(optax.adam(1e-2), 0.5, pattern="2:4", mask=sj.tree.weights_only)
    state = tx.init(params)
    first = state.support
    for t in range(2):
        updates, state = tx.update(_grads(params, t), state, params)
        params = optax.apply_updates(params, updates)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), first, state.support))
    assert pruning.is_n_m_sparse(params, 2, 4, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="sparsity=0.5"):
        pruning.static_sparse(optax.sgd(0.1), 0.7, pattern="2:4")
    with pytest.raises(ValueError, match="N:M"):
        pruning.rigl(optax.sgd(0.1), 0.5, end_step=10, pattern="2:4")


def test_rigl_with_blocks_drops_and_grows_whole_blocks():
    tx = pruning.rigl(optax.sgd(0.1), 0.5, end_step=10, update_freq=1, drop_fraction=0.5,
                      pattern="2x2", distribution="uniform", mask=sj.tree.weights_only)
    params = _tree(3)
    grads = _grads(params, 0)
    state = tx.init(params)
    updates, new_state = tx.update(grads, state, params)
    pat = sj.patterns.parse_pattern("2x2")
    fraction = float(pruning.cosine_drop_fraction(0.5, 10)(1))
    changed = 0
    for n in KERNELS:
        m_old, m_new = state.support[n]["kernel"], new_state.support[n]["kernel"]
        # the argsort reference on the block scores (sums of |w| and |g| over each 2x2 block)
        blocks = group_any(m_old, pat)
        kept, grown, k = _ref_drop_grow(sj.patterns.group_scores(jnp.abs(params[n]["kernel"]), pat),
                                        sj.patterns.group_scores(jnp.abs(grads[n]["kernel"]), pat),
                                        blocks, fraction)
        assert k > 0
        expected = sj.patterns.expand_groups(jnp.asarray((kept | grown).reshape(blocks.shape)),
                                             pat, m_old.shape)
        np.testing.assert_array_equal(m_new, expected)
        changed += int(jnp.sum(m_old != m_new))
        for m in (m_old, m_new):
            kept, total = sj.patterns.kept_groups(m, pat)
            assert kept * 4 == int(m.sum()) and kept == total // 2  # whole blocks, half of them
    assert changed > 0


def test_ste_matches_hand_computation():
    """Loss 0.5·||x w̃ − y||² with w̃ = m ⊙ w: the forward pass sees the masked weights and the
    dense weights take the gradient at them (straight through), by hand in NumPy."""
    rng = np.random.default_rng(5)
    w0 = rng.normal(size=(4, 2)).astype(np.float32)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    y = rng.normal(size=(3, 2)).astype(np.float32)
    lr, decay = 0.1, 0.05
    tx = pruning.ste_pruning(optax.sgd(lr), 0.5, begin_step=0, end_step=0, sr_ste_decay=decay)

    def loss(p):
        return 0.5 * jnp.sum((x @ p["w"] - y) ** 2)

    params = {"w": jnp.asarray(w0)}
    state = tx.init(params)
    dense, mask = w0.copy(), np.ones_like(w0, bool)
    for _ in range(3):
        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        # by hand: gradient at the masked weights, SR-STE decay of the masked-out ones
        masked = dense * mask
        g = x.T @ (x @ masked - y) + decay * (~mask) * dense
        dense = dense - lr * g
        keep = np.zeros(dense.size, bool)
        keep[np.argsort(np.abs(dense).ravel(), kind="stable")[4:]] = True
        mask = keep.reshape(dense.shape)
        np.testing.assert_allclose(np.asarray(params["w"]), dense * mask, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(state.support["w"]), mask)
        np.testing.assert_allclose(np.asarray(pruning.ste_dense_params(params, state)["w"]), dense,
                                   rtol=1e-5, atol=1e-6)
    assert int(np.count_nonzero(np.asarray(params["w"]))) == 4


def test_reset_state_entries_resets_adam_moments():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    tx = optax.chain(optax.add_decayed_weights(1e-3), optax.adam(1e-2))
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    reset = {"w": jnp.array([[True, False], [False, False]]), "b": None}
    new = pruning.reset_state_entries(state, params, reset)
    adam = new[1][0]
    assert float(adam.mu["w"][0, 0]) == 0 and float(adam.nu["w"][0, 0]) == 0
    assert float(adam.mu["w"][0, 1]) != 0 and float(adam.mu["b"][0]) != 0
    assert int(adam.count) == 1


_HOST_SCHEDULED = {
    # name: (factory of the transform, the host-side rule with the transform's arguments)
    "rigl": (lambda: pruning.rigl(optax.inject_hyperparams(optax.sgd)(0.05, momentum=0.9), 0.7,
                                  end_step=6, update_freq=2, drop_fraction=0.5,
                                  mask=sj.tree.weights_only),
             lambda t: pruning.dst_update_due(t, update_freq=2, end_step=6)),
    "set": (lambda: optax.chain(optax.add_decayed_weights(1e-3), pruning.set_(
                optax.sgd(0.05, momentum=0.9), 0.6, end_step=7, update_freq=3, begin_step=1,
                mask=sj.tree.weights_only)),
            lambda t: pruning.dst_update_due(t, update_freq=3, end_step=7, begin_step=1)),
    "ste": (lambda: pruning.ste_pruning(optax.sgd(0.05, momentum=0.9), 0.8, begin_step=1,
                                        end_step=5, frequency=2, initial_sparsity=0.3,
                                        mask=sj.tree.weights_only),
            lambda t: pruning.ste_update_due(t, begin_step=1, frequency=2)),
}


def _support_of(state):
    found = [s for s in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "support"))
             if hasattr(s, "support")]
    assert len(found) == 1
    return found[0].support


@pytest.mark.parametrize("name", sorted(_HOST_SCHEDULED))
def test_host_scheduled_mask_updates_give_the_device_scheduled_run(name):
    """``mask_update=rule(step)`` (two programs: no selection on ordinary steps, no control
    flow on update steps) gives the run in which the step decides (``lax.cond``), through
    ``inject_hyperparams`` and ``chain``: the same masks and counts, the same floats up to the
    last bit (the programs are compiled separately; here they agree exactly, but XLA may
    fuse them differently elsewhere); the rule names exactly the steps at which the
    device-scheduled run changed its support; ``True`` at every step changes nothing either,
    and ``False`` where an update is due skips it (the caller's promise)."""
    make, due = _HOST_SCHEDULED[name]
    tx = make()
    programs = {flag: jax.jit(functools.partial(tx.update, mask_update=flag))
                for flag in (None, False, True)}

    def run(flags):
        params = _tree(4)
        state = tx.init(params)
        supports = [_support_of(state)]
        for t, flag in enumerate(flags):
            updates, state = programs[flag](_grads(params, t), state, params)
            params = optax.apply_updates(params, updates)
            supports.append(_support_of(state))
        return params, state, supports

    steps = 8
    reference, ref_state, ref_supports = run([None] * steps)
    changed = [t for t in range(steps) if not jax.tree.all(jax.tree.map(
        lambda a, b: bool(jnp.all(a == b)), ref_supports[t], ref_supports[t + 1]))]
    assert changed == [t for t in range(steps) if due(t)] and len(changed) >= 2, changed
    for flags in ([due(t) for t in range(steps)], [True] * steps):
        params, state, _ = run(flags)
        for a, b in zip(jax.tree.leaves((params, state)), jax.tree.leaves((reference, ref_state)),
                        strict=True):
            if jnp.issubdtype(a.dtype, jnp.floating):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
            else:  # masks and step counts: exactly
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    skipped = [due(t) and t != changed[0] for t in range(steps)]
    _, _, supports = run(skipped)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)),
                                     supports[changed[0]], supports[changed[0] + 1]))


def test_the_host_side_rules_and_their_errors():
    assert [t for t in range(12) if pruning.dst_update_due(t, update_freq=4, end_step=12)] == [3, 7]
    assert [t for t in range(12) if pruning.dst_update_due(
        t, update_freq=4, end_step=13, begin_step=2)] == [1, 5, 9]
    assert [t for t in range(7) if pruning.ste_update_due(t, begin_step=3)] == [3, 4, 5, 6]
    with pytest.raises(ValueError, match="update_freq"):
        pruning.dst_update_due(0, update_freq=0, end_step=10)
    with pytest.raises(ValueError, match="step"):
        pruning.ste_update_due(-1, begin_step=0)
    tx = pruning.rigl(optax.sgd(0.1), 0.5, end_step=10, update_freq=2)
    params = _tree(0)
    with pytest.raises(TypeError, match="mask_update must be None, True or False"):
        tx.update(_grads(params, 0), tx.init(params), params, mask_update=jnp.asarray(True))
    from sparsejax.train.methods import mask_update_schedule

    # the registry's rules use the run's steps: RigL's T_end = 75% of 40 steps, STE from 25%
    rigl = mask_update_schedule("rigl", {"update_freq": 10}, steps_per_epoch=20, epochs=2)
    assert [t for t in range(40) if rigl(t)] == [9, 19]
    ste = mask_update_schedule("ste", {"begin_fraction": 0.25, "frequency": 5},
                               steps_per_epoch=20, epochs=2)
    assert [t for t in range(40) if ste(t)] == [10, 15, 20, 25, 30, 35]
    assert mask_update_schedule("static", {}, steps_per_epoch=20, epochs=2) is None


def test_rigl_run_resumes_bit_identically_with_its_masks(tmp_path):
    """The masks live in the optimizer state, which the Orbax checkpoint saves bit-packed: a RigL
    run cut after its step-4 checkpoint (the end of epoch 0; mask updates at steps 2 and 4 before
    it) and resumed (a mask update at step 6 after it) ends exactly where the uninterrupted run
    does. The step-4 checkpoint holds each support as ``ceil(n / 8)`` uint8 bytes whose NumPy
    unpacking has the checksums of the in-memory support at the save, and restores to exactly
    those booleans. These runs let the trainer pick the mask-update steps on the host
    (``fit(mask_update_due=...)``, two compiled steps); a run that leaves it to the device has
    the same masks throughout and the same weights up to rounding (its step is another
    program: a few weights differ in the last bit)."""
    import json
    import warnings

    import orbax.checkpoint as ocp

    from sparsejax.models import create
    from sparsejax.train import data_mesh, fit
    from sparsejax.train.checkpoint import Workdir, checksums
    from sparsejax.train.step import TrainState, zero_totals
    from tests._train_driver import make_data

    train, _ = make_data(32, 128, 32, seed=0)  # 4 steps per epoch

    def run(batches, wd, host=True):
        tx = pruning.rigl(optax.sgd(0.05, momentum=0.9), 0.8, end_step=8, update_freq=2,
                          mask=sj.tree.weights_only)
        model = create("mlp", hidden=(16,), rngs=0)
        due = functools.partial(pruning.dst_update_due, update_freq=2, end_step=8) if host else None
        return fit(model, tx, batches, epochs=2, workdir=wd, seed=1,
                   checkpoint_every_steps=3, log=None, mask_update_due=due)

    reference = run(train, tmp_path / "ref")
    device = run(train, tmp_path / "device", host=False)
    for a, b in zip(jax.tree.leaves((device.params, device.opt_state)),
                    jax.tree.leaves((reference.params, reference.opt_state)), strict=True):
        if a.dtype == jnp.bool_:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        else:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    with pytest.raises(Interrupt):
        run(StopAt(train, 1, 1), tmp_path / "cut")  # after the step-4 checkpoint
    resumed = run(train, tmp_path / "cut")
    assert resumed.resumed_from == 4
    for a, b in zip(jax.tree.leaves((resumed.params, resumed.opt_state)),
                    jax.tree.leaves((reference.params, reference.opt_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    support = resumed.opt_state.support
    kernels = [m for m in jax.tree.leaves(support) if m is not None]
    assert kernels and all(m.dtype == jnp.bool_ for m in kernels)

    # The step-4 checkpoint, read without sparsejax: packed bits, unpacked here with NumPy.
    step_dir = tmp_path / "cut" / "checkpoints" / "4"
    with warnings.catch_warnings(), ocp.PyTreeCheckpointer() as c:
        warnings.filterwarnings("ignore", "Sharding info not provided when restoring")
        stored = c.restore(step_dir / "state")
    saved_sums = json.loads((step_dir / "meta" / "metadata").read_text())["checksums"]["state"]

    stored = {sj.tree.path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(stored)}

    def from_disk(path, m):
        raw = stored["opt_state/support/" + sj.tree.path_str(path)]
        assert raw.dtype == np.uint8 and raw.shape == (-(-m.size // 8),), (path, raw.shape)
        return np.unpackbits(raw, count=m.size).reshape(m.shape).astype(bool)

    on_disk = jax.tree_util.tree_map_with_path(from_disk, support)
    sums = checksums({"opt_state": {"support": on_disk}})
    assert len(sums) == len(kernels) and all(saved_sums[k] == v for k, v in sums.items()), sums
    step = jax.device_put(jnp.int32(0), jax.tree.leaves(resumed.params)[0].sharding)
    template = TrainState(step, resumed.params, resumed.opt_state, resumed.model_state)
    wd = Workdir(tmp_path / "cut", {}, {}, keep=3)
    restored = wd.restore(4, template, zero_totals(data_mesh()))[0].opt_state.support
    wd.close()
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(on_disk), strict=True):
        assert a.dtype == jnp.bool_
        np.testing.assert_array_equal(np.asarray(a), b)


def test_cli_pattern_reaches_the_runs_that_have_one():
    from sparsejax.train.cli.args import build_parser, compare_runs, with_pattern
    from sparsejax.train.cli.settings import UsageError

    args = build_parser().parse_args(
        ["compare", "--methods", "sgd,rigl,ste", "--pattern", "2:4", "--model", "mlp",
         "--dataset", "synthetic"])
    runs = {r.name: r for r in compare_runs(args, {})}
    assert "pattern" not in runs["sgd"].hparams
    assert runs["rigl"].hparams["pattern"] == "2:4" and runs["ste"].hparams["pattern"] == "2:4"
    args = build_parser().parse_args(["compare", "--methods", "sgd,grda", "--pattern", "2:4",
                                      "--model", "mlp", "--dataset", "synthetic"])
    with pytest.raises(UsageError, match="pattern"):
        compare_runs(args, {})
    args = build_parser().parse_args(["train", "--method", "rigl", "--pattern", "4x4"])
    assert with_pattern(args, {"sparsity": "0.8"}) == {"sparsity": "0.8", "pattern": "4x4"}


def test_schedules_that_can_never_act_are_refused():
    # RigL/SET whose first possible update is not before end_step would silently be static
    # sparse training; STE with end_step < begin_step has no pruning window.
    for make in (pruning.rigl, pruning.set_):
        with pytest.raises(ValueError, match="begin_step=50 >= end_step=50"):
            make(optax.sgd(0.1), 0.5, end_step=50, begin_step=50)
        make(optax.sgd(0.1), 0.5, end_step=51, begin_step=50)  # one update step: accepted
    with pytest.raises(ValueError, match="end_step must be >= begin_step"):
        pruning.ste_pruning(optax.sgd(0.1), 0.5, begin_step=5, end_step=4)
    pruning.ste_pruning(optax.sgd(0.1), 0.5, begin_step=5, end_step=5)


@pytest.mark.parametrize("flag", [None, True])
def test_rigl_skips_a_mask_update_whose_gradient_is_not_finite(flag):
    """A NaN in the gradient at an update step (an overflow step) would rank first among
    the growth scores; the update is skipped instead: the support is kept, and the step is
    an ordinary one, which ``apply_if_finite`` inside turns into no change at all. The next
    due step with a finite gradient updates the mask as usual."""
    tx = pruning.rigl(optax.apply_if_finite(optax.sgd(0.1), 5), 0.7, end_step=10,
                      update_freq=2, drop_fraction=0.5, mask=sj.tree.weights_only)
    step = jax.jit(functools.partial(tx.update, mask_update=flag))
    params = _tree(7)
    state = tx.init(params)
    updates, state = step(_grads(params, 0), state, params)  # step 1: not due
    params = optax.apply_updates(params, updates)
    before = state.support
    bad = _grads(params, 1)
    inactive = ~before["a"]["kernel"]
    # NaN exactly where the weights are inactive: growth would pick them all first.
    bad["a"]["kernel"] = jnp.where(inactive, jnp.nan, bad["a"]["kernel"])
    updates, state = step(bad, state, params)  # step 2: due, gradient not finite
    for a, b in zip(jax.tree.leaves(state.support), jax.tree.leaves(before)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
    params = optax.apply_updates(params, updates)
    updates, state = step(_grads(params, 2), state, params)  # step 3: not due
    params = optax.apply_updates(params, updates)
    after = state.support
    updates, state = step(_grads(params, 3), state, params)  # step 4: due, finite
    assert not bool(jnp.all(state.support["a"]["kernel"] == after["a"]["kernel"]))
    for new, old in zip(jax.tree.leaves(state.support), jax.tree.leaves(after)):
        assert int(new.sum()) == int(old.sum())


def test_an_n_m_pattern_names_the_callers_sparsity_argument():
    # ste_pruning (and the registry's ste) call it final_sparsity; static_sparse calls it sparsity
    with pytest.raises(ValueError, match=r"pattern 2:4 has sparsity 0.5; pass final_sparsity=0.5, "
                                         r"got 0.9"):
        pruning.ste_pruning(optax.sgd(0.1), 0.9, begin_step=0, end_step=10, pattern="2:4")
    from sparsejax.train import methods

    with pytest.raises(ValueError, match=r"pass final_sparsity=0.5"):
        methods.make_optimizer("ste", {"pattern": "2:4"}, learning_rate=0.1, momentum=None,
                               steps_per_epoch=2, epochs=2, params=_tree(0))
    with pytest.raises(ValueError, match=r"pass sparsity=0.5, got 0.7"):
        pruning.static_sparse(optax.sgd(0.1), 0.7, pattern="2:4")


_MASK_TRANSFORMS = {
    # name: factory of the transform around an inner optimizer (no mask update in the first
    # steps for SET and RigL: update_freq=3 makes the 1-based steps 3, 6, ... due)
    "static": lambda inner: pruning.static_sparse(inner, 0.7, mask=sj.tree.weights_only),
    "set": lambda inner: pruning.set_(inner, 0.7, end_step=20, update_freq=3,
                                      mask=sj.tree.weights_only),
    "rigl": lambda inner: pruning.rigl(inner, 0.7, end_step=20, update_freq=3,
                                       mask=sj.tree.weights_only),
}


@pytest.mark.parametrize("name", sorted(_MASK_TRANSFORMS))
def test_inner_optimizer_sees_the_gradient_of_the_masked_network(name):
    """The reference's forward pass uses mask * w, so the wrapped optimizer gets the gradient
    where the support is active and 0 elsewhere: a global-norm clip (a transform that mixes
    entries) gives the reference's step on the active entries, not that of the dense norm."""
    inner = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1))
    tx = _MASK_TRANSFORMS[name](inner)
    params = _tree(0)
    state = tx.init(params)
    params = pruning.apply_support(params, state.support)
    grads = jax.tree.map(lambda g: 3.0 * g, _grads(params, 0))  # the clip is active
    support = state.support
    updates, state = tx.update(grads, state, params)  # 1-based step 1: no mask update
    masked = jax.tree.map(lambda g, m: g if m is None else jnp.where(m, g, 0.0), grads, support,
                          is_leaf=lambda x: x is None)
    ref, _ = inner.update(masked, inner.init(params), params)
    for k in KERNELS:
        m = np.asarray(support[k]["kernel"])
        assert not m.all()
        np.testing.assert_allclose(np.asarray(updates[k]["kernel"])[m],
                                   np.asarray(ref[k]["kernel"])[m], rtol=1e-6, atol=0)
        assert np.all(np.asarray(optax.apply_updates(params, updates)[k]["kernel"])[~m] == 0)
    np.testing.assert_allclose(np.asarray(updates["a"]["bias"]), np.asarray(ref["a"]["bias"]),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", sorted(_MASK_TRANSFORMS))
@pytest.mark.parametrize("inner_name", ["sgd", "momentum", "adam"])
def test_elementwise_inner_optimizers_give_the_same_active_steps(name, inner_name):
    """Masking the gradient given to an elementwise optimizer (SGD, momentum, Adam) changes
    nothing on the active entries: bit for bit the inner update of the dense gradient there,
    on every step without a mask update (through mask updates and buffer resets)."""
    inner = {"sgd": optax.sgd(0.05), "momentum": optax.sgd(0.05, momentum=0.9),
             "adam": optax.adam(0.01)}[inner_name]
    tx = _MASK_TRANSFORMS[name](inner)
    params = _tree(1)
    state = tx.init(params)
    params = pruning.apply_support(params, state.support)
    for t in range(8):
        grads = _grads(params, t)
        support = state.support
        ref, _ = inner.update(grads, state.inner_state, params)
        updates, state = tx.update(grads, state, params)
        if pruning.dst_update_due(t, update_freq=3, end_step=20) and name != "static":
            params = optax.apply_updates(params, updates)
            continue
        for k in KERNELS:
            m = np.asarray(support[k]["kernel"]) & np.asarray(state.support[k]["kernel"])
            np.testing.assert_array_equal(np.asarray(updates[k]["kernel"])[m],
                                          np.asarray(ref[k]["kernel"])[m])
        np.testing.assert_array_equal(np.asarray(updates["a"]["bias"]),
                                      np.asarray(ref["a"]["bias"]))
        params = optax.apply_updates(params, updates)


def test_rigl_mask_updates_take_the_place_of_inner_steps():
    """Documented deviation from the reference (which spends an extra batch per mask update):
    over T updates with k mask updates the inner optimizer (and its schedule) advances T - k."""
    inner = optax.inject_hyperparams(optax.sgd)(learning_rate=optax.linear_schedule(0.1, 0.0, 20))
    tx = pruning.rigl(inner, 0.7, end_step=15, update_freq=3, mask=sj.tree.weights_only)
    params = _tree(2)
    state = tx.init(params)
    params = pruning.apply_support(params, state.support)
    for t in range(20):
        updates, state = tx.update(_grads(params, t), state, params)
        params = optax.apply_updates(params, updates)
    k = sum(pruning.dst_update_due(t, update_freq=3, end_step=15) for t in range(20))
    assert k == 4
    assert int(state.count) == 20 and int(state.inner_state.count) == 20 - k


def test_sr_ste_decay_is_computed_in_float64_for_float64_params():
    """SR-STE's term lambda * (not m) * w in the params' dtype: float64 params against a float64
    NumPy reference to 1e-12 (a float32 term or decay would be off by ~1e-9)."""
    rng = np.random.default_rng(7)
    w0 = rng.normal(size=(8, 3))
    x, y = rng.normal(size=(16, 8)), rng.normal(size=(16, 3))
    lr, lam = 0.1, 0.1

    def grad(w):
        return x.T @ (x @ w - y) / len(x)

    def keep(w):  # 2:4 along the input axis, the two largest |w| of each group
        m = np.zeros(w.shape, bool)
        for j in range(w.shape[1]):
            for g in range(0, w.shape[0], 4):
                m[g + np.argsort(-np.abs(w[g:g + 4, j]), kind="stable")[:2], j] = True
        return m

    with jax.enable_x64(True):
        tx = pruning.ste_pruning(optax.sgd(lr), 0.5, begin_step=0, end_step=0,
                                 sr_ste_decay=lam, pattern="2:4")
        params = {"w": jnp.asarray(w0)}
        state = tx.init(params)
        dense, mask = w0.copy(), np.ones(w0.shape, bool)
        for _ in range(4):
            g = grad(np.asarray(params["w"]))
            updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
            params = optax.apply_updates(params, updates)
            dense = dense - lr * (grad(dense * mask) + lam * (~mask) * dense)
            mask = keep(dense)
            assert params["w"].dtype == jnp.float64
            np.testing.assert_array_equal(np.asarray(state.support["w"]), mask)
            np.testing.assert_allclose(np.asarray(pruning.ste_dense_params(params, state)["w"]),
                                       dense, rtol=0, atol=1e-12)
            np.testing.assert_allclose(np.asarray(params["w"]), dense * mask, rtol=0, atol=1e-12)

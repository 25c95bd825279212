"""Layer-wise greedy pruning (Alg. 2), GFS, and physical shrinking with folded weights."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sparsejax.models import MobileNetV2, create, param_count
from sparsejax.structured import (
    GreedyPruneResult,
    ImitationResult,
    ShrinkSummary,
    contribution_gram,
    format_shrink_summary,
    gfs,
    global_imitation,
    greedy_prune,
    local_imitation,
    output_discrepancy,
    shrink,
    shrink_summary,
)
from sparsejax.structured.imitation import Evaluator, MiniBatches

# The module-scoped fixtures (compiled programs, trained runs) are built once: one worker.
pytestmark = pytest.mark.xdist_group("pruning_greedy")


@pytest.fixture(scope="module")
def data() -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.key(0), (96, 6))
    y = (x[:, 0] > 0).astype(jnp.int32) + (x[:, 1] > 0.5).astype(jnp.int32)
    return x, y


@pytest.fixture(scope="module")
def trained(data) -> nnx.Module:
    """A small classifier trained to a low loss (so pruning has something to lose)."""
    x, y = data
    model = create("mlp", num_classes=3, input_shape=(6,), hidden=(24, 16), rngs=0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-2)

    def loss(p):
        logits = nnx.merge(graphdef, p, rest)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def fit(p):
        def body(c, _):
            p, s = c
            u, s = tx.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(body, (p, tx.init(p)), None, length=300)[0][0]

    nnx.update(model, fit(params))
    return model


# --------------------------------------------------------------------------- #
# shrink: the smaller model equals the gated one.


CASES = [
    ("mlp", lambda: create("mlp", num_classes=3, input_shape=(6,), hidden=(12, 8), rngs=0),
     (6,), ["layers/0", "layers/1"]),
    ("small_cnn", lambda: create("small_cnn", input_shape=(10, 10, 3), features=(6, 8),
                                 hidden=(12,), rngs=0), (10, 10, 3), ["convs/0", "convs/1"]),
    ("resnet20", lambda: create("resnet20", input_shape=(8, 8, 3), rngs=0), (8, 8, 3),
     ["blocks/3/conv1"]),
    ("mobilenet_v2", lambda: MobileNetV2(10, stem="cifar", settings=((1, 8, 1, 1), (6, 8, 2, 2)),
                                         head_features=32, rngs=nnx.Rngs(0)), (8, 8, 3),
     ["blocks/1/depthwise"]),
]


@pytest.mark.parametrize(("name", "make", "shape", "groups"), CASES, ids=[c[0] for c in CASES])
def test_shrink_equals_the_gated_model_with_fewer_params_and_flops(name, make, shape, groups):
    model = make()
    model.eval()
    x = jax.random.normal(jax.random.key(1), (8, *shape))
    results = {}
    gates = {}
    for g in groups:
        size = model.group(g).size
        r = local_imitation(model, g, x, n=max(1, size // 3), max_steps=3 * size, gates=gates)
        assert 1 <= r.n <= max(1, size // 3)
        results[g] = r
        gates[g] = r.gate
    small = shrink(model, results)
    assert type(small) is type(model)
    assert [gr.size for gr in small.prunable_groups() if gr.name in groups] == \
        [results[g].n for g in groups]
    small.eval()
    expected = model(x, gates=gates)
    np.testing.assert_allclose(small(x), expected, atol=1e-5, rtol=1e-5)
    s = shrink_summary(model, small, shape)
    assert s.params == (param_count(model), param_count(small))
    assert s.params[1] < s.params[0] and s.macs[1] < s.macs[0] and s.flops[1] < s.flops[0]
    assert {(g, model.group(g).size, results[g].n) for g in groups} <= set(s.groups)
    table = format_shrink_summary(s)
    assert table.splitlines()[0].split() == ["group", "before", "after", "kept"]
    assert all(row in table for row in ("params", "MACs", "FLOPs", groups[0]))
    assert str(s) == table


def test_shrink_folds_the_weights_not_just_the_support() -> None:
    model = create("mlp", num_classes=2, input_shape=(3,), hidden=(6,), rngs=0)
    x = jax.random.normal(jax.random.key(0), (5, 3))
    r = ImitationResult(group="layers/0", size=6, method="local", indices=np.array([1, 4]),
                        weights=np.array([0.25, 0.75]), step=0, converged=True,
                        history=np.zeros(1), support=np.array([2]), picks=np.array([1]),
                        gammas=np.ones(1))
    small = shrink(model, {"layers/0": r})
    np.testing.assert_allclose(small.layers[1].kernel[...],
                               model.layers[1].kernel[...][np.array([1, 4])]
                               * np.array([[1.5], [4.5]]),
                               rtol=1e-6)
    np.testing.assert_allclose(small(x), model(x, gates={"layers/0": r.gate}), atol=1e-6)
    unchanged = shrink(model, {})
    np.testing.assert_allclose(unchanged(x), model(x))


def test_shrink_errors() -> None:
    model = create("mlp", num_classes=2, input_shape=(3,), hidden=(6,), rngs=0)
    other = create("mlp", num_classes=2, input_shape=(3,), hidden=(9,), rngs=0)
    x = jax.random.normal(jax.random.key(0), (5, 3))
    r9 = local_imitation(other, "layers/0", x, n=2)
    with pytest.raises(ValueError, match="has 9 units; the model's group has 6"):
        shrink(model, [r9])
    with pytest.raises(ValueError, match="no prunable group 'fc'"):
        shrink(model, [dataclasses.replace(r9, group="fc")])
    with pytest.raises(ValueError, match="is the result for group 'layers/0'"):
        shrink(other, {"layers/1": r9})
    with pytest.raises(TypeError, match="must be an ImitationResult"):
        shrink(model, {"layers/0": [0, 1]})
    with pytest.raises(TypeError, match="PrunableModel"):
        shrink(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), [r9])


# --------------------------------------------------------------------------- #
# GFS.


def test_gfs_is_forward_selection_on_the_network_loss(trained, data) -> None:
    x, y = data
    r = gfs(trained, "layers/0", x, y, n=5, max_steps=4)
    assert r.method == "gfs" and len(set(r.picks.tolist())) == len(r.picks)  # no repeats
    assert np.all(r.support == np.arange(1, len(r.picks) + 1))
    size = 24

    def loss(gate):
        logits = trained(x, gates={"layers/0": jnp.asarray(gate, jnp.float32)})
        return float(optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())

    chosen: list[int] = []
    for k in range(len(r.picks)):
        cands = [i for i in range(size) if i not in chosen]
        values = []
        for i in cands:
            gate = np.zeros(size)
            gate[chosen + [i]] = size / (len(chosen) + 1)
            values.append(loss(gate))
        assert r.picks[k] == cands[int(np.argmin(values))], k
        assert r.history[k] == pytest.approx(min(values), rel=1e-5)
        chosen.append(int(r.picks[k]))
    np.testing.assert_allclose(r.weights, 1.0 / r.n)


def test_gfs_without_labels_imitates_the_outputs(trained, data) -> None:
    x, _ = data
    r = gfs(trained, "layers/1", x, loss="mse", n=16)
    assert r.history[-1] < r.history[0]
    assert r.weights_at(len(r.picks) - 1).max() == pytest.approx(1 / len(r.picks))


# --------------------------------------------------------------------------- #
# Algorithm 2.


def test_greedy_prune_meets_the_stopping_rule_and_shrinks(trained, data) -> None:
    x, y = data
    lines: list[str] = []
    tol = 0.02
    result = greedy_prune(trained, x, y, tolerance=tol, log=lines.append, taylor_start=10)
    assert isinstance(result, GreedyPruneResult)
    assert list(result.losses) == ["layers/0", "layers/1"] and len(lines) == 2
    logits = trained(x)
    base = float(optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())
    assert result.base_loss == pytest.approx(base, rel=1e-5)
    gates: dict[str, np.ndarray] = {}
    for name, (before, after) in result.losses.items():
        runs = result.candidates[name]
        assert set(runs) == {"local", "global"}
        assert runs["global"].method == "global_taylor"
        if name in result.selections:
            chosen = result.selections[name]
            assert chosen is runs[result.chosen[name]] and chosen.converged
            # the rule is measured against the unpruned network: no accumulation
            assert after - result.base_loss <= tol + 1e-6
            assert result.limits[name] == pytest.approx(result.base_loss + tol)
            ok = [r for r in runs.values() if r.converged and r.n < r.size]
            assert chosen.n == min(r.n for r in ok)  # the run that prunes more
            gates[name] = chosen.gate
            logits = trained(x, gates=gates)
            loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())
            assert after == pytest.approx(loss, rel=1e-5)
        else:
            assert result.chosen[name] == "none" and after == before
    assert result.selections, "nothing was pruned"
    assert result.final_loss - result.base_loss <= tol + 1e-6
    small = shrink(trained, result)
    np.testing.assert_allclose(small(x), trained(x, gates=result.gates), atol=1e-5)
    assert param_count(small) < param_count(trained)
    table = result.table()
    assert "layers/0" in table and "chosen" in table.splitlines()[0]


def test_greedy_prune_methods_and_group_subset(trained, data) -> None:
    x, y = data
    loose = greedy_prune(trained, x, y, tolerance=10.0, groups=["layers/1"], method="gfs")
    assert list(loose.losses) == ["layers/1"] and loose.chosen["layers/1"] == "gfs"
    assert loose.selections["layers/1"].n == 1  # any single unit meets a loose rule
    tight = greedy_prune(trained, x, y, tolerance=0.0, groups=["layers/0"], method="local",
                         max_steps=3)
    # three steps cannot reach the unpruned loss exactly: the group is kept whole
    assert tight.chosen["layers/0"] == "none" and not tight.selections
    out = greedy_prune(trained, x, tolerance=1e-3, groups=["layers/0"], method="global",
                       criterion="mse", taylor_start=None, max_steps=12)
    assert set(out.candidates["layers/0"]) == {"global"}
    assert out.candidates["layers/0"]["global"].method == "global"
    ls = greedy_prune(trained, x, tolerance=1e-3, groups=["layers/0"], method="global",
                      criterion="mse", taylor_start=None, max_steps=12, global_step="line_search")
    run = ls.candidates["layers/0"]["global"]
    assert run.method == "global_line_search" and np.all(np.diff(run.history) < 0)


def test_greedy_prune_errors(trained, data) -> None:
    x, y = data
    with pytest.raises(ValueError, match=r"no prunable group 'fc'.*\['layers/0', 'layers/1'\]"):
        greedy_prune(trained, x, y, tolerance=0.1, groups=["fc"])
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        greedy_prune(trained, x, y, tolerance=-1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        greedy_prune(trained, x, y, tolerance=0.1, method="random")
    with pytest.raises(ValueError, match="global_step must be one of"):
        greedy_prune(trained, x, y, tolerance=0.1, global_step="exact")
    with pytest.raises(ValueError, match="groups must be distinct"):
        greedy_prune(trained, x, y, tolerance=0.1, groups=["layers/0", "layers/0"])
    with pytest.raises(ValueError, match="at least one example"):
        greedy_prune(trained, x[:0], y[:0], tolerance=0.1)
    with pytest.raises(ValueError, match="one entry per example"):
        greedy_prune(trained, x, y[:5], tolerance=0.1)
    with pytest.raises(TypeError, match="PrunableModel"):
        greedy_prune(object(), x, y, tolerance=0.1)
    with pytest.raises(ValueError, match="n \\(the number of units to keep\\)"):
        gfs(trained, "layers/0", x, y, n=25)
    with pytest.raises(ValueError, match="loss must be one of"):
        gfs(trained, "layers/0", x, y, loss="hinge")


def test_cross_entropy_on_a_one_output_model_is_refused() -> None:
    # A softmax over one output is 1, so the cross-entropy/KL rule is identically 0: before the
    # fix greedy_prune kept 1 unit per layer and reported base = final loss = 0.
    model = create("mlp", num_classes=1, input_shape=(4,), hidden=(12, 8), rngs=0)
    x = jax.random.normal(jax.random.key(0), (48, 4))
    t = jax.random.normal(jax.random.key(1), (48, 1))
    with pytest.raises(ValueError, match=r"loss='cross_entropy'.*shape \(1,\).*pass loss='mse'"):
        greedy_prune(model, x, tolerance=1e-3)
    with pytest.raises(ValueError, match=r"loss='cross_entropy'.*pass loss='mse'"):
        greedy_prune(model, x, np.zeros(48, np.int32), tolerance=1e-3)
    with pytest.raises(ValueError, match=r"criterion='cross_entropy' \(the default unless "
                                         r"loss='mse'\).*pass criterion='mse'"):
        greedy_prune(model, x, t, tolerance=1e-3, loss=lambda o, y: jnp.sum((o - y) ** 2, -1))
    with pytest.raises(ValueError, match=r"criterion='cross_entropy'.*pass criterion='mse'"):
        greedy_prune(model, x, t, tolerance=1e-3, loss="mse", criterion="cross_entropy")
    with pytest.raises(ValueError, match=r"loss='cross_entropy'.*pass loss='mse'"):
        gfs(model, "layers/0", x)
    # valid: mse, or a callable loss with criterion='mse', or local only (criterion unused)
    r = greedy_prune(model, x, tolerance=1e-3, loss="mse", max_steps=3)
    assert r.base_loss == 0.0
    greedy_prune(model, x, t, tolerance=1e-3, loss=lambda o, y: jnp.sum((o - y) ** 2, -1),
                 criterion="mse", max_steps=3)
    greedy_prune(model, x, t, tolerance=1e-3, loss=lambda o, y: jnp.sum((o - y) ** 2, -1),
                 method="local", max_steps=3)


def test_labels_must_be_integer_classes_of_shape_m(trained, data) -> None:
    # one-hot labels crashed deep inside optax ("indices and arr must have the same number of
    # dimensions"); they are refused at entry with the fix named, and never argmaxed silently.
    x, y = data
    onehot = jax.nn.one_hot(y, 3)
    with pytest.raises(ValueError, match=r"shape \(96,\).*got shape \(96, 3\).*y.argmax\(-1\)"):
        greedy_prune(trained, x, onehot, tolerance=0.05)
    with pytest.raises(ValueError, match=r"shape \(96,\).*got shape \(96, 3\).*y.argmax\(-1\)"):
        gfs(trained, "layers/0", x, onehot, n=2)
    with pytest.raises(ValueError, match="non-integer values"):
        greedy_prune(trained, x, np.asarray(y, np.float32) + 0.5, tolerance=0.05)
    with pytest.raises(ValueError, match=r"class labels in \[0, 3\)"):
        gfs(trained, "layers/0", x, np.asarray(y) + 1, n=2)
    with pytest.raises(ValueError, match=r"shape \(96,\)"):
        Evaluator(trained, "layers/0", x, loss="labels", targets=onehot)
    # integer-valued float labels (e.g. read from a CSV) still work, as integer labels do
    a = gfs(trained, "layers/0", x, np.asarray(y, np.float32), n=2)
    b = gfs(trained, "layers/0", x, y, n=2)
    assert a.picks.tolist() == b.picks.tolist()


def test_summary_table_format() -> None:
    s = ShrinkSummary((("a", 10, 4), ("b", 8, 8)), (1000, 400), (5000, 2000), (1.2e4, 5e3))
    lines = format_shrink_summary(s).splitlines()
    assert lines[1].split() == ["a", "10", "4", "40.0%"]
    assert lines[-1].split() == ["FLOPs", "12,000", "5,000", "41.7%"]


def test_global_and_local_results_shrink_alike(trained, data) -> None:
    x, _ = data
    for r in (global_imitation(trained, "layers/1", x, n=4, max_steps=8),
              local_imitation(trained, "layers/1", x, n=4)):
        small = shrink(trained, [r])
        np.testing.assert_allclose(small(x), trained(x, gates={"layers/1": r.gate}), atol=1e-5)
        assert small.layers[1].kernel.shape == (24, r.n)


def test_even_budget_shares_the_tolerance_and_never_exceeds_it(trained, data) -> None:
    x, _ = data
    tol = 0.02
    # without labels the rule's loss is the KL divergence to the *unpruned* outputs
    r = greedy_prune(trained, x, tolerance=tol, budget="even", method="local", max_steps=40)
    assert r.base_loss == 0.0
    assert r.limits == pytest.approx({"layers/0": tol / 2, "layers/1": tol})
    for name, (_, after) in r.losses.items():
        assert after <= r.limits[name] + 1e-7
    kl = output_discrepancy(trained, x, r.gates, criterion="cross_entropy")
    assert r.final_loss == pytest.approx(kl, rel=1e-4, abs=1e-7) and kl <= tol + 1e-7
    with pytest.raises(ValueError, match="budget must be one of"):
        greedy_prune(trained, x, tolerance=tol, budget="per_layer")


def _fake(group: str, size: int, idx: list[int], method: str) -> ImitationResult:
    w = np.full(len(idx), 1.0 / len(idx))
    return ImitationResult(group, size, method, np.array(idx), w, 0, True, np.zeros(1),
                           np.array([len(idx)]), np.array(idx[:1]), np.ones(1))


def test_ties_between_local_and_global_go_to_the_smaller_discrepancy(trained, data,
                                                                       monkeypatch) -> None:
    """Both runs keep 3 units: the one whose network is closer to the unpruned one wins."""
    import sparsejax.structured.greedy as greedy

    x, y = data
    sets = {"local": [0, 1, 2], "global": [3, 4, 5]}
    gates = {m: _fake("layers/0", 24, idx, m).gate for m, idx in sets.items()}
    disc = {m: output_discrepancy(trained, x, {"layers/0": g}, criterion="cross_entropy")
            for m, g in gates.items()}
    for swap in (False, True):
        chosen = {"local": sets["global"], "global": sets["local"]} if swap else sets
        monkeypatch.setattr(greedy, "local_imitation",
                            lambda *a, c=chosen, **k: _fake("layers/0", 24, c["local"], "local"))
        monkeypatch.setattr(greedy, "global_imitation",
                            lambda *a, c=chosen, **k: _fake("layers/0", 24, c["global"], "global"))
        r = greedy_prune(trained, x, y, tolerance=100.0, groups=["layers/0"])
        closer = min(disc, key=disc.get)  # the index set with the smaller KL to F
        want = closer if not swap else {"local": "global", "global": "local"}[closer]
        assert r.chosen["layers/0"] == want, (swap, disc)
    assert abs(disc["local"] - disc["global"]) > 1e-3  # a real difference, not rounding


def test_each_greedy_step_uses_a_fresh_minibatch(trained, data) -> None:
    """Steps 0 and 1 are the exact argmins on the 1st and 2nd mini-batch of the seeded draws."""
    x, _ = data
    b, seed, group = 16, 3, "layers/1"
    draws = MiniBatches(x.shape[0], b, seed)
    idx0, idx1 = draws.draw(), draws.draw()
    assert set(idx0) != set(idx1) and len(set(idx0)) == b
    r = global_imitation(trained, group, x, n=4, max_steps=1, taylor_start=None,
                         minibatch=b, seed=seed)
    ev = Evaluator(trained, group, x, loss="mse")
    e0, e1 = ev.subset(idx0), ev.subset(idx1)
    size = 16
    first = e0.losses(np.eye(size, dtype=np.float32) * size)
    assert r.picks[0] == int(np.argmin(first)) and r.history[0] == pytest.approx(first.min())
    cands = 0.5 * size * (np.eye(size)[r.picks[0]][None, :] + np.eye(size))
    second = e1.losses(cands.astype(np.float32))
    assert r.picks[1] == int(np.argmin(second)) and r.history[1] == pytest.approx(second.min())
    # on all the data the second pick would differ or score differently: the batch mattered
    assert not np.allclose(second, ev.losses(cands.astype(np.float32)))
    # local imitation: the first pick is eq. 3 on the first mini-batch's Gram matrix
    loc = local_imitation(trained, group, x, n=4, max_steps=2, minibatch=b, seed=seed)
    g0 = contribution_gram(trained, group, x[jnp.asarray(idx0)])
    u = np.full(size, 1.0 / size)
    single = [float((np.eye(size)[i] - u) @ g0 @ (np.eye(size)[i] - u)) for i in range(size)]
    assert loc.picks[0] == int(np.argmin(single))
    # the same quadratic form of the float32 Gram matrix, summed in another order: equal up to
    # rounding (seen: 8.5e-9 relative with numpy 2.5.5, below float32's 6e-8 unit roundoff)
    assert loc.history[0] == pytest.approx(min(single), rel=1e-6)
    with pytest.raises(ValueError, match="minibatch"):
        local_imitation(trained, group, x, minibatch=0)

"""The method registry of the trainer and the command line (sparsejax.train.methods)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sparsejax.train import methods, schedules


def _params() -> dict:
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "conv": {"kernel": 0.3 * jax.random.normal(k1, (3, 3, 2, 4)), "bias": jnp.zeros(4)},
        "dense": {"kernel": 0.3 * jax.random.normal(k2, (8, 3)), "bias": jnp.zeros(3)},
    }


def _loss(params: dict, x: jax.Array) -> jax.Array:
    h = jnp.tanh(jnp.sum(params["conv"]["kernel"]) * x + params["conv"]["bias"].sum())
    out = h @ params["dense"]["kernel"] + params["dense"]["bias"]
    return jnp.mean((out - 1.0) ** 2)


@pytest.mark.parametrize("name", methods.available_methods())
def test_every_method_builds_and_runs_three_jitted_steps(name: str) -> None:
    params = _params()
    tx, extra = methods.make_optimizer(name, {}, learning_rate=None, momentum=None,
                                       steps_per_epoch=2, epochs=2, params=params)
    state = tx.init(params)
    x = jnp.linspace(-1.0, 1.0, 16).reshape(2, 8)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(_loss)(params, x)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    for _ in range(3):
        params, state = step(params, state)
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
    assert jax.tree.structure(params) == jax.tree.structure(_params())
    if methods.uses_learning_rate(name, {}):  # the trainer reads it from here
        assert state.hyperparams["learning_rate"].dtype == jnp.float32
    if extra is not None:
        values = extra(state, params)
        assert values and all(jnp.shape(v) == () for v in values.values())
        assert all(math.isfinite(float(v)) for v in values.values())
        jitted = jax.jit(extra)(state, params)  # the trainer may call it under jit
        assert {k: float(v) for k, v in jitted.items()} == pytest.approx(
            {k: float(v) for k, v in values.items()})


def test_registry_has_the_methods_of_the_library() -> None:
    expected = {"sgd", "gmp", "grda", "rda", "irda", "prox_sgd", "sqrt_t_prox_sgd", "lats",
                "slats", "lats_epochwise", "pgh", "stds", "str", "fixed_threshold_reparam",
                "lats_continuation", "lats_prune_at_init", "sfw"}
    assert expected <= set(methods.available_methods())
    assert methods.available_methods() == tuple(sorted(methods.METHODS))


@pytest.mark.parametrize("name", methods.available_methods())
def test_defaults_are_documented_and_valid(name: str) -> None:
    spec = methods.get_method(name)
    assert spec.summary and spec.reference
    if spec.uses_learning_rate:
        assert spec.learning_rate_source
    if spec.uses_momentum:
        assert spec.momentum_source and 0 <= spec.default_momentum < 1
    for h in spec.hparams:
        assert h.help and h.source, (name, h.name)
        assert h.parse(h.default, name) == h.default  # every default is in its own range
    text = methods.describe(name)
    assert all(h.name in text for h in spec.hparams)
    if spec.sparse:
        assert spec.hparam("sparsify").default == "weights"


def test_unknown_method_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'nope'.*available methods: .*grda"):
        methods.make_optimizer("nope", {}, learning_rate=0.1, momentum=None, steps_per_epoch=1,
                               epochs=1, params=_params())


def test_unknown_hyperparameter_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"method 'grda' has no hyperparameter 'l1'; "
                                         r"accepted: c, mu, sparsify"):
        methods.resolve_hparams("grda", {"l1": 0.1})


@pytest.mark.parametrize(
    ("name", "hp", "message"),
    [
        ("grda", {"c": -1.0}, r"hyperparameter c must be >= 0, got -1"),
        ("grda", {"mu": "abc"}, r"hyperparameter mu must be > 0, got 'abc'"),
        ("gmp", {"final_sparsity": 1.0}, r"final_sparsity must be >= 0 and < 1"),
        ("gmp", {"frequency": 2.5}, r"frequency must be an integer >= 1"),
        ("gmp", {"scope": "sideways"}, r"scope must be one of \('layerwise', 'global'\)"),
        ("irda", {"gamma": 0}, r"gamma must be > 0"),
        ("lats_prune_at_init", {"rewind": "maybe"}, r"rewind must be true or false"),
        ("lats", {"sparsify": "biases"}, r"sparsify must be one of \('weights', 'all'\)"),
    ],
)
def test_out_of_range_values_name_the_method_and_the_range(name, hp, message) -> None:
    with pytest.raises(ValueError, match=message):
        methods.make_optimizer(name, hp, learning_rate=0.1, momentum=None, steps_per_epoch=2,
                               epochs=1, params=_params())


def test_bad_shared_settings() -> None:
    kw = dict(hparams={}, steps_per_epoch=2, epochs=1, params=_params())
    with pytest.raises(ValueError, match="momentum must be >= 0 and < 1"):
        methods.make_optimizer("sgd", learning_rate=0.1, momentum=1.0, **kw)
    with pytest.raises(ValueError, match="learning_rate must be >= 0"):
        methods.make_optimizer("sgd", learning_rate=-0.1, momentum=None, **kw)
    with pytest.raises(ValueError, match="schedule must be one of"):
        methods.make_optimizer("sgd", learning_rate=0.1, momentum=None, schedule="wavy", **kw)


def test_command_line_strings_are_parsed() -> None:
    hp = methods.resolve_hparams("lats_prune_at_init", {"l1": "2e-2", "rewind": "true",
                                                        "prune_epochs": "0.5"})
    assert hp == {"l1": 0.02, "prune_epochs": 0.5, "rewind": True, "gradient": "ste",
                  "nesterov": False, "weight_decay": 2.0**-15, "sparsify": "weights"}
    assert methods.resolve_hparams("gmp", {"frequency": "10"})["frequency"] == 10


def test_grda_threshold_metric_is_the_closed_form() -> None:
    params = _params()
    c, mu, lr = 0.02, 0.6, 0.1
    tx, extra = methods.make_optimizer("grda", {"c": c, "mu": mu}, learning_rate=lr,
                                       momentum=0.9, steps_per_epoch=5, epochs=1, params=params)
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    for _ in range(5):
        updates, state = tx.update(zeros, state, params)
        params = optax.apply_updates(params, updates)
    # g(n, lr) = c * lr**0.5 * (n * lr)**mu after n = 5 steps (constant learning rate)
    assert float(extra(state, params)["threshold"]) == pytest.approx(
        c * lr**0.5 * (5 * lr) ** mu, rel=1e-5)


def test_rda_threshold_metric() -> None:
    params = _params()
    tx, extra = methods.make_optimizer("irda", {"gamma": 2.0, "l1": 0.01}, learning_rate=None,
                                       momentum=None, steps_per_epoch=2, epochs=2, params=params)
    state = tx.init(params)
    for _ in range(4):
        updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
        params = optax.apply_updates(params, updates)
    m = extra(state, params)
    assert float(m["threshold"]) == pytest.approx(0.01 * 2.0 / 2.0)  # l1 sqrt(4) / gamma
    assert float(m["step_size"]) == pytest.approx(1.0 / (2.0 * 2.0))


def test_learning_rate_schedules() -> None:
    kw = dict(steps_per_epoch=10, epochs=4)
    cos = schedules.make_schedule("cosine", 0.2, warmup_steps=10, **kw)
    assert float(cos(0)) == 0.0 and float(cos(10)) == pytest.approx(0.2)
    assert float(cos(25)) == pytest.approx(0.1, rel=1e-5) and float(cos(40)) == pytest.approx(0.0)
    ep = schedules.make_schedule("cosine_epoch", 0.2, **kw)
    assert [round(float(ep(k)), 4) for k in (0, 9, 10, 20, 30)] == [0.2, 0.2, 0.1707, 0.1, 0.0293]
    step = schedules.make_schedule("step", 0.2, decay_at=(0.25, 0.5), decay_factor=0.5, **kw)
    assert [round(float(step(k)), 4) for k in (9, 10, 19, 20)] == [0.2, 0.1, 0.1, 0.05]
    assert float(schedules.make_schedule("constant", 0.2, **kw)(1000)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="warmup_steps must be < the total number of steps"):
        schedules.make_schedule("cosine", 0.2, warmup_steps=40, **kw)


def test_schedules_with_a_warm_up_and_coinciding_decays() -> None:
    # cosine_epoch changes at the run's epoch boundaries with a warm-up too (it changed 5 steps
    # into an epoch, counting epochs from the warm-up's end)
    kw = dict(steps_per_epoch=10, epochs=4)
    ep = schedules.make_schedule("cosine_epoch", 1.0, warmup_steps=5, **kw)
    values = [float(ep(k)) for k in range(40)]
    for e in range(4):
        expected = 0.5 * (1 + math.cos(math.pi * e / 4))
        first = max(5, 10 * e)  # after the warm-up
        assert values[first:10 * e + 10] == pytest.approx([expected] * (10 * e + 10 - first)), e
    # step: decays on the same step multiply (0.5 and 0.54 of 10 steps both round to step 5;
    # 0.1 and 0.2 of 100 steps both fall inside a 30-step warm-up and apply when it ends)
    s = schedules.make_schedule("step", 1.0, steps_per_epoch=10, epochs=1, decay_at=(0.5, 0.54))
    assert [float(s(k)) for k in (4, 5, 9)] == pytest.approx([1.0, 0.01, 0.01])
    s = schedules.make_schedule("step", 1.0, steps_per_epoch=10, epochs=10, warmup_steps=30,
                                decay_at=(0.1, 0.2, 0.5))
    assert [float(s(k)) for k in (30, 49, 50)] == pytest.approx([0.01, 0.01, 0.001])


@pytest.mark.parametrize("name", ["gmp", "ste"])
def test_a_pruning_window_that_ends_before_it_begins_is_an_error(name) -> None:
    with pytest.raises(ValueError, match=r"end_fraction \(0.2\) must be >= begin_fraction \(0.8\)"):
        methods.make_optimizer(name, {"begin_fraction": 0.8, "end_fraction": 0.2}, learning_rate=None,
                               momentum=None, steps_per_epoch=10, epochs=2, params=_params())


def test_learning_rate_is_injected_and_follows_the_schedule() -> None:
    params = _params()
    tx, _ = methods.make_optimizer("lats", {}, learning_rate=0.4, momentum=None,
                                   steps_per_epoch=2, epochs=2, params=params, schedule="step",
                                   decay_at=(0.5,), decay_factor=0.25)
    state = tx.init(params)
    lrs = []
    for _ in range(4):
        updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
        lrs.append(round(float(state.hyperparams["learning_rate"]), 4))
    assert lrs == [0.4, 0.4, 0.1, 0.1]  # the value the last update used (decay at step 2)


def test_momentum_none_takes_the_method_default_and_is_ignored_without_momentum() -> None:
    params = _params()
    grads = jax.tree.map(jnp.ones_like, params)

    def two_steps(name, momentum):
        tx, _ = methods.make_optimizer(name, {}, learning_rate=0.1, momentum=momentum,
                                       steps_per_epoch=2, epochs=1, params=params)
        p, s = params, tx.init(params)
        for _ in range(2):
            u, s = tx.update(grads, s, p)
            p = optax.apply_updates(p, u)
        return p

    # sgd's default momentum is 0.9: the second step is 1.9 lr
    p = two_steps("sgd", None)
    np.testing.assert_allclose(p["dense"]["bias"], -0.1 * (1 + 1.9), rtol=1e-6)
    p0 = two_steps("sgd", 0.0)
    np.testing.assert_allclose(p0["dense"]["bias"], -0.2, rtol=1e-6)
    # gRDA has no momentum: the argument changes nothing
    a, b = two_steps("grda", 0.0), two_steps("grda", 0.9)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_sparsify_all_thresholds_biases_too() -> None:
    params = {"kernel": jnp.full((2, 2), 0.01), "bias": jnp.full((2,), 0.01)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    for sparsify, bias_zero in (("weights", False), ("all", True)):
        tx, _ = methods.make_optimizer("prox_sgd", {"l1": 1.0, "sparsify": sparsify},
                                       learning_rate=0.1, momentum=0.0, steps_per_epoch=1,
                                       epochs=1, params=params)
        u, _ = tx.update(zeros, tx.init(params), params)
        new = optax.apply_updates(params, u)
        assert bool(jnp.all(new["kernel"] == 0))
        assert bool(jnp.all(new["bias"] == 0)) == bias_zero


def test_gmp_reaches_its_final_sparsity() -> None:
    params = {"a": {"kernel": jax.random.normal(jax.random.key(1), (20, 10))},
              "b": {"kernel": jax.random.normal(jax.random.key(2), (10, 10))}}
    tx, extra = methods.make_optimizer(
        "gmp", {"final_sparsity": 0.8, "begin_fraction": 0.0, "end_fraction": 0.5,
                "frequency": 1}, learning_rate=0.01, momentum=None, steps_per_epoch=5,
        epochs=2, params=params)
    state = tx.init(params)
    for _ in range(10):
        u, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
        params = optax.apply_updates(params, u)
    for leaf in jax.tree.leaves(params):  # layer-wise by default: every layer at 80%
        assert float(jnp.mean(leaf == 0)) == pytest.approx(0.8)
    assert float(extra(state, params)["target_sparsity"]) == pytest.approx(0.8)


@pytest.mark.parametrize("score", ["magnitude", "saliency", "random"])
def test_gmp_score_chooses_what_is_removed(score: str) -> None:
    # |w| grows along the kernel while |w * g| = 1/|w| falls: the two criteria remove opposite halves
    w = jnp.arange(1.0, 9.0).reshape(4, 2)
    params, grads = {"a": {"kernel": w}}, {"a": {"kernel": 1.0 / w**2}}
    tx, _ = methods.make_optimizer(
        "gmp", {"final_sparsity": 0.5, "begin_fraction": 0.0, "end_fraction": 0.0, "frequency": 1,
                "score": score}, learning_rate=1e-3, momentum=None, steps_per_epoch=4, epochs=1,
        params=params)
    _, state = tx.update(grads, tx.init(params), params)
    kept = np.asarray(state.inner_state.support["a"]["kernel"]).ravel()  # inject_hyperparams' inner
    assert kept.sum() == 4
    if score == "magnitude":
        assert kept.tolist() == [False] * 4 + [True] * 4
    elif score == "saliency":
        assert kept.tolist() == [True] * 4 + [False] * 4
    # 'random': the count above (which four is the seed's business; test_pruning_gradual.py)


def test_prepare_model_applies_irda_init_deterministically() -> None:
    def build():
        return nnx.Sequential(nnx.Linear(50, 20, rngs=nnx.Rngs(0)),
                              nnx.Linear(20, 3, rngs=nnx.Rngs(1)))

    a, b, plain = build(), build(), build()
    methods.prepare_model("irda", a, {}, seed=3)
    methods.prepare_model("irda", b, {}, seed=3)
    methods.prepare_model("sgd", plain, {}, seed=3)  # no-op
    ka, kb = a.layers[0].kernel[...], b.layers[0].kernel[...]
    np.testing.assert_array_equal(ka, kb)
    # uniform with std 10/sqrt(50): bound 10*sqrt(3/50) = 2.45, far above the default init
    assert 1.5 < float(jnp.abs(ka).max()) <= 10 * math.sqrt(3 / 50) + 1e-6
    assert float(jnp.std(ka)) == pytest.approx(10 / math.sqrt(50), rel=0.1)
    np.testing.assert_array_equal(a.layers[0].bias[...], plain.layers[0].bias[...])
    assert float(jnp.abs(plain.layers[0].kernel[...]).max()) < 1.0
    methods.prepare_model("irda", plain, {"init_scale": 0.0})  # 0 keeps the model's init
    assert float(jnp.abs(plain.layers[0].kernel[...]).max()) < 1.0


def test_sfw_keeps_the_kernels_in_their_polytopes_and_trains_biases_by_sgd() -> None:
    from sparsejax import constraints as C

    model = nnx.Sequential(nnx.Linear(20, 8, rngs=nnx.Rngs(0)), nnx.Linear(8, 3, rngs=nnx.Rngs(1)))
    ours = {"k_frac": 0.1, "biases": "sgd"}  # the option of ours: biases by momentum SGD
    methods.prepare_model("sfw", model, ours, seed=0)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    hp = methods.resolve_hparams("sfw", ours)
    cons = methods.frank_wolfe._sfw_constraints(params, hp)
    assert cons["layers"][0]["bias"] is None and cons["layers"][0]["kernel"].k_frac == 0.1
    tx, extra = methods.make_optimizer("sfw", ours, learning_rate=0.5, momentum=None,
                                       steps_per_epoch=3, epochs=1, params=params)
    assert extra is None
    state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    assert C.is_feasible(params, cons)
    # the biases follow momentum SGD (0.9) at 0.1 x the learning rate: -0.05 * 0.3 * (1 + 1.9 + 2.71)
    np.testing.assert_allclose(params["layers"][1]["bias"], -0.05 * 0.3 * 5.61, rtol=1e-5)


@pytest.mark.parametrize("name", ["prox_sgd", "sqrt_t_prox_sgd"])
def test_prox_sgd_methods_default_to_the_irda_papers_step(name: str) -> None:
    # iRDA paper: alpha_t = 1/(gamma sqrt t), plain SGD (eq. 17-18, 21-22); the trainer's
    # learning rate and momentum count only with step='lr' (the library's variant).
    params = _params()
    grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)
    gamma, lam = 0.8, 0.05

    def two_steps(hp, learning_rate, momentum):
        tx, _ = methods.make_optimizer(name, hp, learning_rate=learning_rate, momentum=momentum,
                                       steps_per_epoch=2, epochs=1, params=params)
        p, s = params, tx.init(params)
        for _ in range(2):
            u, s = tx.update(grads, s, p)
            p = optax.apply_updates(p, u)
        return p

    hp = {"gamma": gamma, "l1": lam, "sparsify": "all"}
    paper = two_steps(hp, 0.5, 0.9)
    jax.tree.map(np.testing.assert_array_equal, paper, two_steps(hp, 0.01, None))
    w = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    for t in (1, 2):
        alpha = 1 / (gamma * math.sqrt(t))
        tau = alpha * lam if name == "prox_sgd" else lam * math.sqrt(t) / gamma
        w = jax.tree.map(
            lambda x: np.sign(x - alpha * 0.5) * np.maximum(np.abs(x - alpha * 0.5) - tau, 0), w)
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-7), paper, w)
    # step='lr': the trainer's learning rate with momentum, before the same kind of threshold
    own = two_steps({**hp, "step": "lr"}, 0.1, 0.9)
    b = np.asarray(own["dense"]["bias"])  # 0 at init; steps -0.05 and -0.095, each thresholded
    tau = ((0.1 * lam, 0.1 * lam) if name == "prox_sgd"
           else (lam / gamma, lam * math.sqrt(2) / gamma))
    first = -max(0.05 - tau[0], 0.0)
    np.testing.assert_allclose(b, -max(-first + 0.095 - tau[1], 0.0), rtol=1e-5)


@pytest.mark.parametrize("name", ["prox_sgd", "sqrt_t_prox_sgd"])
def test_prox_sgd_methods_inject_no_learning_rate_with_the_papers_step(name: str) -> None:
    # step='inverse_sqrt' (the default) has no learning rate, as rda: nothing is injected, so
    # neither the logs nor the divergence message name a rate that the step does not use
    from sparsejax.train.metrics import hyperparameters

    params = _params()
    grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)

    def three_steps(hp, learning_rate, momentum, schedule):
        tx, _ = methods.make_optimizer(name, hp, learning_rate=learning_rate, momentum=momentum,
                                       steps_per_epoch=5, epochs=1, params=params,
                                       schedule=schedule)
        p, s = params, tx.init(params)
        for _ in range(3):
            u, s = tx.update(grads, s, p)
            p = optax.apply_updates(p, u)
        return p, hyperparameters(s)

    paper, logged = three_steps({}, 0.5, 0.9, "cosine")
    other, logged_other = three_steps({}, 0.001, 0.0, "constant")
    assert logged == logged_other == {}
    jax.tree.map(np.testing.assert_array_equal, paper, other)
    assert not methods.uses_learning_rate(name) and not methods.uses_learning_rate(name, {})
    # step='lr' (the library's variant) takes the learning rate and its schedule
    assert methods.uses_learning_rate(name, {"step": "lr"})
    _, logged = three_steps({"step": "lr"}, 0.5, 0.9, "constant")
    assert logged == {"learning_rate": pytest.approx(0.5)}
    assert methods.uses_learning_rate("sgd") and not methods.uses_learning_rate("rda")


def test_the_injected_learning_rate_is_float32_for_bf16_params_and_float64_for_float64() -> None:
    # optax's default (the params' dtype) would round 0.1 to bf16's 0.100097656 for bf16 params
    def learning_rates(params):
        tx, _ = methods.make_optimizer("lats", {}, learning_rate=0.1, momentum=None,
                                       steps_per_epoch=2, epochs=2, params=params)
        state = tx.init(params)
        _, after = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
        return state.hyperparams["learning_rate"], after.hyperparams["learning_rate"]

    bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), _params())
    for lr in learning_rates(bf16):
        assert lr.dtype == jnp.float32 and float(lr) == float(np.float32(0.1))
    with jax.enable_x64(True):
        f64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), _params())
        for lr in learning_rates(f64):
            assert lr.dtype == jnp.float64 and float(lr) == 0.1


def test_sfw_prepare_model_and_make_optimizer_build_the_same_polytopes() -> None:
    # radius_scale 0.2: the polytopes (diameter 2*tau*||W_init||) are smaller than the init itself,
    # so prepare_model shrinks the params; the optimizer's polytopes must still be sized from the
    # init, not from the shrunk params
    from sparsejax import constraints as C
    from sparsejax.train.methods.frank_wolfe import _sfw_constraints

    model = nnx.Sequential(nnx.Linear(20, 8, rngs=nnx.Rngs(0)), nnx.Linear(8, 3, rngs=nnx.Rngs(1)))
    initial = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    hp = {"radius_scale": 0.2}
    full = methods.resolve_hparams("sfw", hp)
    with pytest.raises(ValueError, match=r"sfw: the model's params lie outside .*radius_scale=0.2"
                                         r".*Pass sample_params"):
        methods.prepare_model("sfw", model, hp)  # the radii would come from the params themselves
    unchanged = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, unchanged, initial)

    def sample(seed):
        return initial

    methods.prepare_model("sfw", model, hp, sample_params=sample)
    prepared = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    kernel = prepared["layers"][0]["kernel"]
    assert float(jnp.abs(kernel - initial["layers"][0]["kernel"]).max()) > 0  # shrunk
    want = C.leaf_constraints(_sfw_constraints(initial, full), initial)
    got = C.leaf_constraints(_sfw_constraints(prepared, full, sample), prepared)
    assert [c.radius for c in got] == pytest.approx([c.radius for c in want])
    # the documented radius: D = 2*tau*||W_init||, r = D / (2 sqrt(K)), K = max(10, 5% of 160)
    w_init = float(jnp.linalg.norm(initial["layers"][0]["kernel"]))
    kernel_radius = C.leaf_constraints(_sfw_constraints(initial, full), initial)[1].radius
    assert kernel_radius == pytest.approx(0.2 * w_init / math.sqrt(10), rel=1e-5)
    assert bool(C.is_feasible(prepared, _sfw_constraints(prepared, full, sample)))
    tx, _ = methods.make_optimizer("sfw", hp, learning_rate=0.5, momentum=None, steps_per_epoch=3,
                                   epochs=1, params=prepared, sample_params=sample)
    params, state = prepared, tx.init(prepared)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    assert bool(C.is_feasible(params, _sfw_constraints(initial, full)))
    # the prepared params without the sample_params they were prepared with: refused
    with pytest.raises(ValueError, match=r"the params given to make_optimizer lie outside"):
        methods.make_optimizer("sfw", hp, learning_rate=0.5, momentum=None, steps_per_epoch=3,
                               epochs=1, params=prepared)


@pytest.mark.parametrize("name, hp", [
    ("static", {"sparsity": 0.8, "mask_seed": 2}),
    ("static", {"sparsity": 0.5, "pattern": "2:4", "distribution": "uniform"}),
    ("set", {"sparsity": 0.7, "mask_seed": 1}),
    ("rigl", {"sparsity": 0.5, "pattern": "4x4", "distribution": "uniform"}),
])
def test_prepare_model_starts_static_set_rigl_from_the_initial_mask(name, hp) -> None:
    """The first forward pass is the sparse network's (the reference's uses mask * w from step
    0): prepare_model zeroes the weights outside the support the optimizer's init will draw."""
    from sparsejax import pruning

    def build():
        return nnx.Sequential(nnx.Linear(16, 8, rngs=nnx.Rngs(0)), nnx.Linear(8, 4, rngs=nnx.Rngs(1)))

    model = build()
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    methods.prepare_model(name, model, hp, seed=0)
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    tx, _ = methods.make_optimizer(name, hp, learning_rate=0.1, momentum=None,
                                   steps_per_epoch=5, epochs=2, params=after)
    state = tx.init(after)
    found = [s for s in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "support"))
             if hasattr(s, "support")]
    support = found[0].support
    expected = pruning.apply_support(before, support)
    for a, e in zip(jax.tree.leaves(after), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))
    for i in (0, 1):
        m = np.asarray(support["layers"][i]["kernel"])
        assert 0 < m.sum() < m.size
        assert np.all(np.asarray(after["layers"][i]["kernel"])[~m] == 0)
        np.testing.assert_array_equal(after["layers"][i]["bias"], before["layers"][i]["bias"])
    # the same initial draw as a resumed run's: deterministic in the hyperparameters
    again = build()
    methods.prepare_model(name, again, hp, seed=5)
    for a, b in zip(jax.tree.leaves(nnx.to_pure_dict(nnx.state(again, nnx.Param))),
                    jax.tree.leaves(after)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_prepare_model_leaves_ste_dense() -> None:
    """STE's mask starts all True (dense until its first mask update): nothing to prepare."""
    model = nnx.Linear(16, 8, rngs=nnx.Rngs(0))
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    methods.prepare_model("ste", model, {}, seed=0)
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    np.testing.assert_array_equal(after["kernel"], before["kernel"])

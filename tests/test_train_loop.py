"""The trainer (sparsejax.train): train/eval steps, fit, workdirs, divergence, metrics.

Runs in the test process on the 8 simulated CPU devices of conftest.py, with a
tiny MLP (or a tiny BatchNorm network) on synthetic 28x28 data. The subprocess
tests (SIGKILL resume, two processes) are in tests/test_train_subprocess.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import sparsejax as sj
from sparsejax.models import create
from sparsejax.train import (
    TrainingDivergedError,
    WorkdirMismatchError,
    data_mesh,
    evaluate,
    fit,
    hyperparameters,
    initialize_distributed,
)
from sparsejax.train.checkpoint import Workdir
from sparsejax.train.step import (
    batch_sums,
    init_train_state,
    make_eval_step,
    make_train_step,
    shard_batch,
    split_model,
    zero_totals,
)
from sparsejax.tree import leaves_with_paths
from tests._train_driver import ArrayBatches, make_data, synthetic
from tests.interruption import Interrupt, StopAt

BATCH = 32  # 4 rows per simulated device
N_TRAIN = 256  # 8 steps per epoch


class TinyBN(nnx.Module):
    """Dense -> BatchNorm -> ReLU -> Dropout -> Dense: exercises batch stats and dropout keys."""

    def __init__(self, dropout: float = 0.0, *, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(784, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, momentum=0.5, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.fc2 = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        return self.fc2(self.drop(nnx.relu(self.bn(self.fc1(x)))))


def tiny_mlp(seed: int = 0, hidden: int = 16):
    return create("mlp", hidden=(hidden,), rngs=seed)


def flat(tree) -> dict[str, np.ndarray]:
    return {p: np.asarray(x) for p, x in leaves_with_paths(tree)}


def assert_trees_equal(a, b, atol=0.0):
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_allclose(fa[k], fb[k], atol=atol, rtol=0, err_msg=k)


def host_batch(n: int = BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    x, y = synthetic("train", n, seed)
    return {"image": x, "label": y, "mask": np.ones(n, np.float32)}


@pytest.fixture(scope="module")
def data():
    return make_data(BATCH, N_TRAIN, 100, seed=0)


# ---------------------------------------------------------------- the steps


def test_train_step_matches_a_hand_written_nnx_step():
    """Two sharded steps == two plain NNX steps (SGD): params and BatchNorm statistics."""
    lr, mesh = 0.1, data_mesh()
    batches = [host_batch(seed=s) for s in (1, 2)]
    tx = optax.sgd(lr)

    parts = split_model(TinyBN(rngs=nnx.Rngs(0)))
    step = make_train_step(parts, tx, mesh)
    state, totals = init_train_state(parts, tx, mesh), zero_totals(mesh)
    for b in batches:
        state, totals, _ = step(state, totals, shard_batch(b, mesh))

    @nnx.jit
    def manual_step(m, x, y):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(m)  # updates the batch stats in place
        nnx.update(m, jax.tree.map(lambda p, g: p - lr * g, nnx.state(m, nnx.Param), grads))
        return loss

    model = TinyBN(rngs=nnx.Rngs(0))
    losses = [float(manual_step(model, b["image"], b["label"])) for b in batches]

    assert_trees_equal(state.params, nnx.to_pure_dict(nnx.state(model, nnx.Param)), atol=2e-6)
    assert_trees_equal(state.model_state, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)),
                       atol=2e-6)
    assert float(jnp.abs(state.model_state["bn"]["mean"]).sum()) > 0  # the stats did move
    np.testing.assert_allclose(float(totals.loss_sum) / float(totals.count), np.mean(losses),
                               rtol=1e-5)
    assert int(state.step) == 2 and int(totals.bad_step) == -1


@pytest.mark.parametrize("make_tx", [
    lambda: optax.chain(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9),
                        optax.contrib.reduce_on_plateau()),  # reads value=loss
    lambda: sj.grda(0.1, c=0.01, mu=0.51),
], ids=["inject_sgd_plateau", "grda"])
def test_second_step_does_not_recompile(make_tx):
    mesh, tx = data_mesh(), make_tx()
    parts = split_model(create("mlp", hidden=(8,), dropout_rate=0.2, rngs=0))
    step = make_train_step(parts, tx, mesh)
    state, totals = init_train_state(parts, tx, mesh), zero_totals(mesh)
    for s in range(3):
        state, totals, _ = step(state, totals, shard_batch(host_batch(seed=s), mesh))
    assert step._cache_size() == 1
    assert int(state.step) == 3


def test_masked_loss_ignores_padding_rows():
    b = host_batch(BATCH)
    mask = np.zeros(BATCH, np.float32)
    mask[:5] = 1.0
    logits = np.random.default_rng(0).normal(size=(BATCH, 10)).astype(np.float32)
    sums = jax.jit(batch_sums)
    loss_sum, correct, count = sums(logits, b["label"], mask)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:5], b["label"][:5])
    np.testing.assert_allclose(float(loss_sum), float(ce.sum()), rtol=1e-6)
    assert float(count) == 5.0
    assert float(correct) == float(np.sum(np.argmax(logits[:5], -1) == b["label"][:5]))

    # Padding rows holding NaN do not reach the sums either.
    logits[7] = np.nan
    assert np.isfinite(float(sums(logits, b["label"], mask)[0]))


def test_eval_step_uses_running_averages_and_the_mask():
    mesh = data_mesh()
    model = TinyBN(rngs=nnx.Rngs(0))
    model.bn.mean[...] = jnp.linspace(-1.0, 1.0, 16)  # running averages far from batch stats
    model.bn.var[...] = jnp.linspace(0.5, 2.0, 16)
    parts = split_model(model)
    state = init_train_state(parts, optax.identity(), mesh)
    b = host_batch()
    b["mask"][20:] = 0.0
    totals = make_eval_step(parts, mesh)(state.params, state.model_state, zero_totals(mesh),
                                         shard_batch(b, mesh))
    model.eval()
    logits = model(jnp.asarray(b["image"][:20]))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["label"][:20])
    np.testing.assert_allclose(float(totals.loss_sum), float(ce.sum()), rtol=1e-5)
    assert float(totals.count) == 20.0


def test_data_mesh_takes_any_iterable_of_devices():
    """A generator is read once (it used to be read twice: the second read found it empty)."""
    devices = jax.devices()[:4]
    mesh = data_mesh(d for d in devices)
    assert mesh.axis_names == ("data",) and list(mesh.devices.flat) == devices
    with pytest.raises(ValueError, match="devices is empty"):
        data_mesh([])


def test_shard_batch_checks_the_device_count():
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        shard_batch(host_batch(12), data_mesh())


# ---------------------------------------------------------------- fit


def test_fit_learns_is_deterministic_and_reports_metrics(data):
    train, test = data
    lines = []

    def run():
        tx = optax.inject_hyperparams(sj.grda)(learning_rate=0.1, c=0.01, mu=0.51)
        return fit(tiny_mlp(), tx, train, epochs=2, eval_data=test, seed=3, log=lines.append,
                   extra_metrics=lambda opt_state, params: {"count": opt_state.count})

    a, b = run(), run()
    assert_trees_equal(a.params, b.params)  # bitwise
    strip = [{k: v for k, v in r.items() if "time" not in k} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if "time" not in k} for r in b.history]

    last = a.history[-1]
    assert [r["epoch"] for r in a.history] == [1, 2] and last["step"] == 2 * len(train)
    assert last["test_accuracy"] > 0.2 and last["train_loss"] < 0.75 * a.history[0]["train_loss"]
    assert last["learning_rate"] == pytest.approx(0.1) and last["c"] == pytest.approx(0.01)
    assert last["count"] == 2 * len(train)
    assert last["sparsity"] == pytest.approx(float(sj.sparsity(a.params, sj.tree.weights_only)))
    assert 0 < last["sparsity"] < 1
    assert set(last["sparsity_per_layer"]) == {"layers/0/kernel", "layers/1/kernel"}
    assert last["num_params"] == 784 * 16 + 16 + 16 * 10 + 10
    assert a.steps == 2 * len(train) and a.workdir is None and a.resumed_from is None
    assert a.wall_time == pytest.approx(sum(r["epoch_time"] for r in a.history))
    assert len(lines) == 4 and lines[0].startswith("epoch 1/2 (step 8): train loss")
    assert "learning_rate 0.1" in lines[0]


def test_fit_result_model_is_trained_in_eval_mode_and_input_model_untouched(data):
    train, test = data
    model = TinyBN(dropout=0.3, rngs=nnx.Rngs(0))
    state_of = lambda m: flat(nnx.to_pure_dict(nnx.state(m, nnx.Any(nnx.Param, nnx.BatchStat))))
    before = state_of(model)
    result = fit(model, optax.sgd(0.1, momentum=0.9), train, epochs=1, eval_data=test, log=None)

    after = state_of(model)
    assert before.keys() == after.keys() and "bn/mean" in before
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert model.bn.use_running_average is False and model.drop.deterministic is False
    assert result.model.bn.use_running_average is True and result.model.drop.deterministic is True

    # The returned model carries the trained params and batch statistics,
    assert_trees_equal(nnx.to_pure_dict(nnx.state(result.model, nnx.Param)), result.params)
    assert not np.allclose(np.asarray(result.model_state["bn"]["mean"]), 0.0)
    # and evaluate() on it gives the epoch's test metrics.
    ev = evaluate(result.model, test)
    assert ev["count"] == 100
    assert ev["accuracy"] == pytest.approx(result.history[-1]["test_accuracy"], abs=1e-6)
    assert ev["loss"] == pytest.approx(result.history[-1]["test_loss"], rel=1e-5)


def test_evaluate_is_exact_with_a_padded_last_batch():
    x, y = synthetic("test", 100, 0)  # 100 = 3 batches of 32 + 4 rows, padded
    model = tiny_mlp(seed=1)
    ev = evaluate(model, ArrayBatches(x, y, BATCH, train=False))
    logits = model(jnp.asarray(x))
    assert ev["count"] == 100
    assert ev["accuracy"] == pytest.approx(float(np.mean(np.argmax(logits, -1) == y)), abs=1e-7)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    assert ev["loss"] == pytest.approx(float(ce), rel=1e-5)


def test_evaluation_refuses_one_hot_labels_with_a_clear_error():
    # one-hot labels crashed inside the eval step ("indices and arr must have the same number of
    # dimensions"); they are refused with the shape expected and the fix, never argmaxed.
    x, y = synthetic("test", 40, 0)

    class Relabelled:
        def __init__(self, inner, relabel):
            self.inner, self.relabel, self.batch_size = inner, relabel, inner.batch_size

        def __len__(self):
            return len(self.inner)

        def epoch(self, epoch, start=0):
            for b in self.inner.epoch(epoch, start):
                yield {**b, "label": self.relabel(b["label"])}

    model = tiny_mlp(seed=1)
    one_hot = Relabelled(ArrayBatches(x, y, BATCH, train=False),
                         lambda t: np.eye(10, dtype=np.float32)[t])
    with pytest.raises(ValueError, match=r"batch 0: 'label' must hold one integer class label "
                                         r"per example, of shape \(32,\), got shape \(32, 10\)"
                                         r".*argmax\(-1\)"):
        evaluate(model, one_hot)
    with pytest.raises(ValueError, match=r"got shape \(32, 10\)"):
        sj.train.make_evaluator(model, one_hot)  # cache=True: at construction
    with pytest.raises(ValueError, match="non-integer values"):
        evaluate(model, Relabelled(ArrayBatches(x, y, BATCH, train=False), lambda t: t + 0.5))
    # integer-valued float labels are what they were
    as_float = Relabelled(ArrayBatches(x, y, BATCH, train=False), lambda t: t.astype(np.float32))
    assert evaluate(model, as_float) == evaluate(model, ArrayBatches(x, y, BATCH, train=False))


def test_fit_warns_when_trained_on_an_evaluation_pipeline(data):
    train, ev = data
    assert ev.train is False
    with pytest.warns(UserWarning, match="train_data is an evaluation pipeline"):
        fit(tiny_mlp(), optax.sgd(0.1), ev, epochs=1, log=None, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(tiny_mlp(), optax.sgd(0.1), train, epochs=1, log=None, progress=False)


def test_fit_checks_its_arguments(data):
    train, _ = data
    for kwargs, match in [({"epochs": 0}, "epochs"), ({"epochs": 1, "keep_checkpoints": 0},
                          "keep_checkpoints"), ({"epochs": 1, "checkpoint_every_steps": 0},
                          "checkpoint_every_steps")]:
        with pytest.raises(ValueError, match=match):
            fit(tiny_mlp(), optax.sgd(0.1), train, log=None, **kwargs)
    odd = ArrayBatches(*synthetic("train", 64, 0), 12, train=True)
    with pytest.raises(ValueError, match=r"batch_size \(12\) must be a multiple"):
        fit(tiny_mlp(), optax.sgd(0.1), odd, epochs=1, log=None)


def test_hyperparameters_found_anywhere_in_the_state():
    tx = optax.chain(
        optax.inject_hyperparams(optax.add_decayed_weights)(weight_decay=1e-4),
        optax.masked(optax.inject_hyperparams(optax.sgd)(learning_rate=0.25), {"w": True}),
        optax.inject_hyperparams(optax.scale)(step_size=-1.0),
    )
    hp = hyperparameters(tx.init({"w": jnp.ones(3)}))
    assert hp == pytest.approx({"weight_decay": 1e-4, "learning_rate": 0.25, "step_size": -1.0})
    assert hyperparameters(optax.sgd(0.1).init({"w": jnp.ones(3)})) == {}


def test_initialize_distributed_is_a_no_op_without_settings(monkeypatch):
    for env in ("SPARSEJAX_COORDINATOR", "SPARSEJAX_NUM_PROCESSES", "SPARSEJAX_PROCESS_ID"):
        monkeypatch.delenv(env, raising=False)
    assert initialize_distributed() is False
    monkeypatch.setenv("SPARSEJAX_COORDINATOR", "127.0.0.1:1234")
    with pytest.raises(ValueError, match="missing num_processes"):
        initialize_distributed()
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
        initialize_distributed(num_processes=2, process_id=2)


# ---------------------------------------------------------------- workdirs


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_workdir_files_resume_and_finished_run(data, tmp_path):
    train, test = data
    wd = tmp_path / "run"
    config = {"model": "mlp", "hidden": (16,)}
    first = fit(tiny_mlp(), optax.sgd(0.1, momentum=0.9), train, epochs=2, eval_data=test, workdir=wd,
                config=config, keep_checkpoints=2, checkpoint_every_steps=3, log=None)
    assert first.workdir == wd.absolute()
    assert json.loads((wd / "config.json").read_text()) == {"hidden": [16], "model": "mlp"}
    lines = [json.loads(s) for s in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines == json.loads(json.dumps(first.history))
    assert json.loads((wd / "result.json").read_text())["steps"] == 16
    # saves at 3, 6, 8 (epoch), 9, 12, 15, 16 (epoch); the newest two are kept
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir()) == [15, 16]

    # The same call again: nothing is trained, the result comes back.
    snap = _snapshot(wd)
    log = []
    again = fit(tiny_mlp(), optax.sgd(0.1, momentum=0.9), train, epochs=2, eval_data=test, workdir=wd,
                config=config, keep_checkpoints=2, checkpoint_every_steps=3, log=log.append)
    assert log == [f"{wd.absolute()} holds a finished run; returning its result"]
    assert again.resumed_from == 16 and again.wall_time == pytest.approx(first.wall_time)
    assert_trees_equal(again.params, first.params)
    assert again.history == json.loads(json.dumps(first.history))
    assert _snapshot(wd) == snap
    assert jax.tree.structure(again.opt_state) == jax.tree.structure(first.opt_state)


def test_finished_run_whose_optimizer_state_changed_layout_returns_its_weights(data, tmp_path):
    # A newer version of a method may keep another optimizer state (here: SGD-momentum's
    # trace, then Adam's moments, under the same config). A finished run still has its
    # trained weights: fit returns them, without an optimizer state, and says so.
    train, test = data
    wd = tmp_path / "run"
    config = {"method": "m"}
    first = fit(TinyBN(rngs=nnx.Rngs(0)), optax.sgd(0.1, momentum=0.9), train, epochs=1,
                eval_data=test, workdir=wd, config=config, log=None)
    snap = _snapshot(wd)
    log = []
    again = fit(TinyBN(rngs=nnx.Rngs(0)), optax.adam(1e-3), train, epochs=1, eval_data=test,
                workdir=wd, config=config, log=log.append)
    assert len(log) == 1 and "optimizer state does not fit this optimizer" in log[0], log
    assert again.opt_state is None
    assert again.resumed_from == 8 and again.wall_time == pytest.approx(first.wall_time)
    assert_trees_equal(again.params, first.params)
    assert_trees_equal(again.model_state, first.model_state)  # the BatchNorm statistics
    assert again.history == json.loads(json.dumps(first.history))
    assert evaluate(again.model, test) == evaluate(first.model, test)
    assert _snapshot(wd) == snap
    with pytest.warns(RuntimeWarning, match="returning its params and model state") as caught:
        fit(TinyBN(rngs=nnx.Rngs(0)), optax.adam(1e-3), train, epochs=1, workdir=wd,
            config=config, log=None)
    assert caught[0].filename == __file__  # pointed at the caller

    # The weights are checked against the checksums saved with them: a record that disagrees
    # (as flipped bits in the params' data would) means no weights, the mismatch is raised.
    record = wd / "checkpoints" / "8" / "meta" / "metadata"
    meta = json.loads(record.read_text())
    meta["checksums"]["state"]["params/fc1/kernel"] ^= 1
    record.write_text(json.dumps(meta))
    with pytest.raises(WorkdirMismatchError, match="does not fit this model and optimizer"):
        fit(TinyBN(rngs=nnx.Rngs(0)), optax.adam(1e-3), train, epochs=1, workdir=wd,
            config=config, log=None)
    record.write_bytes(snap["checkpoints/8/meta/metadata"])

    # Finished, but the params are another model's: refused as before, nothing changed.
    with pytest.raises(WorkdirMismatchError, match="does not fit this model and optimizer"):
        fit(tiny_mlp(), optax.adam(1e-3), train, epochs=1, workdir=wd, config=config, log=None)
    assert _snapshot(wd) == snap
    # Unfinished, the run cannot go on without its optimizer state: refused, nothing changed.
    (wd / "result.json").unlink()
    snap = _snapshot(wd)
    with pytest.raises(WorkdirMismatchError, match="does not fit this model and optimizer"):
        fit(TinyBN(rngs=nnx.Rngs(0)), optax.adam(1e-3), train, epochs=1, workdir=wd,
            config=config, log=None)
    assert _snapshot(wd) == snap


def test_interrupted_run_resumes_mid_epoch_to_the_same_result(data, tmp_path):
    train, test = data

    def run(batches, wd):
        tx = optax.inject_hyperparams(optax.sgd)(
            learning_rate=optax.cosine_decay_schedule(0.1, 24), momentum=0.9)
        model = create("mlp", hidden=(16,), dropout_rate=0.2, rngs=0)
        return fit(model, tx, batches, epochs=3, eval_data=test, workdir=wd, seed=1,
                   checkpoint_every_steps=5, log=None)

    reference = run(train, tmp_path / "ref")
    with pytest.raises(Interrupt):
        run(StopAt(train, 1, 4), tmp_path / "cut")  # after the step-10 checkpoint
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 1
    resumed = run(train, tmp_path / "cut")
    assert resumed.resumed_from == 10
    assert_trees_equal(resumed.params, reference.params)
    assert_trees_equal(resumed.opt_state, reference.opt_state)
    drop = ("epoch_time", "wall_time")
    assert ([{k: v for k, v in r.items() if k not in drop} for r in resumed.history]
            == [{k: v for k, v in r.items() if k not in drop} for r in reference.history])


def test_wall_time_of_a_run_resumed_mid_epoch_counts_each_second_once(data, tmp_path, monkeypatch):
    # A fake clock: each batch the pipeline yields takes 10 s. Cut after the step-10 checkpoint
    # (epoch 2, batch 2 of 8), the resumed run must report the time of the epochs it ran, with
    # the part of epoch 2 before the checkpoint counted once (it was counted twice: +20 s).
    import sparsejax.train.loop as loop

    train, _ = data

    class Clock:
        now = 0.0

        @staticmethod
        def perf_counter():
            return Clock.now

    class Timed:
        def __init__(self, inner):
            self.inner, self.batch_size = inner, inner.batch_size

        def __len__(self):
            return len(self.inner)

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def epoch(self, e, start=0):
            for b in self.inner.epoch(e, start):
                Clock.now += 10.0
                yield b

    monkeypatch.setattr(loop, "time", Clock)

    def run(batches, wd):
        return fit(tiny_mlp(), optax.sgd(0.1), batches, epochs=2, workdir=wd, seed=1,
                   checkpoint_every_steps=5, log=None)

    reference = run(Timed(train), tmp_path / "ref")
    assert reference.wall_time == 160.0 and [r["wall_time"] for r in reference.history] == [80.0, 160.0]
    Clock.now = 0.0
    with pytest.raises(Interrupt):
        run(StopAt(Timed(train), 1, 4), tmp_path / "cut")
    resumed = run(Timed(train), tmp_path / "cut")
    assert resumed.resumed_from == 10
    # epoch 1: 80 s; epoch 2: 20 s before the checkpoint, 60 s after the resume
    assert [r["wall_time"] for r in resumed.history] == [80.0, 160.0]
    assert resumed.wall_time == 160.0


def test_workdir_of_another_experiment_is_refused_and_left_alone(data, tmp_path):
    train, _ = data
    wd = tmp_path / "run"
    fit(tiny_mlp(), optax.sgd(0.1), train, epochs=1, workdir=wd, config={"lr": 0.1}, log=None)
    snap = _snapshot(wd)
    with pytest.raises(WorkdirMismatchError, match=r"config.json differs: lr: 0.1 in the workdir, 0.2 now"):
        fit(tiny_mlp(), optax.sgd(0.2), train, epochs=1, workdir=wd, config={"lr": 0.2}, log=None)
    with pytest.raises(WorkdirMismatchError, match="epochs: 1 in the workdir, 2 now"):
        fit(tiny_mlp(), optax.sgd(0.1), train, epochs=2, workdir=wd, config={"lr": 0.1}, log=None)
    assert _snapshot(wd) == snap
    assert issubclass(WorkdirMismatchError, ValueError)

    # Same config, but another training pipeline (shuffling seed, augmentation, split):
    # the batches after a resume would not be the run's. A trainer.json written before
    # the pipeline was recorded is compared on its other keys.
    from sparsejax import data as sjdata

    for other, what in ((sjdata.batches(train.dataset, train.batch_size, train=True, seed=5),
                         "train_data.seed: 0 in the workdir, 5 now"),
                        (sjdata.batches(train.dataset, train.batch_size, train=True, augment=True),
                         "train_data.augment: False in the workdir, True now")):
        with pytest.raises(WorkdirMismatchError, match=re.escape(what)):
            fit(tiny_mlp(), optax.sgd(0.1), other, epochs=1, workdir=wd, config={"lr": 0.1},
                log=None)
    assert _snapshot(wd) == snap
    recorded = json.loads((wd / "trainer.json").read_text())
    assert recorded["train_data"] == {"dataset": "synthetic", "split": "train",
                                      "num_examples": train.num_examples, "seed": 0,
                                      "augment": False}
    old = wd.parent / "old"
    shutil.copytree(wd, old)
    (old / "trainer.json").write_text(json.dumps({k: v for k, v in recorded.items()
                                                  if k != "train_data"}))
    log = []
    fit(tiny_mlp(), optax.sgd(0.1), train, epochs=1, workdir=old, config={"lr": 0.1},
        log=log.append)
    assert log == [f"{old.absolute()} holds a finished run; returning its result"]

    class Bare:  # a wrapper that hides the pipeline's fields: compared on none of them
        def __init__(self, inner):
            self.inner, self.batch_size = inner, inner.batch_size

        def __len__(self):
            return len(self.inner)

        def epoch(self, e, start=0):
            return self.inner.epoch(e, start)

    log = []
    fit(tiny_mlp(), optax.sgd(0.1), Bare(train), epochs=1, workdir=wd, config={"lr": 0.1},
        log=log.append)
    assert log == [f"{wd.absolute()} holds a finished run; returning its result"]

    # Same config, but checkpoints of a different model: refused when restoring.
    (wd / "result.json").unlink()
    snap = _snapshot(wd)
    with pytest.raises(WorkdirMismatchError, match=r"does not fit this model and optimizer \(.*"
                       r"params/layers/0/kernel: \(784, 16\) float32 saved, \(784, 8\) float32 now"):
        fit(tiny_mlp(hidden=8), optax.sgd(0.1), train, epochs=1, workdir=wd, config={"lr": 0.1},
            log=None)
    assert _snapshot(wd) == snap

    foreign = tmp_path / "foreign"
    (foreign / "checkpoints" / "7").mkdir(parents=True)
    with pytest.raises(WorkdirMismatchError, match="no config.json"):
        fit(tiny_mlp(), optax.sgd(0.1), train, epochs=1, workdir=foreign, log=None)


def test_divergence_stops_with_a_clear_message_and_keeps_the_good_checkpoint(data, tmp_path):
    train, _ = data
    steps = len(train)
    lr = optax.piecewise_constant_schedule(0.05, {steps + 2: 1e30})  # blows up in epoch 2
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
    wd = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as err:
        fit(tiny_mlp(), tx, train, epochs=3, workdir=wd, log=None, check_every_steps=4)
    msg = str(err.value)
    assert "epoch 2" in msg and "Lower the learning rate (now " in msg
    assert f"last good checkpoint (step {steps})" in msg
    assert isinstance(err.value, RuntimeError)
    # an optimizer without an injected learning rate gets advice that fits it
    with pytest.raises(TrainingDivergedError, match="injects no learning rate; for rda/irda "
                                                    "and prox_sgd.*raise gamma"):
        fit(tiny_mlp(), optax.sgd(lr), train, epochs=3, log=None, check_every_steps=4)

    assert len((wd / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (wd / "result.json").exists()
    w = Workdir(wd, None, {}, keep=3)
    assert w.latest_step() == steps
    parts = split_model(tiny_mlp())
    mesh = data_mesh()
    state, _, meta = w.restore(steps, init_train_state(parts, tx, mesh), zero_totals(mesh))
    w.close()
    assert meta["epoch"] == 1 and all(np.isfinite(v).all() for v in flat(state.params).values())
    reference = fit(tiny_mlp(), optax.inject_hyperparams(optax.sgd)(learning_rate=lr), train,
                    epochs=1, log=None)
    assert_trees_equal(state.params, reference.params)


def test_divergence_without_workdir_names_the_step(data):
    train, _ = data
    with pytest.raises(TrainingDivergedError, match=r"at step \d+ \(epoch 1, batch \d+ of 8\)"):
        fit(tiny_mlp(), optax.sgd(1e30), train, epochs=2, log=None)


def test_relative_workdir_becomes_absolute_and_the_bar_shows_steps(data, tmp_path, monkeypatch,
                                                                    capsys):
    train, _ = data
    monkeypatch.chdir(tmp_path)
    result = fit(tiny_mlp(), optax.sgd(0.1), train, epochs=1, workdir="rel", progress=True)
    assert result.workdir == tmp_path / "rel" and os.path.isabs(result.workdir)
    assert (tmp_path / "rel" / "result.json").exists()
    out, err = capsys.readouterr()
    assert "epoch 1/1: " in err and "/8 [" in err  # tqdm on stderr
    assert out.splitlines()[0].startswith("epoch 1/1 (step 8): train loss")  # log=print
    assert out.splitlines()[-1].startswith("finished: 1 epochs (8 steps)")

    fit(tiny_mlp(), optax.sgd(0.1), train, epochs=1, log=None)  # progress=None: stderr is no TTY
    assert capsys.readouterr() == ("", "")


def test_make_evaluator_compiles_once_and_matches_evaluate():
    """One evaluator, many params of one architecture: the eval step is traced once, and each
    figure equals a fresh evaluate() of the model holding those params."""
    import sparsejax as sj
    from sparsejax import data
    from sparsejax.models import create
    from sparsejax.train import evaluate, make_evaluator

    test = data.batches(data.load("synthetic", "test", num_examples=100), 64, train=False)
    model = create("mlp", hidden=(8,), rngs=0)
    evaluator = make_evaluator(model, test)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert evaluator() == evaluate(model, test)
    for ratio in (0.3, 0.6, 0.9):
        pruned, _ = sj.pruning.prune(params, ratio)
        other = create("mlp", hidden=(8,), rngs=0)
        state = nnx.state(other, nnx.Param)
        nnx.replace_by_pure_dict(state, pruned)
        nnx.update(other, state)
        assert evaluator(pruned) == evaluate(other, test)
        assert evaluator.accuracy(pruned) == evaluator(pruned)["accuracy"]
    assert evaluator._step._cache_size() == 1


def test_evaluating_on_a_training_pipeline_warns(data):
    """A training pipeline drops its last incomplete batch (and may augment): 100 test
    examples in batches of 16 would count 96. Evaluation and collect_examples say so."""
    from sparsejax import data as sjdata
    from sparsejax.train.connectivity import collect_examples

    _, test = data
    as_train = sjdata.batches(test.dataset, 16, train=True)
    with pytest.warns(UserWarning, match="training pipeline .* drops its last incomplete batch"):
        ev = evaluate(tiny_mlp(), as_train)
    assert ev["count"] == 96
    with pytest.warns(UserWarning, match="collect_examples: batches is a training pipeline"):
        collect_examples(as_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate(tiny_mlp(), test)["count"] == 100
        collect_examples(test)

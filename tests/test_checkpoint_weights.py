"""``Workdir.restore_weights`` checks that the saved weights fit (sparsejax.train.checkpoint).

A finished run's params and model state are restored alone (Orbax's partial
restore) when its optimizer state no longer fits. Params or model state of
another structure, shape or dtype are another model: ``WorkdirMismatchError``
naming the first difference, with nothing moved or deleted; never dropped
leaves, values cast to another dtype, or a healthy checkpoint reported as
damaged. Boolean leaves of the model state come back unpacked.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from sparsejax.train import WorkdirMismatchError, data_mesh
from sparsejax.train.checkpoint import Workdir
from sparsejax.train.step import TrainState, zero_totals

pytestmark = pytest.mark.xdist_group("checkpoint_weights")

META = {"epoch": 1, "batch": 0, "history": [], "wall_time": 0.0, "epoch_elapsed": 0.0}


def _put(x):
    return jax.device_put(x, NamedSharding(data_mesh(), PartitionSpec()))


def _weights(seed: int = 0, *, mask: bool = False) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    params = {"w": _put(rng.normal(size=(5, 7)).astype(np.float32)),
              "v": _put(rng.normal(size=(3,)).astype(np.float32))}
    model_state = {"mean": _put(rng.normal(size=(7,)).astype(np.float32))}
    if mask:
        model_state["alive"] = _put(rng.random((5, 7)) < 0.5)
    return params, model_state


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(params=[False, True], ids=["floats", "with a mask"])
def saved(tmp_path, request):
    """A checkpoint at step 3; its model state with or without a boolean (bit-packed) leaf."""
    params, model_state = _weights(mask=request.param)
    state = TrainState(_put(np.int32(3)), params, {"count": _put(np.int32(1))}, model_state)
    wd = Workdir(tmp_path / "run", {}, {}, keep=3)
    wd.prepare("new")
    wd.save(3, state, zero_totals(data_mesh()), META)
    wd.wait()
    yield wd, state, request.param
    wd.close()


def _template(params: dict, model_state: dict) -> TrainState:
    # another optimizer state: restore_weights ignores it
    return TrainState(_put(np.int32(0)), params, {"other": _put(np.zeros(2))}, model_state)


def test_the_weights_of_the_same_model_restore_whatever_the_optimizer_state(saved):
    wd, state, mask = saved
    params, model_state = _weights(seed=1, mask=mask)  # the values come from the checkpoint
    restored, meta = wd.restore_weights(3, _template(params, model_state))
    assert restored.opt_state is None and int(restored.step) == 3 and meta["epoch"] == 1
    assert "checksums" not in meta and "packed" not in meta
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path((restored.params, restored.model_state)),
                            jax.tree.leaves((state.params, state.model_state)), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


def _change(params: dict, model_state: dict, case: str) -> tuple[dict, dict]:
    if case == "fewer params":
        del params["v"]
    elif case == "more params":
        params["u"] = _put(np.zeros(2, np.float32))
    elif case == "bf16 w":
        params["w"] = params["w"].astype(jnp.bfloat16)
    elif case == "int32 w":
        params["w"] = params["w"].astype(jnp.int32)
    elif case == "bigger w":
        params["w"] = _put(np.zeros((6, 7), np.float32))
    elif case == "no model state":
        model_state = {}
    return params, model_state


@pytest.mark.parametrize("case, difference", [
    ("fewer params", "params/v unexpected"),
    ("more params", "params/u missing"),
    ("bf16 w", "params/w: (5, 7) float32 saved, (5, 7) bfloat16 now"),
    ("int32 w", "params/w: (5, 7) float32 saved, (5, 7) int32 now"),
    ("bigger w", "params/w: (5, 7) float32 saved, (6, 7) float32 now"),
    ("no model state", "model_state/mean unexpected"),
])
def test_weights_of_another_model_do_not_fit_and_nothing_is_moved(saved, case, difference):
    wd, _, mask = saved
    before = _files(wd.path)
    template = _template(*_change(*_weights(mask=mask), case))
    with pytest.raises(WorkdirMismatchError, match=re.escape(difference)):
        wd.restore_weights(3, template)
    assert _files(wd.path) == before and not (wd.path / "damaged_checkpoints").exists()


@pytest.mark.parametrize("shape", [(7, 5), (40,)])
def test_a_mask_of_the_model_state_with_another_shape_does_not_fit(saved, shape):
    wd, _, mask = saved
    params, model_state = _weights(mask=True)
    model_state["alive"] = _put(np.zeros(shape, bool))
    before = _files(wd.path)
    difference = ("model_state/alive: (5, 7) bool (bit-packed) saved, " if mask
                  else "model_state/alive missing")
    with pytest.raises(WorkdirMismatchError, match=re.escape(difference)):
        wd.restore_weights(3, _template(params, model_state))
    assert _files(wd.path) == before and not (wd.path / "damaged_checkpoints").exists()

"""Boolean leaves of a checkpoint are stored bit-packed (sparsejax.train.checkpoint).

A ``Workdir`` saves a hand-made train state whose optimizer state holds boolean
supports of awkward sizes (a scalar, empty arrays, sizes not divisible by 8, a
leaf sharded over the 8 simulated devices) and restores it: every array comes
back equal, boolean, with its shape and sharding, while the checkpoint's
metadata and data hold ``ceil(n / 8)`` uint8 bytes of NumPy's ``packbits``
layout. A 1e6-entry support takes fewer bytes on disk than the same
checkpoint written the way earlier versions did (one byte per entry), and such
an earlier checkpoint still restores. The shapes of the packed leaves are kept
in the checkpoint's record: a support of another shape that packs into as many
bytes does not fit (``WorkdirMismatchError``, nothing moved), and a checkpoint
written before that record was kept still restores.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from sparsejax.train import WorkdirMismatchError, data_mesh
from sparsejax.train.checkpoint import Workdir, checksums
from sparsejax.train.step import TrainState, zero_totals

pytestmark = pytest.mark.xdist_group("checkpoint_masks")

META = {"epoch": 0, "batch": 1, "history": [], "wall_time": 0.0, "epoch_elapsed": 0.0}
ODD = {"scalar": (), "empty": (0,), "empty_2d": (3, 0), "thirteen": (13,), "five_by_seven": (5, 7)}


def _state(supports: dict, mesh, seed: int = 0) -> TrainState:
    rep = NamedSharding(mesh, PartitionSpec())
    params = {"w": jax.device_put(np.random.default_rng(seed).normal(size=(5, 7)).astype(np.float32),
                                  rep)}
    opt_state = {"support": supports, "count": jax.device_put(np.int32(3), rep)}
    return TrainState(jax.device_put(np.int32(3), rep), params, opt_state, {})


def _odd_supports(mesh, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rep = NamedSharding(mesh, PartitionSpec())
    out = {k: jax.device_put(rng.random(shape) < 0.5, rep) for k, shape in ODD.items()}
    # sharded along its first axis over the 8 devices (3 entries per device)
    out["sharded"] = jax.device_put(rng.random((8, 3)) < 0.5, NamedSharding(mesh, PartitionSpec("data")))
    return out


def _stored_state(step_dir: Path) -> dict:
    """The ``state`` item as stored (no target: the arrays as written, as NumPy)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sharding info not provided when restoring")
        with ocp.PyTreeCheckpointer() as c:
            return c.restore(step_dir / "state")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _save_unpacked(wd: Workdir, step: int, state: TrainState, totals) -> None:
    """A checkpoint as earlier versions wrote it: boolean leaves one byte per entry."""
    meta = dict(META, checksums={"state": checksums(state), "totals": checksums(totals)})
    wd.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                  totals=ocp.args.StandardSave(totals),
                                                  meta=ocp.args.JsonSave(meta)))
    wd.wait()


def _assert_same(restored: TrainState, state: TrainState) -> None:
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(restored), jax.tree.leaves(state),
                            strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.sharding.is_equivalent_to(b.sharding, a.ndim), path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


def test_odd_sized_and_sharded_boolean_leaves_round_trip_bit_packed(tmp_path):
    mesh = data_mesh()
    state, totals = _state(_odd_supports(mesh), mesh), zero_totals(mesh)
    wd = Workdir(tmp_path / "run", {}, {}, keep=3)
    wd.prepare("new")
    wd.save(1, state, totals, META)
    wd.wait()

    stored = _stored_state(wd.checkpoint_dir / "1")["opt_state"]["support"]
    saved_meta = wd.manager.item_metadata(1)["state"]["opt_state"]["support"]
    for k, m in state.opt_state["support"].items():
        n = max(-(-m.size // 8), 1)  # an empty array is one zero byte (Orbax saves no empty arrays)
        assert stored[k].dtype == np.uint8 and stored[k].shape == (n,), k
        assert saved_meta[k].dtype == np.uint8 and tuple(saved_meta[k].shape) == (n,), k
        bits = np.packbits(np.asarray(m).ravel()) if m.size else np.zeros(1, np.uint8)
        np.testing.assert_array_equal(stored[k], bits, err_msg=k)

    restored, restored_totals, meta = wd.restore(1, state, totals)
    _assert_same(restored, state)
    _assert_same(restored_totals, totals)
    assert meta["batch"] == 1

    # Another support of the same sizes restores into the same template: the bits come from disk.
    other = _state(_odd_supports(mesh, seed=1), mesh)
    assert not np.array_equal(np.asarray(other.opt_state["support"]["thirteen"]),
                              np.asarray(state.opt_state["support"]["thirteen"]))
    _assert_same(wd.restore(1, other, totals)[0], state)

    # A boolean leaf of another shape is another model; the message names the boolean shape.
    wrong = state._replace(opt_state={**state.opt_state, "support": {
        **state.opt_state["support"], "thirteen": jnp.ones(17, bool)}})
    with pytest.raises(WorkdirMismatchError, match=r"thirteen: \(2,\) uint8 saved, \(3,\) uint8 "
                                                   r"\(bool \(17,\) bit-packed\) now"):
        wd.restore(1, wrong, totals)
    wd.close()


def test_a_large_support_is_smaller_packed_and_unpacked_checkpoints_still_restore(tmp_path):
    """1e6 entries at density 0.2 (RigL at 80% sparsity): the data are 8x smaller before
    compression; on disk zstd already squeezes the one-byte-per-entry form (measured 173 kB
    against 94 kB packed, 1.8x), so the on-disk ratio asserted is 1.5."""
    mesh = data_mesh()
    rep = NamedSharding(mesh, PartitionSpec())
    support = {"big": jax.device_put(np.random.default_rng(0).random(1_000_000) < 0.2, rep)}
    state, totals = _state(support, mesh), zero_totals(mesh)
    packed, unpacked = (Workdir(tmp_path / n, {}, {}, keep=3) for n in ("packed", "unpacked"))
    for wd in (packed, unpacked):
        wd.prepare("new")
    packed.save(1, state, totals, META)
    packed.wait()
    _save_unpacked(unpacked, 1, state, totals)

    meta_packed = packed.manager.item_metadata(1)["state"]["opt_state"]["support"]["big"]
    meta_plain = unpacked.manager.item_metadata(1)["state"]["opt_state"]["support"]["big"]
    assert (meta_plain.dtype, tuple(meta_plain.shape)) == (np.bool_, (1_000_000,))
    assert (meta_packed.dtype, tuple(meta_packed.shape)) == (np.uint8, (125_000,))
    size_packed = _size(packed.checkpoint_dir / "1" / "state")
    size_plain = _size(unpacked.checkpoint_dir / "1" / "state")
    assert size_plain > 1.5 * size_packed, (size_plain, size_packed)
    assert size_packed < 125_000 + 20_000  # the packed bits barely compress: random at density 0.2

    # The checkpoint written one byte per entry restores (unpacked as it was saved), both directly
    # and through restore_latest; the packed one too.
    for wd in (unpacked, packed):
        _assert_same(wd.restore(1, state, totals)[0], state)
    step, restored, _, _ = unpacked.restore_latest(state, totals, report=pytest.fail)
    assert step == 1
    _assert_same(restored, state)
    for wd in (packed, unpacked):
        wd.close()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _saved_once(tmp_path, state, mesh):
    """A new workdir with ``state`` saved at step 1: ``(workdir, totals, its files)``."""
    totals = zero_totals(mesh)
    wd = Workdir(tmp_path / "run", {}, {}, keep=3)
    wd.prepare("new")
    wd.save(1, state, totals, META)
    wd.wait()
    return wd, totals, _files(wd.path)


@pytest.mark.parametrize("shape, dtype", [((7, 5), bool), ((35,), bool), ((39,), bool),
                                          ((40,), bool), ((5,), np.uint8)])
def test_a_boolean_leaf_of_another_shape_with_the_same_packed_length_does_not_fit(
        tmp_path, shape, dtype):
    """A (5, 7) support is 5 packed bytes, as are (7, 5), (35,), (39,) and (40,) supports and a
    (5,) uint8 array: the record of the packed leaves' shapes tells them apart, so each is
    another model (nothing moved), never a silently reshaped or zero-padded support."""
    mesh = data_mesh()
    rep = NamedSharding(mesh, PartitionSpec())
    state = _state({"m": jax.device_put(np.random.default_rng(0).random((5, 7)) < 0.5, rep)}, mesh)
    wd, totals, before = _saved_once(tmp_path, state, mesh)
    other = _state({"m": jax.device_put(np.zeros(shape, dtype), rep)}, mesh)
    now = f"{shape} {np.dtype(dtype)}"
    with pytest.raises(WorkdirMismatchError, match=re.escape(
            f"opt_state/support/m: (5, 7) bool (bit-packed) saved, {now} now")):
        wd.restore(1, other, totals)
    with pytest.raises(WorkdirMismatchError, match="nothing was changed"):
        wd.restore_latest(other, totals, report=pytest.fail)
    assert _files(wd.path) == before and not (wd.path / "damaged_checkpoints").exists()
    _assert_same(wd.restore(1, state, totals)[0], state)
    wd.close()


def test_all_ones_support_restored_into_a_shorter_one_is_another_model_not_damage(tmp_path):
    """``ones(40)`` restored into a ``zeros(35)`` template: the 5 packed bytes fit, the checksum
    of the first 35 bits does not; without the shapes in the record this was reported as damage
    and the checkpoint moved to ``damaged_checkpoints/``."""
    mesh = data_mesh()
    rep = NamedSharding(mesh, PartitionSpec())
    state = _state({"m": jax.device_put(np.ones(40, bool), rep)}, mesh)
    wd, totals, before = _saved_once(tmp_path, state, mesh)
    with pytest.raises(WorkdirMismatchError, match=r"\(40,\) bool \(bit-packed\) saved, \(35,\) bool"):
        wd.restore_latest(_state({"m": jax.device_put(np.zeros(35, bool), rep)}, mesh), totals,
                          report=pytest.fail)
    assert _files(wd.path) == before and not (wd.path / "damaged_checkpoints").exists()
    wd.close()


def test_a_packed_checkpoint_without_the_record_of_shapes_still_restores(tmp_path):
    """Checkpoints written before the shapes of packed leaves were recorded (no ``packed`` key
    in the JSON record) restore as before: checked by their packed length and the checksums."""
    mesh = data_mesh()
    state = _state(_odd_supports(mesh), mesh)
    wd, totals, _ = _saved_once(tmp_path, state, mesh)
    record = wd.checkpoint_dir / "1" / "meta" / "metadata"
    meta = json.loads(record.read_text())
    assert meta["packed"]["state"]["opt_state/support/five_by_seven"] == {"shape": [5, 7],
                                                                          "dtype": "bool"}
    assert meta["packed"]["totals"] == {}
    del meta["packed"]
    record.write_text(json.dumps(meta))
    restored, _, restored_meta = wd.restore(1, state, totals)
    _assert_same(restored, state)
    assert "packed" not in restored_meta and "checksums" not in restored_meta
    wrong = state._replace(opt_state={**state.opt_state, "support": {
        **state.opt_state["support"], "thirteen": jnp.ones(17, bool)}})
    with pytest.raises(WorkdirMismatchError, match=r"thirteen: \(2,\) uint8 saved"):
        wd.restore(1, wrong, totals)
    wd.close()

"""Smoke tests of the benchmark scripts: they run and report sane figures.

No timing is asserted (machines are noisy); only that every row is there and
every figure is a finite positive number, and that the byte counts the
bandwidth figures rest on are right.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from types import ModuleType

import jax
import numpy as np
import optax
import pytest

import sparsejax as sj
from tests.scripts import load_script

# The module-scoped fixtures (compiled programs, trained runs) are built once: one worker.
pytestmark = pytest.mark.xdist_group("benchmarks")


def _load(name: str) -> ModuleType:
    """Imports ``benchmarks/<name>.py`` (the folder is not a package)."""
    return load_script(f"benchmarks/{name}.py")


@pytest.fixture(scope="module")
def transforms() -> ModuleType:
    return _load("transforms")


@pytest.fixture(scope="module")
def quick_run(
    transforms: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict, dict]:
    """Runs ``transforms.py --quick --json PATH`` once; returns (stdout, returned, written)."""
    import contextlib
    import io

    path = tmp_path_factory.mktemp("bench") / "figures.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = transforms.main(["--quick", "--json", str(path)])
    written = json.loads(path.read_text())
    return out.getvalue(), result, written


def _positive(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_table_has_a_row_per_transform_with_positive_figures(
    transforms: ModuleType, quick_run: tuple[str, dict, dict]
) -> None:
    stdout, _, _ = quick_run
    names = ["copy"] + [c.name for c in transforms.candidates()]
    for name in names:
        rows = [line for line in stdout.splitlines() if re.match(rf"{re.escape(name)}\s+\d", line)]
        assert len(rows) == 1, (name, stdout)
        # ms/step, p25, p75, cpu ms, [ratio], MB/step, GB/s, x copy, kernels per leaf
        numbers = [float(x) for x in re.findall(r"(?<![\w.])\d+\.\d+", rows[0])]
        expected = 8 if name == "copy" else 9
        assert len(numbers) == expected, rows[0]
        assert all(math.isfinite(x) and x > 0 for x in numbers), rows[0]
    assert re.search(r"^summary: \d+/\d+ transforms meet both goals", stdout, re.M), stdout
    assert "device:" in stdout and "jax " in stdout and "1,254 float32 parameters" in stdout


def test_json_figures(transforms: ModuleType, quick_run: tuple[str, dict, dict]) -> None:
    _, result, written = quick_run
    assert written == json.loads(json.dumps(result))
    names = [row["name"] for row in written["transforms"]]
    assert names == [c.name for c in transforms.candidates()]
    for row in [written["copy"], *written["transforms"]]:
        for key in (
            "ms_per_step",
            "ms_p25",
            "ms_p75",
            "cpu_ms_per_step",
            "bytes_per_step",
            "gb_per_s",
            "copy_fraction",
        ):
            assert _positive(row[key]), (row["name"], key, row[key])
        assert row["samples"] == written["rounds"] == 3
        assert not row["f64"], row["name"]
        # every output leaf reuses a donated buffer (a few scalars aside)
        assert row["unaliased_bytes"] <= 16, row["name"]
    for row in written["transforms"]:
        assert _positive(row["ratio_to_baseline"])
        if row["goal"]:
            assert isinstance(row["ratio_ok"], bool) and isinstance(row["bandwidth_ok"], bool)
    baseline = next(r for r in written["transforms"] if r["name"] == written["baseline"])
    assert baseline["ratio_to_baseline"] == pytest.approx(1.0)
    assert written["copy"]["copy_fraction"] == pytest.approx(1.0)


def test_resnet18_tree_has_the_real_shapes(transforms: ModuleType) -> None:
    params = transforms.resnet18_params(0)
    leaves = jax.tree.leaves(params)
    assert len(leaves) == 62
    assert transforms.tree_size(params) == 11_689_512  # torchvision's ResNet-18 count
    assert params["conv1"]["kernel"].shape == (7, 7, 3, 64)
    assert params["layer4"]["block0"]["conv2"]["kernel"].shape == (3, 3, 512, 512)
    assert params["layer2"]["block0"]["downsample_conv"]["kernel"].shape == (1, 1, 64, 128)
    assert params["fc"]["kernel"].shape == (512, 1000)
    assert all(leaf.dtype == np.float32 for leaf in leaves)


@pytest.mark.parametrize(
    ("make", "trees"),
    [
        # (reads + writes) in units of the parameter tree
        (lambda: optax.sgd(0.1), 3),  # read p, g; write p
        (lambda: optax.sgd(0.1, momentum=0.9), 5),  # read p, g, m; write p, m
        (lambda: sj.rda(gamma=0.1, l1=1e-8, center="init"), 6),  # + read-only centre
        (lambda: sj.grda(0.1, c=0.005, mu=0.51), 5),
    ],
)
def test_ideal_bytes(transforms: ModuleType, make, trees: int) -> None:
    params = jax.device_put(transforms.resnet18_params(0, **transforms.SIZES["tiny"]))
    tx = make()
    state = tx.init(params)
    nbytes = transforms.ideal_bytes(transforms.make_step(tx), params, state, params)
    tree = transforms.tree_bytes(params)
    scalars = nbytes - trees * tree  # counts and thresholds: a few 4-byte scalars
    assert 0 <= scalars <= 64, (nbytes, tree)


def test_copy_reference_bytes(transforms: ModuleType) -> None:
    params = jax.device_put(transforms.resnet18_params(0, **transforms.SIZES["tiny"]))
    zero = np.zeros([], np.float32)
    nbytes = transforms.ideal_bytes(transforms.copy_step, params, zero, params)
    assert nbytes == 2 * transforms.tree_bytes(params) + 4  # grads unused; the zero is read


def test_greedy_prune_quick_reports_every_figure(tmp_path, capsys) -> None:
    bench = _load("greedy_prune")
    result = bench.main(["--quick", "--groups", "convs/4", "--json", str(tmp_path / "g.json")])
    stdout = capsys.readouterr().out
    (row,) = result["layers"]
    assert (row["group"], row["units"], row["n"], row["steps"]) == ("convs/4", 32, 16, 30)
    for key in ("local_s", "gram_s", "exact_s", "taylor_s", "speedup_total", "speedup_past_start",
                "exact_step_ms", "taylor_step_ms", "discrepancy_exact", "discrepancy_taylor"):
        assert _positive(row[key]), (key, row[key])
    assert 0 < row["gram_share"] <= 1 and 0 <= row["jaccard"] <= 1
    assert any(re.match(r"convs/4\s+32\s+16\s", line) for line in stdout.splitlines())
    assert "Taylor vs exact global:" in stdout and "Gram computation" in stdout


def test_dynamic_sparse_quick_times_every_transform_and_its_host_scheduled_twin(capsys) -> None:
    rows = _load("dynamic_sparse").main(["--quick", "--rounds", "1"])
    stdout = capsys.readouterr().out
    names = [r["name"] for r in rows]
    assert names == ["sgd_momentum", "sgd_momentum_again", "static_sparse", "set", "set_host",
                     "rigl", "rigl_host", "ste_every_10", "ste_every_10_host"]
    for r in rows:
        assert _positive(r["ms_per_step"]) and _positive(r["ratio"]), r
        assert (r["name"].startswith("sgd") == math.isnan(r["update_step_ms"])), r
        assert re.search(rf"^{r['name']}\s+\d", stdout, re.M), r["name"]
    # the host-scheduled twins ran the same steps: the same masks, the same floats up to rounding
    host = [r for r in rows if r["name"].endswith("_host")]
    assert [r["masks_equal"] for r in host] == [True] * 3
    assert all(0.0 <= r["max_abs_diff"] < 1e-5 for r in host), host
    assert "against their device-scheduled twins: masks identical: yes;" in stdout
    draw = re.search(r"uniform_scores ([0-9.]+) ms, jax.random.uniform ([0-9.]+) ms", stdout)
    assert draw and all(_positive(float(x)) for x in draw.groups()), stdout


def test_pruning_select_quick_compares_both_selections_with_their_references(capsys) -> None:
    _load("pruning_select").main(["--quick", "--rounds", "1"])
    stdout = capsys.readouterr().out
    assert "masks identical to argsort: True" in stdout
    assert "bfloat16-rounded scores" in stdout and stdout.count("masks identical: True") == 1
    assert "vertices identical: True" in stdout
    for pattern in (r"argsort / fast: ([0-9.]+)x", r"top_k / select: ([0-9.]+)x"):
        ratio = re.search(pattern, stdout)
        assert ratio and _positive(float(ratio.group(1))), (pattern, stdout)


@pytest.fixture(scope="module")
def throughput_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, dict]:
    """Runs ``throughput.py --quick --json PATH`` once; returns (stdout, returned, written)."""
    path = tmp_path_factory.mktemp("throughput") / "figures.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = _load("throughput").main(["--quick", "--json", str(path)])
    return out.getvalue(), result, json.loads(path.read_text())


def test_throughput_table_has_a_row_per_method_with_positive_figures(throughput_run) -> None:
    stdout, result, written = throughput_run
    assert written == json.loads(json.dumps(result))
    rows = written["rows"]
    assert [(r["model"], r["name"]) for r in rows] == [
        ("lenet5", "sgd"), ("lenet5", "grda"), ("lenet5", "sgd_again")]
    for r in rows:
        for key in ("images_per_s", "ms_per_step", "ms_p25", "ms_p75", "cpu_ms_per_step",
                    "mean_images_per_s", "ratio_to_sgd", "cpu_ratio_to_sgd"):
            assert _positive(r[key]), (r["name"], key, r[key])
        assert r["samples"] == written["rounds"] == 3
        line = [x for x in stdout.splitlines() if re.match(rf"lenet5\s+{r['name']}\s+\d", x)]
        assert len(line) == 1, stdout
    assert rows[0]["ratio_to_sgd"] == pytest.approx(1.0) and rows[0]["ratio_ok"] is None
    assert isinstance(rows[1]["ratio_ok"], bool)
    assert rows[1]["images_per_s"] == pytest.approx(16 / (rows[1]["ms_per_step"] / 1e3))
    assert re.search(r"^summary: \d+/1 \(model, method\) pairs keep >= 0.9", stdout, re.M)
    assert "device:" in stdout and "jax " in stdout


def test_hessian_quick_reports_hvp_against_gradient_and_lanczos(tmp_path, capsys) -> None:
    res = _load("hessian").main(["--quick", "--json", str(tmp_path / "h.json")])
    stdout = capsys.readouterr().out
    assert json.loads((tmp_path / "h.json").read_text()) == json.loads(json.dumps(res))
    assert [r["what"].split(" ")[0] for r in res["hvp_vs_grad"]] == ["one", "512"]
    for row in res["hvp_vs_grad"]:
        assert _positive(row["gradient_ms"]) and _positive(row["hvp_ms"]) and _positive(row["ratio"])
        assert isinstance(row["ratio_ok"], bool)
    lz = res["lanczos"]
    assert (lz["k"], lz["steps"]) == (5, 30) and _positive(lz["second_call_s"])
    assert lz["top_eigenvalues"] == sorted(lz["top_eigenvalues"], reverse=True)
    assert "HVP/grad" in stdout and "Lanczos, top 5 of 25,450" in stdout

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
import os
import re
import subprocess
from pathlib import Path
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


class _FlushRecorder(io.StringIO):
    """A stdout that remembers what had been written at each ``flush``."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())
        super().flush()


@pytest.fixture(scope="module")
def throughput_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, dict, list[str]]:
    """Runs ``throughput.py --quick --json PATH`` once.

    Returns (stdout, returned, written, what stdout held at each flush).
    """
    path = tmp_path_factory.mktemp("throughput") / "figures.json"
    out = _FlushRecorder()
    with contextlib.redirect_stdout(out):
        result = _load("throughput").main(["--quick", "--json", str(path)])
    return out.getvalue(), result, json.loads(path.read_text()), out.flushed


def test_throughput_table_has_a_row_per_method_with_positive_figures(throughput_run) -> None:
    stdout, result, written, _ = throughput_run
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


def test_throughput_default_models_are_lenet5_and_resnet20() -> None:
    """A plain run covers LeNet-5 and ResNet-20 (as the docs say); ResNet-18 only on request."""
    throughput = _load("throughput")
    assert throughput.parse_args([]).models == ["lenet5", "resnet20"]
    assert throughput.parse_args(["--models", "resnet18"]).models == ["resnet18"]


def test_throughput_prints_and_flushes_each_row_as_soon_as_it_is_measured(throughput_run) -> None:
    """A run killed by a timeout (benchmarks/device_check.sh) keeps the rows already measured."""
    stdout, _, written, flushed = throughput_run
    final_rows = stdout.split("summary:")[0].splitlines()
    for r in written["rows"]:
        # flushed before the final table, and the same line as the table's row
        early = next((text for text in flushed if f"measured {r['model']:<9}{r['name']} " in text),
                     None)
        assert early is not None and "summary:" not in early, (r["name"], flushed[-1:])
        line = next(x for x in early.splitlines() if x.startswith(f"measured {r['model']}")
                    and x.split()[2] == r["name"])
        assert line.removeprefix("measured ") in final_rows, line


def test_throughput_gmp_prunes_inside_the_timed_steps_in_one_round() -> None:
    """gmp's window spans every timed step; its one mask update falls in the middle round."""
    from sparsejax.pruning.gradual import GradualPruningState
    from sparsejax.train import methods as registry

    throughput = _load("throughput")
    hparams_of = getattr(throughput, "method_hparams", lambda method, rounds, iters: {})
    for rounds, iters in ((10, 2), (5, 2), (3, 2)):  # default, device_check.sh, --quick
        total = rounds * iters + 2  # the benchmark's run length: compiling step, timed, one more
        rng = np.random.default_rng(0)
        params = {"dense": {"kernel": rng.standard_normal((16, 16)).astype(np.float32),
                            "bias": np.zeros(16, np.float32)}}
        tx, _ = registry.make_optimizer("gmp", hparams_of("gmp", rounds, iters),
                                        learning_rate=0.01, momentum=None, steps_per_epoch=total,
                                        epochs=1, params=params)
        state = tx.init(params)
        sparsity = []
        for _ in range(total - 1):  # step 0 compiles, steps 1..rounds*iters are timed
            grads = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
            updates, state = tx.update(grads, state, params, value=np.float32(0))
            params = optax.apply_updates(params, updates)
            (gmp,) = [x for x in jax.tree.leaves(
                state, is_leaf=lambda x: isinstance(x, GradualPruningState))
                if isinstance(x, GradualPruningState)]
            sparsity.append(float(gmp.sparsity))
        timed = range(1, rounds * iters + 1)
        changed = [t for t in timed if sparsity[t] != sparsity[t - 1]]
        assert changed == [(rounds // 2 + 1) * iters], (rounds, sparsity)  # end of middle round
        assert sparsity[rounds * iters] < 0.9, (rounds, sparsity)  # the window is still open


def test_transforms_reference_candidates_only(transforms: ModuleType, capsys) -> None:
    """``--only sgd`` (no candidate with goals) prints the table and a summary without goals."""
    result = transforms.main(["--quick", "--only", "sgd", "--rounds", "1"])
    stdout = capsys.readouterr().out
    assert [r["name"] for r in result["transforms"]] == ["sgd", transforms.BASELINE]
    assert not any(r["goal"] for r in result["transforms"])
    assert re.search(r"^sgd\s+\d", stdout, re.M) and re.search(r"^copy\s+\d", stdout, re.M)
    summary = re.search(r"^summary: (.*)$", stdout, re.M)
    assert summary and "no transform with goals" in summary.group(1), stdout
    assert "A/A ratio" in summary.group(1) and "copy " in summary.group(1)


def test_greedy_prune_timed_takes_the_true_median(monkeypatch) -> None:
    """With an even number of runs the median is the mean of the middle two, not the slower."""
    bench = _load("greedy_prune")
    now = [0.0]
    monkeypatch.setattr(bench, "time", type("FakeTime", (), {"perf_counter": lambda: now[0]}))
    step_seconds = iter([100.0, 1.0, 3.0])  # the warm-up run, then the timed runs

    def fn(clock):
        dt = next(step_seconds)
        for _ in range(2):  # two greedy steps
            now[0] += dt
            clock(None)
        return dt

    total, out, ends = bench.timed(fn, rounds=2)
    assert total == pytest.approx(4.0)  # runs of 2 s and 6 s
    assert ends == pytest.approx([2.0, 4.0])  # step ends (1, 2) and (3, 6), per-step medians
    assert out == 3.0  # the last run's result


DEVICE_CHECK = Path(__file__).resolve().parent.parent / "benchmarks" / "device_check.sh"


def _fake_python(tmp_path: Path, platform: str, n_all: int, n_main: int) -> Path:
    """A stand-in for Python: answers the device check's probe, records and skips every part."""
    stub = tmp_path / "fake_python"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1" = -c ]; then echo "jax 0.0 [FakeDevice]"; '
        f'echo "probe {platform} {n_all} {n_main}"; '
        f'else echo "$*" >> {tmp_path / "calls"}; fi\n'
    )
    stub.chmod(0o755)
    return stub


def _device_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "OUT", "LOG")}
    return subprocess.run(["bash", str(DEVICE_CHECK), *args], env={**base, **env},
                          capture_output=True, text=True, timeout=300)


def _limits(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"^== .*\(limit (\d+)s\)$", text, re.M)]


def test_device_check_budget_grows_with_the_registered_methods(tmp_path) -> None:
    """The limits follow the compilation counts the probe reports and stay under 8 minutes."""
    for n_all in (22, 40):  # today's count; a registry that outgrew the budget
        calls = tmp_path / "calls"
        calls.unlink(missing_ok=True)
        out = tmp_path / f"out{n_all}"
        run = _device_check({"PYTHON": str(_fake_python(tmp_path, "gpu", n_all, 9)),
                             "OUT": str(out)})
        assert run.returncode == 0, run.stdout + run.stderr
        limits = _limits(run.stdout)
        assert len(limits) == 4 and sum(limits) <= 440, run.stdout  # + the probe: < 8 min
        if n_all == 22:  # ~6 s per compilation on CPU is an upper bound: 8 s each + 30 s
            assert limits[:2] == [30 + 8 * 22, 30 + 8 * 9], run.stdout
        assert f"float32 {n_all} ({n_all - 1} registered methods + sgd_again)" in run.stdout
        assert len(calls.read_text().splitlines()) == 4
        # the log goes under $OUT (the device machine returns the files there)
        assert (out / "device_check.log").read_text() == run.stdout
    # what the script's probe computes: every registered method + sgd_again
    from sparsejax.train import methods as registry

    throughput = _load("throughput")
    chosen, _ = throughput.select_methods(throughput.parse_args(["--methods", "all"]).methods)
    assert len(chosen) + 1 == len(registry.available_methods()) + 1


@pytest.mark.skipif(not (DEVICE_CHECK.parent.parent / ".venv" / "bin" / "python").exists(),
                    reason="needs the repository's .venv")
def test_device_check_uses_the_venv_and_stops_off_gpu(tmp_path) -> None:
    """Unset $PYTHON: .venv/bin/python, not a `python` without JAX; without --quick, GPU only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    no_jax = bin_dir / "python"
    no_jax.write_text("#!/usr/bin/env bash\n"
                      "echo \"ModuleNotFoundError: No module named 'jax'\" >&2; exit 1\n")
    no_jax.chmod(0o755)
    log = tmp_path / "check.log"
    run = _device_check({"PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log),
                         "JAX_PLATFORMS": "cpu"})
    assert "ModuleNotFoundError" not in run.stdout, run.stdout
    assert run.returncode == 2 and "not a GPU" in run.stdout and "--quick" in run.stdout, run.stdout
    assert "== " not in run.stdout  # no part ran
    assert log.read_text() == run.stdout

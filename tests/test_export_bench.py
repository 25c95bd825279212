"""Smoke tests of benchmarks/export.py, benchmarks/nm_spmm.py and benchmarks/device_check.sh.

No timing is asserted; only that the quick modes run and report every row
with finite positive figures, and that the device check calls the scripts
with flags they accept.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.scripts import load_script

pytestmark = pytest.mark.xdist_group("export_bench")

REPO = Path(__file__).resolve().parent.parent


def _pos(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_export_benchmark_quick_mode() -> None:
    bench = load_script("benchmarks/export.py")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = bench.main(["--quick"])
    text = out.getvalue()
    assert "device:" in text and "crossover" in text and "structured shrink" in text
    assert re.search(r"^summary: the rule chose sparse in \d+ of \d+ settings", text, re.M)
    for row in result["unstructured"]:
        for key in ("dense_ms", "bcsr_ms", "bcoo_ms", "segment_ms", "rule_ms", "bytes",
                    "dense_bytes", "density", "flops_ratio"):
            assert _pos(row[key]), (key, row)
        assert row["bytes"] < row["dense_bytes"]  # 99% sparse: compressed is smaller
        assert abs(row["density"] - 0.01) < 0.002 and abs(row["flops_ratio"] - 0.01) < 0.002
    (s,) = result["structured"]
    assert _pos(s["speedup"]) and s["flops_reduction"] > 1.5 and s["max_abs_diff"] < 1e-5
    assert all(set(c["crossover"]) == {"bcsr", "bcoo", "segment"} for c in result["crossover"])


def test_nm_benchmark_quick_mode() -> None:
    bench = load_script("benchmarks/nm_spmm.py")
    with contextlib.redirect_stdout(io.StringIO()):
        result = bench.main(["--quick"])
    assert result["size"] == 256 and _pos(result["dense_ms"])
    assert result["nm_available"] == ("nm_ms" in result)


def test_device_check_calls_scripts_with_flags_they_accept() -> None:
    script = REPO / "benchmarks" / "device_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    lines = [ln.strip() for ln in script.read_text().splitlines()
             if ln.strip().startswith("part ")]
    assert len(lines) == 8  # four parts, quick and full
    parsers = {"throughput.py": load_script("benchmarks/throughput.py").parse_args,
               "transforms.py": load_script("benchmarks/transforms.py").parse_args}
    for line in lines:
        words = shlex.split(line)
        name, argv = Path(words[3]).name, words[4:]
        assert (REPO / "benchmarks" / name).is_file(), line
        if name in parsers:
            parsers[name](argv)  # SystemExit on a flag the script does not know
    assert any("--models resnet18 --methods all --batch-size 256" in ln and "float32" in ln
               for ln in lines)
    assert any("resnet18" in ln and "bfloat16" in ln for ln in lines)

"""The notebooks run top to bottom (on a small setting)."""

from __future__ import annotations

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

#: What each notebook must print (a notebook not listed here fails the test).
EXPECTED = {
    "quickstart.ipynb": ("gRDA: accuracy", "one-shot magnitude pruning"),
    "greedy_imitation.ipynb": ("falls", "max |shrunk - gated|", "greedy_prune: training loss"),
}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("SPARSEJAX_NOTEBOOK_STEPS", "300")
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert path.name in EXPECTED, f"add the output {path.name} must print to EXPECTED"
    for marker in EXPECTED[path.name]:
        assert marker in outputs, (path.name, marker)
    assert "Error" not in outputs

"""The notebooks run top to bottom (on a small setting)."""

from __future__ import annotations

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("SPARSEJAX_NOTEBOOK_STEPS", "300")
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "gRDA: accuracy" in outputs and "one-shot magnitude pruning" in outputs
    assert "Error" not in outputs

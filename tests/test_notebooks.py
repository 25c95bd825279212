"""The notebooks: Colab-ready (badge, install cell, no stored outputs) and run top to bottom (small setting)."""

from __future__ import annotations

import pathlib
import re
import tempfile
import tomllib

import nbformat
import pytest
from nbclient import NotebookClient
from traitlets.config import Config

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

#: What each notebook must print (a notebook not listed here fails the test).
EXPECTED = {
    "quickstart.ipynb": ("gRDA: accuracy", "one-shot magnitude pruning"),
    "greedy_imitation.ipynb": ("falls", "max |shrunk - gated|", "greedy_prune: training loss"),
    "soft_threshold.ipynb": ("LATS: accuracy", "PGH: accuracy", "pruned one-shot to the same sparsity"),
    "frank_wolfe.ipynb": ("SFW: accuracy", "one-shot pruning without retraining", "largest gain of SFW over SGD"),
    "magnitude_pruning.ipynb": (
        "dense SGD: accuracy",
        "one-shot global:",
        "one-shot layerwise:",
        "fixed-support retraining at 95%",
        "gradual magnitude pruning: accuracy",
    ),
    "directional_pruning.ipynb": (
        "top Hessian eigenvalues",
        "DP vs gRDA vs magnitude",
        "max training loss along the curve",
    ),
}


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _requirements(extras: list[str]) -> set[str]:
    """Names of the distributions ``pip install 'sparsejax[extras]'`` asks for (extras resolved)."""
    project = _project()
    reqs, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra not in seen:
            seen.add(extra)
            reqs += project["optional-dependencies"][extra]
            for req in project["optional-dependencies"][extra]:  # sparsejax[other extras]
                m = re.match(rf"{project['name']}\[([\w,]+)\]", req)
                todo += m.group(1).split(",") if m else []
    names = {re.match(r"[\w.-]+", r).group(0).lower() for r in reqs}
    return names - {project["name"]}


def _github_path() -> str:
    """``owner/name`` of the repository named in pyproject.toml's [project.urls]."""
    url = _project()["urls"]["Repository"]
    m = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", url)
    assert m, f"[project.urls] Repository is not a GitHub URL: {url}"
    return m.group(1)


def test_every_notebook_is_listed() -> None:
    assert {p.name for p in NOTEBOOKS} == set(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_opens_in_colab(path: pathlib.Path) -> None:
    nb = nbformat.read(path, as_version=4)
    repo = _github_path()
    badge = (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{repo}/blob/main/notebooks/{path.name})"
    )
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.splitlines()[0] == badge
    # The first code cell installs sparsejax only where it is not importable (Colab).
    first = next(c for c in nb.cells if c.cell_type == "code").source
    lines = [line.strip() for line in first.splitlines()]
    assert lines[:2] == ["try:", "import sparsejax"] and lines[2].startswith("except ImportError:"), first
    install = re.search(r'^\s+%pip install -q "sparsejax(?:\[([\w,]+)\])? @ git\+(\S+)"$', first, re.M)
    assert install, first
    extras = install.group(1).split(",") if install.group(1) else []
    assert set(extras) <= set(_project()["optional-dependencies"]), extras
    # the notebooks build zoo models (Flax), load data (TFDS in Colab) and plot (Matplotlib)
    assert {"flax", "tensorflow-datasets", "matplotlib"} <= _requirements(extras), extras
    assert install.group(2) == f"https://github.com/{repo}"


def test_readme_lists_every_notebook_with_its_badge() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    for path in NOTEBOOKS:
        link = f"https://colab.research.google.com/github/{_github_path()}/blob/main/notebooks/{path.name}"
        assert f"`{path.name}`" in section and f"]({link})" in section, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: pathlib.Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: cell {i} has outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("SPARSEJAX_NOTEBOOK_STEPS", "300")
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
    nb = nbformat.read(path, as_version=4)
    # The kernel talks over Unix sockets in a private directory: with TCP, two notebooks started at once
    # (pytest -n 2) can pick the same free port, and the second kernel dies with "Address already in use".
    # The directory is short on purpose (a socket path is limited to about 100 bytes).
    with tempfile.TemporaryDirectory(prefix="sjnb-", dir="/tmp") as sockets:
        config = Config({"KernelManager": {"transport": "ipc", "ip": f"{sockets}/kernel"}})
        seen = []
        client = NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            config=config,
            resources={"metadata": {"path": str(path.parent)}},
            on_notebook_start=lambda notebook: seen.append((client.km.transport, client.km.ip)),
        )
        client.execute()
    assert seen == [("ipc", f"{sockets}/kernel")], seen
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert path.name in EXPECTED, f"add the output {path.name} must print to EXPECTED"
    for marker in EXPECTED[path.name]:
        assert marker in outputs, (path.name, marker)
    assert "Error" not in outputs

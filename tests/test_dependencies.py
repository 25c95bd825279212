"""The core is light: ``pip install sparsejax`` brings jax, optax and numpy, and importing the core
imports nothing else (Flax, Orbax, TFDS, TensorFlow, tqdm and Matplotlib come with extras)."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The modules ``import sparsejax`` (and its core subpackages) must not import.
HEAVY = ("flax", "orbax", "tensorflow_datasets", "tensorflow", "tqdm", "matplotlib", "chex")

#: The core: everything a light install (no extras) offers.
CORE = (
    "sparsejax",
    "sparsejax.pruning",
    "sparsejax.optim",
    "sparsejax.prox",
    "sparsejax.constraints",
    "sparsejax.select",
    "sparsejax.tree",
    "sparsejax.summary",
    "sparsejax.init",
    "sparsejax.plotting",
    "sparsejax.pruning.plots",
)


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _name(requirement: str) -> str:
    return re.match(r"[\w.-]+", requirement).group(0).lower()


def _run(code: str) -> dict:
    """Runs ``code`` in a fresh interpreter; it prints one JSON object, returned here."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_core_imports_no_optional_dependency() -> None:
    imports = "; ".join(f"import {m}" for m in CORE)
    out = _run(
        "import json, sys\n"
        "base = {m.split('.')[0] for m in sys.modules}\n"
        "import jax, numpy, optax\n"
        "with_deps = {m.split('.')[0] for m in sys.modules}\n"
        f"{imports}\n"
        "import sparsejax.pruning as pruning\n"
        "names = [n for n in pruning.__all__ if n not in pruning._STRUCTURED]\n"
        "[getattr(pruning, n) for n in names]\n"  # every core name, without forwarding
        "after = {m.split('.')[0] for m in sys.modules}\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "extra = sorted(after - with_deps - set(sys.stdlib_module_names) - {'sparsejax'})\n"
        "print(json.dumps({'heavy': heavy, 'extra': extra}))\n"
    )
    assert out["heavy"] == [], f"importing the core imported {out['heavy']}"
    # Beyond what jax, optax and numpy import themselves, the core imports nothing third-party.
    assert out["extra"] == [], f"importing the core imported {out['extra']}"


def test_the_core_works_without_the_optional_dependencies() -> None:
    """With Flax & co. unimportable, the transforms and pruning run; structured pruning says what to install."""
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in HEAVY)
    out = _run(
        f"import json, sys; {block}\n"
        "import jax.numpy as jnp, optax\n"
        "import sparsejax as sj\n"
        "from sparsejax import pruning\n"
        "params = {'w': jnp.array([[0.5, -0.01], [0.02, 2.0]])}\n"
        "tx = sj.grda(learning_rate=0.1, c=0.5, mu=0.51)\n"
        "updates, _ = tx.update(params, tx.init(params), params)\n"
        "pruned, _ = pruning.prune(optax.apply_updates(params, updates), 0.5)\n"
        "try:\n"
        "    pruning.local_imitation\n"
        "    error = None\n"
        "except ModuleNotFoundError as e:\n"
        "    error = str(e)\n"
        "print(json.dumps({'zeros': int((pruned['w'] == 0).sum()), 'error': error}))\n"
    )
    assert out["zeros"] == 2
    assert out["error"] is not None and "pip install 'sparsejax[models]'" in out["error"], out


def test_project_dependencies_are_exactly_the_light_set() -> None:
    deps = {_name(r) for r in _project()["dependencies"]}
    assert deps == {"jax", "jaxlib", "optax", "numpy"}


def test_extras_bring_the_rest() -> None:
    extras = _project()["optional-dependencies"]
    names = {k: {_name(r) for r in v} for k, v in extras.items()}
    assert names["models"] == {"flax"}
    assert names["plots"] == {"matplotlib"}
    assert {"orbax-checkpoint", "tensorflow-datasets", "tqdm"} <= names["train"]
    assert "sparsejax[models,plots]" in extras["train"]  # the trainer builds models and saves plots
    assert extras["all"] == ["sparsejax[models,plots,train]"]
    assert names["tf"] == {"tensorflow-cpu"}
    assert "sparsejax[all]" in extras["dev"] and {"pytest", "pytest-xdist"} <= names["dev"]
    # the quick start's set-up installs everything, the test tools and TensorFlow
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'EXTRAS="${SPARSEJAX_EXTRAS:-all,dev,tf}"' in setup


def test_pruning_forwards_the_structured_names() -> None:
    import sparsejax.pruning as pruning
    import sparsejax.structured as structured

    assert set(pruning._STRUCTURED) == set(structured.__all__)
    assert set(pruning._STRUCTURED) <= set(pruning.__all__)
    for name in structured.__all__:
        assert getattr(pruning, name) is getattr(structured, name), name


def _pins() -> dict[str, str]:
    """``scripts/constraints.txt`` as ``{normalised name: version}``."""
    pins = {}
    for line in (ROOT / "scripts" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"not an exact pin: {line!r}"
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_constraints_pin_every_dependency_the_set_up_installs() -> None:
    # setup.sh installs sparsejax[all,dev,tf] within scripts/constraints.txt: every direct
    # dependency, core and extras, has an exact version there, inside pyproject's bounds.
    from packaging.requirements import Requirement

    pins = _pins()
    project = _project()
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values()
                     for r in extra if not r.startswith("sparsejax[")]
    for req in requirements:
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in scripts/constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'CONSTRAINTS="${SPARSEJAX_CONSTRAINTS-$ROOT/scripts/constraints.txt}"' in setup


def test_the_suite_runs_on_the_pinned_versions() -> None:
    # What CI verifies is what the pins say, in an environment scripts/setup.sh made with them
    # (its stamp file is in the venv); one set up otherwise may hold other versions.
    import os
    from importlib.metadata import version

    if os.environ.get("SPARSEJAX_CONSTRAINTS") is not None:
        pytest.skip("SPARSEJAX_CONSTRAINTS is set: the environment may follow other pins")
    if not (pathlib.Path(sys.prefix) / ".sparsejax-installed").exists():
        pytest.skip("this environment was not set up by scripts/setup.sh")
    pins = _pins()
    for name in ("jax", "jaxlib", "numpy", "optax", "flax", "orbax-checkpoint",
                 "tensorflow-datasets"):
        assert version(name) == pins[name], (name, version(name), pins[name])

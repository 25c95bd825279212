"""Helpers for the tests of the scripts in experiments/ and benchmarks/ (not packages)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sparsejax.data import find_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """Imports a script of the repository, e.g. ``'experiments/greedy_figure1.py'``, once.

    The module is registered in ``sys.modules`` under a name made from the path
    (dataclasses and pickling need it there).
    """
    path = ROOT / relative_path
    name = "_script_" + relative_path.removesuffix(".py").replace("/", "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def have_fashion_mnist() -> bool:
    """Whether both Fashion-MNIST splits are found on this machine."""
    try:
        find_fashion_mnist("train")
        find_fashion_mnist("test")
    except FileNotFoundError:
        return False
    return True


#: Skips a test when Fashion-MNIST is not installed.
needs_fashion_mnist = pytest.mark.skipif(
    not have_fashion_mnist(),
    reason="Fashion-MNIST not found (apt-get install dataset-fashion-mnist)",
)

"""Every comparison config under experiments/configs/ is read and fully checked (methods,
hyperparameters, model, dataset, schedule) by the same code `sparsejax compare` runs first."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sparsejax.train import cli, methods

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.toml"))


def test_there_are_configs() -> None:
    names = {p.name for p in CONFIGS}
    assert {"fashion_mnist_lenet5_quick.toml", "fashion_mnist_lenet_300_100.toml",
            "fashion_mnist_lenet5_lats.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid_and_documented(path: Path) -> None:
    config = cli.load_config(path)
    args = cli.build_parser().parse_args(["compare", "--config", str(path)])
    runs = cli._compare_runs(args, config)
    assert [r.name for r in runs] == list(config["methods"])
    raw = tomllib.loads(path.read_text())
    for name, entry in raw["methods"].items():
        # every run says where its values come from
        assert entry.get("source"), f"{path.name}: methods.{name} has no source line"
    for r in runs:
        hp = methods.resolve_hparams(r.method, r.hparams)
        for key, value in raw["methods"][r.name].get("hparams", {}).items():
            assert hp[key] == value, (path.name, r.name, key)

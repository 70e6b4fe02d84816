"""Shared fixtures: Hydra composition of the packaged configs (configs/), reset after each use."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

import transformer.schema  # noqa: F401  (registers the structured configs)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def compose_config():
    """compose_config(name, overrides) -> DictConfig, with Hydra's global state cleared afterwards."""

    def _compose(name: str, overrides: list[str] | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_module("transformer.configs", version_base="1.3"):
            return compose(config_name=name, overrides=overrides or [])

    yield _compose
    GlobalHydra.instance().clear()

"""Shared fixtures: Hydra composition of the project's configs, reset after each use."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(ROOT / "configs")
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def compose_config():
    """compose_config(name, overrides) -> DictConfig, with Hydra's global state cleared afterwards."""

    def _compose(name: str, overrides: list[str] | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=name, overrides=overrides or [])

    yield _compose
    GlobalHydra.instance().clear()

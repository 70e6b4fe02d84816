"""Shared fixtures: Hydra composition of the packaged configs (transformer/conf), reset after each use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

import transformer.schema  # noqa: F401  (registers the structured configs)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "transformer" / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"
# overrides for a run of a few seconds on the offline sentiment sample
TINY_RUN = [
    "model=tiny",
    "dataset.max_examples=200",
    "dataset.tokenizer.vocab_size=300",
    "trainer.max_steps=2",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "~callbacks.progress_bar",
    "logger=csv",
]


def run_script(script: str, *args: str, cwd: Path = ROOT, timeout: int = 600, stdin: str | None = None):
    """scripts/<script> in a subprocess, as a user runs it (without HYDRA_FULL_ERROR)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        input=stdin,
        env={**env, "PYTHONWARNINGS": "ignore"},
    )


@pytest.fixture
def compose_config():
    """compose_config(name, overrides) -> DictConfig, with Hydra's global state cleared afterwards."""

    def _compose(name: str, overrides: list[str] | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_module("transformer.conf", version_base="1.3"):
            return compose(config_name=name, overrides=overrides or [])

    yield _compose
    GlobalHydra.instance().clear()

"""Fixtures for the inference tests: a tiny sentiment run and a tiny translation run, trained once per session."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import TINY_RUN, run_script


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny sentiment run and a tiny translation run, trained side by side."""
    root = tmp_path_factory.mktemp("inference-runs")

    def train(task: str) -> Path:
        result = run_script("train.py", f"task={task}", *TINY_RUN, f"paths.cache_dir={root / 'cache' / task}",
                            f"hydra.run.dir={root / task}")  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return root / task

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(("sentiment", "translation"), pool.map(train, ("sentiment", "translation")), strict=True))

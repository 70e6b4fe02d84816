"""Helpers shared by the test modules that run the scripts as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

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


def run_script(
    script: str, *args: str, cwd: Path = ROOT, timeout: int = 600, stdin: str | None = None, warnings: bool = False
):
    """scripts/<script> in a subprocess, as a user runs it (without HYDRA_FULL_ERROR); warnings=True shows Python's
    warnings as a user's terminal would (otherwise they are ignored)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "PYTHONWARNINGS")}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        input=stdin,
        env=env if warnings else {**env, "PYTHONWARNINGS": "ignore"},
    )


def run_if(min_cuda_gpus: int = 0):
    """A skip marker for tests that need hardware this machine may lack (Lightning's RunIf, reduced to GPUs)."""
    import pytest
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return pytest.mark.skipif(found < min_cuda_gpus, reason=f"needs {min_cuda_gpus} CUDA GPU(s), found {found}")

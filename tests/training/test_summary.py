"""What a user sees when training ends: the closing summary on stdout (metrics, checkpoints, run directory) and one
log line per validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TINY_RUN, run_script

from transformer.training.summary import number


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny sentiment run of the train command, from a working directory of its own: (cwd, result)."""
    cwd = tmp_path_factory.mktemp("summary")
    args = [*TINY_RUN, "trainer.max_steps=6", "trainer.max_epochs=2", f"paths.cache_dir={cwd / 'cache'}"]
    result = run_script("train.py", *args, "hydra.run.dir=run", "callbacks=[default,averaging]", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, result


def test_train_ends_with_its_results_on_stdout(finished):
    cwd, result = finished
    metrics = json.loads((cwd / "run" / "metrics.json").read_text())
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("training done in "))
    summary = lines[start:]
    assert f"{metrics['global_step']} steps" in summary[0] and "tokens/s" in summary[0]
    rows = {line.split("  ")[1].strip(): line for line in summary[1:]}
    validation = rows["validation (averaged weights)"]
    test = rows["test (averaged weights)"]
    for stage, line in (("val", validation), ("test", test)):
        for name in ("loss", "acc", "f1"):
            assert f"{name} {number(metrics[f'{stage}/{name}'])}" in line
    assert rows["averaged checkpoint"].split()[-1] == str(Path("run") / "checkpoints" / "averaged.ckpt")
    best = rows["best checkpoint"].split()[2]
    assert (cwd / best).is_file() and f"val/acc {number(metrics['best_score'])}" in rows["best checkpoint"]
    assert rows["run directory"].split()[-1] == "run"
    assert metrics["tokens_per_sec"] > 0


def test_each_validation_has_one_log_line(finished):
    cwd, _ = finished
    log = (cwd / "run" / "train.log").read_text()
    epochs = [line for line in log.splitlines() if "validation, epoch" in line]
    assert epochs and all("val/loss" in line and "val/acc" in line and "(best val/acc" in line for line in epochs)
    assert "validation, after training" in log  # the averaged weights

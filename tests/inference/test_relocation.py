"""Run directories can be copied and moved: metrics.json names checkpoints relative to the run, every tool
resolves the checkpoint inside the directory it was given and writes its outputs in that run (and says where)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from transformer.checkpoint import resolve_checkpoint
from transformer.export import export
from transformer.inference import Predictor, attend, evaluate
from transformer.training.train import train

TINY = [
    "model=tiny",
    "dataset.max_examples=200",
    "dataset.tokenizer.vocab_size=300",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "~callbacks.progress_bar",
    "~callbacks.tensorboard_views",
    "logger={}",
]


@pytest.fixture
def copied(tmp_path, compose_config) -> Path:
    """A tiny sentiment run, copied to `copy/`; the original is deleted."""
    original = tmp_path / "original"
    train(compose_config("train", [*TINY, f"paths.output_dir={original}", f"paths.cache_dir={tmp_path / 'cache'}"]))
    metrics = json.loads((original / "metrics.json").read_text())
    assert metrics["best_checkpoint"].startswith("checkpoints/epoch000-")  # relative to the run
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    return copy


def files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_tools_read_and_write_inside_a_copied_run(copied, compose_config, capsys):
    root = copied.parent
    before = files(root)
    best = copied / json.loads((copied / "metrics.json").read_text())["best_checkpoint"]
    assert resolve_checkpoint(copied) == (best, "best")
    assert Predictor(str(copied)).path == best

    evaluate(compose_config("evaluate", [f"ckpt={copied}", "split=validation"]))
    out = copied / "evaluate" / best.stem
    assert {p.name for p in out.iterdir()} == {"metrics_validation.json", "predictions_validation.txt"}
    assert f"to {out}" in capsys.readouterr().err

    written = attend(compose_config("attend", [f"ckpt={copied}", "text='not bad at all'"]))
    assert written and all(p.parent == copied / "attention" / "not-bad-at-all" for p in written)
    assert f"{copied / 'attention' / 'not-bad-at-all'}" in capsys.readouterr().err

    exported = export(compose_config("export", [f"ckpt={copied}", "check=false"]))
    assert exported and all(p.parent == copied / "export_onnx" for p in exported)

    new = files(root) - before
    assert new and all(p.is_relative_to(copied) for p in new)  # nothing outside the copy
    assert not (root / "original").exists()


def test_an_absolute_best_checkpoint_of_another_run_is_read_in_this_one(copied, tmp_path):
    """metrics.json written before relative names: its absolute path points into the run it was copied from."""
    second = tmp_path / "second"
    shutil.copytree(copied, second)
    metrics_file = second / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["best_checkpoint"] = str(copied / metrics["best_checkpoint"])  # the first copy's file, which exists
    metrics_file.write_text(json.dumps(metrics))
    resolved, choice = resolve_checkpoint(second)
    assert choice == "best" and resolved == second / "checkpoints" / Path(metrics["best_checkpoint"]).name
    metrics["best_checkpoint"] = str(second / "checkpoints" / resolved.name)  # its own, absolute: still read
    metrics_file.write_text(json.dumps(metrics))
    assert resolve_checkpoint(second) == (second / "checkpoints" / resolved.name, "best")

"""Weights never go bad silently: a step whose gradients are NaN/inf is skipped, weights that become NaN/inf stop the
run before any checkpoint takes them, no checkpoint is ever written with NaN/inf tensors, and the message names the
last good checkpoint, which a relaunch resumes from."""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import run_script
from pytorch_lightning.callbacks import ModelCheckpoint

from transformer.checkpoint import AtomicCheckpointIO, CheckpointError, find_resume_checkpoint
from transformer.config import ModelConfig
from transformer.data.tokenizer import train_tokenizer
from transformer.objectives.base import NonFiniteWeightsError
from transformer.objectives.classification import ClassificationModule
from transformer.optim import OptimConfig


def finite(value) -> bool:
    """Whether every floating tensor in a (nested) value is finite."""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return True


def finite_checkpoint(path: Path) -> bool:
    """Whether a checkpoint's weights and optimizer state are finite (ModelCheckpoint's own state holds an inf
    sentinel, its initial best score, which is no model state)."""
    checkpoint = torch.load(path, weights_only=True)
    return finite(checkpoint["state_dict"]) and finite(checkpoint.get("optimizer_states", []))


# the command, on the tiny sample settings
DIVERGING = [
    "task=sentiment",
    "model=tiny",
    "run_name=nan",
    "checkpoint.every_n_steps=10",
    "trainer.max_steps=100",
    "optim.lr=1e6",
    "dataset.max_examples=400",
    "dataset.tokenizer.vocab_size=300",
    "batching.max_tokens=512",
    "trainer.num_sanity_val_steps=0",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "~callbacks.progress_bar",
    "logger=csv",
]


def test_diverging_run_keeps_finite_checkpoints_and_names_the_last_good_one(tmp_path):
    result = run_script("train.py", *DIVERGING, f"paths.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr
    run = tmp_path / "outputs" / "sentiment" / "nan"
    written = sorted((run / "checkpoints").glob("*.ckpt"))
    for path in written:
        assert finite_checkpoint(path), f"{path.name} holds NaN/inf tensors"
    named = re.search(r"the last good checkpoint is (\S+?\.ckpt)", lines[-1])
    if written:  # the message names the one a relaunch resumes from
        assert named is not None, lines[-1]
        assert Path(named.group(1)) == find_resume_checkpoint(run, "sentiment")
    else:
        assert "no checkpoint was written" in lines[-1]

    sane = ["optim.lr=1e-3", "allow_changes=[optim.lr]", "trainer.max_steps=12"]
    again = run_script("train.py", *DIVERGING, *sane, f"paths.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert ("resuming from" in again.stdout + again.stderr) == bool(written)
    last = run / "checkpoints" / "last.ckpt"
    assert finite_checkpoint(last) and torch.load(last, weights_only=True)["global_step"] == 12


# In-process runs of the tiny classifier on fixed batches, a checkpoint after every step.

STEPS = 4


def classifier(tmp_path: Path, optim: OptimConfig) -> ClassificationModule:
    from transformer.checkpoint import Artifacts

    words = "the cat sat on a mat and a dog ran far away from it".split()
    tokenizer = train_tokenizer([" ".join(words[i:] + words[:i]) for i in range(len(words))], 24)
    model = ModelConfig.named("tiny", vocab_size=tokenizer.vocab_size, dropout=0.0, max_positions=32)
    config = {"task": {"metrics": ["acc"]}, "optim": {}}
    artifacts = Artifacts("classification", "test", config, model, tokenizer, tokenizer)
    return ClassificationModule(artifacts, optim)


class Batches(pl.LightningDataModule):
    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        batches = [
            {"src": torch.randint(4, 24, (4, 6), generator=g), "label": torch.tensor([0, 1, 0, 1])}
            for _ in range(STEPS)
        ]
        return torch.utils.data.DataLoader(batches, batch_size=None)


class Snapshots(pl.Callback):
    """The weights before and after each optimizer step, and a fault injected at step `at`."""

    def __init__(self, at: int, fault) -> None:
        self.at, self.fault = at, fault
        self.before: dict[int, dict] = {}
        self.after: dict[int, dict] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.before[trainer.global_step] = {k: v.clone() for k, v in module.state_dict().items()}

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        if trainer.global_step == self.at:  # after the backward, before the guard (the module's own hook)
            self.fault(module, optimizer)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.after[trainer.global_step - 1] = {k: v.clone() for k, v in module.state_dict().items()}


def fit(tmp_path: Path, module: ClassificationModule, snapshots: Snapshots) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        precision="32-true",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            snapshots,
            ModelCheckpoint(
                tmp_path / "checkpoints",
                "step{step}",
                every_n_train_steps=1,
                save_top_k=-1,
                auto_insert_metric_name=False,
            ),
        ],
    )
    trainer.fit(module, datamodule=Batches())
    return trainer


def test_nonfinite_gradients_skip_their_step(tmp_path, caplog):
    def nan_gradient(module, optimizer) -> None:
        next(p for p in module.parameters() if p.grad is not None).grad.view(-1)[0] = math.nan

    snapshots = Snapshots(at=1, fault=nan_gradient)
    module = classifier(tmp_path, OptimConfig(warmup_steps=0, schedule="constant"))
    with caplog.at_level(logging.WARNING):
        trainer = fit(tmp_path, module, snapshots)
    assert trainer.global_step == STEPS  # the run goes on
    for name, value in snapshots.before[1].items():  # the skipped step changed nothing
        torch.testing.assert_close(snapshots.after[1][name], value, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(snapshots.after[2][k], v) for k, v in snapshots.before[2].items())  # the next did
    assert any("non-finite gradients at step 1: step skipped" in r.getMessage() for r in caplog.records)
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        assert finite_checkpoint(path), path.name


def test_weights_that_become_nonfinite_stop_the_run_before_a_checkpoint_takes_them(tmp_path):
    def infinite_update(module, optimizer) -> None:  # finite gradients, but an update of inf (corrupt moments)
        for state in optimizer.state.values():
            state["exp_avg"].fill_(math.inf)

    snapshots = Snapshots(at=2, fault=infinite_update)
    module = classifier(tmp_path, OptimConfig(warmup_steps=0, schedule="constant"))
    with pytest.raises(NonFiniteWeightsError) as raised:
        fit(tmp_path, module, snapshots)
    message = str(raised.value)
    assert "\n" not in message and "at step 2" in message
    written = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert written == ["step1.ckpt", "step2.ckpt"]  # none after the bad step
    for name in written:
        assert finite_checkpoint(tmp_path / "checkpoints" / name), name
    assert f"the last good checkpoint is {tmp_path / 'checkpoints' / 'step2.ckpt'}" in message
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary file either


def test_a_checkpoint_with_nonfinite_tensors_is_refused_and_skipped_on_resume(tmp_path, caplog):
    io = AtomicCheckpointIO()
    bad = {"state_dict": {"w": torch.tensor([1.0, math.nan])}, "optimizer_states": []}
    with pytest.raises(CheckpointError, match="NaN/inf") as raised:
        io.save_checkpoint(bad, tmp_path / "bad.ckpt")
    assert "\n" not in str(raised.value) and "state_dict.w" in str(raised.value)
    assert os.listdir(tmp_path) == []  # neither the file nor a temporary one

    # a checkpoint written by an older version, before saves refused them, is skipped when resuming
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    artifacts = {"format": 3, "objective": "classification", "task": "sentiment", "config": {}}
    full = {"transformer": artifacts, "optimizer_states": [], "lr_schedulers": [], "loops": {}}
    torch.save({**full, "state_dict": {"w": torch.ones(2)}}, folder / "step1.ckpt")
    torch.save({**full, "state_dict": {"w": torch.tensor([math.inf, 0.0])}}, folder / "step2.ckpt")
    os.utime(folder / "step1.ckpt", (1, 1))
    with caplog.at_level(logging.WARNING):
        assert find_resume_checkpoint(tmp_path / "run", "sentiment") == folder / "step1.ckpt"
    assert any("skipping step2.ckpt" in r.getMessage() and "NaN/inf" in r.getMessage() for r in caplog.records)

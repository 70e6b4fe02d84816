"""Run directories are owned: one live process trains in a run directory at a time, a fresh run never mixes its
files with an old run's, a relaunch says which of its settings differ from its checkpoint's, and a checkpoint
write that fails (a full disk) or was killed leaves nothing behind."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import ROOT, TINY_RUN, run_script

from transformer.checkpoint import CheckpointError, find_resume_checkpoint, load_checkpoint
from transformer.errors import ConfigError
from transformer.training.rundir import LOCK_NAME
from transformer.training.train import train

SAMPLE = ["dataset.max_examples=200", "dataset.tokenizer.vocab_size=300"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The tiny runs' prepared sample, shared by this module's tests."""
    cache = tmp_path_factory.mktemp("cache")
    result = run_script("prepare_data.py", "task=sentiment", *SAMPLE, f"paths.cache_dir={cache}")
    assert result.returncode == 0, result.stderr[-3000:]
    return cache


def tiny(run: Path, cache: Path, *extra: str) -> list[str]:
    """A tiny in-process run into `run` (train(cfg) with paths.output_dir: no Hydra run directory)."""
    return [*TINY_RUN, f"paths.cache_dir={cache}", f"paths.output_dir={run}", "logger={}", *extra]


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error: ` line a refused script prints last, with no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and lines[-1].startswith("error: "), result.stderr[-3000:]
    return lines[-1]


def test_a_second_process_is_refused_and_a_dead_owners_lock_taken_over(tmp_path, cache):
    args = [*TINY_RUN, f"paths.cache_dir={cache}", "run_name=dup"]
    run = tmp_path / "outputs" / "sentiment" / "dup"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    long = ["trainer.max_steps=-1", "trainer.max_epochs=1000"]
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args, *long],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ((run / LOCK_NAME).is_file() and (run / LOCK_NAME).stat().st_size):
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.05)
        second = run_script("train.py", *args, cwd=tmp_path)  # the same command, while the first trains
        message = error_line(second)
        assert f"is in use by another training process (pid {first.pid} on host" in message
        assert first.poll() is None  # the first one goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    assert (run / LOCK_NAME).is_file()  # a killed process leaves its lock file behind

    # the relaunch: it resumes where the killed run's checkpoints end, and stops two steps later
    newest = find_resume_checkpoint(run, "sentiment")
    steps = 2 + (load_checkpoint(newest)["global_step"] if newest else 0)
    third = run_script("train.py", *args, "trainer.max_epochs=1000", f"trainer.max_steps={steps}", cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"taking over the lock of {run}: its owner (pid {first.pid} on host" in third.stdout + third.stderr
    assert not (run / LOCK_NAME).exists()  # released at the end


def test_a_fresh_run_refuses_a_used_run_directory_unless_overwrite(tmp_path, cache, compose_config, caplog):
    run = tmp_path / "run"
    train(compose_config("train", tiny(run, cache)))
    old = load_checkpoint(run / "checkpoints" / "last.ckpt")

    old_names = sorted(os.listdir(run / "checkpoints"))
    with pytest.raises(ConfigError, match="already holds a run .*overwrite=true") as refused:
        train(compose_config("train", tiny(run, cache, "resume=never")))
    assert "\n" not in str(refused.value)
    assert sorted(os.listdir(run / "checkpoints")) == old_names  # untouched

    with caplog.at_level(logging.WARNING):
        train(compose_config("train", tiny(run, cache, "resume=never", "overwrite=true")))
    [aside] = tmp_path.glob("run.old-*")
    assert sorted(os.listdir(aside / "checkpoints")) == old_names and (aside / "metrics.json").is_file()
    moved = load_checkpoint(aside / "checkpoints" / "last.ckpt")
    for name, value in old["state_dict"].items():  # the old run, whole
        torch.testing.assert_close(moved["state_dict"][name], value, rtol=0, atol=0)
    assert not list(run.glob("checkpoints/last-v*.ckpt")) and (run / "metrics.json").is_file()
    assert any(f"to {aside}" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_a_relaunch_with_other_settings_stops_unless_allowed(tmp_path, cache, compose_config):
    run = tmp_path / "run"
    train(compose_config("train", tiny(run, cache, "resume=auto")))

    # the model of another size: one line from the script (a size-mismatch traceback before)
    bigger = run_script("train.py", *tiny(run, cache, "resume=auto", "model.d_model=64"), f"hydra.run.dir={run}")
    message = error_line(bigger)
    assert "model.d_model: 32 there, 64 now" in message and "allow_changes=[model.d_model]" in message
    with pytest.raises(ConfigError, match="a model of another size cannot resume"):
        allowed = ["resume=auto", "model.d_model=64", "allow_changes=[model.d_model]"]
        train(compose_config("train", tiny(run, cache, *allowed)))

    with pytest.raises(ConfigError, match=r"\(optim.lr: 0.001 there, 0.0005 now\).*allow_changes=\[optim.lr\]"):
        train(compose_config("train", tiny(run, cache, "resume=auto", "optim.lr=5e-4")))
    with pytest.raises(ConfigError, match="did you mean optim.lr"):
        train(compose_config("train", tiny(run, cache, "resume=auto", "optim.lr=5e-4", "allow_changes=[optim.lrr]")))
    with pytest.raises(ConfigError, match="optim.layer_decay cannot change when resuming"):
        regrouped = ["resume=auto", "optim.layer_decay=0.5", "allow_changes=[optim.layer_decay]"]
        train(compose_config("train", tiny(run, cache, *regrouped)))

    # allowed: the run goes on, with the new peak learning rate in its optimizer and schedule
    allowed = ["resume=auto", "optim.lr=5e-4", "allow_changes=[optim.lr]", "trainer.max_steps=4"]
    allowed.append("trainer.max_epochs=5")
    train(compose_config("train", tiny(run, cache, *allowed)))
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 4
    assert last["lr_schedulers"][0]["base_lrs"] == [5e-4, 5e-4]
    assert [group["initial_lr"] for group in last["optimizer_states"][0]["param_groups"]] == [5e-4, 5e-4]
    assert last["transformer"]["config"]["optim"]["lr"] == 5e-4  # and the checkpoint says so


def test_a_relaunch_with_fewer_epochs_than_done_is_one_line(tmp_path, cache, compose_config):
    run = tmp_path / "run"
    train(compose_config("train", tiny(run, cache, "resume=auto", "trainer.max_steps=-1", "trainer.max_epochs=3")))
    with pytest.raises(ConfigError, match="was saved in epoch 2, after trainer.max_epochs=1: raise"):
        train(compose_config("train", tiny(run, cache, "resume=auto", "trainer.max_steps=-1")))


class DiskFullAt(pl.Callback):
    """Makes the temporary file of the checkpoint at `step` a link to /dev/full: its write fails with ENOSPC."""

    def __init__(self, folder: Path, step: int) -> None:
        self.link = folder / f".step{step:08d}.ckpt.tmp-{os.getpid()}"

    def on_train_start(self, trainer, pl_module) -> None:
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.link.symlink_to("/dev/full")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_during_a_checkpoint_ends_in_one_line_and_leaves_nothing(tmp_path, cache, compose_config):
    run = tmp_path / "run"
    full = DiskFullAt(run / "checkpoints", step=4)
    cfg = compose_config("train", tiny(run, cache, "checkpoint.every_n_steps=2", "trainer.max_steps=6"))
    with pytest.raises(CheckpointError, match="No space left on device") as raised:
        train(cfg, callbacks=[full])
    message = str(raised.value)
    assert "\n" not in message and f"cannot write {run / 'checkpoints' / 'step00000004.ckpt'}" in message
    assert not full.link.is_symlink()  # the temporary file is removed
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step00000002.ckpt"]
    assert load_checkpoint(run / "checkpoints" / "step00000002.ckpt")["global_step"] == 2  # intact


def test_temporary_files_of_a_killed_run_are_removed_at_the_next_start(tmp_path, cache, compose_config, caplog):
    run = tmp_path / "run"
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    (folder / ".step00000005.ckpt.tmp-4242").write_bytes(b"half a checkpoint")  # a file write, killed
    (folder / ".last.ckpt.tmp").mkdir()  # a sharded one (hardware=fsdp), killed
    (folder / ".last.ckpt.tmp" / "__0_0.distcp").write_bytes(b"shard")
    with caplog.at_level(logging.WARNING):
        train(compose_config("train", tiny(run, cache, "resume=auto")))
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert any("removed 2 temporary file(s)" in r.getMessage() for r in caplog.records)

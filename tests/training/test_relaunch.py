"""Runs survive preemption: a killed or signalled run, relaunched with the same command, ends with the same weights
as an uninterrupted one; checkpoints are written atomically and a corrupt newest one is skipped."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT, run_script

from transformer.checkpoint import AtomicCheckpointIO, find_resume_checkpoint, is_sharded, load_checkpoint
from transformer.training.preemption import PREEMPTED_EXIT_CODE

# 2 epochs of ~31 steps on the tiny model, a checkpoint every 5 optimizer steps
RUN = [
    "model=tiny",
    "dataset.max_examples=400",
    "dataset.tokenizer.vocab_size=300",
    "trainer.max_epochs=2",
    "trainer.num_sanity_val_steps=0",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "~callbacks.progress_bar",
    "logger=csv",
    "batching.max_tokens=512",
    "checkpoint.every_n_steps=5",
]


def start(cwd: Path, cache: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *RUN, f"paths.cache_dir={cache}", *extra]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_step_checkpoint(folder: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(folder.glob("step*.ckpt")):
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no step checkpoint was written"
        time.sleep(0.05)


def final_weights(run: Path) -> tuple[int, dict[str, torch.Tensor]]:
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint["global_step"], checkpoint["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, tuple[int, dict]]:
    """The cache, and the final step and weights of the uninterrupted run."""
    root = tmp_path_factory.mktemp("relaunch")
    cache = root / "cache"
    result = run_script("train.py", *RUN, f"paths.cache_dir={cache}", "run_name=full", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return cache, final_weights(root / "outputs" / "sentiment" / "full")


def assert_same_weights(run: Path, expected: tuple[int, dict]) -> None:
    step, weights = final_weights(run)
    assert step == expected[0] > 40
    for name, value in expected[1].items():
        torch.testing.assert_close(weights[name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killed_run_relaunched_equals_uninterrupted(kill, tmp_path, uninterrupted):
    cache, expected = uninterrupted
    run = tmp_path / "outputs" / "sentiment" / "cut"
    process = start(tmp_path, cache, "run_name=cut")
    wait_for_step_checkpoint(run / "checkpoints", process)
    process.send_signal(kill)
    output = process.communicate(timeout=120)[0]
    if kill == signal.SIGTERM:  # saved at the next step boundary, then a distinct exit status
        assert process.returncode == PREEMPTED_EXIT_CODE, output[-3000:]
        assert (run / "checkpoints" / "preempted.ckpt").is_file()
    else:
        assert process.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()  # it did stop before the end

    again = run_script("train.py", *RUN, f"paths.cache_dir={cache}", "run_name=cut", cwd=tmp_path)  # the same
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout + again.stderr
    assert_same_weights(run, expected)
    assert not list(run.glob("checkpoints/.*.tmp-*"))  # no temporary file left behind


FSDP = ["hardware=fsdp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1"]


@pytest.mark.slow  # FSDP; DDP keeps the same check in the default suite
def test_fsdp_run_preempted_and_relaunched_equals_uninterrupted(tmp_path, uninterrupted):
    """hardware=fsdp on 2 CPU processes: SIGTERM to the launching rank saves a sharded checkpoint on both ranks; the
    same command resumes from it and ends with the weights of an uninterrupted run. The sharded checkpoints load
    in evaluate.py, and a run without FSDP refuses to resume from them in one line."""
    cache, _ = uninterrupted
    args = [*RUN, f"paths.cache_dir={cache}", *FSDP]
    full = run_script("train.py", *args, "run_name=full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]
    expected = tmp_path / "outputs" / "sentiment" / "full" / "checkpoints" / "last.ckpt"
    assert is_sharded(expected)

    run = tmp_path / "outputs" / "sentiment" / "cut"
    process = start(tmp_path, cache, *FSDP, "run_name=cut")
    wait_for_step_checkpoint(run / "checkpoints", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == PREEMPTED_EXIT_CODE, output[-3000:]
    assert is_sharded(run / "checkpoints" / "preempted.ckpt")
    again = run_script("train.py", *args, "run_name=cut", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout + again.stderr
    want, got = load_checkpoint(expected), load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert got["global_step"] == want["global_step"] > 10
    for name, value in want["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][name], value, rtol=0, atol=0, msg=name)
    assert not list(run.glob("checkpoints/.*.tmp*"))

    evaluated = run_script("evaluate.py", f"ckpt={run}", f"paths.cache_dir={cache}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "test/acc" in evaluated.stdout
    ddp = run_script("train.py", *RUN, f"paths.cache_dir={cache}", "run_name=cut", cwd=tmp_path)
    assert ddp.returncode == 2
    assert ddp.stderr.strip().splitlines()[-1].startswith("error: ") and "resume it with hardware=fsdp" in ddp.stderr


def test_corrupt_newest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    artifacts = {"format": 2, "objective": "classification", "task": "sentiment", "config": {}}
    full = {"transformer": artifacts, "state_dict": {}, "optimizer_states": [], "lr_schedulers": [], "loops": {}}
    older, newer = folder / "step00000005.ckpt", folder / "step00000010.ckpt"
    torch.save({**full, "global_step": 5}, older)
    torch.save({**full, "global_step": 10}, newer)
    torch.save({"transformer": artifacts, "state_dict": {}}, folder / "averaged.ckpt")  # weights only: never
    os.utime(older, (1, 1))
    assert find_resume_checkpoint(tmp_path, "sentiment") == newer
    newer.write_bytes(newer.read_bytes()[:100])  # a kill during a non-atomic write
    with caplog.at_level(logging.WARNING):
        assert find_resume_checkpoint(tmp_path, "sentiment") == older
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipping step00000010.ckpt" in warnings[0] and "corrupt or truncated" in warnings[0]
    assert find_resume_checkpoint(tmp_path / "nothing-here", "sentiment") is None


def test_atomic_checkpoint_write_keeps_the_previous_file_on_failure(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - torch.save of a lambda fails part-way, whatever the error type
        io.save_checkpoint({"step": 2, "bad": lambda: 0}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_resume_never_and_run_name(tmp_path, uninterrupted):
    cache, _ = uninterrupted
    args = [*RUN, f"paths.cache_dir={cache}", "trainer.max_epochs=1", "run_name=again"]
    first = run_script("train.py", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "outputs" / "sentiment" / "again"
    assert (run / "metrics.json").is_file()
    refused = run_script("train.py", *args, "resume=never", cwd=tmp_path)  # the runs would mix
    assert refused.returncode == 2 and "overwrite=true" in refused.stderr.strip().splitlines()[-1]
    fresh = run_script("train.py", *args, "resume=never", "overwrite=true", cwd=tmp_path)
    assert fresh.returncode == 0 and "resuming from" not in fresh.stdout + fresh.stderr
    assert len(list(run.parent.glob("again.old-*/checkpoints/last.ckpt"))) == 1  # the first run, moved aside
    assert not list(run.glob("checkpoints/*-v1.ckpt"))
    resumed = run_script("train.py", *args, cwd=tmp_path)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout + resumed.stderr


def test_slurm_job_id_names_the_run_and_resumes(tmp_path, uninterrupted):
    """Under SLURM (no run_name given) the job id names the run directory, so a requeued job resumes."""
    cache, _ = uninterrupted
    env = {**os.environ, "SLURM_JOB_ID": "4242"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *RUN, f"paths.cache_dir={cache}"]
    command.append("trainer.max_epochs=1")
    for attempt in range(2):
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert ("resuming from" in result.stdout + result.stderr) == (attempt == 1)
    assert (tmp_path / "outputs" / "sentiment" / "4242" / "metrics.json").is_file()


def test_submitit_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run_script("train.py", "--cfg", "hydra", "hydra/launcher=slurm", "hydra.launcher.nodes=2")
    assert result.returncode == 0, result.stderr[-3000:]
    launcher = yaml.safe_load(result.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["nodes"] == 2 and launcher["max_num_timeout"] > 0 and launcher["tasks_per_node"] >= 1

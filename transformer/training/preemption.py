"""Preemption: on SIGTERM or SIGUSR1 (spot VMs, Kubernetes, `timeout`, SLURM's `--signal`), save a checkpoint at
the next step boundary, requeue the SLURM job, and exit with PREEMPTED_EXIT_CODE. Relaunching the same command
(same run_name) resumes from that checkpoint (checkpoint.py: find_resume_checkpoint).

Lightning's own handlers are replaced while training runs: its SIGTERM handler stops without saving, and its
SLURM SIGUSR1 handler saves an `hpc_ckpt` outside our run directory. Ours is one path for every launcher.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytorch_lightning as pl
import torch

from transformer.errors import ConfigError

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later" (the run saved its state and can be relaunched)
CHECKPOINT_NAME = "preempted.ckpt"


class Preempted(Exception):  # noqa: N818 - an event, not an error: train() turns it into the exit code
    """Raised inside fit after the preemption checkpoint is written."""

    def __init__(self, path: Path, step: int) -> None:
        super().__init__(f"preempted at step {step}; state saved to {path}")
        self.path, self.step = path, step


def parse_signals(names: list[str]) -> list[signal.Signals]:
    parsed = []
    for name in names:
        try:
            parsed.append(signal.Signals[name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"])
        except KeyError:
            raise ConfigError(
                f"preemption.signals has {name!r}, which is not a signal: use e.g. SIGTERM, SIGUSR1"
            ) from None
    return parsed


class PreemptionCheckpoint(pl.Callback):
    """Turns the configured signals into a checkpoint at the next optimizer-step boundary and a clean exit."""

    def __init__(self, dirpath: str | Path, signals: list[str], requeue: bool = True) -> None:
        self.dirpath = Path(dirpath)
        self.signals = parse_signals(signals)
        self.requeue = requeue
        self.received: int | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _handler(self, signum, frame) -> None:
        log.warning("received %s: saving a checkpoint at the end of this step", signal.Signals(signum).name)
        self.received = signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning registered its own handlers (Trainer._run), so that ours replace them
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handler)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.world_size > 1:  # a signal may reach some ranks only; all must save and stop together
            received = torch.tensor(0 if self.received is None else 1)
            if int(trainer.strategy.reduce(received, reduce_op="sum")) == 0:
                return
        elif self.received is None:  # one process: nothing to agree on, and nothing read from a tensor
            return
        path = self.dirpath / CHECKPOINT_NAME
        trainer.save_checkpoint(path)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self._requeue()
        raise Preempted(path, trainer.global_step)

    def _requeue(self) -> None:
        job = os.environ.get("SLURM_JOB_ID")
        if not (self.requeue and job):
            return
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else job
        try:
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            log.warning("could not requeue SLURM job %s: %s", job, error)
            return
        if result.returncode == 0:
            log.warning("requeued SLURM job %s", job)
        else:
            log.warning("could not requeue SLURM job %s: %s", job, result.stderr.strip())

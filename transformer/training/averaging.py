"""Checkpoint averaging (fairseq's average_checkpoints): the mean of the weights of the last epochs.

The average of the last few epochs' weights generalises better than any single one of them (Vaswani et al.
2017 averaged the last 5 or 20 checkpoints). `AverageLastEpochs` keeps a weights-only checkpoint of each of
the last `last_k` epochs on disk (so a resumed run still has them) and writes their average when training ends;
`average_checkpoints` does the same for any list of checkpoint files (scripts/average_checkpoints.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from transformer.checkpoint import CheckpointError, load_checkpoint, save_atomic
from transformer.errors import ConfigError
from transformer.training.fsdp import load_full_state_dict, remove

EPOCH_FILE = re.compile(r"^epoch(\d+)\.ckpt$")


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The first checkpoint with its state_dict replaced by the element-wise mean over all of them.

    Floating-point tensors are averaged in float64 and cast back; integer buffers (counters) keep the last
    checkpoint's value. Every checkpoint must have the same keys and shapes.
    """
    if not paths:
        raise CheckpointError("average_checkpoints needs at least one checkpoint")
    checkpoints = [load_checkpoint(path) for path in paths]
    reference = checkpoints[0]["state_dict"]
    for path, checkpoint in zip(paths[1:], checkpoints[1:], strict=True):
        state = checkpoint["state_dict"]
        if state.keys() != reference.keys() or any(state[k].shape != reference[k].shape for k in reference):
            raise CheckpointError(f"{path} has other parameters than {paths[0]}: average checkpoints of one run only")
    averaged = {}
    for key, value in reference.items():
        if value.is_floating_point():
            total = sum(checkpoint["state_dict"][key].double() for checkpoint in checkpoints)
            averaged[key] = (total / len(checkpoints)).to(value.dtype)
        else:
            averaged[key] = checkpoints[-1]["state_dict"][key]
    result = dict(checkpoints[-1])
    result["state_dict"] = averaged
    result["averaged_from"] = [str(path) for path in paths]
    for key in ("optimizer_states", "lr_schedulers", "loops", "callbacks", "sharded"):  # of one checkpoint
        result.pop(key, None)
    return result


def epoch_checkpoints(dirpath: str | Path) -> list[Path]:
    """The epochNNN.ckpt files of a directory, oldest epoch first."""
    dirpath = Path(dirpath)
    if not dirpath.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in dirpath.iterdir() if (m := EPOCH_FILE.match(p.name))]
    return [path for _, path in sorted(found)]


class AverageLastEpochs(pl.Callback):
    """Saves weights-only `epochNNN.ckpt` after each training epoch (keeping the last `last_k`) and, when the
    fit ends, writes their average to `averaged.ckpt` in the parent directory; train() then validates and tests
    the averaged weights. With fewer epochs than last_k it averages what there is."""

    def __init__(self, dirpath: str, last_k: int = 5) -> None:
        if last_k < 1:
            raise ConfigError(f"last_k must be >= 1, got {last_k}")
        self.dirpath = Path(dirpath)
        self.last_k = last_k
        self.averaged_path: Path | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.dirpath / f"epoch{trainer.current_epoch:03d}.ckpt", weights_only=True)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            for old in epoch_checkpoints(self.dirpath)[: -self.last_k]:
                remove(old)  # a file, or a directory of shards (hardware=fsdp)
        trainer.strategy.barrier()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        paths = epoch_checkpoints(self.dirpath)[-self.last_k :]
        if not paths:
            return
        averaged = average_checkpoints(paths)
        load_full_state_dict(pl_module, averaged["state_dict"])
        self.averaged_path = self.dirpath.parent / "averaged.ckpt"
        if trainer.is_global_zero:
            save_atomic(averaged, self.averaged_path)
        trainer.strategy.barrier()

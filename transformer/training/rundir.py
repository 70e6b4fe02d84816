"""A run directory belongs to one run: what keeps two processes, or two runs, from mixing their files in it.

- `run_directory(config)`: while a run trains, its global rank 0 holds `<run dir>/.train.lock` (an flock, with its
  host and pid written inside), so a second process refuses to train into a live run directory. The lock of a
  process that is gone is free to the kernel and is taken over, with a warning. The other ranks of the same run
  share the directory without locking. Holding it, rank 0 removes the temporary files a killed run left in
  checkpoints/, and makes room for a fresh run (`make_room`).
- `make_room(config)`: a run that starts afresh (resume=never, or no run_name) refuses a run directory that
  already holds a run, unless overwrite=true, which moves the old files aside to `<run dir>.old-<time>/`.
- `check_relaunch(...)`: a resumed run whose model or optimizer settings (or tokenizer, or labels) differ from its
  checkpoint's stops, naming the keys, unless `allow_changes` lists them; and even then only when the checkpoint's
  tensors still fit the model and the optimizer's parameter groups (and its epoch trainer.max_epochs).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from transformer.checkpoint import Artifacts, load_checkpoint, remove_orphaned_temporaries
from transformer.errors import ConfigError, UserError
from transformer.schema import TrainConfig

log = logging.getLogger(__name__)

LOCK_NAME = ".train.lock"
HYDRA_DIR = ".hydra"  # Hydra writes it (and <job>.log) into the run directory before the job starts
NO_LOCKS = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)  # a filesystem without flock (Lustre without -o flock)
# how the model computes, not what: free to change on a relaunch
RUNTIME_MODEL_KEYS = ("backend", "activation_checkpointing", "fused_loss")
REGROUPING = ("optim.layer_decay", "optim.freeze_embeddings_steps", "optim.no_decay")  # change the param groups

_held: dict[Path, int | None] = {}  # the run directories this process holds (stages.run holds one across stages)


class RunDirectoryInUse(UserError):
    """Another live process trains in this run directory."""


def auto_resume(config: TrainConfig) -> bool:
    """Whether the run continues from its run directory's newest checkpoint (resume=auto, or a run_name)."""
    return config.resume == "auto" or (config.resume is None and config.run_name is not None)


def starts_fresh(config: TrainConfig) -> bool:
    """Whether the run ignores what its run directory holds: resume=never, or no run_name, and no ckpt_path."""
    return not config.ckpt_path and not auto_resume(config)


def launched_as_rank_zero() -> bool:
    """Whether this process is the run's global rank 0, from what the launchers set before it starts (there is no
    Trainer yet): torchrun's RANK; LOCAL_RANK and NODE_RANK for the processes Lightning starts; SLURM_PROCID for
    srun's tasks."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    if int(os.environ.get("LOCAL_RANK", 0)) or int(os.environ.get("NODE_RANK", 0)):
        return False
    return int(os.environ.get("SLURM_PROCID", 0)) == 0


@contextmanager
def run_directory(config: TrainConfig) -> Iterator[Path]:
    """Own config.paths.output_dir while training (see the module docstring); reentrant within a process."""
    run = Path(config.paths.output_dir).resolve()
    if run in _held or not launched_as_rank_zero():
        yield run
        return
    _held[run] = _lock(run / LOCK_NAME)
    try:
        removed = remove_orphaned_temporaries(run / "checkpoints")
        if removed:
            names = ", ".join(path.name for path in removed)
            log.warning("removed %d temporary file(s) a killed run left in %s: %s", len(removed), run, names)
        make_room(config)
        yield run
    finally:
        _unlock(run / LOCK_NAME, _held.pop(run))


def _lock(path: Path) -> int | None:
    """The lock file's descriptor, locked (None where the filesystem has no locks, with a warning)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise RunDirectoryInUse(
                f"run directory {path.parent} is in use by another training process ({owner}): wait for it to "
                f"end or stop it, or train into another directory (run_name=<new name>)"
            ) from None
        except OSError as error:
            os.close(fd)
            if error.errno not in NO_LOCKS:
                raise
            log.warning("cannot lock %s (%s): nothing keeps a second process out of it", path, error.strerror)
            return None
        try:  # the previous owner may have removed the file between our open and our lock: lock the new one
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    if os.fstat(fd).st_size:
        log.warning("taking over the lock of %s: its owner (%s) is gone", path.parent, _owner(fd))
    started = datetime.datetime.now().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": started}).encode(), 0)
    return fd


def _owner(fd: int) -> str:
    try:
        owner = json.loads(os.pread(fd, 4096, 0))
        return f"pid {owner['pid']} on host {owner['host']}, since {owner['started']}"
    except (ValueError, KeyError, TypeError):
        return "its pid and host not yet written"


def _unlock(path: Path, fd: int | None) -> None:
    if fd is None:
        return
    path.unlink(missing_ok=True)  # before unlocking: whoever locks next finds the file gone and opens a new one
    os.close(fd)


def leftovers(run: Path) -> list[Path]:
    """What earlier runs left in a run directory: anything but the lock and Hydra's files of this launch."""
    if not run.is_dir():
        return []
    ignored = (LOCK_NAME, HYDRA_DIR)
    return sorted(p for p in run.iterdir() if p.name not in ignored and not (p.suffix == ".log" and p.is_file()))


def make_room(config: TrainConfig) -> None:
    """A fresh run gets an empty run directory: refused when it holds a run, unless overwrite=true moves the old
    files (and a copy of the log, which this launch appends to) aside to `<run dir>.old-<time>/`."""
    if not starts_fresh(config):
        return
    run = Path(config.paths.output_dir)
    found = leftovers(run)
    if not found:
        return
    shown = ", ".join(path.name for path in found[:4]) + (", ..." if len(found) > 4 else "")
    if not config.overwrite:
        raise ConfigError(
            f"run directory {run} already holds a run ({shown}) and this run starts afresh (resume="
            f"{config.resume or 'null'}, run_name={config.run_name or 'null'}): continue it with resume=auto, "
            f"start over with overwrite=true (moves the old files aside), or train into another run_name"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = run.with_name(f"{run.name}.old-{stamp}"), 1
    while True:
        try:
            aside.mkdir()
            break
        except FileExistsError:
            n += 1
            aside = run.with_name(f"{run.name}.old-{stamp}-{n}")
    for path in found:
        shutil.move(path, aside / path.name)
    for path in run.glob("*.log"):  # Hydra's log handler holds it open: copy it, then empty it in place
        shutil.copy2(path, aside / path.name)
        os.truncate(path, 0)
    log.warning("overwrite=true: moved the previous run in %s (%s) to %s", run, shown, aside)


def changed_settings(stored: Artifacts, new: Artifacts) -> dict[str, tuple[Any, Any]]:
    """{key: (the checkpoint's value, this run's)} for the model's and optimizer's settings, the tokenizer and the
    labels that differ."""
    changes: dict[str, tuple[Any, Any]] = {}
    for group, old_values, new_values in (
        ("model", asdict(stored.model), asdict(new.model)),
        ("optim", asdict(stored.optim), asdict(new.optim)),
    ):
        for key, value in new_values.items():
            if old_values.get(key) != value and not (group == "model" and key in RUNTIME_MODEL_KEYS):
                changes[f"{group}.{key}"] = (old_values.get(key), value)
    if (stored.src_tokenizer, stored.tgt_tokenizer) != (new.src_tokenizer, new.tgt_tokenizer):
        changes["tokenizer"] = ("the checkpoint's SentencePiece model", "another one (the dataset settings differ)")
    if stored.label_names != new.label_names:
        changes["label_names"] = (stored.label_names, new.label_names)
    return changes


def check_relaunch(path: str | Path, config: TrainConfig, artifacts: Artifacts, module: torch.nn.Module) -> None:
    """A resumed run continues its checkpoint's: what it changes must be in allow_changes, and must still fit the
    checkpoint's tensors (see the module docstring). Called on every rank: they all read the same files."""
    checkpoint = load_checkpoint(path, tensors=False)
    epoch, max_epochs = checkpoint.get("epoch", 0), config.trainer.get("max_epochs")
    if max_epochs is not None and max_epochs != -1 and epoch > max_epochs:  # Lightning's own check, as a traceback
        raise ConfigError(
            f"{path} was saved in epoch {epoch}, after trainer.max_epochs={max_epochs}: raise trainer.max_epochs to "
            f"resume it, or start afresh (another run_name, or resume=never overwrite=true)"
        )
    changes = changed_settings(Artifacts.of(checkpoint, path), artifacts)
    refused = [key for key in changes if key not in config.allow_changes]
    if refused:
        shown = "; ".join(f"{key}: {changes[key][0]!r} there, {changes[key][1]!r} now" for key in refused)
        raise ConfigError(
            f"relaunching from {path} with settings it was not trained with ({shown}): relaunch with its values, "
            f"or continue with the new ones with allow_changes=[{','.join(refused)}], or start afresh (another "
            f"run_name, or resume=never overwrite=true)"
        )
    if not changes:
        return
    regrouped = [key for key in changes if key in REGROUPING]
    if regrouped:
        raise ConfigError(
            f"{', '.join(regrouped)} cannot change when resuming from {path}: it regroups the optimizer's parameters, "
            f"whose saved state then no longer fits; start a new run from its weights with init_from={path}"
        )
    if any(key.startswith("model.") or key == "tokenizer" for key in changes):
        if "state_dict" not in checkpoint:  # a sharded checkpoint read without its tensors
            checkpoint = load_checkpoint(path)
        now = {name: tuple(value.shape) for name, value in module.state_dict().items()}
        saved = {name: tuple(value.shape) for name, value in checkpoint["state_dict"].items()}
        differ = sorted(name for name in now.keys() | saved.keys() if now.get(name) != saved.get(name))
        if differ:
            name = differ[0]
            raise ConfigError(
                f"the changed {', '.join(changes)} give {name} the shape {now.get(name, 'none')}, but {path} "
                f"holds {saved.get(name, 'none')} ({len(differ)} tensors differ): a model of another size cannot "
                f"resume; start a new run from its matching weights with init_from={path}"
            )
    shown = "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())
    log.warning("resuming from %s with changed settings (allow_changes): %s", path, shown)

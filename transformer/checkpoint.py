"""The checkpoint format, owned here: what a checkpoint holds, and saving, loading, finding and resolving checkpoints.

A checkpoint is Lightning's dict (state_dict, and for a full checkpoint optimizer_states, lr_schedulers, loops,
callbacks) plus our `transformer` entry: the `Artifacts` that make it self-contained (the configs, the tokenizers,
the labels and the limits the model was trained with). Every other module reads them through `Artifacts.of(...)`,
by typed field; this module alone knows how they are stored.

Stored, the artifacts are plain values (`Artifacts.to_dict`), so checkpoints load with
torch.load(weights_only=True): no pickled code runs.

    format          FORMAT (1 and 2 still load; 3 stores max_source_len)
    objective       classification | seq2seq | pretrain
    task            the task name (sentiment, translation, ...)
    config          the resolved training config (a plain dict)
    model_config    the ModelConfig's fields
    src_tokenizer   the tokenizer's bytes (data/tokenizer.py: a SentencePiece model, or a pretrained model's tokenizer
                    as a JSON document); tgt_tokenizer: the target one, or None when shared
    label_names     classification labels, in id order
    max_source_len  the longest source the model reads (the dataset's limit, capped by the model's positions)

A sharded checkpoint (hardware=fsdp, training/fsdp.py) is a directory `<name>.ckpt/` of torch.distributed.checkpoint
shards (state_dict, optimizer_0) and `meta.pt` (everything else). load_checkpoint gathers it into the same dict
as a file's, so evaluation, prediction and averaging take either kind.
"""

from __future__ import annotations

import copy
import errno
import io
import json
import logging
import os
import pickle
import re
import shutil
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from transformer.config import ModelConfig
from transformer.data import (
    DatasetConfig,
    Tokenizer,
    pretrained_tokenizer,  # noqa: F401  (registers the pretrained kinds)
)
from transformer.data.noising import NoiseConfig
from transformer.decoding import DecodingConfig
from transformer.errors import UserError
from transformer.optim import OptimConfig
from transformer.schema import build

FORMAT = 3  # 2: task metrics moved from config.decoding.metrics to config.task.metrics; 3: max_source_len stored
READABLE_FORMATS = (1, 2, 3)
KEY = "transformer"  # our entry in Lightning's checkpoint dict
FULL_KEYS = ("optimizer_states", "lr_schedulers", "loops")  # what resuming needs beyond the weights
ZIP_MAGIC = b"PK\x03\x04"  # the first bytes of a torch.save file: a zip archive's local file header
SHARDED_META = "meta.pt"  # Lightning's name for a sharded checkpoint's non-tensor part
RUN_DIR_CHOICES = ("averaged", "best", "last")


log = logging.getLogger(__name__)


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or not of the expected kind."""


@dataclass
class Artifacts:
    """What a checkpoint holds besides the tensors: everything needed to rebuild, run and score the model."""

    objective: str  # classification | seq2seq | pretrain
    task: str
    config: dict[str, Any]  # the resolved training config, as composed (typed views below)
    model: ModelConfig
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer  # the same object as src_tokenizer when source and target share one vocabulary
    label_names: list[str] = field(default_factory=list)
    max_source_len: int = 0  # 0: derived from the config (source_limit)
    format: int = FORMAT

    def __post_init__(self) -> None:
        if not self.max_source_len:
            self.max_source_len = source_limit(self.config, self.model)

    @classmethod
    def new(
        cls, config: dict[str, Any], model: ModelConfig, src: Tokenizer, tgt: Tokenizer, labels: list[str] | None
    ) -> Artifacts:
        """The artifacts of a training run, from its resolved config (a plain dict)."""
        task = config["task"]
        return cls(task["objective"], task["name"], config, model, src, tgt, list(labels or []))

    @classmethod
    def of(cls, checkpoint: dict[str, Any], path: str | Path = "the checkpoint") -> Artifacts:
        """The artifacts of a checkpoint loaded by load_checkpoint."""
        return cls.from_dict(checkpoint[KEY], path)

    @classmethod
    def from_dict(cls, values: dict[str, Any], path: str | Path = "the checkpoint") -> Artifacts:
        """Stored values (any readable format) as Artifacts."""
        values = dict(values)
        config = copy.deepcopy(values["config"])
        if values["format"] == 1:  # task metrics lived in the decoding config
            metrics = config.get("decoding", {}).pop("metrics", None)
            default = ["acc", "f1"] if values["objective"] != "seq2seq" else []
            config["task"].setdefault("metrics", metrics or default)
        src = Tokenizer.from_bytes(values["src_tokenizer"])
        tgt = src if values["tgt_tokenizer"] is None else Tokenizer.from_bytes(values["tgt_tokenizer"])
        return cls(
            objective=values["objective"],
            task=values["task"],
            config=config,
            model=ModelConfig.from_dict(values["model_config"]),
            src_tokenizer=src,
            tgt_tokenizer=tgt,
            label_names=list(values.get("label_names") or []),
            max_source_len=values.get("max_source_len") or 0,
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored form: plain values and bytes only (weights_only loading)."""
        return {
            "format": FORMAT,
            "objective": self.objective,
            "task": self.task,
            "config": self.config,
            "model_config": asdict(self.model),
            "src_tokenizer": self.src_tokenizer.to_bytes(),
            "tgt_tokenizer": None if self.shared_tokenizer else self.tgt_tokenizer.to_bytes(),
            "label_names": list(self.label_names),
            "max_source_len": self.max_source_len,
        }

    def store(self, checkpoint: dict[str, Any]) -> None:
        """Put the artifacts into a Lightning checkpoint dict (LightningModule.on_save_checkpoint)."""
        checkpoint[KEY] = self.to_dict()

    @property
    def shared_tokenizer(self) -> bool:
        return self.tgt_tokenizer is self.src_tokenizer

    def same_data(self, other: Artifacts) -> bool:
        """Whether both read and write the same tokens and labels (ensembles, init_from)."""
        return (
            self.objective == other.objective
            and self.src_tokenizer == other.src_tokenizer
            and self.tgt_tokenizer == other.tgt_tokenizer
            and self.label_names == other.label_names
        )

    # typed views of the stored training config

    @property
    def metrics(self) -> list[str]:
        return list(self.config["task"]["metrics"])

    @property
    def seed(self) -> int:
        return self.config.get("seed", 0)

    @property
    def dataset(self) -> DatasetConfig:
        return build(DatasetConfig, self.config["dataset"], "the checkpoint's dataset")

    @property
    def optim(self) -> OptimConfig:
        return build(OptimConfig, self.config["optim"], "the checkpoint's optim")

    @property
    def noise(self) -> NoiseConfig:
        return build(NoiseConfig, self.config.get("noise") or {}, "the checkpoint's noise")

    def decoding(self, overrides: dict[str, Any] | None = None) -> DecodingConfig:
        """The run's decoding settings, with `overrides` (None values keep the run's setting)."""
        values = dict(self.config.get("decoding") or {})
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return build(DecodingConfig, values, "decoding")


def source_limit(config: dict[str, Any], model: ModelConfig) -> int:
    """The longest source the model reads: the dataset's max_source_len, never beyond the model's positions."""
    wanted = (config.get("dataset") or {}).get("max_source_len") or model.max_length
    return min(wanted, model.max_length)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but refusing NaN/inf tensors and writing through a temporary file and a
    rename (write_atomic): a kill during the write (a preempted job, an out-of-memory kill) never leaves a
    truncated checkpoint under the final name, and a full disk leaves nothing behind."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        check_finite(checkpoint, path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(buffer.getbuffer(), path)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
TEMPORARY = re.compile(r"\..+\.tmp(-\d+)?")  # `.<name>.tmp-<pid>` (write_atomic), `.<name>.tmp` (sharded, older)


def write_atomic(data: bytes | memoryview, path: str | Path) -> None:
    """`data` into a temporary file beside `path`, flushed to disk, then renamed over `path`. A failed write
    removes the temporary file; a full disk is a one-line CheckpointError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(path)
    except OSError as error:
        if error.errno in DISK_FULL:
            raise CheckpointError(
                f"cannot write {path}: {error.strerror} ({len(data) / 2**20:.1f} MB to write); nothing was left "
                f"half-written and the files written before are intact: free some space, then relaunch the same "
                f"command to resume"
            ) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)  # after a failure (a successful rename took it)


def remove_orphaned_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files (and sharded temporary directories) that a killed run left in `folder`; only
    safe while no other process writes there (the run directory's owner: training/rundir.py)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [path for path in folder.iterdir() if TEMPORARY.fullmatch(path.name)]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def nonfinite_tensors(value: Any, name: str = "") -> list[str]:
    """The dotted names of the floating-point tensors in a (nested) checkpoint value that hold NaN/inf; a sharded
    tensor (DTensor) is checked by its local shard."""
    found: list[str] = []
    if isinstance(value, torch.Tensor):
        local = value.to_local() if hasattr(value, "to_local") else value
        if local.is_floating_point() and not bool(torch.isfinite(local).all()):
            found.append(name)
    elif isinstance(value, dict):
        for key, item in value.items():
            found += nonfinite_tensors(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found += nonfinite_tensors(item, f"{name}.{i}" if name else str(i))
    return found


def check_finite(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse to write a checkpoint whose weights or optimizer state hold NaN/inf: it would resume into the same
    failure, and evaluate or predict nan."""
    refuse_nonfinite(path, nonfinite_state(checkpoint))


def nonfinite_state(checkpoint: dict[str, Any]) -> list[str]:
    """The names of the NaN/inf tensors among a checkpoint's weights and optimizer state (a rank's own shards)."""
    return nonfinite_tensors({key: checkpoint[key] for key in ("state_dict", "optimizer_states") if key in checkpoint})


def refuse_nonfinite(path: str | Path, bad: list[str]) -> None:
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(
            f"refusing to write {path}: {shown} hold NaN/inf, so training diverged; the checkpoints written before "
            f"are unchanged: lower optim.lr, raise optim.warmup_steps or use precision=32-true"
        )


def is_sharded(path: str | Path) -> bool:
    """Whether `path` is a sharded checkpoint directory (training/fsdp.py)."""
    path = Path(path)
    return path.is_dir() and (path / ".metadata").is_file() and (path / SHARDED_META).is_file()


def load_checkpoint(path: str | Path, objective: str | None = None, tensors: bool = True) -> dict[str, Any]:
    """torch.load with weights_only=True (no pickled code runs), then checks that it is one of ours.

    A sharded checkpoint is gathered into one dict (its optimizer state as `optimizer_states`, like a file's);
    with tensors=False only its metadata is read, for a quick look, and it is marked `sharded` (a file's tensors
    are then memory-mapped: read when used)."""
    path = Path(path)
    if not path.is_file() and not is_sharded(path):
        raise CheckpointError(
            f"checkpoint {path} does not exist: pass a run directory or <run dir>/checkpoints/<name>.ckpt"
        )
    if path.is_file():
        check_archive(path)
    try:
        if path.is_dir():
            checkpoint = read_sharded(path, tensors)
        else:  # without tensors: memory-mapped, so only what is looked at is read
            checkpoint = torch.load(path, "cpu", weights_only=True, mmap=not tensors)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({reason[:120]}): copy it again or use another one"
        ) from None
    artifacts = checkpoint.get(KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(artifacts, dict) or artifacts.get("format") not in READABLE_FORMATS:
        raise CheckpointError(f"{path} is not a checkpoint written by this framework's scripts/train.py")
    if objective is not None and artifacts["objective"] != objective:
        raise CheckpointError(
            f"{path} is a {artifacts['task']} ({artifacts['objective']}) checkpoint, but this needs a "
            f"{objective} one: pass a checkpoint trained with a matching task"
        )
    return checkpoint


def check_archive(path: Path) -> None:
    """A checkpoint file is the zip archive that torch.save writes (PyTorch >= 1.6): anything else (a text file,
    random bytes) is refused here, before torch.load's unpickler fails on it with an arbitrary error (IndexError,
    KeyError, ...)."""
    try:
        with path.open("rb") as file:
            head = file.read(len(ZIP_MAGIC))
    except OSError as error:
        reason = error.strerror or error
        raise CheckpointError(f"cannot read checkpoint {path} ({reason}): check its permissions") from None
    if head != ZIP_MAGIC:
        what = "it is empty" if not head else "it does not start as the zip archive torch.save writes"
        raise CheckpointError(
            f"checkpoint {path} is not a PyTorch checkpoint ({what}): pass a .ckpt written by scripts/train.py, "
            f"or its run directory"
        )


def read_sharded(path: Path, tensors: bool) -> dict[str, Any]:
    """A sharded checkpoint as one dict. Gathering uses Lightning's reader of torch.distributed.checkpoint
    directories (what its consolidate_checkpoint command runs), in one process, in CPU memory."""
    from lightning_fabric.utilities.load import _load_distributed_checkpoint

    if not tensors:
        checkpoint = torch.load(path / SHARDED_META, map_location="cpu", weights_only=True)
        checkpoint["sharded"] = True
        return checkpoint
    checkpoint = _load_distributed_checkpoint(path)
    optimizers = sorted(key for key in checkpoint if key.startswith("optimizer_") and key[10:].isdigit())
    if optimizers:
        checkpoint["optimizer_states"] = [checkpoint.pop(key) for key in optimizers]
    checkpoint["sharded"] = True
    return checkpoint


def is_full(checkpoint: dict[str, Any]) -> bool:
    """Whether training can resume from it (weights-only checkpoints, e.g. averaged.ckpt, cannot). A sharded
    checkpoint read without its tensors counts as full when it has the loop and scheduler state: a weights-only
    save (epoch checkpoints for averaging) has neither."""
    keys = FULL_KEYS[1:] if checkpoint.get("sharded") else FULL_KEYS
    return all(key in checkpoint for key in keys)


def check_resumable(path: str | Path, task: str, checkpoint: dict[str, Any] | None = None) -> None:
    """`ckpt_path=` must be a full checkpoint of this framework and of the same task; checked before any work.
    `checkpoint`: the file's content when it is already loaded."""
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(path, tensors=False)
    artifacts = checkpoint[KEY]
    if not is_full(checkpoint):
        raise CheckpointError(
            f"ckpt_path={path} holds weights only (no optimizer or loop state), so training cannot resume from it: "
            f"pass a full checkpoint such as <run dir>/checkpoints/last.ckpt"
        )
    if artifacts["task"] != task:
        raise CheckpointError(
            f"ckpt_path={path} is a {artifacts['task']} checkpoint, but this run trains task={task}: "
            f"resume with the task it was trained on"
        )


def resolve_checkpoint(path: str | Path) -> tuple[Path, str]:
    """A checkpoint file, or the checkpoint a run directory stands for, and which one it is.

    A run directory (or its checkpoints/ folder) stands for its averaged weights when it has them, else the best
    checkpoint by the task's monitored metric (from metrics.json), else last.ckpt. The checkpoint is always one
    inside the given directory: metrics.json names it relative to the run, and an absolute name (written before
    runs were relocatable) that points outside it, into the run this one was copied or moved from, is read as
    the file of that name in this run's checkpoints/.
    """
    path = Path(path)
    if path.is_file() or not path.is_dir() or is_sharded(path):
        return path, "file"
    run = path.parent if path.name == "checkpoints" and not (path / "checkpoints").is_dir() else path
    folder = run / "checkpoints"
    candidates = {"averaged": folder / "averaged.ckpt", "last": folder / "last.ckpt"}
    metrics = run / "metrics.json"
    if metrics.is_file():
        best = json.loads(metrics.read_text()).get("best_checkpoint")
        if best:
            best = Path(best)
            if best.is_absolute() and not best.is_relative_to(run.absolute()):
                best = folder / best.name
            candidates["best"] = run / best
    for choice in RUN_DIR_CHOICES:
        if choice in candidates and (candidates[choice].is_file() or is_sharded(candidates[choice])):
            return candidates[choice], choice
    raise CheckpointError(
        f"run directory {run} has no checkpoint (looked for checkpoints/averaged.ckpt, the best one named in "
        f"metrics.json, checkpoints/last.ckpt): pass a .ckpt file"
    )


def run_relative(path: str | Path, run_dir: str | Path) -> str:
    """A checkpoint's name as metrics.json stores it: relative to the run directory, so that the run can be copied
    or moved (a path outside the run stays absolute)."""
    try:
        return str(Path(path).absolute().relative_to(Path(run_dir).absolute()))
    except ValueError:
        return str(Path(path).absolute())


def run_directory(checkpoint: str | Path) -> Path:
    """The run directory a checkpoint belongs to (`<run>/checkpoints/<name>.ckpt`, or one level deeper such as
    `checkpoints/epochs/`), else the checkpoint's own folder: where the tools write their outputs by default."""
    path = Path(checkpoint).absolute()
    for parent in path.parents[:2]:
        if parent.name == "checkpoints":
            return parent.parent
    return path.parent


def open_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Load a checkpoint file, or the one a run directory stands for (saying which on stderr)."""
    resolved, choice = resolve_checkpoint(path)
    if choice != "file":
        print(f"using {resolved} (the run's {choice} checkpoint)", file=sys.stderr)
    return resolved, load_checkpoint(resolved)


def find_resume_checkpoint(run_dir: str | Path, task: str) -> Path | None:
    """The newest full checkpoint under <run_dir>/checkpoints (last, step, top-k or preemption ones), or None.

    Newest by modification time; one that cannot be read (truncated, corrupt) or whose weights hold NaN/inf is
    skipped with a one-line warning and the next newest is used. Weights-only files (epochs/, averaged.ckpt)
    cannot resume training and are not considered.
    """
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob("*.ckpt") if p.name != "averaged.ckpt"]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        try:
            checkpoint = load_checkpoint(path, tensors=False)
        except CheckpointError as error:
            log.warning("skipping %s: %s", path.name, error)
            continue
        bad = nonfinite_tensors(checkpoint.get("state_dict", {}))  # written before saves refused them
        if bad:
            log.warning("skipping %s: its weights hold NaN/inf (%s)", path.name, bad[0])
            continue
        if is_full(checkpoint):
            check_resumable(path, task, checkpoint)
            return path
    return None


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save through write_atomic, refusing NaN/inf tensors."""
    check_finite(obj, path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(buffer.getbuffer(), path)


def write_json(path: str | Path, values: dict[str, Any]) -> None:
    write_atomic((json.dumps(values, indent=2, sort_keys=True) + "\n").encode(), path)

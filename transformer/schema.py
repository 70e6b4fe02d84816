"""The schema of every config: Hydra structured configs, registered in Hydra's ConfigStore.

Each group's fields, types and defaults are defined once, by a dataclass: `model` by ModelConfig, `dataset` by
DatasetConfig, `optim` by OptimConfig, `batching` by BatchingConfig, `decoding` by DecodingConfig, `task` and
`paths` below. The YAML files under configs/ hold values only. Each entry config (train.yaml,
evaluate.yaml, ...) starts its defaults list with its schema (`train_schema`, ...), so composition rejects a
misspelled key or a wrongly typed value, naming the key, before any data is prepared; `typed(cfg)` then builds the
dataclasses, whose `__post_init__` checks ranges and combinations.

Lightning's own settings (`trainer`, `callbacks`, `logger`) stay open dicts: they are passed to Lightning, whose
signatures we do not copy.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from transformer.config import DecodingConfig, ModelConfig, OptimConfig
from transformer.data.config import BatchingConfig, DatasetConfig
from transformer.data.noising import NoiseConfig
from transformer.errors import ConfigError
from transformer.metrics import GENERATION_METRICS

OBJECTIVES = ("classification", "seq2seq", "pretrain")
CLASSIFICATION_METRICS = ("acc", "f1")
PRETRAIN_METRICS = ("acc", "ppl")  # of the predicted tokens; ppl = exp(val/loss)
TASK_METRICS = {"classification": CLASSIFICATION_METRICS, "seq2seq": GENERATION_METRICS, "pretrain": PRETRAIN_METRICS}
DATASET_OBJECTIVE = {"classification": "classification", "seq2seq": "seq2seq", "pretrain": "text"}


@dataclass
class TaskConfig:
    """What to optimize and how to score it: the objective, its metrics and the monitored one."""

    name: str = MISSING
    objective: str = MISSING  # classification | seq2seq | pretrain
    metrics: list[str] = field(default_factory=list)  # classification: acc, f1; seq2seq: bleu, chrf, rouge1/2/L;
    # pretrain: acc, ppl
    monitor: str = "val/loss"  # what checkpointing and early stopping watch; one of logged_metrics()
    mode: str = "min"  # min | max

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"task.objective={self.objective!r} is not one of {OBJECTIVES}")
        known = TASK_METRICS[self.objective]
        unknown = sorted(set(self.metrics) - set(known))
        if unknown:
            raise ConfigError(f"task.metrics has {unknown}, which a {self.objective} task cannot compute: use {known}")
        if self.mode not in ("min", "max"):
            raise ConfigError(f"task.mode={self.mode!r} is not one of ('min', 'max')")
        check_monitor("task.monitor", self.monitor, self)

    def logged_metrics(self) -> list[str]:
        """The validation metrics this task logs every epoch."""
        return ["val/loss", *(f"val/{name}" for name in self.metrics)]


def check_monitor(key: str, monitor: str | None, task: TaskConfig) -> None:
    """A monitored metric the task never logs would fail only after the first epoch: refuse it up front."""
    if monitor is not None and monitor not in task.logged_metrics():
        raise ConfigError(
            f"{key}={monitor!r} is never logged by task {task.name!r}; choose one of {', '.join(task.logged_metrics())}"
        )


def check_objectives(task: TaskConfig, dataset: DatasetConfig) -> None:
    wanted = DATASET_OBJECTIVE[task.objective]
    if dataset.objective != wanted:
        raise ConfigError(
            f"task {task.name!r} needs a {wanted} dataset, but dataset {dataset.name!r} is "
            f"{dataset.objective}: pick a matching dataset= or task="
        )


@dataclass
class PathsConfig:
    data_root: str | None = "${oc.env:TRANSFORMER_DATA_ROOT,null}"  # raw local datasets, e.g. ../shared/data
    cache_dir: str = "${oc.env:TRANSFORMER_CACHE_DIR,data}"  # prepared caches: <cache_dir>/<dataset.name>/
    output_dir: str | None = None  # training: the run directory (train.yaml: Hydra's output dir)


@dataclass
class CheckpointConfig:
    """Checkpoints during an epoch, for relaunching (on top of the epoch-end ones of callbacks.model_checkpoint)."""

    every_n_steps: int | None = None  # optimizer steps between checkpoints
    every_n_minutes: float | None = None  # wall-clock minutes between checkpoints
    keep_last: int = 2  # how many of these to keep (the newest)

    def __post_init__(self) -> None:
        for key in ("every_n_steps", "every_n_minutes"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"checkpoint.{key} must be > 0 or null, got {value}")
        if self.keep_last < 1:
            raise ConfigError(f"checkpoint.keep_last must be >= 1, got {self.keep_last}")


@dataclass
class PreemptionConfig:
    """What a preemption signal does: checkpoint at the next step, requeue under SLURM, exit with status 75."""

    enabled: bool = True
    signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])
    requeue: bool = True  # `scontrol requeue` the SLURM job (sbatch --requeue), which then resumes


@dataclass
class FSDPConfig:
    """hardware.fsdp: how the model is sharded (only read with trainer.strategy=fsdp)."""

    reshard_after_forward: bool = True  # free the gathered weights after each block's forward (ZeRO-3); false:
    # keep them until the backward (ZeRO-2-like: more memory, one all-gather less per block)
    bf16_params: bool = True  # under bf16 precision, gather weights in bf16 (half the traffic); gradients are
    # reduced in fp32 and the optimizer keeps fp32 weights either way
    sharded_checkpoints: bool = True  # each rank writes its shard; false: rank 0 gathers one full .ckpt file


@dataclass
class HardwareConfig:
    """What the `hardware` group's Trainer settings cannot say."""

    peak_flops: float | None = None  # per device, for MFU; null: the bf16 peak of a known GPU (H100, A100, ...)
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)  # read with trainer.strategy=fsdp (hardware=fsdp)
    # bf16 weights, cast once per step from fp32 masters in the optimizer (precision bf16-true), instead of autocast
    # casting fp32 weights at every call; where the precision is bf16. hardware=gpu: true. Not with hardware=fsdp
    # (its hardware.fsdp.bf16_params does the same per shard)
    bf16_weights: bool = False
    # GPU only: compile each block with CUDA graphs (torch.compile mode="reduce-overhead"), one recording per
    # bucketed training shape; implies compile=true
    cuda_graphs: bool = False


@dataclass
class TrainConfig:
    task: TaskConfig = MISSING
    dataset: DatasetConfig = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)  # seq2seq tasks only
    noise: NoiseConfig = field(default_factory=NoiseConfig)  # task=pretrain only: how the text is corrupted
    paths: PathsConfig = field(default_factory=PathsConfig)
    trainer: dict[str, Any] = field(default_factory=dict)  # pytorch_lightning.Trainer arguments (hardware=...)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> {_target_: ..., args}
    logger: dict[str, Any] = field(default_factory=dict)  # name -> {_target_: ..., args}
    seed: int = 42
    precision: str = "auto"  # auto: bf16-mixed where the CPU or GPU supports bf16, else 32-true; or Lightning's
    ckpt_path: str | None = None  # resume from this checkpoint: optimizer, scheduler, step and data order
    run_name: str | None = None  # a stable run directory, outputs/<task>/<run_name>; train.yaml: $SLURM_JOB_ID
    resume: str | None = None  # auto: continue from the run directory's newest checkpoint | never; null: auto
    # when run_name is set. A run that starts afresh (never, or null without run_name) refuses a run directory
    # that already holds a run, unless overwrite=true
    overwrite: bool = False  # a fresh run moves the run directory's old contents aside, to <run dir>.old-<time>/
    # settings a resumed run may change from its checkpoint's: model.<key> (those that keep the tensors' shapes),
    # optim.<key> (except the ones that regroup the parameters), tokenizer, label_names; any other difference stops
    # the relaunch, naming the keys (training/rundir.py)
    allow_changes: list[str] = field(default_factory=list)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)
    max_nonfinite_steps: int = 10  # a NaN/inf loss or gradient norm skips its step; this many in a row stop the run
    compile: bool = False  # torch.compile each block for training, batches in length buckets (benchmarks/README.md)
    init_from: str | None = None  # start from this checkpoint's (or run directory's) matching weights
    init_tokenizer: str = "auto"  # auto | checkpoint | run: whose tokenizer encodes the data (training/init.py)
    # Hydra overrides of a pretraining run (task=pretrain ...) that trains first, in <run dir>/pretrain, and whose
    # final weights become init_from: a pretrain-then-fine-tune recipe in one command (training/stages.py)
    pretrain_run: list[str] = field(default_factory=list)
    verbose: bool = False  # true: every library line and warning (transformer/console.py drops the noise)

    def __post_init__(self) -> None:
        check_objectives(self.task, self.dataset)
        for name, node in self.callbacks.items():
            if isinstance(node, dict) and "monitor" in node:
                check_monitor(f"callbacks.{name}.monitor", node["monitor"], self.task)
        check_trainer_args(self.trainer)
        if self.hardware.cuda_graphs and self.trainer.get("accelerator") not in ("gpu", "cuda"):
            raise ConfigError(
                f"hardware.cuda_graphs=true needs a GPU, but trainer.accelerator={self.trainer.get('accelerator')}: "
                f"use hardware=gpu, or drop hardware.cuda_graphs"
            )
        if self.resume not in (None, "auto", "never"):
            raise ConfigError(f"resume={self.resume!r} is not one of auto, never (or null: auto with a run_name)")
        if self.run_name is not None and (not self.run_name or "/" in self.run_name):
            raise ConfigError(f"run_name={self.run_name!r} must be a plain directory name")
        if self.init_tokenizer not in ("auto", "checkpoint", "run"):
            raise ConfigError(f"init_tokenizer={self.init_tokenizer!r} is not one of auto, checkpoint, run")
        if self.max_nonfinite_steps < 1:
            raise ConfigError(f"max_nonfinite_steps must be >= 1, got {self.max_nonfinite_steps}")
        check_allow_changes(self.allow_changes)


RESUMABLE_CHANGES = ("tokenizer", "label_names")  # what allow_changes may name besides model.* and optim.*


def check_allow_changes(keys: list[str]) -> None:
    """allow_changes names settings a checkpoint stores: a misspelled key fails now, not at the relaunch."""
    known = [f"model.{f.name}" for f in fields(ModelConfig)] + [f"optim.{f.name}" for f in fields(OptimConfig)]
    known += RESUMABLE_CHANGES
    for key in keys:
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"allow_changes has {key!r}, which is no setting a checkpoint keeps{hint}: use model.<key>, "
                f"optim.<key>, tokenizer or label_names"
            )


MANAGED_TRAINER_ARGS = ("callbacks", "logger", "precision", "default_root_dir", "use_distributed_sampler")


def check_trainer_args(trainer: dict[str, Any]) -> None:
    """`trainer` is passed to pytorch_lightning.Trainer as it is: check its keys and simple value types against
    the installed Trainer's own signature (not a copy of it), so a typo fails now and not after data preparation."""
    import difflib
    import typing

    import pytorch_lightning as pl

    hints = typing.get_type_hints(pl.Trainer.__init__)
    for key, value in trainer.items():
        if key in MANAGED_TRAINER_ARGS:
            raise ConfigError(f"trainer.{key} is set from the top-level config: remove it from trainer (see --cfg job)")
        if key not in hints:
            close = difflib.get_close_matches(key, list(hints), n=1)
            hint = f" (did you mean trainer.{close[0]}?)" if close else ""
            raise ConfigError(f"trainer.{key} is not an argument of pytorch_lightning.Trainer{hint}")
        if not _fits(value, hints[key]):
            raise ConfigError(f"trainer.{key}={value!r} does not fit pytorch_lightning.Trainer's type {hints[key]}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a plain config value can be the argument; hints other than simple types are not checked."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return not isinstance(value, bool | int | float | str) or origin is None and hint is typing.Any


VALIDATION_DECODING = ("val_beam_size", "val_max_batches")  # how training validates; nothing to override later


def decoding_overrides() -> dict[str, Any]:
    """The `decoding` of the entry points that load a checkpoint (evaluate, predict, serve, attend): every other
    DecodingConfig key, null by default, which keeps the checkpoint's setting (restore_module); the keys are fixed,
    so composition rejects a misspelled one."""
    return {f.name: None for f in fields(DecodingConfig) if f.name not in VALIDATION_DECODING}


@dataclass
class PrepareConfig:
    task: TaskConfig = MISSING
    dataset: DatasetConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    num_proc: int | None = None  # encoding processes; None: from the CPU count and corpus size
    force: bool = False  # rebuild the cache even when it is valid
    verbose: bool = False  # true: every library line and warning (transformer/console.py drops the noise)

    def __post_init__(self) -> None:
        check_objectives(self.task, self.dataset)


@dataclass
class EvaluateConfig:
    ckpt: Any = MISSING  # a checkpoint, or a run directory (its averaged, best or last checkpoint); a list of them
    # ([a.ckpt,b.ckpt]) evaluates their ensemble
    split: str = "test"
    output_dir: str | None = None  # metrics and predictions; None: <run>/evaluate/<checkpoint name>/ in the
    # checkpoint's run directory
    dataset: DatasetConfig | None = None  # None: the dataset the checkpoint was trained on
    paths: PathsConfig = field(default_factory=PathsConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)  # eval_max_tokens: padded tokens per batch
    trainer: dict[str, Any] = field(default_factory=dict)  # pytorch_lightning.Trainer arguments (accelerator...)
    decoding: dict[str, Any] = field(default_factory=decoding_overrides)
    verbose: bool = False  # true: every library line and warning (transformer/console.py drops the noise)


@dataclass
class PredictConfig:
    ckpt: str = MISSING  # a checkpoint, or a run directory (its averaged, best or last checkpoint)
    text: str | None = None  # one input; otherwise `input` or standard input, one per line
    input: str | None = None
    batch_size: int = 32
    interactive: bool = False  # read lines from the terminal and answer each at once (a prompt, no batching)
    decoding: dict[str, Any] = field(default_factory=decoding_overrides)
    verbose: bool = False  # true: every library line and warning (transformer/console.py drops the noise)


@dataclass
class ExportConfig:
    ckpt: str = MISSING  # a checkpoint, or a run directory (its averaged, best or last checkpoint)
    format: str = "onnx"  # onnx | torch_export | hf (a save_pretrained folder for transformers: transformer/hf/)
    output_dir: str | None = None  # None: <run>/export_<format>/ in the checkpoint's run directory
    opset: int = 18  # ONNX opset
    check: bool = True  # run the exported graphs against PyTorch on a sample before finishing
    verbose: bool = False  # true: every library line and warning (transformer/console.py drops the noise)


@dataclass
class ServeConfig:
    ckpt: str = MISSING  # a checkpoint, or a run directory (its averaged, best or last checkpoint)
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port (the startup line gives the URL)
    max_batch_size: int = 32  # dynamic batching: concurrent requests' texts decoded together (a request is never
    # split, so one with more texts runs alone); 1 turns it off
    batch_timeout: float = 0.01  # seconds a request waits for others to join its batch
    max_texts: int = 32  # texts per request
    max_chars: int = 5000  # characters per text
    max_request_bytes: int = 2_097_152  # request body, checked before parsing
    decoding: dict[str, Any] = field(default_factory=decoding_overrides)  # the server's defaults; a request may
    # change these within the limits below
    max_beam_size: int = 8
    max_nbest: int = 8
    max_len_b: int = 256  # cap on a request's generated-token budget term
    # under load and abuse:
    max_queued: int = 64  # requests waiting for the model; the next one gets a 503 with Retry-After
    body_timeout: float = 10.0  # seconds for a request's whole body to arrive, else a 408 (a stalled client)
    request_timeout: float = 60.0  # seconds from a request's body to its answer, else a 504 (and it is dropped)
    idle_timeout: float = 5.0  # seconds a connection may stay open with no request in progress (keep-alive, or a
    # new connection that has not sent a whole request head)
    shutdown_timeout: float = 10.0  # SIGTERM / Ctrl-C: seconds to answer the accepted requests before exiting
    verbose: bool = False  # true: every library line and warning (transformer/console.py drops the noise)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 (any free port) and 65535, got {self.port}")
        if self.batch_timeout < 0:
            raise ConfigError(f"batch_timeout must be >= 0 seconds, got {self.batch_timeout}")
        for key in ("max_batch_size", "max_texts", "max_chars", "max_request_bytes", "max_beam_size", "max_nbest",
                    "max_queued"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("body_timeout", "request_timeout", "idle_timeout", "shutdown_timeout"):
            if not 0 < getattr(self, key) < math.inf:
                raise ConfigError(f"{key} must be a positive number of seconds, got {getattr(self, key)}")
        if self.max_len_b < 0:
            raise ConfigError(f"max_len_b must be >= 0, got {self.max_len_b}")


@dataclass
class AttendConfig:
    ckpt: str = MISSING  # a checkpoint, or a run directory (its averaged, best or last checkpoint)
    text: str | None = None  # one input; otherwise `input` or standard input, one per line
    input: str | None = None
    target: str | None = None  # seq2seq, with `text`: force-decode this output instead of the model's own
    words: bool = False  # merge SentencePiece pieces into words on the axes
    alignment_layer: int | None = None  # decoder layer of the alignment; null: the second to last (or the only)
    output_dir: str | None = None  # one input: its files here; several: <output_dir>/<line number>/; null:
    # <run>/attention/<the text's words> (several: <input file name> or stdin) in the checkpoint's run directory
    decoding: dict[str, Any] = field(default_factory=decoding_overrides)
    verbose: bool = False  # true: every library line and warning (transformer/console.py drops the noise)


@dataclass
class BaselineConfig:
    """The strong simple baseline of a task, tuned on `tune_split`, scored on `eval_split` by the models' metrics."""

    task: TaskConfig = MISSING
    dataset: DatasetConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    method: str | None = None  # tfidf_lr | lead | copy_source; null: the task's (classification: tfidf_lr,
    # summarization: lead, translation: copy_source)
    ks: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30])  # lead: words
    cs: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])  # tfidf_lr: C values
    ngram_max: int = 2  # tfidf_lr: word n-grams 1..ngram_max
    tune_split: str = "validation"
    eval_split: str | None = None  # null: test when the dataset has one, else validation
    select_by: str | None = None  # the metric the tuning maximizes; null: the task's monitored metric
    output: str | None = None  # write the tuning table and the scores as JSON here
    verbose: bool = False  # true: every library line and warning (transformer/console.py drops the noise)

    def __post_init__(self) -> None:
        check_objectives(self.task, self.dataset)
        methods = {"classification": ("tfidf_lr",), "seq2seq": ("lead", "copy_source")}[self.task.objective]
        if self.method is not None and self.method not in methods:
            raise ConfigError(
                f"method={self.method} does not fit task={self.task.name}: choose one of {', '.join(methods)}"
            )
        if self.select_by is not None and self.select_by not in self.task.metrics:
            raise ConfigError(f"select_by={self.select_by!r} is not one of the task's metrics {self.task.metrics}")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"ks must be positive word counts, got {self.ks}")
        if not self.cs or min(self.cs) <= 0:
            raise ConfigError(f"cs must be positive regularization strengths, got {self.cs}")
        if self.ngram_max < 1:
            raise ConfigError(f"ngram_max must be >= 1, got {self.ngram_max}")


SCHEMAS = {
    "train_schema": TrainConfig,
    "prepare_data_schema": PrepareConfig,
    "evaluate_schema": EvaluateConfig,
    "predict_schema": PredictConfig,
    "export_schema": ExportConfig,
    "serve_schema": ServeConfig,
    "attend_schema": AttendConfig,
    "baseline_schema": BaselineConfig,
}


def first_set(*values: Any) -> Any:
    """`${first_set:${run_name},${now:...}}`: the first value that is not null or empty."""
    return next((value for value in values if value not in (None, "")), None)


def run_label(output_dir: str | None) -> str:
    """`${run_label:${paths.output_dir}}`: a run's name in TensorBoard. A run's is its directory's name (run_name or
    the date); a sweep job's is its number and the overrides that set it apart (Hydra's override_dirname, without
    the paths), since its directory's name is only the number."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    name = os.path.basename(os.path.normpath(output_dir)) if output_dir else "run"
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        job = HydraConfig.get().job
        overrides = job.override_dirname.replace("/", "_")
        name = f"{job.num}-{overrides}"[:120] if overrides else str(job.num)
    return name


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent); the entry configs name them first in their defaults."""
    if not OmegaConf.has_resolver("first_set"):
        OmegaConf.register_new_resolver("first_set", first_set)
    if not OmegaConf.has_resolver("run_label"):
        OmegaConf.register_new_resolver("run_label", run_label)
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)


T = TypeVar("T")


def typed(cfg: DictConfig) -> Any:
    """The composed config as its dataclasses (runs every __post_init__ check); a bad value is a ConfigError."""
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(one_line(error)) from None


def build(cls: type[T], values: dict[str, Any] | DictConfig, where: str) -> T:
    """A schema dataclass from plain values (e.g. stored in a checkpoint), checked like a composed config."""
    try:
        node = OmegaConf.merge(OmegaConf.structured(cls), values)
        return OmegaConf.to_object(node)
    except OmegaConfBaseException as error:
        raise ConfigError(f"{where}: {one_line(error)}") from None


def one_line(error: BaseException) -> str:
    """An OmegaConf/Hydra message in one line: its first line, and the key it names."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "")
    if isinstance(error, MissingMandatoryValue) and key:
        return f"{key} is required: pass {key}=<value>"
    return f"{key}: {lines[0]}" if key else lines[0]


register()

"""train(cfg): prepare the data if needed, build model and LightningModule from the config, fit, test, and
write metrics.json. scripts/train.py is a thin Hydra entry point over this function; tests call it directly."""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from transformer.config import ModelConfig
from transformer.data import prepare_from_config
from transformer.training.averaging import AverageLastEpochs
from transformer.training.callbacks import RandomState, TokenThroughput, ValidationStep
from transformer.training.classification import ClassificationModule
from transformer.training.datamodule import BatchingConfig, TextDataModule
from transformer.training.optim import OptimConfig
from transformer.training.seq2seq import DecodingConfig, Seq2SeqModule

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


def cpu_supports_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls are native there (elsewhere bf16 autocast on CPU is slow)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: Any, accelerator: str) -> str | int:
    """`auto` becomes bf16-mixed on GPUs with bf16 and on CPUs with native bf16, otherwise 32-true."""
    if precision != "auto":
        return precision
    if accelerator in ("gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def typed(cls, node: Any, name: str):
    """Build a typed config dataclass from a config node, with a one-line error naming the bad key."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in `{name}`; valid keys are {sorted(known)}")
    hints = get_type_hints(cls)
    for key, value in values.items():
        if not _matches(value, hints[key]):
            raise ValueError(f"`{name}.{key}` must be {_describe(hints[key])}, got {value!r}")
    return cls(**values)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a config value fits a simple type hint; containers are left to the dataclass's own checks."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if origin is Literal:
        return value in get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def build_model_config(cfg: DictConfig, prepared) -> ModelConfig:
    src, tgt = prepared.src_tokenizer, prepared.tgt_tokenizer
    shared = src is tgt
    values = OmegaConf.to_container(cfg.model, resolve=True)
    values.update(
        vocab_size=src.vocab_size,
        target_vocab_size=None if shared else tgt.vocab_size,
        share_embeddings=bool(values.get("share_embeddings", True)) and shared,
        pad_id=src.pad_id,
        num_classes=max(2, len(prepared.label_names or [])),
    )
    return typed(ModelConfig, values, "model")


def build_module(cfg: DictConfig, prepared, model_config: ModelConfig) -> pl.LightningModule:
    objective = cfg.task.objective
    artifacts = {
        "format": CHECKPOINT_FORMAT,
        "objective": objective,
        "task": cfg.task.name,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "model_config": model_config.to_dict(),
        "src_tokenizer": prepared.src_tokenizer.to_bytes(),
        "tgt_tokenizer": None
        if prepared.src_tokenizer is prepared.tgt_tokenizer
        else prepared.tgt_tokenizer.to_bytes(),
        "label_names": list(prepared.label_names or []),
    }
    optim = typed(OptimConfig, cfg.optim, "optim")
    if objective == "classification":
        return ClassificationModule(model_config, optim, artifacts)
    if objective == "seq2seq":
        decoding = typed(DecodingConfig, cfg.decoding, "decoding")
        return Seq2SeqModule(model_config, optim, decoding, prepared.tgt_tokenizer, artifacts)
    raise ValueError(f"task.objective={objective!r} is not one of ('classification', 'seq2seq')")


def build_trainer(cfg: DictConfig, pad_id: int, extra_callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    callbacks += [TokenThroughput(pad_id), ValidationStep(), RandomState(), *extra_callbacks]
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()]
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    precision = resolve_precision(cfg.precision, trainer_kwargs.get("accelerator", "cpu"))
    return pl.Trainer(
        **trainer_kwargs,
        precision=precision,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=cfg.paths.output_dir,
        use_distributed_sampler=False,  # our batch sampler shards by rank itself
    )


def train(cfg: DictConfig, callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Train as configured; returns the metrics also written to <output_dir>/metrics.json.

    `callbacks` are added to those of the config (for programs that drive training, such as benchmarks).
    """
    batching = typed(BatchingConfig, cfg.batching, "batching")  # check the cheap configs before preparing data
    typed(OptimConfig, cfg.optim, "optim")
    typed(DecodingConfig, cfg.decoding, "decoding")
    pl.seed_everything(cfg.seed, workers=True)
    prepared = prepare_from_config(cfg)
    model_config = build_model_config(cfg, prepared)
    module = build_module(cfg, prepared, model_config)
    datamodule = TextDataModule(prepared, cfg.task.objective, batching, cfg.seed)
    trainer = build_trainer(cfg, model_config.pad_id, callbacks)
    log.info("model: %s, %.2fM parameters", type(module.model).__name__, count_parameters(module.model) / 1e6)

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    averager = next((c for c in trainer.callbacks if isinstance(c, AverageLastEpochs)), None)
    averaged = averager.averaged_path if averager is not None else None  # the module now holds these weights
    validated = next(c for c in trainer.callbacks if isinstance(c, ValidationStep))
    if averaged or validated.step != trainer.global_step:  # the final weights have not been validated yet
        trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if best:
        metrics["best_checkpoint"] = best
        if checkpoint.best_model_score is not None:
            metrics["best_score"] = float(checkpoint.best_model_score)
    if averaged:
        metrics["averaged_checkpoint"] = str(averaged)
    metrics["parameters"] = count_parameters(module.model)
    metrics["global_step"] = trainer.global_step
    if "test" in prepared.splits:
        tested = str(averaged) if averaged else ("best" if best else None)  # val/* above belong to the same weights
        results = trainer.test(module, datamodule=datamodule, ckpt_path=tested, verbose=False)
        for result in results:
            metrics.update({k: float(v) for k, v in result.items()})
    if trainer.is_global_zero:
        write_json(Path(cfg.paths.output_dir) / "metrics.json", metrics)
    return metrics


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def write_json(path: Path, values: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)

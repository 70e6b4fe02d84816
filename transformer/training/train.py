"""train(cfg): check the config, prepare the data if needed, build model and LightningModule, fit, test, and write
metrics.json. scripts/train.py is a thin Hydra entry point over this function; tests call it directly."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from transformer.checkpoint import (
    Artifacts,
    AtomicCheckpointIO,
    check_resumable,
    find_resume_checkpoint,
    is_sharded,
    run_relative,
    write_json,
)
from transformer.config import ModelConfig
from transformer.data import prepare_from_config
from transformer.errors import ConfigError
from transformer.flops import default_peak_flops
from transformer.hardware import check_accelerator, resolve_precision
from transformer.hf.pretrained import is_pretrained, merged_config, read_pretrained
from transformer.model import compile_blocks
from transformer.objectives import build_module
from transformer.schema import TrainConfig, typed
from transformer.training.averaging import AverageLastEpochs
from transformer.training.callbacks import RandomState, TokenThroughput, ValidationStep, ValidationSummary
from transformer.training.datamodule import TextDataModule
from transformer.training.fsdp import NAME as FSDP_NAME
from transformer.training.fsdp import FSDPStrategy, GatherForEvaluation
from transformer.training.init import (
    check_pretrained_fits,
    check_same_tokenizers,
    initialize,
    keeps_checkpoint_tokenizer,
    load_weights,
    open_init,
)
from transformer.training.preemption import Preempted, PreemptionCheckpoint
from transformer.training.rundir import auto_resume, check_relaunch, run_directory
from transformer.training.tensorboard import log_hparams

log = logging.getLogger(__name__)


def build_model_config(config: TrainConfig, prepared) -> ModelConfig:
    """The model config with the sizes that come from the data: vocabularies, padding id, number of classes."""
    src, tgt = prepared.src_tokenizer, prepared.tgt_tokenizer
    shared = src is tgt
    return replace(
        config.model,
        vocab_size=src.vocab_size,
        target_vocab_size=None if shared else tgt.vocab_size,
        share_embeddings=config.model.share_embeddings and shared,
        pad_id=src.pad_id,
        bos_id=tgt.bos_id,
        eos_id=tgt.eos_id,
        decoder_start_id=None if tgt.decoder_start_id == tgt.bos_id else tgt.decoder_start_id,
        num_classes=max(2, len(prepared.label_names or [])),
    )


def fit_lengths(config: TrainConfig, positions: int) -> TrainConfig:
    """The dataset's length limits within a pretrained model's positions (BERT's 512): longer texts are cut."""
    d = config.dataset
    limits = {"max_source_len": min(d.max_source_len, positions), "max_target_len": min(d.max_target_len, positions)}
    if limits == {"max_source_len": d.max_source_len, "max_target_len": d.max_target_len}:
        return config
    log.info("the pretrained model reads %d positions: dataset lengths limited to %s", positions, limits)
    return replace(config, dataset=replace(d, **limits))


def relaunch_callbacks(config: TrainConfig) -> list[pl.Callback]:
    """Checkpoints every N steps / M minutes (keeping the newest K) and the preemption handler."""
    folder = Path(config.paths.output_dir) / "checkpoints"
    step = config.checkpoint
    every = {"every_n_train_steps": step.every_n_steps} if step.every_n_steps else {}
    minutes = {"train_time_interval": timedelta(minutes=step.every_n_minutes)} if step.every_n_minutes else {}
    callbacks: list[pl.Callback] = [
        # monitor="step", mode="max": top-k by step keeps the newest k (monitor=None keeps one at most)
        ModelCheckpoint(
            dirpath=folder,
            filename="step{step:08d}",
            auto_insert_metric_name=False,
            monitor="step",
            mode="max",
            save_top_k=step.keep_last,
            **trigger,
        )
        for trigger in (every, minutes)
        if trigger
    ]
    if config.preemption.enabled:
        callbacks.append(PreemptionCheckpoint(folder, config.preemption.signals, config.preemption.requeue))
    return callbacks


def resume_checkpoint(config: TrainConfig) -> str | None:
    """ckpt_path when given; with resume=auto (the default when run_name is set), the run directory's newest."""
    if config.ckpt_path:
        return config.ckpt_path
    if not auto_resume(config):
        return None
    found = find_resume_checkpoint(config.paths.output_dir, config.task.name)
    if found is None:
        return None
    check_strategy_reads(found, config)
    log.info("resuming from %s", found)
    return str(found)


def check_strategy_reads(path: str | Path, config: TrainConfig) -> None:
    """Only FSDP resumes from a sharded checkpoint (evaluate, predict and averaging read it anywhere)."""
    if is_sharded(path) and config.trainer.get("strategy") != FSDP_NAME:
        raise ConfigError(
            f"{path} is a sharded (hardware=fsdp) checkpoint: resume it with hardware=fsdp, or start a new run "
            f"directory (run_name=<new name> or resume=never)"
        )


def build_trainer(
    cfg: DictConfig, config: TrainConfig, model_config: ModelConfig, extra_callbacks: Sequence[pl.Callback] = ()
) -> pl.Trainer:
    peak = config.hardware.peak_flops or default_peak_flops()
    throughput = TokenThroughput(model_config.pad_id, model_config, peak)
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]
    summary = ValidationSummary(config.task.monitor, config.task.mode)
    callbacks += [throughput, ValidationStep(), summary, RandomState(), *relaunch_callbacks(config)]
    callbacks += list(extra_callbacks)
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values() if node is not None]
    trainer_kwargs = dict(config.trainer)
    trainer_kwargs.setdefault("enable_model_summary", config.verbose)  # quiet: the size is logged in one line
    if config.hardware.bf16_weights and trainer_kwargs.get("strategy") == FSDP_NAME:
        raise ConfigError(
            "hardware.bf16_weights=true does not combine with hardware=fsdp, whose hardware.fsdp.bf16_params keeps "
            "bf16 weights per shard: set hardware.bf16_weights=false"
        )
    precision = resolve_precision(
        config.precision, trainer_kwargs.get("accelerator", "cpu"), config.hardware.bf16_weights
    )
    if trainer_kwargs.get("strategy") == FSDP_NAME:
        trainer_kwargs["strategy"] = FSDPStrategy(config.hardware.fsdp, bf16=str(precision).startswith("bf16"))
        callbacks.append(GatherForEvaluation())
    return pl.Trainer(
        **trainer_kwargs,
        precision=precision,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=config.paths.output_dir,
        use_distributed_sampler=False,  # our batch sampler shards by rank itself
        plugins=[AtomicCheckpointIO()],
    )


def check_writable(directory: str | Path) -> None:
    """The run directory must take files; found out here, not after the data is prepared and an epoch trained."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ConfigError(
            f"cannot write to the output directory {directory} ({error.strerror or error}): choose a writable one "
            f"with hydra.run.dir=<dir> (or paths.output_dir=<dir>)"
        ) from None


def train(
    cfg: DictConfig, callbacks: Sequence[pl.Callback] = (), extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train as configured; returns the metrics also written to <output_dir>/metrics.json (with `extra` added).

    `callbacks` are added to those of the config (for programs that drive training, such as benchmarks).
    Everything a user can get wrong in the config is checked before any data is prepared. A recipe with a
    pretraining stage (pretrain_run) runs through training/stages.py, which calls this with init_from set.
    """
    start = time.perf_counter()
    config: TrainConfig = typed(cfg)
    if config.pretrain_run and not config.init_from:
        raise ConfigError(
            "pretrain_run needs its pretraining stage first: run it with transformer.training.stages.run(cfg) "
            "(what scripts/train.py does), not train(cfg)"
        )
    check_accelerator(config.trainer)
    if config.ckpt_path:
        check_resumable(config.ckpt_path, config.task.name)
        check_strategy_reads(config.ckpt_path, config)
    check_writable(config.paths.output_dir)
    with run_directory(config):  # no other process trains here meanwhile (training/rundir.py)
        return _train(cfg, config, callbacks, start, extra)


def _train(
    cfg: DictConfig, config: TrainConfig, callbacks: Sequence[pl.Callback], start: float, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """train() inside its owned run directory: data, model, the relaunch's checks, Trainer, fit and scores."""
    resume_from = resume_checkpoint(config)
    pl.seed_everything(config.seed, workers=True)
    pretrained = read_pretrained(config.init_from) if is_pretrained(config.init_from) else None
    init = open_init(config.init_from) if config.init_from and pretrained is None else None
    init_artifacts = Artifacts.of(init[1], init[0]) if init is not None else None
    keep = init_artifacts is not None and keeps_checkpoint_tokenizer(config.init_tokenizer, init_artifacts)
    tokenizers = (init_artifacts.src_tokenizer, init_artifacts.tgt_tokenizer) if keep else None
    if pretrained is not None:
        check_pretrained_fits(pretrained, config)
        tokenizers = (pretrained.src_tokenizer, pretrained.tgt_tokenizer)
        config = fit_lengths(config, pretrained.model.max_length)
    prepared = prepare_from_config(config, tokenizers)
    if init_artifacts is not None and not keep:
        check_same_tokenizers(init[0], init_artifacts, prepared.src_tokenizer, prepared.tgt_tokenizer)
    model_config = build_model_config(config, prepared)
    if pretrained is not None:
        model_config = merged_config(pretrained, config.model, model_config.num_classes)
    stored = OmegaConf.to_container(cfg, resolve=True)
    stored["dataset"].update(max_source_len=config.dataset.max_source_len, max_target_len=config.dataset.max_target_len)
    artifacts = Artifacts.new(
        stored,
        model_config,
        prepared.src_tokenizer,
        prepared.tgt_tokenizer,
        prepared.label_names,
    )
    module = build_module(artifacts, config.optim, config.decoding, config.max_nonfinite_steps)
    if init is not None:
        log.info("%s", initialize(module.model, init[1], str(init[0])).summary())
        del init  # the checkpoint's tensors are copied
    if pretrained is not None:
        weights, unused = pretrained.weights(model_config)
        log.info("%s", load_weights(module.model, weights, config.init_from, unused).summary())
        del pretrained, weights
    if resume_from is not None:
        check_relaunch(resume_from, config, artifacts, module)
    compiled = config.compile or config.hardware.cuda_graphs
    if compiled:
        compile_blocks(module.model, mode="reduce-overhead" if config.hardware.cuda_graphs else None)
    buckets = compiled if config.batching.bucket_lengths is None else config.batching.bucket_lengths
    datamodule = TextDataModule(
        prepared, config.task.objective, config.batching, config.seed, buckets, model_config.max_positions
    )
    trainer = build_trainer(cfg, config, model_config, callbacks)
    log.info("model: %s, %.2fM parameters", type(module.model).__name__, count_parameters(module.model) / 1e6)

    with multirun_job():
        return fit_and_score(trainer, module, datamodule, config, "test" in prepared.splits, resume_from, start, extra)


def fit_and_score(
    trainer: pl.Trainer,
    module,
    datamodule,
    config: TrainConfig,
    has_test: bool,
    resume_from: str | None = None,
    start: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit (resuming from `resume_from`), validate the final (or averaged) weights, test them, and write
    metrics.json (with `extra`, and the wall time since `start`: `seconds`; `total_seconds` adds a pretraining
    run's).

    A preempted fit returns {"preempted": True, ...} at once: its state is in checkpoints/preempted.ckpt."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    except Preempted as preempted:
        log.warning("%s: relaunch the same command to resume", preempted)
        return {"preempted": True, "checkpoint": str(preempted.path), "global_step": preempted.step}
    averager = next((c for c in trainer.callbacks if isinstance(c, AverageLastEpochs)), None)
    averaged = averager.averaged_path if averager is not None else None  # the module now holds these weights
    validated = next(c for c in trainer.callbacks if isinstance(c, ValidationStep))
    if averaged or validated.step != trainer.global_step:  # the final weights have not been validated yet
        trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if best:
        metrics["best_checkpoint"] = run_relative(best, config.paths.output_dir)  # relocatable run directories
        if checkpoint.best_model_score is not None:
            metrics["best_score"] = float(checkpoint.best_model_score)
    if averaged:
        metrics["averaged_checkpoint"] = run_relative(averaged, config.paths.output_dir)
    metrics["parameters"] = count_parameters(module.model)
    metrics["global_step"] = trainer.global_step
    throughput = next((c for c in trainer.callbacks if isinstance(c, TokenThroughput)), None)
    if throughput is not None and throughput.tokens_per_sec is not None:
        metrics["tokens_per_sec"] = round(throughput.tokens_per_sec, 1)
    if has_test:
        # val/* above belong to the same weights: the averaged ones the module holds, or the best checkpoint's
        tested = None if averaged else ("best" if best else None)
        results = trainer.test(module, datamodule=datamodule, ckpt_path=tested, verbose=False)
        for result in results:
            metrics.update({k: float(v) for k, v in result.items()})
    metrics.update(extra or {})
    if start is not None:
        metrics["seconds"] = round(time.perf_counter() - start, 1)
        pretrain_seconds = (extra or {}).get("pretrain", {}).get("seconds")
        if pretrain_seconds is not None:
            metrics["total_seconds"] = round(metrics["seconds"] + pretrain_seconds, 1)
    if trainer.is_global_zero:
        write_json(Path(config.paths.output_dir) / "metrics.json", metrics)
    log_hparams(trainer, module.artifacts.config, metrics)
    return metrics


DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def multirun_job():
    """Make each job of a Hydra multirun a DDP run of its own, started once, in its own directory.

    Lightning starts the other ranks by re-running `sys.argv` with `hydra.run.dir=<hydra.run.dir>` appended
    (lightning_fabric's `_hydra_subprocess_cmd`). Under `-m` that argv holds the whole sweep, so every rank
    would start the sweep again, in the run directory instead of the job's (Lightning PRs #11617 and #18175,
    lightning-hydra-template #393). During a multirun job the argv is this job's own overrides and the run
    directory is the job's directory. Afterwards the process group and the variables Lightning set for it are
    removed, so the next job of the sweep (in this same process) starts its own.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN or "LOCAL_RANK" in os.environ:
        yield
        return
    hydra_cfg = HydraConfig.get()
    argv, run_dir = list(sys.argv), hydra_cfg.run.dir
    env = {key: os.environ.get(key) for key in DIST_ENV}
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        sys.argv = argv
        with read_write(hydra_cfg.run):
            hydra_cfg.run.dir = run_dir
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""The one place that maps an objective to its LightningModule, for training and for restoring a checkpoint."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from transformer.config import ModelConfig
from transformer.data.noising import NoiseConfig
from transformer.decoding import DecodingConfig
from transformer.schema import build
from transformer.training.checkpoint import tokenizers
from transformer.training.classification import ClassificationModule
from transformer.training.optim import OptimConfig
from transformer.training.pretrain import PretrainModule
from transformer.training.seq2seq import Seq2SeqModule


def build_module(
    artifacts: dict[str, Any],
    model_config: ModelConfig,
    optim: OptimConfig,
    decoding: DecodingConfig,
    max_nonfinite_steps: int = 10,
) -> pl.LightningModule:
    """The LightningModule of the artifacts' objective (see training/checkpoint.py for the artifacts)."""
    config = artifacts["config"]
    metrics = config["task"]["metrics"]
    if artifacts["objective"] == "classification":
        return ClassificationModule(model_config, optim, metrics, artifacts, max_nonfinite_steps)
    _, tgt = tokenizers(artifacts)
    if artifacts["objective"] == "pretrain":
        noise = build(NoiseConfig, config.get("noise") or {}, "noise")
        return PretrainModule(model_config, optim, noise, tgt, artifacts, config.get("seed", 0), max_nonfinite_steps)
    return Seq2SeqModule(model_config, optim, decoding, metrics, tgt, artifacts, max_nonfinite_steps)


def restore_module(checkpoint: dict[str, Any], decoding_overrides: dict[str, Any] | None = None) -> pl.LightningModule:
    """The trained LightningModule, rebuilt from the configs stored in a loaded checkpoint, in eval mode.

    `decoding_overrides`: DecodingConfig keys to change (None values keep the checkpoint's setting)."""
    artifacts = checkpoint["transformer"]
    config = artifacts["config"]
    decoding = dict(config.get("decoding") or {})
    decoding.update({k: v for k, v in (decoding_overrides or {}).items() if v is not None})
    module = build_module(
        artifacts,
        ModelConfig.from_dict(artifacts["model_config"]),
        build(OptimConfig, config["optim"], "optim"),
        build(DecodingConfig, decoding, "decoding"),
    )
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()

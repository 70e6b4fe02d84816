"""The LightningModules, one per objective, on one shared base (base.py), and the one place that maps an
objective to its module: for training (build_module) and for a trained checkpoint (restore_module)."""

from __future__ import annotations

from typing import Any

from transformer.checkpoint import Artifacts
from transformer.decoding import DecodingConfig
from transformer.objectives.base import TransformerModule
from transformer.objectives.classification import ClassificationModule
from transformer.objectives.pretrain import PretrainModule
from transformer.objectives.seq2seq import Seq2SeqModule
from transformer.optim import OptimConfig


def build_module(
    artifacts: Artifacts, optim: OptimConfig, decoding: DecodingConfig, max_nonfinite_steps: int = 10
) -> TransformerModule:
    """The LightningModule of the artifacts' objective, with a newly initialized model of artifacts.model."""
    if artifacts.objective == "classification":
        return ClassificationModule(artifacts, optim, max_nonfinite_steps)
    if artifacts.objective == "pretrain":
        return PretrainModule(artifacts, optim, artifacts.noise, max_nonfinite_steps)
    return Seq2SeqModule(artifacts, optim, decoding, max_nonfinite_steps)


def restore_module(checkpoint: dict[str, Any], decoding_overrides: dict[str, Any] | None = None) -> TransformerModule:
    """The trained LightningModule of a loaded checkpoint (checkpoint.load_checkpoint), in eval mode.

    `decoding_overrides`: DecodingConfig keys to change (None values keep the checkpoint's setting)."""
    artifacts = Artifacts.of(checkpoint)
    module = build_module(artifacts, artifacts.optim, artifacts.decoding(decoding_overrides))
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


__all__ = [
    "ClassificationModule",
    "PretrainModule",
    "Seq2SeqModule",
    "TransformerModule",
    "build_module",
    "restore_module",
]

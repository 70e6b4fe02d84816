"""LightningModule for sequence classification (sentiment): cross-entropy, accuracy and macro-F1."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from transformer.config import ModelConfig
from transformer.model import EncoderClassifier
from transformer.training.common import (
    NonFiniteGuard,
    StepNormalizer,
    configure_optimizers,
    gather_unique,
    save_artifacts,
    training_loss,
)
from transformer.training.fsdp import shard_module
from transformer.training.metrics import classification_metrics
from transformer.training.optim import OptimConfig


class ClassificationModule(pl.LightningModule):
    def __init__(
        self,
        model_config: ModelConfig,
        optim: OptimConfig,
        metrics: list[str],  # of acc (accuracy), f1 (macro-F1)
        artifacts: dict[str, Any],
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__()
        self.model = EncoderClassifier(model_config)
        self.optim = optim
        self.artifacts = artifacts  # tokenizer, config and labels, stored in every checkpoint
        self.guard = NonFiniteGuard(max_nonfinite_steps)
        self.step_size = StepNormalizer()
        self.num_classes = model_config.num_classes
        self.metric_names = list(metrics)
        self._outputs: list[tuple[int, int, int, float]] = []  # (example index, predicted, true label, probability)
        self.predictions: list[tuple[int, int, float]] = []  # (example index, label, probability), test only
        self.last_validation: dict[int, tuple] = {}  # the latest validation's outputs, by example index

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        return self.model(src)  # (B, C) logits

    def _loss(self, logits, labels, smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing, reduction=reduction)

    def training_step(self, batch, batch_idx):
        n = batch["label"].numel()
        loss = self._loss(self(batch["src"]), batch["label"], self.optim.label_smoothing, "sum")
        return training_loss(self, loss, n, n)  # summed: StepNormalizer divides by the optimizer step's examples

    def on_before_optimizer_step(self, optimizer) -> None:
        self.step_size.apply(self)

    def _evaluate(self, batch, stage: str) -> None:
        logits = self(batch["src"])
        self.log(f"{stage}/loss", self._loss(logits, batch["label"]), sync_dist=True, batch_size=len(logits))
        probs, predicted = logits.float().softmax(-1).max(-1)
        rows = zip(batch["index"].tolist(), predicted.tolist(), batch["label"].tolist(), probs.tolist(), strict=True)
        self._outputs.extend(rows)

    def _log_metrics(self, stage: str) -> None:
        """Accuracy and macro-F1 over the split, each example counted once (a distributed sampler repeats some
        to give every rank the same number of batches)."""
        unique = gather_unique(self._outputs)
        self._outputs = []
        if not unique:
            return
        predicted = [unique[i][0] for i in sorted(unique)]
        target = [unique[i][1] for i in sorted(unique)]
        scores = classification_metrics(predicted, target, self.num_classes, self.metric_names)
        # every rank holds the same gathered values, so no further reduction is needed
        self.log_dict({f"{stage}/{name}": value for name, value in scores.items()}, prog_bar=True)
        if stage == "test":
            self.predictions = [(i, unique[i][0], unique[i][2]) for i in sorted(unique)]
        else:  # for TensorBoard (training/tensorboard.py): {index: (predicted, label, probability)}
            self.last_validation = unique

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._outputs = []

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def configure_model(self) -> None:
        shard_module(self)  # hardware=fsdp only

    def configure_optimizers(self):
        return configure_optimizers(self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_artifacts(self, checkpoint)

"""LightningModule for sequence classification (sentiment): cross-entropy, accuracy and macro-F1."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from transformer.config import ModelConfig
from transformer.model import EncoderClassifier
from transformer.training.common import NonFiniteGuard, configure_optimizers, save_artifacts
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
        n = model_config.num_classes
        available = {"acc": MulticlassAccuracy(n, average="micro"), "f1": MulticlassF1Score(n, average="macro")}
        metrics = MetricCollection({name: available[name] for name in metrics})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.predictions: list[tuple[int, int, float]] = []  # (example index, label, probability), test only

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        return self.model(src)  # (B, C) logits

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)

    def training_step(self, batch, batch_idx):
        loss = self._loss(self(batch["src"]), batch["label"], self.optim.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["label"].numel())
        return self.guard(self, loss)

    def _evaluate(self, batch, stage: str, metrics: MetricCollection) -> None:
        logits = self(batch["src"])
        self.log(f"{stage}/loss", self._loss(logits, batch["label"]), sync_dist=True, batch_size=len(logits))
        metrics.update(logits, batch["label"])
        self.log_dict(metrics, prog_bar=stage == "val", batch_size=len(logits))
        if stage == "test":
            probs, labels = logits.float().softmax(-1).max(-1)
            self.predictions.extend(zip(batch["index"].tolist(), labels.tolist(), probs.tolist(), strict=True))

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_metrics)

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_metrics)

    def configure_optimizers(self):
        return configure_optimizers(self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_artifacts(self, checkpoint)

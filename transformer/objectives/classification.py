"""LightningModule for sequence classification (sentiment): cross-entropy, accuracy and macro-F1."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from transformer.checkpoint import Artifacts
from transformer.metrics import classification_metrics
from transformer.model import EncoderClassifier
from transformer.objectives.base import TransformerModule, gather_unique
from transformer.optim import OptimConfig


class ClassificationModule(TransformerModule):
    def __init__(self, artifacts: Artifacts, optim: OptimConfig, max_nonfinite_steps: int = 10) -> None:
        super().__init__(artifacts, optim, max_nonfinite_steps)
        self.model = EncoderClassifier(artifacts.model)
        self.num_classes = artifacts.model.num_classes
        self.metric_names = artifacts.metrics  # of acc (accuracy), f1 (macro-F1)
        # _outputs: (example index, predicted, true label, probability); predictions: (index, label, probability)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        return self.model(src)  # (B, C) logits

    def _loss(self, logits, labels, smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing, reduction=reduction)

    def step_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int, int]:
        n = batch["label"].numel()
        return self._loss(self(batch["src"]), batch["label"], self.optim.label_smoothing, "sum"), n, n

    def evaluate_batch(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        logits = self(batch["src"])
        self.log(f"{stage}/loss", self._loss(logits, batch["label"]), sync_dist=True, batch_size=len(logits))
        probs, predicted = logits.float().softmax(-1).max(-1)
        rows = zip(batch["index"].tolist(), predicted.tolist(), batch["label"].tolist(), probs.tolist(), strict=True)
        self._outputs.extend(rows)

    def log_metrics(self, stage: str) -> None:
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

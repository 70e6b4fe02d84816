"""LightningModule for sequence-to-sequence (translation, summarization): label-smoothed cross-entropy for
training, beam search with sacreBLEU / chrF / ROUGE for validation and test."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytorch_lightning as pl
import torch

from transformer.config import ModelConfig
from transformer.decoding import DecodingConfig, generate
from transformer.model import EncoderDecoder
from transformer.training.common import (
    NonFiniteGuard,
    StepNormalizer,
    configure_optimizers,
    gather_unique,
    save_artifacts,
    training_loss,
)
from transformer.training.fsdp import shard_module
from transformer.training.metrics import generation_metrics
from transformer.training.optim import OptimConfig


class Seq2SeqModule(pl.LightningModule):
    def __init__(
        self,
        model_config: ModelConfig,
        optim: OptimConfig,
        decoding: DecodingConfig,
        metrics: list[str],  # of bleu, chrf, rouge1, rouge2, rougeL
        tokenizer,  # target-side tokenizer: ids -> detokenized text
        artifacts: dict[str, Any],
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__()
        self.model = EncoderDecoder(model_config)
        self.optim, self.decoding, self.metric_names, self.tokenizer = optim, decoding, list(metrics), tokenizer
        self.artifacts = artifacts
        self.guard = NonFiniteGuard(max_nonfinite_steps)
        self.step_size = StepNormalizer()
        self.pad_id = model_config.pad_id
        self._outputs: list[tuple[int, str, list[str]]] = []  # (example index, hypothesis, references)
        self.predictions: list[tuple[int, str]] = []
        self.last_validation: dict[int, tuple] = {}  # the latest validation's outputs, by example index

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model(src, tgt_in)  # (B, T, V)

    def _loss(self, batch, smoothing: float = 0.0) -> torch.Tensor:
        return self.model.loss(batch["src"], batch["tgt_in"], batch["tgt_out"], smoothing, self.pad_id)

    def training_step(self, batch, batch_idx):
        tokens = batch["tgt_out"].ne(self.pad_id).sum()
        loss = self.model.loss(
            batch["src"], batch["tgt_in"], batch["tgt_out"], self.optim.label_smoothing, self.pad_id, "sum"
        )
        return training_loss(self, loss, tokens, batch["src"].size(0))  # summed: divided by the step's tokens

    def on_before_optimizer_step(self, optimizer) -> None:
        self.step_size.apply(self)

    def generate(self, src: torch.Tensor, beam_size: int | None = None) -> list[str]:
        """Detokenized best output for each row of source ids (B, S), by self.decoding (beam_size: another beam)."""
        config = replace(self.decoding, beam_size=beam_size or self.decoding.beam_size, nbest=1)
        outputs = generate(self.model, src, self.tokenizer.bos_id, self.tokenizer.eos_id, config)
        return [self.tokenizer.decode(best[0][1]) for best in outputs]

    def _evaluate(self, batch, batch_idx: int, stage: str) -> None:
        n = batch["src"].size(0)
        self.log(f"{stage}/loss", self._loss(batch), sync_dist=True, batch_size=n)
        limit = self.decoding.val_max_batches if stage == "val" else None
        if limit is not None and batch_idx >= limit:
            return
        beam = (self.decoding.val_beam_size or self.decoding.beam_size) if stage == "val" else None
        hypotheses = self.generate(batch["src"], beam)
        self._outputs.extend(zip(batch["index"].tolist(), hypotheses, batch["references"], strict=True))

    def _log_generation_metrics(self, stage: str) -> None:
        unique = gather_unique(self._outputs)  # each example once, from every rank
        self._outputs = []
        ordered = [unique[i] for i in sorted(unique)]
        scores = generation_metrics([h for h, _ in ordered], [r for _, r in ordered], self.metric_names)
        # every rank holds the same gathered values, so no further reduction is needed
        self.log_dict({f"{stage}/{k}": float(v) for k, v in scores.items()}, prog_bar=stage == "val")
        if stage == "test":
            self.predictions = [(i, unique[i][0]) for i in sorted(unique)]
        else:  # for TensorBoard (training/tensorboard.py): {index: (hypothesis, references)}
            self.last_validation = unique

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_generation_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._outputs = []

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._log_generation_metrics("test")

    def configure_model(self) -> None:
        shard_module(self)  # hardware=fsdp only

    def configure_optimizers(self):
        return configure_optimizers(self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_artifacts(self, checkpoint)

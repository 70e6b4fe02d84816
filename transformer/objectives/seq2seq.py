"""LightningModule for sequence-to-sequence (translation, summarization): label-smoothed cross-entropy for
training, beam search with sacreBLEU / chrF / ROUGE for validation and test."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from transformer.checkpoint import Artifacts
from transformer.decoding import DecodingConfig, generate
from transformer.metrics import generation_metrics
from transformer.model import EncoderDecoder
from transformer.objectives.base import TransformerModule, gather_unique
from transformer.optim import OptimConfig


class Seq2SeqModule(TransformerModule):
    def __init__(
        self, artifacts: Artifacts, optim: OptimConfig, decoding: DecodingConfig, max_nonfinite_steps: int = 10
    ) -> None:
        super().__init__(artifacts, optim, max_nonfinite_steps)
        self.model = EncoderDecoder(artifacts.model)
        self.decoding = decoding
        self.metric_names = artifacts.metrics  # of bleu, chrf, rouge1, rouge2, rougeL
        self.tokenizer = artifacts.tgt_tokenizer  # target ids -> detokenized text
        self.pad_id = artifacts.model.pad_id
        # _outputs: (example index, hypothesis, references); predictions: (example index, hypothesis)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model(src, tgt_in)  # (B, T, V)

    def _loss(self, batch, smoothing: float = 0.0) -> torch.Tensor:
        return self.model.loss(batch["src"], batch["tgt_in"], batch["tgt_out"], smoothing, self.pad_id)

    def step_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int, int]:
        tokens = batch["counts"]["target"]  # counted on the host by collation: no read from the device
        loss = self.model.loss(
            batch["src"], batch["tgt_in"], batch["tgt_out"], self.optim.label_smoothing, self.pad_id, "sum"
        )
        return loss, tokens, batch["src"].size(0)

    def generate(self, src: torch.Tensor, beam_size: int | None = None) -> list[str]:
        """Detokenized best output for each row of source ids (B, S), by self.decoding (beam_size: another beam)."""
        config = replace(self.decoding, beam_size=beam_size or self.decoding.beam_size, nbest=1)
        outputs = generate(self.model, src, self.model.config.start_id, self.model.config.eos_id, config)
        return [self.tokenizer.decode(best[0][1]) for best in outputs]

    def evaluate_batch(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        n = batch["src"].size(0)
        self.log(f"{stage}/loss", self._loss(batch), sync_dist=True, batch_size=n)
        limit = self.decoding.val_max_batches if stage == "val" else None
        if limit is not None and batch_idx >= limit:
            return
        beam = (self.decoding.val_beam_size or self.decoding.beam_size) if stage == "val" else None
        hypotheses = self.generate(batch["src"], beam)
        self._outputs.extend(zip(batch["index"].tolist(), hypotheses, batch["references"], strict=True))

    def log_metrics(self, stage: str) -> None:
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

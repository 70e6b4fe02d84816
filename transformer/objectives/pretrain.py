"""LightningModule for pretraining on raw text (task=pretrain): masked language modelling (an encoder, BERT) or
denoising (an encoder-decoder, BART), chosen by model.pretrain_objective. The corruption is data/noising.py's.

Metrics (validation and test, over the labelled tokens of the whole split): `loss` (mean cross-entropy per
token), `acc` (share of the tokens predicted exactly: the masked ones for mlm, every target token under teacher
forcing for denoising) and `ppl` (exp of the loss). The weights go on to a fine-tuning run with init_from.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torchmetrics.aggregation import MeanMetric

from transformer.checkpoint import Artifacts
from transformer.data.batching import collate_seq2seq, pad_sequences, token_counts
from transformer.data.noising import IGNORE, NoiseConfig, Vocabulary, denoise, example_rng, mask_tokens
from transformer.model import EncoderDecoder, MaskedLM
from transformer.objectives.base import TransformerModule
from transformer.optim import OptimConfig

# Lightning warns whenever a module corrupts batches in on_before_batch_transfer while a datamodule feeds it; here
# that is the design (the datamodule serves clean text to every task), so the warning would only be noise.
warnings.filterwarnings("ignore", message="You have overridden `on_before_batch_transfer`")


class PretrainModule(TransformerModule):
    def __init__(
        self, artifacts: Artifacts, optim: OptimConfig, noise: NoiseConfig, max_nonfinite_steps: int = 10
    ) -> None:
        super().__init__(artifacts, optim, max_nonfinite_steps)
        model_config, tokenizer = artifacts.model, artifacts.tgt_tokenizer
        self.objective = model_config.pretrain_objective
        self.model = MaskedLM(model_config) if self.objective == "mlm" else EncoderDecoder(model_config)
        self.noise, self.seed = noise, artifacts.seed
        self.vocab = Vocabulary.of(tokenizer)
        self.pad_id, self.bos_id, self.eos_id = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
        self.eval_loss, self.eval_acc = MeanMetric(), MeanMetric()  # token-weighted, synced across ranks

    def corrupt(self, batch: dict[str, Any], epoch: int) -> dict[str, Any]:
        """The noised batch of clean `src` (B, S): mlm {src, labels (B, S)}, denoising {src, tgt_in, tgt_out}.
        Each example's noise comes from (seed, epoch, its index): see data/noising.py."""
        rows = [row[row.ne(self.pad_id)].numpy() for row in batch["src"]]
        rngs = [example_rng(self.seed, epoch, int(i)) for i in batch["index"]]
        if self.objective == "mlm":
            pairs = [mask_tokens(ids, self.vocab, self.noise, rng) for ids, rng in zip(rows, rngs, strict=True)]
            src = pad_sequences([p[0] for p in pairs], self.pad_id)  # (B, S)
            labels = torch.full_like(src, IGNORE)
            for i, (_, label) in enumerate(pairs):
                labels[i, : len(label)] = torch.from_numpy(label)
            counts = token_counts([p[0] for p in pairs])
            counts["target"] = sum(int((label != IGNORE).sum()) for _, label in pairs)  # numpy, on the host
            return {"src": src, "labels": labels, "index": batch["index"], "counts": counts}
        noised = [denoise(ids, self.vocab, self.noise, rng) for ids, rng in zip(rows, rngs, strict=True)]
        examples = [
            {"src_ids": src.tolist(), "tgt_ids": ids.tolist(), "index": int(i)}
            for src, ids, i in zip(noised, rows, batch["index"], strict=True)
        ]  # the clean text is the target: tgt_in = bos + text, tgt_out = text + eos
        return collate_seq2seq(examples, self.pad_id, self.bos_id, self.eos_id)

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        # on the CPU, in the main process, before the batch moves to the device
        training = self.trainer is not None and self.trainer.training
        return self.corrupt(batch, self.current_epoch if training else -1)

    def _loss(self, batch, smoothing: float, reduction: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, predicted ids (N,), target ids (N,)) over the N labelled tokens."""
        if self.objective == "mlm":
            loss, logits, target = self.model.loss(batch["src"], batch["labels"], IGNORE, reduction)
            return loss, logits.argmax(-1), target
        memory, pad_mask = self.model.encode(batch["src"])
        logits = self.model.decode(batch["tgt_in"], memory, pad_mask, src=batch["src"])  # (B, T, V)
        keep = batch["tgt_out"].ne(self.pad_id)
        logits, target = logits[keep].float(), batch["tgt_out"][keep]
        loss = torch.nn.functional.cross_entropy(logits, target, label_smoothing=smoothing, reduction=reduction)
        return loss, logits.argmax(-1), target

    def step_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int, int]:
        if self.objective == "denoising":  # no predictions needed: the model's loss (fused, without the logits)
            loss = self.model.loss(
                batch["src"], batch["tgt_in"], batch["tgt_out"], self.optim.label_smoothing, self.pad_id, "sum"
            )
        else:
            loss, _, _ = self._loss(batch, self.optim.label_smoothing, "sum")
        # summed: divided by the step's tokens, counted on the host by corrupt() (mlm) or collation (denoising)
        return loss, batch["counts"]["target"], batch["src"].size(0)

    def evaluate_batch(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        loss, predicted, target = self._loss(batch, 0.0, "mean")
        n = target.numel()
        if n:
            self.eval_loss.update(loss.detach(), n)
            self.eval_acc.update(predicted.eq(target).float().mean(), n)

    def log_metrics(self, stage: str) -> None:
        loss, acc = float(self.eval_loss.compute()), float(self.eval_acc.compute())
        self.eval_loss.reset()
        self.eval_acc.reset()
        ppl = math.exp(min(loss, 50.0))  # capped: an untrained model's exp(loss) would overflow the log
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": acc, f"{stage}/ppl": ppl}, prog_bar=stage == "val")

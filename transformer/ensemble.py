"""Ensembles of trained models that share a tokenizer (`evaluate.py ckpt=[a.ckpt,b.ckpt]`), as fairseq ensembles
checkpoints: the classifier averages the members' class probabilities; the encoder-decoder averages their
next-token probabilities at every decoding step, so greedy and beam search run on the ensemble's distribution.

Both return log-probabilities where the members return logits: log_softmax leaves them unchanged, so the losses,
the metrics and the searches take an ensemble like any one model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from transformer.model import EncoderClassifier, EncoderDecoder


def log_mean_probs(logits: list[Tensor]) -> Tensor:
    """log((1/M) sum_m softmax(logits_m)), in float32."""
    stacked = torch.stack([torch.log_softmax(x.float(), dim=-1) for x in logits])
    return torch.logsumexp(stacked, dim=0) - math.log(len(logits))


class ClassifierEnsemble(nn.Module):
    def __init__(self, members: list[EncoderClassifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, src: Tensor) -> Tensor:
        """src: (B, S). Returns the log of the members' mean class probabilities (B, C)."""
        return log_mean_probs([member(src) for member in self.members])


class Seq2SeqEnsemble(nn.Module):
    """The EncoderDecoder interface (encode, decode, new_caches, loss, forward) over several members.

    The members' encoder outputs travel as one tensor, concatenated along the model dimension (B, S, sum D_m), so
    the searches select, repeat and shrink them as they do one model's; decode splits them again. The caches are
    the members' lists of (self, cross) pairs, one after the other.
    """

    def __init__(self, members: list[EncoderDecoder]) -> None:
        super().__init__()
        if any(m.copy is not None for m in members) and not all(m.copy is not None for m in members):
            raise ValueError("ensemble members must all copy from the source, or none")
        self.members = nn.ModuleList(members)
        self.config = min((m.config for m in members), key=lambda c: c.max_positions)
        self.widths = [m.config.d_model for m in members]
        self.layers = [m.config.n_decoder_layers for m in members]

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        outputs = [member.encode(src) for member in self.members]
        return torch.cat([memory for memory, _ in outputs], dim=-1), outputs[0][1]

    def new_caches(self):
        return [pair for member in self.members for pair in member.new_caches()]

    def decode(self, tgt_in: Tensor, memory: Tensor, memory_pad_mask: Tensor, caches=None, src: Tensor | None = None):
        memories = memory.split(self.widths, dim=-1)
        logits = []
        start = 0
        for member, part, n in zip(self.members, memories, self.layers, strict=True):
            member_caches = None if caches is None else caches[start : start + n]
            logits.append(member.decode(tgt_in, part, memory_pad_mask, member_caches, src))
            start += n
        return log_mean_probs(logits)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, pad_mask = self.encode(src)
        return self.decode(tgt_in, memory, pad_mask, src=src)

    def loss(self, src, tgt_in, tgt_out, smoothing: float = 0.0, ignore_index: int = 0, reduction: str = "mean"):
        """Label-smoothed cross-entropy of the ensemble's distribution (teacher forcing)."""
        logp = self(src, tgt_in)
        return nn.functional.cross_entropy(
            logp.flatten(0, 1), tgt_out.flatten(), ignore_index=ignore_index, label_smoothing=smoothing,
            reduction=reduction,
        )  # fmt: skip


def ensemble(models: list[nn.Module]) -> nn.Module:
    """One model from several of the same kind (a single model is returned as it is)."""
    if len(models) == 1:
        return models[0]
    if all(isinstance(m, EncoderClassifier) for m in models):
        return ClassifierEnsemble(models)
    if all(isinstance(m, EncoderDecoder) for m in models):
        return Seq2SeqEnsemble(models)
    raise ValueError("an ensemble needs models of one kind: all classifiers or all encoder-decoders")

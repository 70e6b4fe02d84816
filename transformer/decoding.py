"""Batched greedy and beam search for EncoderDecoder, with an incremental key/value cache.

Each step feeds only the newest token: self-attention keys/values of earlier positions and the encoder's
cross-attention keys/values live in the cache. Sentences that finish leave the batch, so the remaining ones
decode with less work. Hypotheses are returned without BOS and EOS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from transformer.ensemble import Seq2SeqEnsemble
from transformer.errors import ConfigError
from transformer.model import EncoderDecoder


@dataclass
class DecodingConfig:
    beam_size: int = 4
    length_penalty: float = 1.0
    max_len_a: float = 1.2  # budget of a*source_length + b generated tokens
    max_len_b: int = 10
    min_len: int = 0  # no EOS before this many tokens (fairseq --min-len), unless the budget ends first
    val_beam_size: int | None = 1  # validation during training: 1 is greedy (fast); None: beam_size
    val_max_batches: int | None = None  # decode only the first batches of validation (loss uses all)

    def __post_init__(self) -> None:
        if self.beam_size < 1 or (self.val_beam_size is not None and self.val_beam_size < 1):
            raise ConfigError(f"beam sizes must be >= 1, got {self.beam_size} / {self.val_beam_size}")
        if self.min_len < 0:
            raise ConfigError(f"decoding.min_len must be >= 0, got {self.min_len}")


def max_lengths(src_pad_mask: Tensor, max_len_a: float, max_len_b: int, limit: int) -> Tensor:
    """Per-sentence budget of generated tokens (EOS excluded): a * source_length + b, capped by `limit`."""
    src_len = (~src_pad_mask).sum(1).float()
    return (max_len_a * src_len + max_len_b).floor().long().clamp(1, limit)


def _check(model: EncoderDecoder, src: Tensor, beam_size: int = 1) -> None:
    if not isinstance(model, EncoderDecoder | Seq2SeqEnsemble):
        raise TypeError(f"decoding needs an EncoderDecoder, got {type(model).__name__}")
    if src.dim() != 2 or src.size(1) == 0:
        raise ValueError(f"src must be a non-empty (batch, length) id tensor, got shape {tuple(src.shape)}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")


def _select(caches, index: Tensor, include_static: bool) -> None:
    for self_cache, cross_cache in caches:
        self_cache.reorder(index)
        if include_static:
            cross_cache.reorder(index)


def _shrink(rows: Tensor, caches, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Keep only `rows` of the decoding batch (finished sentences leave it): the per-row tensors (memory, padding
    mask, source ids) and both caches. Greedy and beam search shrink their batch through this one function."""
    _select(caches, rows, include_static=True)
    return tuple(t[rows] for t in tensors)


@torch.inference_mode()
def greedy_search(
    model: EncoderDecoder,
    src: Tensor,
    bos_id: int,
    eos_id: int,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    min_len: int = 0,
) -> list[list[int]]:
    """Argmax decoding of src (B, S); EOS is blocked before min_len tokens. Returns B token lists."""
    _check(model, src)
    memory, pad_mask = model.encode(src)
    limit = model.config.max_positions - 1
    budget = max_lengths(pad_mask, max_len_a, max_len_b, limit)  # (B,)
    B = src.size(0)
    out = torch.full((B, int(budget.max()) + 1), eos_id, dtype=torch.long, device=src.device)
    active = torch.arange(B, device=src.device)
    tokens = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
    caches = model.new_caches()
    for t in range(int(budget.max()) + 1):
        logits = model.decode(tokens, memory, pad_mask, caches, src)[:, -1]  # (n, V)
        if t < min_len:
            logits[:, eos_id] = -math.inf
        next_tokens = logits.argmax(-1)
        next_tokens = torch.where(budget[active] <= t, eos_id, next_tokens)  # out of budget: force EOS
        out[active, t] = next_tokens
        keep = next_tokens.ne(eos_id)
        if not keep.all():
            if not keep.any():
                break
            rows = keep.nonzero().squeeze(1)
            active, next_tokens = active[rows], next_tokens[rows]
            memory, pad_mask, src = _shrink(rows, caches, memory, pad_mask, src)
        tokens = next_tokens[:, None]
    hyps = []
    for row in out.tolist():
        hyps.append(row[: row.index(eos_id)] if eos_id in row else row)
    return hyps


@torch.inference_mode()
def beam_search(
    model: EncoderDecoder,
    src: Tensor,
    bos_id: int,
    eos_id: int,
    beam_size: int = 5,
    length_penalty: float = 1.0,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    nbest: int = 1,
    min_len: int = 0,
) -> list[list[list[int]]] | list[list[int]]:
    """Beam search over src (B, S), in the manner of fairseq.

    Each step ranks the 2K best continuations of the K beams. A continuation that ends in EOS among the top K
    becomes a finished hypothesis, scored sum(log p) / length**length_penalty (length counts EOS); the K best
    others stay alive. A sentence is done once it has K finished hypotheses; at its length budget every beam
    is forced to end; before min_len tokens (fairseq's --min-len) none may. With beam_size=1 this is exactly
    greedy search.

    Returns the best hypothesis per sentence, or with nbest > 1, a list of the nbest best per sentence.
    """
    _check(model, src, beam_size)
    K = beam_size
    if not 1 <= nbest <= K:
        raise ValueError(f"nbest must be between 1 and beam_size={K}, got {nbest}")
    B, device = src.size(0), src.device
    memory, pad_mask = model.encode(src)
    budget = max_lengths(pad_mask, max_len_a, max_len_b, model.config.max_positions - 1)  # (B,)
    memory, pad_mask = memory.repeat_interleave(K, 0), pad_mask.repeat_interleave(K, 0)  # (B*K, S, D)
    src = src.repeat_interleave(K, 0)  # (B*K, S): the copy mechanism, if any, reads the source ids
    caches = model.new_caches()

    active = torch.arange(B, device=device)  # sentence of each row of the shrinking batch
    scores = torch.zeros(B, K, device=device)  # sum of log-probs of each alive beam
    scores[:, 1:] = -math.inf  # all beams start identical: keep one so the first step yields K distinct ones
    tokens = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)  # (n*K, t+1) with BOS
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]

    for t in range(int(budget.max()) + 1):
        n = active.numel()
        logits = model.decode(tokens[:, -1:], memory, pad_mask, caches, src)[:, -1]  # (n*K, V)
        logp = torch.log_softmax(logits.float(), dim=-1)
        V = logp.size(-1)
        logp[:, bos_id] = -math.inf
        out_of_budget = (budget[active] <= t).repeat_interleave(K)  # (n*K,)
        if out_of_budget.any():
            eos_logp = logp[out_of_budget, eos_id]
            logp[out_of_budget] = -math.inf
            logp[out_of_budget, eos_id] = eos_logp
        if t < min_len:
            logp[~out_of_budget, eos_id] = -math.inf

        candidates = (scores.unsqueeze(-1) + logp.view(n, K, V)).view(n, K * V)
        top_scores, top_index = candidates.topk(min(2 * K, K * V), dim=1)  # (n, 2K)
        top_beam, top_token = top_index // V, top_index % V
        is_eos = top_token.eq(eos_id) & top_scores.isfinite()

        ended = is_eos[:, :K].nonzero().tolist()  # EOS among the top K: finalize
        if ended:
            normaliser = (t + 1) ** length_penalty
            for i, j in ended:
                sentence = int(active[i])
                if len(finished[sentence]) < K:
                    history = tokens[i * K + int(top_beam[i, j]), 1:].tolist()
                    finished[sentence].append((float(top_scores[i, j]) / normaliser, history))

        alive_scores, alive_pos = top_scores.masked_fill(is_eos, -math.inf).topk(K, dim=1)  # (n, K)
        rows = (torch.arange(n, device=device)[:, None] * K + top_beam.gather(1, alive_pos)).view(-1)
        tokens = torch.cat([tokens[rows], top_token.gather(1, alive_pos).view(-1, 1)], dim=1)
        _select(caches, rows, include_static=False)  # beams stay within their sentence: cross K/V unchanged
        scores = alive_scores

        done = torch.tensor([len(finished[int(s)]) >= K for s in active], device=device)
        if done.any():
            if done.all():
                break
            keep = (~done).nonzero().squeeze(1)
            rows = (keep[:, None] * K + torch.arange(K, device=device)).view(-1)
            active, scores = active[keep], scores[keep]
            tokens, memory, pad_mask, src = _shrink(rows, caches, tokens, memory, pad_mask, src)

    results = []
    for hyps in finished:
        ranked = [h for _, h in sorted(hyps, key=lambda item: -item[0])]
        results.append(ranked[0] if nbest == 1 else ranked[:nbest])
    return results

"""Batched greedy and beam search for EncoderDecoder, with an incremental key/value cache.

Each step feeds only the newest token: self-attention keys/values of earlier positions and the encoder's
cross-attention keys/values live in the cache. Sentences that finish leave the batch, so the remaining ones
decode with less work. Hypotheses are returned without BOS and EOS.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from transformer.config import DecodingConfig
from transformer.ensemble import Seq2SeqEnsemble
from transformer.model import EncoderDecoder


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


def ban_repeated_ngrams(logp: Tensor, tokens: Tensor, n: int) -> None:
    """Set to -inf, in place, the scores logp (rows, V) of every token that would complete an n-gram already
    present in tokens (rows, t), the tokens generated so far (BOS excluded)."""
    t = tokens.size(1)
    if n == 0 or t < n:
        return
    if n == 1:
        logp.scatter_(1, tokens, -math.inf)
        return
    grams = tokens.unfold(1, n, 1)  # (rows, t-n+1, n)
    prefix = tokens[:, t - n + 1 :]  # (rows, n-1): the n-gram being completed
    match = (grams[:, :, :-1] == prefix[:, None, :]).all(-1)  # (rows, t-n+1)
    rows, where = match.nonzero(as_tuple=True)
    logp[rows, grams[rows, where, -1]] = -math.inf


def mix_seed(*keys: int) -> int:
    """A 63-bit generator seed from integer keys (e.g. a request's seed and an input's index), well mixed, so
    nearby keys draw unrelated streams."""
    return int(np.random.SeedSequence([k & (2**63 - 1) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


def sampling_seeds(
    decoding: DecodingConfig | None, numbers: Iterable[int], default_seed: int | None = None
) -> list[int] | None:
    """One seed per input when sampling, mixed from decoding.seed (else `default_seed`) and the input's number (its
    line, its place in a request), so that an input's samples depend on that seed and its number only, not on what
    shares its batch. None when not sampling, or when neither seed is set (draws then come from torch's RNG)."""
    if decoding is None or not decoding.sampling:
        return None
    seed = decoding.seed if decoding.seed is not None else default_seed
    return None if seed is None else [mix_seed(seed, number) for number in numbers]


class Sampler:
    """Draws the next token of each row from softmax(logits / temperature), restricted to the top_k most likely
    tokens and to the nucleus of mass top_p (Holtzman et al., 2020). Every row has its own generator, so a row's
    draws depend on its seed alone, not on the other rows of the batch."""

    def __init__(self, seeds: list[int], temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> None:
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def probabilities(self, logits: Tensor) -> Tensor:
        """logits (n, V), -inf where banned -> sampling probabilities (n, V)."""
        logits = logits.float() / self.temperature
        if 0 < self.top_k < logits.size(-1):
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]  # (n, 1)
            logits = logits.masked_fill(logits < kth, -math.inf)
        if self.top_p < 1.0:
            ordered, order = logits.sort(dim=-1, descending=True)
            probs = ordered.softmax(-1)
            before = probs.cumsum(-1) - probs  # mass of the more likely tokens
            logits = logits.scatter(-1, order, ordered.masked_fill(before >= self.top_p, -math.inf))
        return logits.softmax(-1)

    def draw(self, logits: Tensor, rows: Tensor) -> Tensor:
        """One token (n,) for each row of logits (n, V); rows (n,) says which generator each row uses."""
        probs = self.probabilities(logits).cpu()
        drawn = [torch.multinomial(probs[i], 1, generator=self.generators[r]) for i, r in enumerate(rows.tolist())]
        return torch.cat(drawn).to(logits.device)


@torch.inference_mode()
def greedy_search(
    model: EncoderDecoder,
    src: Tensor,
    bos_id: int,
    eos_id: int,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    min_len: int = 0,
    no_repeat_ngram_size: int = 0,
    sampler: Sampler | None = None,
    length_penalty: float = 1.0,
    return_scores: bool = False,
) -> list[list[int]] | list[tuple[float, list[int]]]:
    """Argmax decoding of src (B, S), or with a sampler, ancestral sampling (one generator per row of src).
    EOS is blocked before min_len tokens; no_repeat_ngram_size > 0 blocks repeated n-grams.

    Returns B token lists, or with return_scores B pairs (score, tokens), scored as beam search scores its
    hypotheses: the model's sum of log-probabilities / length**length_penalty (length counts EOS)."""
    _check(model, src)
    memory, pad_mask = model.encode(src)
    limit = model.config.max_length - 1
    budget = max_lengths(pad_mask, max_len_a, max_len_b, limit)  # (B,)
    B, device = src.size(0), src.device
    steps = int(budget.max()) + 1
    out = torch.full((B, steps), eos_id, dtype=torch.long, device=device)
    total = torch.zeros(B, device=device)  # sum of log-probabilities of each output
    ends = torch.full((B,), steps, device=device)  # tokens of each output, EOS included
    active = torch.arange(B, device=device)
    history = torch.full((B, 1), bos_id, dtype=torch.long, device=device)  # (n, t+1): BOS and the tokens so far
    caches = model.new_caches()
    for t in range(steps):
        logits = model.decode(history[:, -1:], memory, pad_mask, caches, src)[:, -1].float()  # (n, V)
        logp = torch.log_softmax(logits, dim=-1)
        allowed = logits.clone()
        if t < min_len:
            allowed[:, eos_id] = -math.inf
        ban_repeated_ngrams(allowed, history[:, 1:], no_repeat_ngram_size)
        next_tokens = allowed.argmax(-1) if sampler is None else sampler.draw(allowed, active)
        next_tokens = torch.where(budget[active] <= t, eos_id, next_tokens)  # out of budget: force EOS
        out[active, t] = next_tokens
        total[active] += logp.gather(1, next_tokens[:, None]).squeeze(1)
        keep = next_tokens.ne(eos_id)
        if not keep.all():
            ends[active[~keep]] = t + 1
            if not keep.any():
                break
            rows = keep.nonzero().squeeze(1)
            active, next_tokens = active[rows], next_tokens[rows]
            memory, pad_mask, src, history = _shrink(rows, caches, memory, pad_mask, src, history)
        history = torch.cat([history, next_tokens[:, None]], dim=1)
    hyps = []
    for row in out.tolist():
        hyps.append(row[: row.index(eos_id)] if eos_id in row else row)
    if not return_scores:
        return hyps
    scores = (total / ends.float() ** length_penalty).tolist()
    return list(zip(scores, hyps, strict=True))


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
    no_repeat_ngram_size: int = 0,
    return_scores: bool = False,
) -> list[list[list[int]]] | list[list[int]] | list[list[tuple[float, list[int]]]]:
    """Beam search over src (B, S), in the manner of fairseq.

    Each step ranks the 2K best continuations of the K beams. A continuation that ends in EOS among the top K
    becomes a finished hypothesis, scored sum(log p) / length**length_penalty (length counts EOS); the K best
    others stay alive. A sentence is done once it has K finished hypotheses; at its length budget every beam
    is forced to end; before min_len tokens (fairseq's --min-len) none may. With beam_size=1 this is exactly
    greedy search. no_repeat_ngram_size > 0 forbids continuations that repeat an n-gram of the beam.

    Returns the best hypothesis per sentence, or with nbest > 1, a list of the nbest best per sentence; with
    return_scores, a list of the nbest best (score, tokens) pairs per sentence, best first.
    """
    _check(model, src, beam_size)
    K = beam_size
    if not 1 <= nbest <= K:
        raise ValueError(f"nbest must be between 1 and beam_size={K}, got {nbest}")
    B, device = src.size(0), src.device
    memory, pad_mask = model.encode(src)
    budget = max_lengths(pad_mask, max_len_a, max_len_b, model.config.max_length - 1)  # (B,)
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
        if bos_id != eos_id:  # BART starts the decoder with eos, which it must still be able to end with
            logp[:, bos_id] = -math.inf
        out_of_budget = (budget[active] <= t).repeat_interleave(K)  # (n*K,)
        if out_of_budget.any():
            eos_logp = logp[out_of_budget, eos_id]
            logp[out_of_budget] = -math.inf
            logp[out_of_budget, eos_id] = eos_logp
        if t < min_len:
            logp[~out_of_budget, eos_id] = -math.inf
        ban_repeated_ngrams(logp, tokens[:, 1:], no_repeat_ngram_size)

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
        ranked = sorted(hyps, key=lambda item: -item[0])[:nbest]
        if return_scores:
            results.append(ranked)
        else:
            results.append(ranked[0][1] if nbest == 1 else [h for _, h in ranked])
    return results


def generate(
    model: EncoderDecoder, src: Tensor, bos_id: int, eos_id: int, config: DecodingConfig, seeds: list[int] | None = None
) -> list[list[tuple[float, list[int]]]]:
    """The config.nbest best (score, tokens) outputs of each row of src (B, S), best first, by the search that
    config asks for: greedy (beam_size 1), beam search, or sampling. Sampling draws nbest samples per row from
    generators seeded by mix_seed(seeds[i], j); seeds default to config.seed mixed with the row index (a fresh
    random seed when config.seed is None)."""
    c = config
    limits = dict(max_len_a=c.max_len_a, max_len_b=c.max_len_b, min_len=c.min_len)
    if c.sampling:
        if seeds is None:
            base = c.seed if c.seed is not None else int(torch.randint(0, 2**62, (1,)))
            seeds = [mix_seed(base, i) for i in range(src.size(0))]
        if len(seeds) != src.size(0):
            raise ValueError(f"seeds has {len(seeds)} entries for {src.size(0)} inputs")
        sampler = Sampler(
            [mix_seed(seed, j) for seed in seeds for j in range(c.nbest)], c.temperature, c.top_k, c.top_p
        )
        drawn = greedy_search(
            model, src.repeat_interleave(c.nbest, 0), bos_id, eos_id, **limits,
            no_repeat_ngram_size=c.no_repeat_ngram_size, sampler=sampler, length_penalty=c.length_penalty,
            return_scores=True,
        )  # fmt: skip
        rows = [drawn[i * c.nbest : (i + 1) * c.nbest] for i in range(src.size(0))]
        return [sorted(row, key=lambda item: -item[0]) for row in rows]
    if c.beam_size == 1:
        best = greedy_search(
            model, src, bos_id, eos_id, **limits, no_repeat_ngram_size=c.no_repeat_ngram_size,
            length_penalty=c.length_penalty, return_scores=True,
        )  # fmt: skip
        return [[hyp] for hyp in best]
    return beam_search(
        model, src, bos_id, eos_id, c.beam_size, c.length_penalty, c.max_len_a, c.max_len_b, c.nbest, c.min_len,
        c.no_repeat_ngram_size, return_scores=True,
    )  # fmt: skip

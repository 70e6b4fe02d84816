"""What the model attends to: the attention probabilities of a forward pass, and what is read off them.

`record_attention(model)` makes every MultiHeadAttention of the model keep the weights it computes (after masking,
before dropout) while the model runs; `inference.attention_maps` runs a trained module on one input and returns
them as `AttentionMaps`, with the tokens on their axes: the encoder self-attention, and for seq2seq the decoder
self-attention and the cross-attention of the teacher-forced pass over the output (the model's own, or a given
target). That pass computes exactly what incremental decoding computed at each step
(tests/inference/test_attend.py checks it), so its maps are those of the prediction. Read off the maps:
  - `merge_words`: SentencePiece pieces merged into words (attention *to* a word is the sum over its pieces,
    attention *from* a word the mean over its pieces, as in Clark et al. 2019), rows still summing to 1;
  - `rollout`: attention rollout (Abnar & Zuidema 2020), the product over layers of (A + I) / 2 with A the
    head-averaged attention, and what the classifier's pooled vector draws from each input token;
  - `alignment`: the cross-attention of a layer averaged over its heads, and its argmax per target word;
  - `head_summaries`: entropy, mean attended distance and the share of attention to the previous token, to the
    token itself and to punctuation, with the pattern that dominates.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from transformer.attention import MultiHeadAttention
from transformer.data import Tokenizer

WORD_START = "\u2581"  # SentencePiece's mark of a piece that begins a word
KINDS = ("encoder", "decoder", "cross")  # encoder self-attention, decoder self-attention, cross-attention


@contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, list[Tensor]]]:
    """{module name: weights of each call (B, H, T, S)} of every attention module of `model`, filled while the
    block runs. Recording uses the explicit attention path, which computes the same function as the fused one."""
    modules = {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    for module in modules.values():
        module.record = []
    try:
        yield {name: module.record for name, module in modules.items()}
    finally:
        for module in modules.values():
            module.record = None


def stack_layers(recorded: dict[str, list[Tensor]], kind: str) -> Tensor | None:
    """The single recorded call of each layer of one kind, stacked: (L, H, T, S) for the first batch row."""
    suffix = {"encoder": "self_attn", "decoder": "self_attn", "cross": "cross_attn"}[kind]
    prefix = "encoder." if kind == "encoder" else "decoder."
    names = [n for n in recorded if n.startswith(prefix) and n.endswith(suffix)]
    if not names:
        return None
    names.sort(key=lambda n: int(n.split(".")[2]))  # <stack>.layers.<i>.<attention>
    return torch.stack([recorded[n][-1][0] for n in names])


@dataclass
class AttentionMaps:
    """The maps of one input. Tokens label the axes: `source` the encoder's, `target` the decoder's rows (the
    token each decoder position produces, ending with </s>) and `target_in` the decoder self-attention's keys
    (<s> and the output without its last token)."""

    objective: str
    source: list[str]
    encoder: Tensor  # (L, H, S, S)
    prediction: str
    target: list[str] = field(default_factory=list)
    target_in: list[str] = field(default_factory=list)
    decoder: Tensor | None = None  # (L, H, T, T)
    cross: Tensor | None = None  # (L, H, T, S)
    probabilities: dict[str, float] | None = None  # classification: label -> probability
    pooling: str = "mean"  # the classifier's pooling (rollout reads what reaches the pooled vector)
    words: bool = False  # axes are words (merged pieces) rather than pieces

    def layers(self, kind: str) -> Tensor | None:
        return {"encoder": self.encoder, "decoder": self.decoder, "cross": self.cross}[kind]


def pieces(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.id_to_piece(i) for i in ids]


def word_groups(tokens: list[str]) -> tuple[list[str], list[list[int]]]:
    """Words and the piece positions of each: a piece starting with ▁ (or a special token) begins a word."""
    words: list[str] = []
    groups: list[list[int]] = []
    for i, piece in enumerate(tokens):
        if not groups or is_special(piece) or piece.startswith(WORD_START) or is_special(words[-1]):
            groups.append([i])
            words.append(piece)
        else:
            groups[-1].append(i)
            words[-1] += piece
    return [word.lstrip(WORD_START) or word for word in words], groups


def is_special(token: str) -> bool:
    return token.startswith("<") and token.endswith(">")


def grouping(groups: list[list[int]], n: int) -> Tensor:
    """(n, W) one-hot: piece -> its word."""
    matrix = torch.zeros(n, len(groups))
    for w, members in enumerate(groups):
        matrix[members, w] = 1.0
    return matrix


def merge(weights: Tensor, row_groups: list[list[int]], col_groups: list[list[int]]) -> Tensor:
    """(..., Q, K) piece-level attention -> (..., Wq, Wk) word-level: attention to a word sums over its pieces,
    attention from a word is the mean of its pieces' rows."""
    cols = grouping(col_groups, weights.size(-1))  # (K, Wk)
    rows = grouping(row_groups, weights.size(-2))  # (Q, Wq)
    rows = rows / rows.sum(0, keepdim=True)
    return rows.T @ (weights @ cols)


def merge_words(maps: AttentionMaps) -> AttentionMaps:
    """The same maps with words on the axes."""
    if maps.words:
        return maps
    source, src_groups = word_groups(maps.source)
    merged = AttentionMaps(
        objective=maps.objective,
        source=source,
        encoder=merge(maps.encoder, src_groups, src_groups),
        prediction=maps.prediction,
        probabilities=maps.probabilities,
        pooling=maps.pooling,
        words=True,
    )
    if maps.objective == "seq2seq":
        target, tgt_groups = word_groups(maps.target)
        target_in, in_groups = word_groups(maps.target_in)
        merged.target, merged.target_in = target, target_in
        merged.decoder = merge(maps.decoder, tgt_groups, in_groups)
        merged.cross = merge(maps.cross, tgt_groups, src_groups)
    return merged


def rollout(encoder: Tensor) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020) of encoder maps (L, H, S, S): prod_l (mean_h A_l + I) / 2, rows
    renormalized, the last layer first. Entry (i, j): how much of position i's output flows from input j."""
    size = encoder.size(-1)
    eye = torch.eye(size)
    result = eye
    for layer in encoder:
        a = 0.5 * layer.mean(0) + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
        result = a @ result
    return result  # (S, S)


def pooled_rollout(maps: AttentionMaps) -> Tensor:
    """What the classifier's pooled vector draws from each input piece (sums to 1): the rollout's rows mixed as
    the pooling mixes positions (the mean over tokens, or the first token). Needs piece-level maps (the pooling
    is over pieces); `sum_words` gives the words' shares."""
    if maps.words:
        raise ValueError("pooled_rollout needs the piece-level maps (before merge_words)")
    flow = rollout(maps.encoder)
    size = flow.size(0)
    pool = torch.full((size,), 1.0 / size) if maps.pooling == "mean" else torch.eye(size)[0]
    return pool @ flow  # (S,)


def sum_words(values: Tensor, tokens: list[str]) -> Tensor:
    """Per-piece shares (S,) -> per-word shares (W,)."""
    _, groups = word_groups(tokens)
    return values @ grouping(groups, values.numel())


def alignment(maps: AttentionMaps, layer: int | None = None) -> tuple[int, Tensor, list[int]]:
    """(layer used, soft alignment (T, S): the layer's cross-attention averaged over heads, hard alignment: the
    source position each target position attends to most). Default layer: the second to last when there are
    several (Garg et al. 2019 found it aligns best), else the last."""
    assert maps.cross is not None
    n = maps.cross.size(0)
    if layer is None:
        layer = n - 2 if n > 1 else n - 1
    if not -n <= layer < n:
        raise ValueError(f"alignment layer {layer} does not exist: the decoder has {n} layers (0..{n - 1})")
    layer %= n
    soft = maps.cross[layer].mean(0)
    return layer, soft, soft.argmax(-1).tolist()


PUNCTUATION = set(string.punctuation) | {"...", "--", "``", "''"}


def is_punctuation(token: str) -> bool:
    text = token.lstrip(WORD_START)
    return bool(text) and all(ch in PUNCTUATION for ch in text)


def head_summaries(maps: AttentionMaps, kind: str) -> list[list[dict[str, Any]]]:
    """Per layer, per head: entropy (nats, and relative to the uniform distribution over the keys), mean attended
    distance |i - j| (self-attention), the share of attention on the previous token, the token itself and
    punctuation, and the dominant pattern (share > 0.5, or "broad" above 0.8 relative entropy)."""
    weights = maps.layers(kind)
    if weights is None:
        return []
    keys = {"encoder": maps.source, "decoder": maps.target_in, "cross": maps.source}[kind]
    L, H, Q, K = weights.shape
    p = weights.clamp_min(1e-12)
    entropy = -(weights * p.log()).sum(-1).mean(-1)  # (L, H)
    relative = entropy / max(torch.log(torch.tensor(float(K))).item(), 1e-12)
    punct = torch.tensor([is_punctuation(t) for t in keys], dtype=torch.float)
    to_punct = (weights @ punct).mean(-1)  # (L, H)
    self_like = kind != "cross"
    if self_like:
        i = torch.arange(Q)[:, None].float()
        j = torch.arange(K)[None, :].float()
        distance = (weights * (i - j).abs()).sum(-1).mean(-1)
        diag = torch.diagonal(weights, dim1=-2, dim2=-1)  # (L, H, min(Q, K))
        to_self = diag.mean(-1)
        previous = torch.diagonal(weights, offset=-1, dim1=-2, dim2=-1)
        to_previous = previous.mean(-1) if previous.numel() else torch.zeros(L, H)
    summaries = []
    for layer in range(L):
        row = []
        for head in range(H):
            item = {
                "entropy": round(float(entropy[layer, head]), 4),
                "relative_entropy": round(float(relative[layer, head]), 4),
                "to_punctuation": round(float(to_punct[layer, head]), 4),
            }
            if self_like:
                item.update(
                    mean_distance=round(float(distance[layer, head]), 4),
                    to_self=round(float(to_self[layer, head]), 4),
                    to_previous=round(float(to_previous[layer, head]), 4),
                )
            item["pattern"] = pattern(item)
            row.append(item)
        summaries.append(row)
    return summaries


def pattern(item: dict[str, Any]) -> str:
    for key, name in (("to_previous", "previous token"), ("to_self", "self"), ("to_punctuation", "punctuation")):
        if item.get(key, 0.0) > 0.5:
            return name
    return "broad" if item["relative_entropy"] > 0.8 else "mixed"

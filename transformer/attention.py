"""Multi-head scaled dot-product attention: softmax(Q K^T / sqrt(d_k)) V, with per-head projections and W_O.

One module serves as self-attention (keys/values from the query sequence) and as cross-attention (keys/values
from the encoder output). Two interchangeable back-ends compute the same function:
  - "sdpa": one fused call to torch.nn.functional.scaled_dot_product_attention (fast path);
  - "explicit": the formula written out, which can also return the attention weights;
  - "auto" (default): sdpa on GPUs, explicit on CPU, where it trains faster (SDPA's CPU backward is slow).
Masks follow torch.nn.MultiheadAttention: `key_padding_mask` is a bool (B, S) tensor, True at padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer.dropout import dropout


@dataclass
class AttentionCache:
    """Keys and values kept between decoding steps, each (B, H, L, Dh).

    Self-attention appends one position per step; cross-attention computes the encoder's keys and values
    once (`static=True`) and reuses them.
    """

    k: Tensor | None = None
    v: Tensor | None = None
    static: bool = False

    def reorder(self, index: Tensor) -> None:
        """Select batch rows, e.g. to follow beams (index: (B',) long)."""
        if self.k is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)


class MultiHeadAttention(nn.Module):
    def __init__(
        self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True, backend: str = "auto"
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if backend not in ("auto", "sdpa", "explicit"):
            raise ValueError(f"attention backend {backend!r} is not one of ('auto', 'sdpa', 'explicit')")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout, self.backend = dropout, backend
        self.record: list[Tensor] | None = None  # when a list, every forward appends its weights (attend.py)
        # Q, K and V of all heads packed in one matrix (rows [W_Q; W_K; W_V]), as in nn.MultiheadAttention.
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Xavier on each of W_Q, W_K, W_V separately (fan-in = fan-out = D), like nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out_proj.weight)
        if self.in_proj.bias is not None:
            nn.init.zeros_(self.in_proj.bias)
            nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)

    def forward(
        self,
        query: Tensor,
        memory: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: AttentionCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from `query` (B, T, D) to `memory` (B, S, D), or to `query` itself when memory is None.

        key_padding_mask: (B, S) bool, True where the key is padding.
        causal: position t attends to keys <= t (self-attention over a whole sequence only).
        cache: incremental decoding state; with it, `query` holds only the new position(s).
        need_weights: also return the (B, H, T, S) attention weights (explicit path).
        Returns the output (B, T, D) and the weights or None.
        While `self.record` is a list (transformer.attend.record_attention), the weights of every call are
        appended to it: the probabilities of this very forward, after masking and before dropout.
        """
        need_weights = need_weights or self.record is not None
        D = self.d_model
        W, b = self.in_proj.weight, self.in_proj.bias
        if memory is None:  # self-attention: one matmul for Q, K, V
            q, k, v = F.linear(query, W, b).split(D, dim=-1)
            k, v = self._heads(k), self._heads(v)
            if cache is not None:
                if cache.k is not None:  # positions decoded so far come first
                    k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
                cache.k, cache.v = k, v
        elif cache is not None and cache.static and cache.k is not None:
            q = F.linear(query, W[:D], None if b is None else b[:D])
            k, v = cache.k, cache.v
        else:  # cross-attention: Q from the query, K and V from memory
            q = F.linear(query, W[:D], None if b is None else b[:D])
            k, v = F.linear(memory, W[D:], None if b is None else b[D:]).split(D, dim=-1)
            k, v = self._heads(k), self._heads(v)
            if cache is not None:  # contiguous once: strided K/V slow down every later decoding step
                k, v = k.contiguous(), v.contiguous()
                cache.k, cache.v, cache.static = k, v, True
        q = self._heads(q)  # (B, H, T, Dh)

        T, S = q.size(2), k.size(2)
        if causal and cache is not None and T > 1:
            raise ValueError("causal attention with a cache takes one new position per call")
        # With a cache, the new query sits at the last position and may see every cached key: no causal mask.
        causal = causal and cache is None
        mask = None  # (B or 1, 1, T or 1, S) bool, True where attention is allowed
        if key_padding_mask is not None:
            if key_padding_mask.shape != (q.size(0), S):
                raise ValueError(
                    f"key_padding_mask has shape {tuple(key_padding_mask.shape)}, expected (batch, keys) = "
                    f"{(q.size(0), S)}"
                )
            mask = ~key_padding_mask[:, None, None, :]
        if causal and mask is not None:
            mask = mask & torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
            causal = False
        dropout_p = self.dropout if self.training else 0.0

        # auto: on CPU the explicit path is faster, in training (SDPA's CPU backward is slow: 1.3x at length 256)
        # and for single decoding steps; on GPUs the fused kernels win.
        fused = self.backend == "sdpa" or (self.backend == "auto" and q.device.type != "cpu")
        single_step = cache is not None and T == 1 and q.device.type == "cpu"
        if fused and not need_weights and not single_step:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
            weights = None
        else:
            out, weights = explicit_attention(q, k, v, mask, causal, dropout_p)
            if self.record is not None:
                self.record.append(weights.detach().float())
        out = out.transpose(1, 2).reshape(q.size(0), T, D)  # (B, T, D): heads concatenated
        return self.out_proj(out), weights


def explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, dropout_p: float
) -> tuple[Tensor, Tensor]:
    """softmax(Q K^T / sqrt(d_k)) V written out. q: (B, H, T, Dh), k/v: (B, H, S, Dh); mask True = attend.

    Returns the output (B, H, T, Dh) and the attention weights (B, H, T, S) before dropout.
    """
    T, S = q.size(-2), k.size(-2)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, T, S)
    if causal:
        scores = scores.masked_fill(~torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T), -math.inf)
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    dropped = dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights

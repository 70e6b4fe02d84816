"""Transformer models: an encoder classifier and an encoder-decoder (Vaswani et al., 2017).

Reads top to bottom: embeddings, feed-forward, encoder block, decoder block, encoder, decoder, the two models.
Shapes: B batch, S source length, T target length, D d_model, V vocabulary (see ModelConfig).
"""

from __future__ import annotations

import math
import types

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from transformer.attention import AttentionCache, MultiHeadAttention
from transformer.config import ModelConfig
from transformer.dropout import Dropout
from transformer.loss import linear_cross_entropy


def sinusoidal_table(length: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(...). Returns (length, D)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)[:, : d_model // 2]
    return table


def sinusoidal_halves_table(length: int, d_model: int) -> Tensor:
    """The same frequencies as sinusoidal_table, laid out as Marian has them: sines first, then cosines."""
    table = sinusoidal_table(length, d_model)
    return torch.cat([table[:, 0::2], table[:, 1::2]], dim=1)


class Embedding(nn.Module):
    """Token embedding scaled by sqrt(D) (unless `scale` is off), plus positional encoding, then dropout.

    Pretrained families add a token-type vector (BERT), a LayerNorm on the sum (BERT, RoBERTa, BART) and start
    their learned positions at row position_offset (RoBERTa, BART).
    """

    def __init__(self, config: ModelConfig, tokens: nn.Embedding, scale: bool = True) -> None:
        super().__init__()
        self.tokens = tokens  # may be shared between encoder, decoder and output projection
        self.scale = math.sqrt(config.d_model) if scale else 1.0
        self.max_positions, self.position_offset = config.max_positions, config.position_offset
        if config.positional == "learned":
            self.positions = nn.Embedding(config.max_positions, config.d_model)
            nn.init.normal_(self.positions.weight, std=config.d_model**-0.5)
        else:
            self.positions = None
            make = sinusoidal_table if config.positional == "sinusoidal" else sinusoidal_halves_table
            self.register_buffer("table", make(config.max_positions, config.d_model), persistent=False)
        if config.token_types:
            self.token_types = nn.Embedding(config.token_types, config.d_model)
            nn.init.normal_(self.token_types.weight, std=config.d_model**-0.5)
        if config.embed_norm:
            self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.dropout)

    def forward(self, ids: Tensor, offset: int = 0) -> Tensor:
        """ids: (B, L) token ids; offset: index of the first position (incremental decoding)."""
        L = ids.size(1)
        start = self.position_offset + offset
        if start + L > self.max_positions:
            first = f" (positions start at {self.position_offset})" if self.position_offset else ""
            raise ValueError(
                f"sequence of length {offset + L} exceeds max_positions={self.max_positions}{first}: "
                f"truncate inputs or raise model.max_positions"
            )
        if self.positions is not None:
            pos = self.positions.weight[start : start + L]
        else:
            pos = self.table[start : start + L]
        x = self.tokens(ids) * self.scale + pos  # (B, L, D)
        if hasattr(self, "token_types"):  # single segments: every position has type 0
            x = x + self.token_types.weight[0]
        if hasattr(self, "norm"):
            x = self.norm(x)
        return self.dropout(x)


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2, applied at each position."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_ff)
        self.fc2 = nn.Linear(config.d_ff, config.d_model)
        self.activation = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}[config.activation]
        self.dropout = Dropout(config.activation_dropout)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(x))))


class Residual(nn.Module):
    """One sub-layer with its residual connection and LayerNorm.

    pre-LN: x + Dropout(f(LN(x)));  post-LN (paper): LN(x + Dropout(f(x))).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.dropout)
        self.norm_first = config.norm_first

    def forward(self, x: Tensor, sublayer) -> Tensor:
        x = x + self.dropout(sublayer(self.norm(x) if self.norm_first else x))
        return x if self.norm_first else self.norm(x)


class EncoderBlock(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(
            config.d_model, config.n_heads, config.attention_dropout, backend=config.backend
        )
        self.ffn = FeedForward(config)
        self.attn_residual, self.ffn_residual = Residual(config), Residual(config)

    def forward(self, x: Tensor, pad_mask: Tensor | None) -> Tensor:
        """x: (B, S, D); pad_mask: (B, S) True at padding."""
        x = self.attn_residual(x, lambda h: self.self_attn(h, key_padding_mask=pad_mask)[0])
        return self.ffn_residual(x, self.ffn)


class DecoderBlock(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        make_attention = lambda: MultiHeadAttention(  # noqa: E731
            config.d_model, config.n_heads, config.attention_dropout, backend=config.backend
        )
        self.self_attn, self.cross_attn = make_attention(), make_attention()
        self.ffn = FeedForward(config)
        self.self_residual, self.cross_residual = Residual(config), Residual(config)
        self.ffn_residual = Residual(config)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_pad_mask: Tensor | None,
        cache: tuple[AttentionCache, AttentionCache] | None = None,
    ) -> Tensor:
        """x: (B, T, D) target states; memory: (B, S, D) encoder output; memory_pad_mask: (B, S).

        Targets are right-padded, so the causal mask alone keeps real positions away from padding keys.
        """
        self_cache, cross_cache = cache if cache is not None else (None, None)
        x = self.self_residual(x, lambda h: self.self_attn(h, causal=True, cache=self_cache)[0])
        x = self.cross_residual(
            x, lambda h: self.cross_attn(h, memory, key_padding_mask=memory_pad_mask, cache=cross_cache)[0]
        )
        return self.ffn_residual(x, self.ffn)


def run_block(block: nn.Module, checkpointed: bool, *args: Tensor | None) -> Tensor:
    """block(*args), or with activation checkpointing: keep only the block's input for the backward pass and
    recompute the rest there (the saved random state makes dropout draw the same masks again)."""
    return checkpoint(block, *args, use_reentrant=False) if checkpointed else block(*args)


def token_embedding(vocab_size: int, config: ModelConfig) -> nn.Embedding:
    # N(0, D^-1/2) so that after the sqrt(D) scale the embeddings have unit variance; the pad row is zero.
    embedding = nn.Embedding(vocab_size, config.d_model, padding_idx=config.pad_id)
    nn.init.normal_(embedding.weight, std=config.d_model**-0.5)
    with torch.no_grad():
        embedding.weight[config.pad_id].zero_()
    return embedding


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig, tokens: nn.Embedding) -> None:
        super().__init__()
        self.pad_id = config.pad_id
        self.embed = Embedding(config, tokens, config.scale_embeddings)
        self.layers = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_encoder_layers))
        self.checkpointing = config.activation_checkpointing
        # pre-LN leaves the residual stream un-normalised, so a final LayerNorm closes the stack
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_first else None

    def forward(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src: (B, S) ids. Returns memory (B, S, D) and the pad mask (B, S)."""
        pad_mask = src.eq(self.pad_id)
        x = self.embed(src)
        for layer in self.layers:
            x = run_block(layer, self.checkpointing and self.training, x, pad_mask)
        if self.norm is not None:
            x = self.norm(x)
        return x, pad_mask


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig, tokens: nn.Embedding) -> None:
        super().__init__()
        scale = config.scale_embeddings if config.decoder_scale_embeddings is None else config.decoder_scale_embeddings
        self.embed = Embedding(config, tokens, scale)
        self.layers = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_decoder_layers))
        self.checkpointing = config.activation_checkpointing
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_first else None

    def forward(self, tgt_in: Tensor, memory: Tensor, memory_pad_mask: Tensor | None, caches=None):
        """tgt_in: (B, T) ids (shifted right). With caches, tgt_in holds only the new position (B, 1)."""
        offset = 0
        if caches is not None and caches[0][0].k is not None:
            offset = caches[0][0].k.size(2)
        x = self.embed(tgt_in, offset)
        if caches is None:  # training and teacher forcing
            for layer in self.layers:
                x = run_block(layer, self.checkpointing and self.training, x, memory, memory_pad_mask)
        else:  # incremental decoding
            for layer, cache in zip(self.layers, caches, strict=True):
                x = layer(x, memory, memory_pad_mask, cache)
        return x if self.norm is None else self.norm(x)  # (B, T, D)


def masked_mean(x: Tensor, pad_mask: Tensor) -> Tensor:
    """Mean of x (B, L, D) over the positions where pad_mask (B, L) is False. Returns (B, D)."""
    keep = (~pad_mask).unsqueeze(-1).to(x.dtype)
    return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)


class EncoderClassifier(nn.Module):
    """Transformer encoder + pooling over real tokens + linear head (e.g. sentiment)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, token_embedding(config.vocab_size, config))
        if config.pooling == "pooler":
            self.pooler = nn.Linear(config.d_model, config.d_model)
        self.dropout = Dropout(config.dropout)
        self.head = nn.Linear(config.d_model, config.num_classes)

    def forward(self, src: Tensor) -> Tensor:
        """src: (B, S) ids, padded with pad_id. Returns logits (B, num_classes)."""
        x, pad_mask = self.encoder(src)
        if self.config.pooling == "mean":
            pooled = masked_mean(x, pad_mask)  # (B, D)
        elif self.config.pooling == "first":
            pooled = x[:, 0]
        else:  # BERT's pooler
            pooled = torch.tanh(self.pooler(x[:, 0]))
        return self.head(self.dropout(pooled))


class MaskedLM(nn.Module):
    """Transformer encoder with BERT's masked-language-modelling head (pretraining, model.pretrain_objective=mlm).

    Its encoder has the names of EncoderClassifier's (`encoder.*`), so a classifier (or an encoder-decoder's
    encoder) fine-tunes from it with init_from. Head: dense, GELU, LayerNorm, then the token embedding transposed
    plus a bias, applied only at the positions that have a label (15% of them), which saves most of its cost.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, token_embedding(config.vocab_size, config))
        self.lm_dense = nn.Linear(config.d_model, config.d_model)
        self.lm_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.lm_bias = nn.Parameter(torch.zeros(config.vocab_size))
        nn.init.xavier_uniform_(self.lm_dense.weight)
        nn.init.zeros_(self.lm_dense.bias)

    def predict(self, h: Tensor) -> Tensor:
        """Encoder states (..., D) -> vocabulary logits (..., V)."""
        h = self.lm_norm(F.gelu(self.lm_dense(h)))
        return F.linear(h, self.encoder.embed.tokens.weight, self.lm_bias)

    def forward(self, src: Tensor) -> Tensor:
        """src: (B, S) ids with <mask> pieces. Returns logits (B, S, V) at every position."""
        return self.predict(self.encoder(src)[0])

    def loss(self, src: Tensor, labels: Tensor, ignore_index: int = -100, reduction: str = "mean") -> tuple:
        """Cross-entropy of the labelled positions of labels (B, S) (the others hold ignore_index).

        Returns (loss, logits (N, V) of the N labelled positions, their labels (N,)), for accuracy."""
        h, _ = self.encoder(src)
        keep = labels.ne(ignore_index)  # (B, S)
        logits = self.predict(h[keep]).float()  # (N, V)
        target = labels[keep]
        return F.cross_entropy(logits, target, reduction=reduction), logits, target


class PointerGenerator(nn.Module):
    """Copy mechanism of See et al. (2017) for a shared source/target vocabulary.

    P(w) = p_gen P_vocab(w) + (1 - p_gen) sum_{i: src_i = w} a_i, where a = softmax(h W M^T / sqrt(D)) attends
    over the encoder output M, and p_gen = sigmoid(w_g [h; a M] + b). Rare words of the source (names, numbers)
    can then be produced without having been learned as outputs. Works per position, so it needs no cache.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.query = nn.Linear(config.d_model, config.d_model, bias=False)
        self.gate = nn.Linear(2 * config.d_model, 1)
        self.scale = config.d_model**-0.5
        nn.init.xavier_uniform_(self.query.weight)
        nn.init.xavier_uniform_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def attend(self, h: Tensor, memory: Tensor, memory_pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        """h: (B, T, D); memory: (B, S, D). Returns the float32 copy attention a (B, T, S) and gate logit (B, T)."""
        scores = torch.matmul(self.query(h), memory.transpose(1, 2)).float() * self.scale  # (B, T, S)
        attn = scores.masked_fill(memory_pad_mask[:, None, :], -math.inf).softmax(-1)
        context = torch.matmul(attn.to(memory.dtype), memory)  # (B, T, D)
        gate = self.gate(torch.cat([h, context.to(h.dtype)], dim=-1)).float().squeeze(-1)  # logit of p_gen
        return attn, gate

    def forward(self, h: Tensor, logits: Tensor, memory: Tensor, memory_pad_mask: Tensor, src: Tensor) -> Tensor:
        """h: (B, T, D) decoder states; logits: (B, T, V); memory: (B, S, D); memory_pad_mask, src: (B, S).

        Returns float32 log-probabilities (B, T, V) of the mixture.
        """
        attn, gate = self.attend(h, memory, memory_pad_mask)
        p_gen = torch.sigmoid(gate)[..., None]  # (B, T, 1)
        B, T, S = attn.shape
        probs = (logits.float().softmax(-1) * p_gen).scatter_add_(
            2, src[:, None, :].expand(B, T, S), attn * (1 - p_gen)
        )
        return probs.clamp_min(1e-30).log()  # P_vocab can underflow to 0; keep the log finite

    def loss(
        self,
        h: Tensor,
        logits: Tensor,
        memory: Tensor,
        memory_pad_mask: Tensor,
        src: Tensor,
        target: Tensor,
        smoothing: float,
        ignore_index: int,
        reduction: str = "mean",
    ) -> Tensor:
        """Label-smoothed cross-entropy of target (B, T) under the mixture (mean, or with reduction="sum" the sum),
        the value F.cross_entropy gives on forward()'s output, without building the (B, T, V) mixture: off the
        source's tokens, log P(w) = log p_gen + log_softmax(logits)_w, so only the S source tokens need the full
        mixture.
        """
        attn, gate = self.attend(h, memory, memory_pad_mask)
        x = logits.float()
        V, (B, T, S) = x.size(-1), attn.shape
        log_generate = (F.logsigmoid(gate) - x.logsumexp(-1)).unsqueeze(-1)  # (B, T, 1): log P(w) - x_w off-source
        log_copy = F.logsigmoid(-gate).unsqueeze(-1)  # (B, T, 1): log(1 - p_gen)

        def log_mixture(x_w: Tensor, copy_w: Tensor) -> Tensor:
            """Logits x_w and copy probabilities copy_w (B, T, n) of n tokens each -> their log P (B, T, n)."""
            return torch.logaddexp(log_generate + x_w, log_copy + copy_w.clamp_min(1e-30).log())

        # the target's copy probability sums the attention on every occurrence of it in the source
        x_target = x.gather(-1, target.unsqueeze(-1))  # (B, T, 1)
        copy_target = (attn * src[:, None, :].eq(target.unsqueeze(-1))).sum(-1, keepdim=True)  # (B, T, 1)
        log_p_target = log_mixture(x_target, copy_target).squeeze(-1)  # (B, T)
        per_token = -(1.0 - smoothing) * log_p_target
        if smoothing > 0.0:  # sum of log P(w) over the vocabulary: all as if off-source, then fix the source's
            real = ~memory_pad_mask  # (B, S)
            same = src[:, :, None].eq(src[:, None, :]) & real[:, None, :] & real[:, :, None]  # (B, S, S)
            copy_at_src = torch.matmul(attn, same.float())  # (B, T, S): copy probability of token src_i
            x_at_src = x.gather(-1, src[:, None, :].expand(B, T, S))  # (B, T, S)
            fix = log_mixture(x_at_src, copy_at_src) - log_generate - x_at_src  # (B, T, S)
            once = real.float() / same.sum(-1).clamp_min(1)  # (B, S): each distinct source token counted once
            sum_log_p = V * log_generate.squeeze(-1) + x.sum(-1) + (fix * once[:, None, :]).sum(-1)  # (B, T)
            per_token = per_token - smoothing / V * sum_log_p
        keep = target.ne(ignore_index)
        return per_token[keep].sum() if reduction == "sum" else per_token[keep].mean()


class EncoderDecoder(nn.Module):
    """Transformer encoder-decoder with cross-attention (translation, summarization)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        src_tokens = token_embedding(config.vocab_size, config)
        tgt_tokens = src_tokens if config.share_embeddings else token_embedding(config.tgt_vocab_size, config)
        self.encoder = Encoder(config, src_tokens)
        self.decoder = Decoder(config, tgt_tokens)
        if config.tie_output:
            self.output = None  # logits = h E^T with the target embedding E
        else:
            self.output = nn.Linear(config.d_model, config.tgt_vocab_size, bias=False)
            nn.init.normal_(self.output.weight, std=config.d_model**-0.5)
        self.copy = PointerGenerator(config) if config.copy_attention else None
        if config.output_bias:  # a buffer, as in BART and Marian: stored and exported, never trained
            self.register_buffer("output_bias", torch.zeros(config.tgt_vocab_size))

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src: (B, S). Returns memory (B, S, D) and its pad mask (B, S)."""
        memory, pad_mask = self.encoder(src)
        return memory, pad_mask

    @property
    def output_weight(self) -> Tensor:
        """(V, D): the target embedding when tied, else the output projection's."""
        return self.decoder.embed.tokens.weight if self.output is None else self.output.weight

    def project(self, h: Tensor) -> Tensor:
        """Decoder states (..., D) -> logits (..., V)."""
        return F.linear(h, self.output_weight, getattr(self, "output_bias", None))

    def decode(
        self, tgt_in: Tensor, memory: Tensor, memory_pad_mask: Tensor, caches=None, src: Tensor | None = None
    ) -> Tensor:
        """Logits (B, T, V) for target inputs tgt_in (B, T) given the encoder output.

        With copy_attention, src (B, S) is required and the result is log-probabilities, which are logits too:
        log_softmax leaves them unchanged, so losses and search treat both alike.
        """
        h = self.decoder(tgt_in, memory, memory_pad_mask, caches)
        logits = self.project(h)
        if self.copy is None:
            return logits
        if src is None:
            raise ValueError("this model copies from the source (copy_attention=True): pass src to decode()")
        return self.copy(h, logits, memory, memory_pad_mask, src)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing. src: (B, S), tgt_in: (B, T) = BOS + target[:-1]. Returns logits (B, T, V)."""
        memory, pad_mask = self.encode(src)
        return self.decode(tgt_in, memory, pad_mask, src=src)

    def loss(
        self,
        src: Tensor,
        tgt_in: Tensor,
        tgt_out: Tensor,
        smoothing: float = 0.0,
        ignore_index: int = 0,
        reduction: str = "mean",
    ) -> Tensor:
        """Teacher-forced label-smoothed cross-entropy over the tokens of tgt_out (B, T) that are not ignore_index,
        averaged (or summed): F.cross_entropy(self(src, tgt_in), ...), computed sparsely when the model copies and
        by chunks, without the (B, T, V) logits, with config.fused_loss (loss.py)."""
        memory, pad_mask = self.encode(src)
        h = self.decoder(tgt_in, memory, pad_mask)
        if self.copy is None and self.config.fused_loss:
            bias = getattr(self, "output_bias", None)
            return linear_cross_entropy(h, self.output_weight, tgt_out, smoothing, ignore_index, reduction, bias)
        logits = self.project(h)
        if self.copy is not None:
            return self.copy.loss(h, logits, memory, pad_mask, src, tgt_out, smoothing, ignore_index, reduction)
        return F.cross_entropy(
            logits.float().flatten(0, 1),
            tgt_out.flatten(),
            ignore_index=ignore_index,
            label_smoothing=smoothing,
            reduction=reduction,
        )

    def new_caches(self) -> list[tuple[AttentionCache, AttentionCache]]:
        """Empty (self-attention, cross-attention) caches, one pair per decoder layer."""
        return [(AttentionCache(), AttentionCache()) for _ in self.decoder.layers]


def compile_blocks(model: nn.Module, mode: str | None = None) -> nn.Module:
    """torch.compile each encoder and decoder block in place, for training: a block runs its compiled forward
    in train mode with gradients on, and its eager one otherwise (validation, incremental decoding with a KV cache
    that grows by one position a step, attention recording), so evaluation never builds graphs and training's
    graphs are never invalidated by it. With the training batches' lengths bucketed (batching.bucket_lengths),
    dynamo compiles a block for the first shape and once or twice more with symbolic sizes for the rest.

    The block's parameters and names are untouched, so checkpoints stay interchangeable with uncompiled runs;
    blocks (not the whole model) also suit activation checkpointing and per-block sharding. `mode`: torch.compile's
    (e.g. "reduce-overhead": CUDA graphs). Returns the model."""
    for module in model.modules():
        if isinstance(module, EncoderBlock | DecoderBlock):
            module.compiled_forward = torch.compile(type(module).forward, mode=mode)  # takes the block as self
            module.forward = types.MethodType(_forward_compiled_in_training, module)  # a copy binds to the copy
    return model


def _forward_compiled_in_training(block: nn.Module, *args, **kwargs) -> Tensor:
    if block.training and torch.is_grad_enabled() and kwargs.get("cache") is None and len(args) < 4:
        return block.compiled_forward(block, *args, **kwargs)
    return type(block).forward(block, *args, **kwargs)

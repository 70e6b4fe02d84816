"""Training throughput of our models against Hugging Face models of the same dimensions, in one process.

    python benchmarks/hf_training_throughput.py                  # synthetic fixed-shape batches (~2 minutes)
    python benchmarks/hf_training_throughput.py --realistic data/sst2/train.tsv   # real sentence lengths

A training step is forward + cross-entropy + backward + AdamW step, with dropout on (train mode). Pairs:
  - classifier: our EncoderClassifier vs `BertForSequenceClassification` (default vocab 8000, D=256, 4 layers,
    4 heads, FFN 1024, T=128, batch 32); tokens/s counts input tokens;
  - seq2seq: our EncoderDecoder vs `MarianMTModel` (D=256, 3+3 layers, 4 heads, FFN 1024, vocab 8000,
    batch 64, source = target length 16 and a longer length); tokens/s counts target tokens (like fairseq's wps).
Both in fp32 and under bf16 autocast. All models get random weights from their configs: nothing is downloaded.

Matched: sizes, ReLU feed-forward (`--activation gelu` switches both), dropout 0.1 on sub-layer outputs and
embeddings, no attention or activation dropout, shared/tied embeddings, SDPA attention, the same loss code.
Not matched (architecture): BERT and Marian are post-LN, ours is pre-LN by default (`--post-ln` for ours too);
BERT adds learned position and token-type embeddings, an embedding LayerNorm and a tanh pooler, and pools the
first token where ours takes the mean over real tokens.

Timing: every contender is warmed up, then timed chunks run interleaved (A, B, A, B, ...) and each figure is
the median over chunks, so drift of a shared machine hits both sides alike.

--realistic PATH reads the sentences of a GLUE SST-2 `train.tsv` (columns sentence, label) and measures REAL
(non-pad) tokens per second. Token counts are approximated as round(1.3 * whitespace words) + 2 (subwords per
word of a ~30k WordPiece vocabulary, plus [CLS]/[SEP]), truncated to 128. Contenders, all at the same average
of `--batch` sentences per step:
  - HF, padded to max_length=128 (`tokenizer(..., padding="max_length")`, the examples' `pad_to_max_length`);
  - HF, dynamic padding (random batches padded to their longest sentence, `DataCollatorWithPadding`);
  - ours, the same dynamically padded batches (isolates model speed from batching);
  - ours, length-bucketed batches under a token budget (our TokenBudgetBatchSampler's scheme: sort by length,
    cut greedily at `max_tokens` padded tokens, shuffle batch order), with `max_tokens` chosen so an epoch has
    the same number of batches as with `--batch` sentences per batch.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # configs only, random init: never reach the Hub

import torch
import torch.nn.functional as F
import transformers
from torch import Tensor, nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    MarianConfig,
    MarianMTModel,
)

from transformer import EncoderClassifier, EncoderDecoder, ModelConfig

PAD, BOS, EOS = 0, 2, 3  # our special ids; the HF configs are given the same
FIRST_WORD = 4  # random token ids are drawn from [FIRST_WORD, vocab)


@dataclass
class Dims:
    """The dimensions both sides of a pair share."""

    vocab: int = 8000
    d_model: int = 256
    heads: int = 4
    d_ff: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 0
    dropout: float = 0.1
    activation: str = "relu"
    post_ln: bool = False  # ours only: HF BERT and Marian are always post-LN
    max_positions: int = 512


def our_config(dims: Dims) -> ModelConfig:
    return ModelConfig(
        vocab_size=dims.vocab,
        d_model=dims.d_model,
        n_heads=dims.heads,
        d_ff=dims.d_ff,
        n_encoder_layers=dims.encoder_layers,
        n_decoder_layers=dims.decoder_layers,
        dropout=dims.dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation=dims.activation,
        norm_first=not dims.post_ln,
        max_positions=dims.max_positions,
        pad_id=PAD,
    )


def hf_bert(dims: Dims) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=dims.vocab,
        hidden_size=dims.d_model,
        num_hidden_layers=dims.encoder_layers,
        num_attention_heads=dims.heads,
        intermediate_size=dims.d_ff,
        hidden_act=dims.activation,
        hidden_dropout_prob=dims.dropout,  # also the classifier dropout, like ours before the head
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=dims.max_positions,
        type_vocab_size=1,  # single-sentence task: one token type, ids default to zeros
        layer_norm_eps=1e-5,
        num_labels=2,
        pad_token_id=PAD,
    )
    return BertForSequenceClassification._from_config(config, attn_implementation="sdpa")


def hf_marian(dims: Dims) -> MarianMTModel:
    """MarianMTModel with shared source/target embeddings tied to the output, sinusoidal positions."""
    config = MarianConfig(
        vocab_size=dims.vocab,
        decoder_vocab_size=dims.vocab,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.heads,
        decoder_attention_heads=dims.heads,
        encoder_ffn_dim=dims.d_ff,
        decoder_ffn_dim=dims.d_ff,
        activation_function=dims.activation,
        dropout=dims.dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        max_position_embeddings=dims.max_positions,
        scale_embedding=True,  # sqrt(D) like ours
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
        forced_eos_token_id=EOS,
    )
    return MarianMTModel._from_config(config, attn_implementation="sdpa")


def trainable(model: nn.Module, name_contains: Sequence[str] = ()) -> int:
    """Trainable parameters (Marian's sinusoidal tables are frozen and not counted), optionally by name."""
    return sum(
        p.numel()
        for n, p in model.named_parameters()
        if p.requires_grad and (not name_contains or any(s in n for s in name_contains))
    )


# ----------------------------------------------------------------------------------------------- batches


@dataclass
class Batch:
    src: Tensor  # (B, S) ids, PAD-padded on the right
    labels: Tensor  # (B,) classes, or (B, T) target ids (PAD = ignored)
    tgt_in: Tensor | None = None  # (B, T) BOS + target[:-1] for seq2seq
    tokens: int = 0  # real tokens counted for throughput: inputs (classifier) or targets (seq2seq)


def random_ids(lengths: Sequence[int], width: int, vocab: int, generator: torch.Generator) -> Tensor:
    """(len(lengths), width) random word ids, row i real up to lengths[i] and PAD after."""
    ids = torch.randint(FIRST_WORD, vocab, (len(lengths), width), generator=generator)
    real = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~real, PAD)


def classifier_batch(lengths: Sequence[int], width: int, vocab: int, generator: torch.Generator) -> Batch:
    src = random_ids(lengths, width, vocab, generator)
    labels = torch.randint(0, 2, (len(lengths),), generator=generator)
    return Batch(src, labels, tokens=sum(lengths))


def seq2seq_batch(batch: int, length: int, vocab: int, generator: torch.Generator) -> Batch:
    src = random_ids([length] * batch, length, vocab, generator)
    tgt = random_ids([length] * batch, length, vocab, generator)
    tgt_in = torch.cat([torch.full((batch, 1), BOS), tgt[:, :-1]], dim=1)
    return Batch(src, tgt, tgt_in, tokens=batch * length)


# ------------------------------------------------------------------------------------------------ losses
# The same cross-entropy code for both sides; HF models get the attention mask a tokenizer would return.

LossFn = Callable[[nn.Module, Batch], Tensor]


def ours_classifier_loss(model: nn.Module, b: Batch) -> Tensor:
    return F.cross_entropy(model(b.src).float(), b.labels)


def hf_classifier_loss(model: nn.Module, b: Batch) -> Tensor:
    logits = model(input_ids=b.src, attention_mask=b.src.ne(PAD).long()).logits
    return F.cross_entropy(logits.float(), b.labels)


def ours_seq2seq_loss(model: nn.Module, b: Batch) -> Tensor:
    logits = model(b.src, b.tgt_in)  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), b.labels.flatten(), ignore_index=PAD)


def hf_seq2seq_loss(model: nn.Module, b: Batch) -> Tensor:
    logits = model(input_ids=b.src, attention_mask=b.src.ne(PAD).long(), decoder_input_ids=b.tgt_in).logits
    return F.cross_entropy(logits.float().flatten(0, 1), b.labels.flatten(), ignore_index=PAD)


# ---------------------------------------------------------------------------------------------- timing

Step = Callable[[], int]  # runs one unit of work (a training step), returns what it counted (tokens)

# wall: elapsed time, what a user waits for. cpu: CPU seconds of this process (all its threads), which other
# processes on a shared machine barely disturb when --threads 1.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def train_step(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], bf16: bool) -> Step:
    """A closure doing one optimizer step on the next batch of `batches` (cycled)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cycle = _cycle(batches)

    def step() -> int:
        batch = next(cycle)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return batch.tokens

    return step


def _cycle(items: Sequence[Batch]) -> Iterator[Batch]:
    while True:
        yield from items


def interleaved(steps: dict[str, Step], warmup: int, rounds: int, chunk: int, clock: str = "wall") -> dict[str, float]:
    """Median rate (counted units per second) of each step function, after `warmup` untimed calls each.

    Timed chunks of `chunk` calls are taken in turn (A, B, A, B, ...), `rounds` chunks per step function.
    """
    now = CLOCKS[clock]
    for step in steps.values():
        for _ in range(warmup):
            step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = now()
            counted = sum(step() for _ in range(chunk))
            rates[name].append(counted / (now() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall", help="wall time, or process CPU time")


# --------------------------------------------------------------------------------------- synthetic mode


def synthetic(args: argparse.Namespace) -> None:
    generator = torch.Generator().manual_seed(0)
    base = Dims(vocab=args.vocab, activation=args.activation, post_ln=args.post_ln)
    cls_dims = replace(base, encoder_layers=args.cls_layers)
    s2s_dims = replace(base, encoder_layers=args.s2s_layers, decoder_layers=args.s2s_layers)

    # (setting, ours, hf, their losses, batches): models are built once per setting and reused for both dtypes
    pairs = [
        (
            f"classifier B={args.batch} T={args.length}",
            EncoderClassifier(our_config(cls_dims)),
            hf_bert(cls_dims),
            (ours_classifier_loss, hf_classifier_loss),
            [classifier_batch([args.length] * args.batch, args.length, args.vocab, generator) for _ in range(2)],
        )
    ]
    ours_s2s, hf_s2s = EncoderDecoder(our_config(s2s_dims)), hf_marian(s2s_dims)
    for length in args.s2s_lengths:
        pairs.append(
            (
                f"seq2seq B={args.s2s_batch} S=T={length}",
                ours_s2s,
                hf_s2s,
                (ours_seq2seq_loss, hf_seq2seq_loss),
                [seq2seq_batch(args.s2s_batch, length, args.vocab, generator) for _ in range(2)],
            )
        )

    describe_parameters(pairs[0][1], pairs[0][2], ours_s2s, hf_s2s)
    print(f"\nwarm-up {args.warmup} step(s), then {args.rounds} interleaved rounds of {args.chunk} step(s); medians")
    print(f"{'setting':<28} {'dtype':<5} {'ours tok/s':>11} {'HF tok/s':>10} {'ours/HF':>8}")
    for setting, ours, hf, (ours_loss, hf_loss), batches in pairs:
        for bf16 in (False, True):
            rates = interleaved(
                {
                    "ours": train_step(ours, ours_loss, batches, bf16),
                    "hf": train_step(hf, hf_loss, batches, bf16),
                },
                args.warmup,
                args.rounds,
                args.chunk,
                args.clock,
            )
            dtype = "bf16" if bf16 else "fp32"
            ratio = rates["ours"] / rates["hf"]
            print(f"{setting:<28} {dtype:<5} {rates['ours']:>11,.0f} {rates['hf']:>10,.0f} {ratio:>7.2f}x")


def describe_parameters(ours_cls: nn.Module, bert: nn.Module, ours_s2s: nn.Module, marian: nn.Module) -> None:
    bert_extra = trainable(bert, ("position_embeddings", "token_type_embeddings", "embeddings.LayerNorm", "pooler"))
    print("trainable parameters:")
    print(
        f"  classifier: ours {trainable(ours_cls):,}  BERT {trainable(bert):,} "
        f"(of which {bert_extra:,} in BERT-only parts: learned positions, token-type row, embedding LayerNorm, "
        f"pooler; ours has a final LayerNorm when pre-LN)"
    )
    print(
        f"  seq2seq:    ours {trainable(ours_s2s):,}  Marian {trainable(marian):,} "
        f"(same layers; Marian's sinusoidal tables are frozen parameters, excluded; ours adds final "
        f"LayerNorms when pre-LN)"
    )


# --------------------------------------------------------------------------------------- realistic mode


def sst2_lengths(path: Path, max_length: int) -> list[int]:
    """Approximate subword lengths of the sentences of a GLUE SST-2 TSV: round(1.3 * words) + 2, capped."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if rows.fieldnames is None or "sentence" not in rows.fieldnames:
            raise SystemExit(f"{path}: expected a GLUE SST-2 TSV with a 'sentence' column, got {rows.fieldnames}")
        return [min(max_length, round(1.3 * len(row["sentence"].split())) + 2) for row in rows]


def budget_batches(lengths: Sequence[int], max_tokens: int, rng: random.Random) -> list[list[int]]:
    """Our token-budget scheme: sort by length (random tie-break), cut when padded tokens would exceed max_tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:  # ascending, so lengths[i] is the longest in the batch so far
        if current and (len(current) + 1) * lengths[i] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    batches.append(current)
    rng.shuffle(batches)
    return batches


def budget_for(lengths: Sequence[int], sentences_per_batch: int) -> int:
    """Smallest max_tokens whose epoch has no more batches than fixed batches of `sentences_per_batch`."""
    target = -(-len(lengths) // sentences_per_batch)
    low, high = max(lengths), max(lengths) * len(lengths)
    while low < high:
        middle = (low + high) // 2
        if len(budget_batches(lengths, middle, random.Random(0))) <= target:
            high = middle
        else:
            low = middle + 1
    return low


def realistic(args: argparse.Namespace) -> None:
    lengths = sst2_lengths(args.realistic, args.length)
    rng = random.Random(0)
    generator = torch.Generator().manual_seed(0)
    dims = Dims(vocab=args.vocab, encoder_layers=args.cls_layers, activation=args.activation, post_ln=args.post_ln)
    ours, bert = EncoderClassifier(our_config(dims)), hf_bert(dims)

    # Random batches of `--batch` sentences, as a shuffled DataLoader gives; the same sentences in both paddings.
    samples = [rng.sample(range(len(lengths)), args.batch) for _ in range(args.pool)]
    fixed = [classifier_batch([lengths[i] for i in s], args.length, args.vocab, generator) for s in samples]
    dynamic = [padded_to_longest([lengths[i] for i in s], args.vocab, generator) for s in samples]
    max_tokens = budget_for(lengths, args.batch)
    all_budget = budget_batches(lengths, max_tokens, rng)
    budget = [padded_to_longest([lengths[i] for i in s], args.vocab, generator) for s in all_budget[: args.pool]]

    mean = statistics.mean(lengths)
    print(f"{args.realistic}: {len(lengths):,} sentences, approx. tokens mean {mean:.1f}, max {max(lengths)}")
    print(
        f"token budget max_tokens={max_tokens}: {len(all_budget):,} batches per epoch "
        f"(vs {-(-len(lengths) // args.batch):,} with {args.batch} sentences), "
        f"{len(lengths) / len(all_budget):.1f} sentences per batch on average"
    )
    contenders: dict[str, tuple[str, list[Batch]]] = {
        "HF, pad to max_length=128": ("hf", fixed),
        "HF, dynamic padding": ("hf", dynamic),
        "ours, dynamic padding": ("ours", dynamic),
        "ours, token budget": ("ours", budget),
    }
    models = {"ours": (ours, ours_classifier_loss), "hf": (bert, hf_classifier_loss)}
    print(f"\nwarm-up {args.warmup} step(s), then {args.rounds} interleaved rounds of {args.chunk} step(s); medians")
    print(f"{'contender':<27} {'dtype':<5} {'pad %':>6} {'real tok/s':>11} {'vs HF max_length':>17}")
    for bf16 in (False, True):
        steps = {}
        for name, (side, batches) in contenders.items():
            model, loss_fn = models[side]
            steps[name] = train_step(model, loss_fn, batches, bf16)
        rates = interleaved(steps, args.warmup, args.rounds, args.chunk, args.clock)
        reference = rates["HF, pad to max_length=128"]
        for name, (_, batches) in contenders.items():
            padded = sum(b.src.numel() for b in batches)
            pad_share = 100 * (1 - sum(b.tokens for b in batches) / padded)
            dtype = "bf16" if bf16 else "fp32"
            print(f"{name:<27} {dtype:<5} {pad_share:>5.1f}% {rates[name]:>11,.0f} {rates[name] / reference:>16.2f}x")


def padded_to_longest(lengths: list[int], vocab: int, generator: torch.Generator) -> Batch:
    return classifier_batch(lengths, max(lengths), vocab, generator)


# ------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--activation", choices=("relu", "gelu"), default="relu")
    parser.add_argument("--post-ln", action="store_true", help="ours post-LN like BERT/Marian (default pre-LN)")
    parser.add_argument("--cls-layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32, help="classifier sentences per batch")
    parser.add_argument("--length", type=int, default=128, help="classifier length (and max_length padding)")
    parser.add_argument("--s2s-layers", type=int, default=3, help="encoder and decoder layers each")
    parser.add_argument("--s2s-batch", type=int, default=64)
    parser.add_argument("--s2s-lengths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per contender")
    parser.add_argument("--rounds", type=int, default=3, help="timed chunks per contender")
    parser.add_argument("--chunk", type=int, help="steps per timed chunk (default 1; 4 with --realistic)")
    parser.add_argument("--realistic", type=Path, help="GLUE SST-2 train.tsv: real-length classifier batches")
    parser.add_argument("--pool", type=int, default=64, help="realistic mode: distinct batches per contender")
    add_common_args(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
        f"{args.clock} clock, activation {args.activation}, ours {'post' if args.post_ln else 'pre'}-LN"
    )
    if args.realistic:
        args.chunk = args.chunk or 4  # batches vary in shape: time several per chunk
        realistic(args)
    else:
        args.chunk = args.chunk or 1
        synthetic(args)


if __name__ == "__main__":
    main()

"""Forward+backward training throughput of our models, fp32 against bf16 autocast, in one run.

    python benchmarks/model_throughput.py --size small --length 128 --batch 32
    python benchmarks/model_throughput.py --ablation --length 16 --batch 128   # the two CPU speed-ups

Tokens/second counts target tokens for the encoder-decoder (as fairseq's wps does) and input tokens for the
classifier. Each figure is the median over timed steps after warm-up steps; ratios are computed in-process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from transformer import EncoderClassifier, EncoderDecoder, ModelConfig


def step_time(model, batch, loss_fn, dtype: torch.dtype | None, steps: int, warmup: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def seq2seq_loss(model, batch):
    src, tgt = batch
    logits = model(src, tgt)
    return F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten())


def classifier_loss(model, batch):
    src, labels = batch
    return F.cross_entropy(model(src).float(), labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="encoder-decoder, bf16, dropout 0.3 (attention 0.1): fused SDPA vs explicit attention, "
        "F.dropout vs the byte-mask dropout, on Multi30k-like shapes",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.ablation:
        ablation(args)
        return
    B, L = args.batch, args.length
    config = ModelConfig.named(args.size, vocab_size=args.vocab)
    ids = torch.randint(4, args.vocab, (B, L))
    cases = [
        ("encoder-decoder", EncoderDecoder(config), (ids, ids.roll(1, 1)), seq2seq_loss),
        ("classifier", EncoderClassifier(config), (ids, torch.randint(0, 2, (B,))), classifier_loss),
    ]
    print(f"size={args.size} vocab={args.vocab} batch={B} length={L} threads={torch.get_num_threads()}")
    print(f"{'model':<16} {'params':>8} {'fp32 tok/s':>11} {'bf16 tok/s':>11} {'bf16/fp32':>9}")
    for name, model, batch, loss_fn in cases:
        model.train()
        params = sum(p.numel() for p in model.parameters())
        fp32 = B * L / step_time(model, batch, loss_fn, None, args.steps, args.warmup)
        bf16 = B * L / step_time(model, batch, loss_fn, torch.bfloat16, args.steps, args.warmup)
        print(f"{name:<16} {params / 1e6:>7.1f}M {fp32:>11,.0f} {bf16:>11,.0f} {bf16 / fp32:>8.2f}x")


def ablation(args) -> None:
    """bf16 training tok/s of the encoder-decoder with dropout on, for each combination of the CPU paths."""
    import transformer.dropout

    B, L = args.batch, args.length
    src, tgt = torch.randint(4, args.vocab, (B, L + 1)), torch.randint(4, args.vocab, (B, L))
    print(f"encoder-decoder size={args.size} vocab={args.vocab} batch={B} length={L} bf16, dropout 0.3/0.1")
    print(f"{'attention':<10} {'dropout':<10} {'tok/s':>8} {'vs first':>8}")
    first, default = None, transformer.dropout.FAST_CPU
    try:
        for backend, fast in (("sdpa", False), ("sdpa", True), ("explicit", False), ("explicit", True)):
            torch.manual_seed(0)
            config = ModelConfig.named(
                args.size, vocab_size=args.vocab, backend=backend, dropout=0.3, attention_dropout=0.1
            )
            transformer.dropout.FAST_CPU = fast
            model = EncoderDecoder(config).train()
            speed = B * L / step_time(model, (src, tgt), seq2seq_loss, torch.bfloat16, args.steps, args.warmup)
            first = first or speed
            print(f"{backend:<10} {'byte mask' if fast else 'F.dropout':<10} {speed:>8,.0f} {speed / first:>7.2f}x")
    finally:
        transformer.dropout.FAST_CPU = default


if __name__ == "__main__":
    main()

"""Forward+backward training throughput of our models, fp32 against bf16 autocast, in one run.

    python benchmarks/model_throughput.py --size small --length 128 --batch 32

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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = ModelConfig.named(args.size, vocab_size=args.vocab)
    B, L = args.batch, args.length
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


if __name__ == "__main__":
    main()

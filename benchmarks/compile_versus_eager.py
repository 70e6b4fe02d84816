"""compile=true against eager on token-budget batches of varied lengths, interleaved in one process.

    python benchmarks/compile_versus_eager.py                        # small encoder-decoder, Multi30k-like lengths
    python benchmarks/compile_versus_eager.py --size base --max-tokens 8192 --device cuda

Batches: random source/target lengths (8-40 tokens), cut under a token budget as TokenBudgetBatchSampler does.
Three variants with the same weights: eager on batches padded to their longest example (the default), eager on
batches padded to bucketed lengths (batching.bucket_lengths), and compiled blocks (compile_blocks, what
compile=true does) on the bucketed batches. Each round runs every batch once per variant, the variants
interleaved; the figure is real target tokens per second over the median round. The compiled variant first runs
every batch once (compilation); its graph count is dynamo's `unique_graphs`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch._dynamo.utils import counters

from transformer import EncoderDecoder, ModelConfig
from transformer.data.batching import TokenBudgetBatchSampler, bucket_length, bucket_lengths
from transformer.hardware import cpu_supports_bf16
from transformer.model import compile_blocks


def make_batches(n_examples: int, max_tokens: int, bucketed: bool, vocab: int, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    src_len, tgt_len = rng.integers(8, 41, n_examples), rng.integers(8, 41, n_examples)
    lengths = np.maximum(src_len, tgt_len + 1)
    sampler = TokenBudgetBatchSampler(bucket_lengths(lengths) if bucketed else lengths, max_tokens, seed=seed)
    out = []
    for batch in sampler:
        S, T = int(src_len[batch].max()), int(tgt_len[batch].max()) + 1
        S, T = (bucket_length(S), bucket_length(T)) if bucketed else (S, T)
        src = torch.zeros(len(batch), S, dtype=torch.long)
        tgt = torch.zeros(len(batch), T + 1, dtype=torch.long)
        for row, i in enumerate(batch):
            src[row, : src_len[i]] = torch.from_numpy(rng.integers(4, vocab, src_len[i]))
            tgt[row, 0] = 2
            tgt[row, 1 : tgt_len[i] + 2] = torch.from_numpy(rng.integers(4, vocab, tgt_len[i] + 1))
        out.append((src, tgt, int(tgt_len[batch].sum()) + len(batch)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--examples", type=int, default=1200)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = args.device
    dtype = torch.bfloat16 if device == "cuda" or cpu_supports_bf16() else None
    torch.manual_seed(0)
    config = ModelConfig.named(args.size, vocab_size=args.vocab)
    base = EncoderDecoder(config)
    variants = {}
    for name in ("eager", "eager, bucketed", "compiled, bucketed"):
        model = EncoderDecoder(config).to(device).train()
        model.load_state_dict(base.state_dict())
        if name.startswith("compiled"):
            compile_blocks(model)
        batches = make_batches(args.examples, args.max_tokens, "bucketed" in name, args.vocab)
        batches = [(s.to(device), t.to(device), n) for s, t, n in batches]
        variants[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4), batches)

    def run(name: str) -> tuple[float, int]:
        model, optimizer, batches = variants[name]
        if device == "cuda":
            torch.cuda.synchronize()
        start, tokens = time.perf_counter(), 0
        for src, tgt, n in batches:
            with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model.loss(src, tgt[:, :-1], tgt[:, 1:], 0.1, 0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += n
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, tokens

    counters.clear()
    warm = {name: run(name)[0] for name in variants}  # the compiled variant compiles here
    graphs = counters["stats"]["unique_graphs"]
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            seconds, tokens = run(name)
            rounds[name].append(tokens / seconds)
    eager = statistics.median(rounds["eager"])
    shapes = {name: len({(s.shape, t.shape) for s, t, _ in v[2]}) for name, v in variants.items()}
    print(f"size={args.size} vocab={args.vocab} max_tokens={args.max_tokens} {len(variants['eager'][2])} batches, "
          f"{'bf16' if dtype else 'fp32'}, device={device}, threads={torch.get_num_threads()}")  # fmt: skip
    print(f"{'variant':22}{'shapes':>8}{'first pass':>12}{'tgt tok/s':>12}{'vs eager':>10}")
    for name, values in rounds.items():
        speed = statistics.median(values)
        print(f"{name:22}{shapes[name]:>8}{warm[name]:>11.1f}s{speed:>12,.0f}{speed / eager:>9.2f}x")
    print(f"compiled graphs: {graphs}")


if __name__ == "__main__":
    main()

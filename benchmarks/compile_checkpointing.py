"""What `compile=true` and `model.activation_checkpointing=true` cost and gain on CPU, side by side in one run.

    python benchmarks/compile_checkpointing.py                       # small encoder-decoder, Multi30k-like shapes
    python benchmarks/compile_checkpointing.py --size base --batch 16 --length 64

Each configuration runs in its own process (so peak memory is its own): forward + backward + AdamW steps of the
encoder-decoder on random ids, label-smoothed loss, bf16 autocast where the CPU has native bf16 (else fp32), as
train() would choose. Reported: the first step (for compile: tracing and code generation), the median of the
following steps, target tokens/second, and the peak resident memory of the process; ratios are against eager.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {"eager": {}, "compile": {"compile": True}, "checkpointing": {"activation_checkpointing": True}}


def measure(args: argparse.Namespace) -> dict:
    import torch

    from transformer import EncoderDecoder, ModelConfig
    from transformer.hardware import cpu_supports_bf16
    from transformer.model import compile_blocks

    torch.manual_seed(0)
    options = CONFIGS[args.config]
    config = ModelConfig.named(
        args.size, vocab_size=args.vocab, activation_checkpointing=options.get("activation_checkpointing", False)
    )
    model = EncoderDecoder(config).train()
    if options.get("compile"):
        compile_blocks(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = torch.bfloat16 if cpu_supports_bf16() else None
    src = torch.randint(4, args.vocab, (args.batch, args.length))
    tgt = torch.randint(4, args.vocab, (args.batch, args.length + 1))
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = model.loss(src, tgt[:, :-1], tgt[:, 1:], 0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    step = statistics.median(times[1:])
    return {
        "first_step_s": times[0],
        "step_s": step,
        "tokens_per_s": args.batch * args.length / step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "precision": "bf16-mixed" if dtype else "32-true",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--config", choices=CONFIGS, help=argparse.SUPPRESS)  # one measurement, in a child
    args = parser.parse_args()
    if args.config:
        print(json.dumps(measure(args)))
        return
    results = {}
    for name in CONFIGS:
        command = [sys.executable, __file__, "--config", name, *sys.argv[1:]]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
    eager = results["eager"]
    print(f"size={args.size} batch={args.batch} length={args.length} precision={eager['precision']}")
    print(f"{'':15}{'first step':>12}{'step':>9}{'tgt tok/s':>11}{'vs eager':>10}{'peak RSS':>10}{'vs eager':>10}")
    for name, r in results.items():
        print(
            f"{name:15}{r['first_step_s']:>11.2f}s{r['step_s']:>8.3f}s{r['tokens_per_s']:>11,.0f}"
            f"{r['tokens_per_s'] / eager['tokens_per_s']:>9.2f}x{r['peak_rss_mb']:>8,.0f}MB"
            f"{r['peak_rss_mb'] / eager['peak_rss_mb']:>9.2f}x"
        )


if __name__ == "__main__":
    main()

"""The fused large-vocabulary loss (model.fused_loss, transformer/loss.py) against today's F.linear +
F.cross_entropy: peak allocated bytes and time, side by side in one process.

    python benchmarks/fused_loss.py                                  # vocab 32k, 4,096 target tokens, small dims
    python benchmarks/fused_loss.py --vocab 32000 --batch 128 --length 32 --size base

Two regions, each forward + backward under bf16 autocast where the CPU has native bf16 (else fp32), with label
smoothing 0.1 and 10% padding: `loss` is the projection and the loss alone, from decoder states (B, T, D) and the
(V, D) weight; `step` is a whole training step of the encoder-decoder (model.loss, backward). Peak allocated bytes
are measured by torch.profiler (profile_memory=True): every allocation and free of the CPU allocator inside the
region, summed in time order, the peak above what was allocated before it. Times are medians of interleaved
rounds (fused, unfused, fused, ...), so drift hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

from transformer import EncoderDecoder, ModelConfig
from transformer.hardware import cpu_supports_bf16
from transformer.loss import linear_cross_entropy


def peak_bytes(fn) -> int:
    """Peak bytes allocated by fn() above those allocated before it (the CPU allocator, via torch.profiler)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    sizes: list[tuple[int, int]] = []

    def walk(nodes) -> None:
        for node in nodes:
            if node.tag == _EventType.Allocation:
                sizes.append((node.start_time_ns, node.extra_fields.alloc_size))
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    live = peak = 0
    for _, size in sorted(sizes):
        live += size
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if cpu_supports_bf16() else None
    config = ModelConfig.named(args.size, vocab_size=args.vocab, dropout=0.0)
    B, T, D, V = args.batch, args.length, config.d_model, args.vocab
    src = torch.randint(4, V, (B, T))
    tgt = torch.randint(4, V, (B, T + 1))
    tgt[:, -max(1, T // 10) :] = 0  # 10% padding, ignored by the loss
    h = torch.randn(B, T, D, requires_grad=True)
    weight = torch.nn.Parameter(torch.randn(V, D) * D**-0.5)
    models = {fused: EncoderDecoder(replace(config, fused_loss=fused)).train() for fused in (True, False)}
    models[False].load_state_dict(models[True].state_dict())

    def loss_region(fused: bool):
        def run() -> None:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                if fused:
                    loss = linear_cross_entropy(h, weight, tgt[:, 1:], 0.1, 0)
                else:
                    logits = F.linear(h, weight)
                    loss = F.cross_entropy(logits.float().flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=0,
                                           label_smoothing=0.1)  # fmt: skip
            loss.backward()
            h.grad = weight.grad = None

        return run

    def step_region(fused: bool):
        model = models[fused]

        def run() -> None:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = model.loss(src, tgt[:, :-1], tgt[:, 1:], 0.1, 0)
            loss.backward()
            model.zero_grad(set_to_none=True)

        return run

    print(f"size={args.size} D={D} vocab={V} B={B} T={T} ({B * T:,} target rows), "
          f"{'bf16 autocast' if dtype else 'fp32'}, threads={torch.get_num_threads()}")  # fmt: skip
    print(f"{'region':8}{'variant':10}{'peak MiB':>10}{'vs unfused':>12}{'ms':>10}{'vs unfused':>12}")
    for name, region in (("loss", loss_region), ("step", step_region)):
        runs = {fused: region(fused) for fused in (True, False)}
        for run in runs.values():
            run()  # warm-up
        peaks = {fused: peak_bytes(run) for fused, run in runs.items()}
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for fused, run in runs.items():
                start = time.perf_counter()
                run()
                times[fused].append(time.perf_counter() - start)
        ms = {fused: 1000 * statistics.median(t) for fused, t in times.items()}
        for fused in (False, True):
            variant = "fused" if fused else "unfused"
            memory = f"{peaks[fused] / 2**20:>10,.1f}{peaks[fused] / peaks[False]:>11.2f}x"
            print(f"{name:8}{variant:10}{memory}{ms[fused]:>10,.1f}{ms[fused] / ms[False]:>11.2f}x")


if __name__ == "__main__":
    main()

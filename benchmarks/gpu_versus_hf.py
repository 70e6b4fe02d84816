"""Ours against Hugging Face on a GPU at the issue's shapes, eager and compiled, with MFU: the rows of
`gpu_check.sh`. Random weights and ids; nothing is downloaded.

    python benchmarks/gpu_versus_hf.py                         # on the GPU: base seq2seq 256x128, BERT-base 64x128
    python benchmarks/gpu_versus_hf.py --tiny --device cpu     # the script itself, in seconds, on a CPU

Pairs: our EncoderDecoder (its training loss, model.loss: the fused projection + label-smoothed cross-entropy)
against MarianMTModel (logits + F.cross_entropy, label smoothing 0.1), Transformer-base dims (vocab 32k,
512/8/2048, 6+6 layers), B=256, S=T=128; our EncoderClassifier against BertForSequenceClassification, BERT-base
dims (vocab 30522, 768/12/3072, 12 layers, GELU), B=64, T=128. bf16 autocast, AdamW, dropout 0.1. "compiled" is
ours with compile_blocks (what compile=true does) and HF with model.compile(). Both sides of a pair are timed in
interleaved rounds in this process, with the device synchronized around each round. MFU = the model FLOPs of
transformer/flops.py (the same for both sides: equal dims) / time / the peak (989 TFLOP/s: H100/H200 bf16 dense).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hf_training_throughput import BOS, PAD, Dims, hf_bert, hf_marian, our_config, random_ids  # noqa: E402

from transformer import EncoderClassifier, EncoderDecoder  # noqa: E402
from transformer.flops import training_flops  # noqa: E402
from transformer.model import compile_blocks  # noqa: E402

PEAK = 989e12


def batches(kind: str, B: int, L: int, vocab: int, device: str, n: int = 4) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        src = random_ids([L] * B, L, vocab, g)
        if kind == "seq2seq":
            tgt = random_ids([L] * B, L, vocab, g)
            tgt_in = torch.cat([torch.full((B, 1), BOS), tgt[:, :-1]], 1)
            out.append({"src": src.to(device), "tgt_in": tgt_in.to(device), "tgt": tgt.to(device)})
        else:
            out.append({"src": src.to(device), "labels": torch.randint(0, 2, (B,), generator=g).to(device)})
    return out


def loss_fn(kind: str, side: str):
    if kind == "seq2seq" and side == "ours":
        return lambda m, b: m.loss(b["src"], b["tgt_in"], b["tgt"], 0.1, PAD)
    if kind == "seq2seq":

        def hf(m, b):
            mask = b["src"].ne(PAD).long()
            logits = m(input_ids=b["src"], attention_mask=mask, decoder_input_ids=b["tgt_in"]).logits
            return F.cross_entropy(logits.float().flatten(0, 1), b["tgt"].flatten(), ignore_index=PAD,
                                   label_smoothing=0.1)  # fmt: skip

        return hf
    if side == "ours":
        return lambda m, b: F.cross_entropy(m(b["src"]).float(), b["labels"])
    return lambda m, b: F.cross_entropy(
        m(input_ids=b["src"], attention_mask=b["src"].ne(PAD).long()).logits.float(), b["labels"]
    )


def stepper(model, loss, data, device: str):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    state = {"i": 0}

    def step() -> None:
        batch = data[state["i"] % len(data)]
        state["i"] += 1
        with torch.autocast(device, dtype=torch.bfloat16):
            value = loss(model, batch)
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_pair(steps: dict, device: str, warmup: int, rounds: int, chunk: int) -> dict[str, float]:
    for step in steps.values():
        for _ in range(warmup):  # compilation happens here
            step()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(chunk):
                step()
            sync(device)
            times[name].append((time.perf_counter() - start) / chunk)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny dims and batches: checks the script on a CPU")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=5)
    args = parser.parse_args()
    device = args.device
    torch.backends.cuda.matmul.allow_tf32 = True
    if args.tiny:
        pairs = {
            "seq2seq": (Dims(vocab=500, d_model=32, heads=4, d_ff=64, encoder_layers=2, decoder_layers=2), 8, 16),
            "classifier": (Dims(vocab=500, d_model=32, heads=4, d_ff=64, encoder_layers=2, activation="gelu"), 8, 16),
        }
    else:
        base = Dims(vocab=32000, d_model=512, heads=8, d_ff=2048, encoder_layers=6, decoder_layers=6)
        bert = Dims(vocab=30522, d_model=768, heads=12, d_ff=3072, encoder_layers=12, activation="gelu")
        pairs = {"seq2seq": (base, 256, 128), "classifier": (bert, 64, 128)}
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}; MFU against {PEAK / 1e12:.0f} TFLOP/s")
    rows = [["workload", "mode", "ours tok/s", "MFU", "HF tok/s", "MFU", "ours/HF"]]
    for kind, (dims, B, L) in pairs.items():
        config = our_config(dims)
        flops = training_flops(config, B, L, L if kind == "seq2seq" else None)
        data = batches(kind, B, L, dims.vocab, device)
        for mode in args.modes.split(","):
            torch.manual_seed(0)
            ours = (EncoderDecoder if kind == "seq2seq" else EncoderClassifier)(config).to(device)
            hf = (hf_marian if kind == "seq2seq" else hf_bert)(dims).to(device)
            if mode == "compiled":
                compile_blocks(ours)
                hf.compile()
            steps = {
                "ours": stepper(ours, loss_fn(kind, "ours"), data, device),
                "hf": stepper(hf, loss_fn(kind, "hf"), data, device),
            }
            seconds = time_pair(steps, device, args.warmup, args.rounds, args.chunk)
            tokens = {side: B * L / s for side, s in seconds.items()}
            mfu = {side: flops / s / PEAK for side, s in seconds.items()}
            rows.append([f"{kind} B={B} L={L}", mode, f"{tokens['ours']:,.0f}", f"{100 * mfu['ours']:.1f}%",
                         f"{tokens['hf']:,.0f}", f"{100 * mfu['hf']:.1f}%",
                         f"{tokens['ours'] / tokens['hf']:.2f}x"])  # fmt: skip
            del ours, hf, steps
            if device == "cuda":
                torch.cuda.empty_cache()
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("| " + " | ".join("-" * w for w in widths) + " |")


if __name__ == "__main__":
    main()

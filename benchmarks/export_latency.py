"""Inference latency and throughput of exported graphs in ONNX Runtime against PyTorch eager, fp32, on the CPU.

    python benchmarks/export_latency.py --threads 1

Random-weight models of one size (default small, vocabulary 8,000), exported with transformer.export:
  - classifier: one forward pass to class probabilities over (B, S) source ids;
  - greedy: the encoder-decoder's greedy generation of exactly --new-tokens tokens per sentence (EOS is blocked
    until then), through transformer.decoding.greedy_search in PyTorch and ExportedSeq2Seq.greedy (the encoder and
    decoder-step graphs with explicit key/value caches) in ONNX Runtime.
Each engine gets the same threads. The engines run interleaved, in timed chunks of about --chunk-seconds each, for
--rounds rounds; each figure is the median chunk's time per call, so a slow spell of the machine hits both alike.
Throughput is sentences/s (classifier) and generated tokens/s (greedy); speed-up is PyTorch's latency over ORT's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import onnxruntime
import torch

from transformer import EncoderClassifier, EncoderDecoder, ModelConfig
from transformer.decoding import greedy_search
from transformer.export import export_model, load

BOS, EOS = 2, 3


def workloads(size: str, vocab: int, length: int, new_tokens: int, batches: list[int], threads: int, folder: str):
    """{(workload, batch): {engine: call}}, after checking that both engines give the same outputs."""
    torch.manual_seed(0)
    classifier = EncoderClassifier(ModelConfig.named(size, vocab_size=vocab)).eval()
    seq2seq = EncoderDecoder(ModelConfig.named(size, vocab_size=vocab)).eval()
    export_model(classifier, f"{folder}/classifier")
    export_model(seq2seq, f"{folder}/seq2seq")
    ort_classifier, ort_seq2seq = load(f"{folder}/classifier", threads), load(f"{folder}/seq2seq", threads)

    def classify(src: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return classifier(src).float().softmax(-1).numpy()

    def generate(src: torch.Tensor) -> list[list[int]]:
        return greedy_search(seq2seq, src, BOS, EOS, max_len_a=0.0, max_len_b=new_tokens, min_len=new_tokens)

    cases: dict[tuple[str, int], dict[str, Callable[[], object]]] = {}
    for batch in batches:
        src = torch.randint(4, vocab, (batch, length))
        ids = src.numpy()
        np.testing.assert_allclose(ort_classifier.probabilities(ids), classify(src), rtol=0, atol=1e-4)
        assert ort_seq2seq.greedy(ids, 0.0, new_tokens, new_tokens) == generate(src), "greedy outputs differ"
        cases["classifier", batch] = {
            "pytorch": lambda src=src: classify(src),
            "onnxruntime": lambda ids=ids: ort_classifier.probabilities(ids),
        }
        cases["greedy", batch] = {
            "pytorch": lambda src=src: generate(src),
            "onnxruntime": lambda ids=ids: ort_seq2seq.greedy(ids, 0.0, new_tokens, new_tokens),
        }
    return cases


def chunk_size(call: Callable[[], object], seconds: float) -> int:
    """Calls per timed chunk: about `seconds` of them, at least one (the first call also warms up)."""
    call()
    start = time.perf_counter()
    call()
    return max(1, round(seconds / (time.perf_counter() - start)))


def measure(cases, rounds: int, seconds: float) -> dict[tuple[str, int, str], float]:
    """Median seconds per call of every (workload, batch, engine), the engines interleaved chunk by chunk."""
    calls = {(*case, engine): call for case, engines in cases.items() for engine, call in engines.items()}
    sizes = {key: chunk_size(call, seconds) for key, call in calls.items()}
    times: dict[tuple[str, int, str], list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            start = time.perf_counter()
            for _ in range(sizes[key]):
                call()
            times[key].append((time.perf_counter() - start) / sizes[key])
    return {key: statistics.median(values) for key, values in times.items()}


def table(medians: dict[tuple[str, int, str], float], new_tokens: int) -> str:
    rows = [
        "| workload | batch | PyTorch ms | ORT ms | PyTorch throughput | ORT throughput | ORT speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload, batch in sorted({(w, b) for w, b, _ in medians}):
        eager, ort = medians[workload, batch, "pytorch"], medians[workload, batch, "onnxruntime"]
        items, unit = (batch, "sent/s") if workload == "classifier" else (batch * new_tokens, "tok/s")
        rows.append(
            f"| {workload} | {batch} | {eager * 1e3:.2f} | {ort * 1e3:.2f} | {items / eager:,.0f} {unit} "
            f"| {items / ort:,.0f} {unit} | {eager / ort:.2f}x |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", help="a model size: configs/model/<size>.yaml")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--length", type=int, default=32, help="source tokens per sentence")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per sentence (greedy)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both engines")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk-seconds", type=float, default=0.3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        cases = workloads(args.size, args.vocab, args.length, args.new_tokens, args.batches, args.threads, folder)
        medians = measure(cases, args.rounds, args.chunk_seconds)
    print(
        f"model={args.size} vocab={args.vocab} source length={args.length} new tokens={args.new_tokens} "
        f"threads={args.threads}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
        f"median of {args.rounds} interleaved rounds\n"
    )
    print(table(medians, args.new_tokens))


if __name__ == "__main__":
    main()

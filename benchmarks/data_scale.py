"""The data pipeline at WMT14 en-de scale (4.5M sentence pairs): preparation, cache, sampler and data loader.

    python benchmarks/data_scale.py --pairs 500000 4500000      # the README table (disk: ~1.5 GB at 4.5M)
    python benchmarks/data_scale.py --pairs 20000               # a quick look

For each size, a generated parallel corpus (Zipf-distributed words, WMT-like sentence lengths: ~26 words on
average, up to ~100) is written as train.{en,de} plus a small validation pair, then, each step in a fresh process:
- prepare: prepare_dataset with a shared 32k unigram SentencePiece model (trained on a 1M-sentence sample, as the
  WMT recipes do), encoding and the cache; wall time, peak RSS of the process and of its encoding workers;
- load: the cache is memory-mapped, the lengths read, the token-budget sampler built (4096 tokens a batch, as
  the recipes per GPU), and 2,000 batches collated through the DataLoader: batches/s and peak RSS.
Peak memory should not grow with the corpus: the splits are memory-mapped Arrow files.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = 60_000  # word types of the generated corpus


def generate(root: Path, pairs: int, seed: int = 0) -> None:
    """train.{en,de} and val.{en,de}: random sentences of Zipf-distributed made-up words, written in chunks."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(2, 11, WORDS)
    vocab = {lang: ["".join(rng.choice(letters, n)) for n in lengths] for lang in ("en", "de")}
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", pairs), ("val", 1000)):
        files = {lang: open(root / f"{split}.{lang}", "w", encoding="utf-8") for lang in ("en", "de")}  # noqa: SIM115
        for start in range(0, n, 100_000):
            size = min(100_000, n - start)
            words = np.minimum(rng.zipf(1.15, (size, 100)) - 1, WORDS - 1)
            counts = np.clip(rng.lognormal(3.1, 0.55, size).astype(int), 1, 100)
            for lang in ("en", "de"):
                table = vocab[lang]
                lines = (" ".join(table[w] for w in row[:k]) for row, k in zip(words, counts, strict=True))
                files[lang].write("\n".join(lines) + "\n")
        for handle in files.values():
            handle.close()


def dataset_config(root: Path):
    from transformer.data import DatasetConfig

    return DatasetConfig(
        name="scale",
        objective="seq2seq",
        format="parallel",
        local_dir=str(root),
        splits={"train": "train", "validation": "val"},
        src_lang="en",
        tgt_lang="de",
        tokenizer={"vocab_size": 32000},
        max_source_len=256,
        max_target_len=256,
    )


def prepare(root: Path, cache: Path) -> dict:
    from transformer.data import prepare_dataset

    start = time.perf_counter()
    data = prepare_dataset(dataset_config(root), None, cache, force=True)
    return {"prepare_s": time.perf_counter() - start, "rows": len(data.splits["train"])}


def load(cache: Path, batches: int) -> dict:
    from torch.utils.data import DataLoader

    from transformer.data import TokenBudgetBatchSampler, example_lengths, load_prepared
    from transformer.data.batching import Collate

    start = time.perf_counter()
    data = load_prepared(cache / "scale")
    train = data.splits["train"]
    lengths = example_lengths(train)
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=4096, shuffle=True, seed=0)
    ready = time.perf_counter() - start
    tok = data.tgt_tokenizer
    loader = DataLoader(train, batch_sampler=sampler, collate_fn=Collate("seq2seq", tok.pad_id, tok.bos_id, tok.eos_id))
    start, seen = time.perf_counter(), 0
    for seen, _ in enumerate(loader, 1):
        if seen == batches:
            break
    return {"load_s": ready, "batches_per_s": seen / (time.perf_counter() - start), "batches_per_epoch": len(sampler)}


def peak_anonymous_memory() -> list[float]:
    """Samples this process's anonymous resident memory (RssAnon: heap, not memory-mapped file pages, which the
    kernel can drop and which ru_maxrss also counts) every 0.1 s; returns a one-element list holding the peak MB."""
    import threading

    peak = [0.0]

    def sample() -> None:
        while True:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    return peak


def child(step: str, root: Path, cache: Path, batches: int) -> dict:
    """Run one step in a fresh process; its peak RSS and that of its own child processes come back with it."""
    command = [sys.executable, __file__, "--step", step, "--root", str(root), "--cache", str(cache)]
    output = subprocess.run([*command, "--batches", str(batches)], capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[500_000, 4_500_000])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--workdir", default=None, help="where the corpora and caches go (default: a temp dir)")
    parser.add_argument("--step", choices=["prepare", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        anonymous = peak_anonymous_memory()
        result = prepare(Path(args.root), Path(args.cache)) if args.step == "prepare" else None
        result = result or load(Path(args.cache), args.batches)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result["peak_anon_mb"] = anonymous[0]
        print(json.dumps(result))
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="data-scale-"))
    rows = []
    for pairs in args.pairs:
        root, cache = work / f"corpus-{pairs}", work / f"cache-{pairs}"
        start = time.perf_counter()
        generate(root, pairs)
        generated = time.perf_counter() - start
        prepared = child("prepare", root, cache, args.batches)
        loaded = child("load", root, cache, args.batches)
        rows.append((pairs, generated, du(root), prepared, du(cache / "scale"), loaded))
        shutil.rmtree(root)
    print("RSS: peak resident memory (ru_maxrss, memory-mapped file pages included); anon: peak anonymous memory")
    print(f"{'pairs':>10}{'corpus':>9}{'prepare':>9}{'RSS':>9}{'anon':>9}{'workers':>9}{'cache':>9}"
          f"{'load':>7}{'RSS':>9}{'anon':>9}{'batches/s':>11}{'batches/epoch':>15}")  # fmt: skip
    for pairs, _, corpus, p, cache_bytes, loaded in rows:
        print(
            f"{pairs:>10,}{corpus / 2**20:>7,.0f}MB{p['prepare_s']:>8.0f}s{p['peak_rss_mb']:>7,.0f}MB"
            f"{p['peak_anon_mb']:>7,.0f}MB{p['children_peak_rss_mb']:>7,.0f}MB{cache_bytes / 2**20:>7,.0f}MB"
            f"{loaded['load_s']:>6.1f}s{loaded['peak_rss_mb']:>7,.0f}MB{loaded['peak_anon_mb']:>7,.0f}MB"
            f"{loaded['batches_per_s']:>11,.0f}{loaded['batches_per_epoch']:>15,}"
        )
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

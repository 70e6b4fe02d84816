"""Padding efficiency (real tokens / padded tokens) of token-budget batches versus random fixed-size batches.

    python benchmarks/padding_efficiency.py data/multi30k_de_en --max-tokens 4096

The fixed batch size is chosen so that both give the same number of batches, i.e. the same average number of
real tokens per batch. Source and target are padded separately, as the collate functions do.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow.compute as pc

from transformer.data import TokenBudgetBatchSampler, example_lengths, load_prepared


def token_lengths(split, column: str) -> np.ndarray:
    return pc.list_value_length(split.with_format("arrow")[:].column(column)).to_numpy(zero_copy_only=False)


def efficiency(batches: list[np.ndarray], sides: list[np.ndarray]) -> float:
    """Real over padded tokens of all batches together, summed over source and target."""
    real = sum(int(side.sum()) for side in sides)
    padded = sum(len(b) * int(side[b].max()) for b in batches for side in sides)
    return real / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared", help="a prepared dataset folder, <cache_dir>/<name>")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    split = load_prepared(args.prepared).splits[args.split]
    sides = [token_lengths(split, "src_ids")]
    if "tgt_ids" in split.column_names:
        sides.append(token_lengths(split, "tgt_ids") + 1)  # tgt_in = bos + tgt, tgt_out = tgt + eos

    sampler = TokenBudgetBatchSampler(example_lengths(split), max_tokens=args.max_tokens, seed=args.seed)
    bucketed = [np.asarray(b) for b in sampler]
    batch_size = round(len(split) / len(bucketed))
    order = np.random.default_rng(args.seed).permutation(len(split))
    fixed = [order[i : i + batch_size] for i in range(0, len(split), batch_size)]

    ours, theirs = efficiency(bucketed, sides), efficiency(fixed, sides)
    print(f"{args.prepared} [{args.split}]: {len(split)} examples")
    print(f"token budget (max_tokens={args.max_tokens}): {len(bucketed)} batches, padding efficiency {ours:.3f}")
    print(f"random fixed size (batch_size={batch_size}): {len(fixed)} batches, padding efficiency {theirs:.3f}")
    print(f"ratio: {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()

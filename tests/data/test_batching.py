import functools
import pickle

import numpy as np
import pytest
import torch
from datasets import Dataset
from torch.utils.data import DataLoader

from transformer.data import (
    TokenBudgetBatchSampler,
    collate_classification,
    collate_seq2seq,
    example_lengths,
    padding_efficiency,
)

LENGTHS = np.random.default_rng(0).integers(1, 60, size=500)


def epoch(sampler: TokenBudgetBatchSampler, number: int = 0) -> list[list[int]]:
    sampler.set_epoch(number)
    return list(sampler)


def test_batches_respect_the_token_budget_and_cover_every_example_once():
    sampler = TokenBudgetBatchSampler(LENGTHS, max_tokens=256)
    for number in range(3):
        batches = epoch(sampler, number)
        assert len(batches) == len(sampler)
        assert all(len(b) * LENGTHS[b].max() <= 256 for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))


def test_batches_are_length_bucketed():
    batches = epoch(TokenBudgetBatchSampler(LENGTHS, max_tokens=256))
    efficiency = sum(LENGTHS[b].sum() for b in batches) / sum(len(b) * LENGTHS[b].max() for b in batches)
    assert efficiency > 0.9  # random batches of this corpus are ~0.55


def test_fixed_batch_size_and_both_caps():
    batches = epoch(TokenBudgetBatchSampler(LENGTHS, batch_size=32))
    assert [len(b) for b in batches].count(32) == len(batches) - 1  # all full but the last
    both = epoch(TokenBudgetBatchSampler(LENGTHS, max_tokens=400, batch_size=16))
    assert all(len(b) <= 16 and len(b) * LENGTHS[b].max() <= 400 for b in both)
    assert max(len(b) for b in both) == 16  # the short examples hit the batch_size cap


def test_shuffling_is_reproducible_and_changes_between_epochs():
    a = TokenBudgetBatchSampler(LENGTHS, max_tokens=256, seed=1)
    b = TokenBudgetBatchSampler(LENGTHS, max_tokens=256, seed=1)
    assert epoch(a, 0) == epoch(b, 0) and epoch(a, 3) == epoch(b, 3)
    assert epoch(a, 0) != epoch(a, 1)
    assert epoch(a, 0) != epoch(TokenBudgetBatchSampler(LENGTHS, max_tokens=256, seed=2), 0)
    # batch sizes follow the sorted lengths only, so the epoch length never changes
    assert len({len(epoch(a, n)) for n in range(5)}) == 1


def test_without_shuffle_batches_run_in_length_order():
    batches = epoch(TokenBudgetBatchSampler(LENGTHS, max_tokens=256, shuffle=False))
    longest = [LENGTHS[b].max() for b in batches]
    assert longest == sorted(longest) and batches == epoch(
        TokenBudgetBatchSampler(LENGTHS, max_tokens=256, shuffle=False), 5
    )


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n", [500, 497])
def test_distributed_shards_are_equal_and_disjoint(n, drop_last):
    lengths = LENGTHS[:n]
    total = len(TokenBudgetBatchSampler(lengths, max_tokens=256))
    ranks = [
        TokenBudgetBatchSampler(lengths, max_tokens=256, seed=3, num_replicas=2, rank=r, drop_last=drop_last)
        for r in (0, 1)
    ]
    for number in (0, 1):
        shards = [epoch(s, number) for s in ranks]
        assert len(shards[0]) == len(shards[1]) == len(ranks[0])  # DDP steps stay in lockstep
        assert all(len(b) * lengths[b].max() <= 256 for shard in shards for b in shard)
        if total % 2 and not drop_last:  # odd: the epoch's first batch is repeated as rank 1's last
            assert shards[1][-1] == shards[0][0]
            shards[1].pop()
        seen = [i for shard in shards for b in shard for i in b]
        assert len(seen) == len(set(seen))  # disjoint
        if not drop_last:
            assert sorted(seen) == list(range(n))  # and together they cover everything
        elif total % 2:
            assert len(seen) < n  # one batch left out this epoch


def test_odd_and_even_batch_counts_are_both_exercised():
    counts = {n: len(TokenBudgetBatchSampler(LENGTHS[:n], max_tokens=256).sizes) % 2 for n in (500, 497)}
    assert set(counts.values()) == {0, 1}, counts  # keeps the distributed test above meaningful


def test_example_longer_than_the_budget():
    with pytest.raises(ValueError, match="example 2 has 300 tokens, more than max_tokens=256"):
        TokenBudgetBatchSampler([5, 10, 300, 7], max_tokens=256)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({}, "give max_tokens, batch_size or both"),
        ({"max_tokens": 0}, "max_tokens must be positive"),
        ({"batch_size": 4, "num_replicas": 2, "rank": 2}, r"rank=2 is outside \[0, num_replicas=2\)"),
        ({"batch_size": 8, "num_replicas": 3, "drop_last": True}, "1 batches cannot give each of 3 replicas"),
    ],
)
def test_bad_sampler_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        TokenBudgetBatchSampler([3, 4, 5], **kwargs)


def test_collate_seq2seq_shapes_and_shift():
    examples = [
        {"src_ids": [5, 6, 7], "tgt_ids": [8, 9], "index": 4},
        {"src_ids": [5], "tgt_ids": [10, 11, 12], "index": 0},
    ]
    batch = collate_seq2seq(examples, pad_id=0, bos_id=2, eos_id=3)
    assert batch["src"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["tgt_in"].tolist() == [[2, 8, 9, 0], [2, 10, 11, 12]]
    assert batch["tgt_out"].tolist() == [[8, 9, 3, 0], [10, 11, 12, 3]]
    assert batch["index"].tolist() == [4, 0]
    assert all(t.dtype == torch.long for k, t in batch.items() if k != "counts")
    assert batch["counts"] == {"real": 4 + 7, "padded": 6 + 8, "target": 3 + 4}  # src 4 of 6, tgt_out 7 of 8


def test_collate_classification():
    batch = collate_classification([{"src_ids": [4, 5], "label": 1}, {"src_ids": [6, 7, 8], "label": 0}], pad_id=0)
    assert batch["src"].tolist() == [[4, 5, 0], [6, 7, 8]] and batch["label"].tolist() == [1, 0]


def test_bucket_lengths_are_few_and_pad_little():
    from transformer.data.batching import Collate, bucket_length, bucket_lengths

    assert [bucket_length(n) for n in (1, 8, 9, 64, 65, 129, 300, 1000, 1025)] == [
        8,
        8,
        16,
        64,
        80,
        160,
        320,
        1024,
        1152,
    ]
    assert bucket_length(100, limit=100) == 100 and bucket_length(120, limit=100) == 120  # never past the model
    buckets = {bucket_length(n) for n in range(1, 1025)}
    assert len(buckets) == 8 + 4 + 4 + 4 + 4
    assert all(bucket_length(n) - n <= max(7, n // 4) for n in range(1, 2000))  # under a quarter past 64
    np.testing.assert_array_equal(bucket_lengths(np.array([3, 17, 70])), [8, 24, 80])
    examples = [{"src_ids": [5] * 9, "tgt_ids": [8] * 3, "index": 0, "target": "x"}]
    batch = Collate("seq2seq", 0, 2, 3, buckets=True)(examples)
    assert batch["src"].shape == (1, 16) and batch["tgt_in"].shape == batch["tgt_out"].shape == (1, 8)
    assert batch["tgt_out"][0, :4].tolist() == [8, 8, 8, 3] and batch["src"][0, 9:].eq(0).all()
    batch = Collate("classification", 0, 2, 3, buckets=True)([{"src_ids": [4] * 3, "label": 1, "index": 0}])
    assert batch["src"].shape == (1, 8)


def test_bucketed_batches_stay_within_the_token_budget():
    from transformer.data.batching import bucket_lengths

    sampler = TokenBudgetBatchSampler(bucket_lengths(LENGTHS), max_tokens=256)
    for batch in epoch(sampler):
        assert len(batch) * max(bucket_lengths(LENGTHS[batch])) <= 256


def test_padding_efficiency():
    assert padding_efficiency([2, 4]) == 0.75
    assert padding_efficiency(torch.tensor([[5, 6, 0, 0], [5, 6, 7, 8]])) == 0.75
    batch = collate_seq2seq(
        [{"src_ids": [5, 6], "tgt_ids": [7], "index": 0}, {"src_ids": [5], "tgt_ids": [7], "index": 1}]
    )
    assert padding_efficiency(batch) == (3 + 4) / (4 + 4)  # src 3 of 4, tgt_out 4 of 4
    assert batch["counts"]["real"] / batch["counts"]["padded"] == padding_efficiency(batch)  # the host's counts


def test_lengths_from_a_prepared_split_and_a_dataloader_with_workers():
    split = Dataset.from_dict(
        {
            "src_ids": [[5, 6, 7], [5], [5, 6], [9] * 6],
            "tgt_ids": [[8], [8, 9, 10, 11], [8, 9], [7]],
            "index": [0, 1, 2, 3],
        }
    )
    assert example_lengths(split).tolist() == [3, 5, 3, 6]  # max(src, tgt + 1)
    assert example_lengths(split.select([3, 0])).tolist() == [6, 3]
    assert example_lengths(split.remove_columns("tgt_ids")).tolist() == [3, 1, 2, 6]

    collate = functools.partial(collate_seq2seq, pad_id=0, bos_id=2, eos_id=3)
    pickle.dumps(collate)  # what DataLoader workers need
    sampler = TokenBudgetBatchSampler(example_lengths(split), max_tokens=8, seed=0)
    loader = DataLoader(split, batch_sampler=sampler, collate_fn=collate, num_workers=1)
    indices = sorted(i for batch in loader for i in batch["index"].tolist())
    assert indices == [0, 1, 2, 3]


def test_batches_are_the_same_with_workers_and_resume_mid_epoch_alike():
    """num_workers=2 (persistent workers, as hardware=gpu sets) gives the batches of num_workers=0, across epochs
    and after a mid-epoch resume (the loader state Lightning stores in checkpoints)."""
    from transformer.data.batching import Collate, make_loader

    rng = np.random.default_rng(1)
    split = Dataset.from_dict(
        {
            "src_ids": [rng.integers(4, 50, size=n).tolist() for n in rng.integers(1, 20, size=60)],
            "tgt_ids": [rng.integers(4, 50, size=n).tolist() for n in rng.integers(1, 20, size=60)],
            "target": ["t"] * 60,
            "index": list(range(60)),
        }
    )
    collate = Collate("seq2seq", pad_id=0, bos_id=2, eos_id=3)

    def run(workers: int, resume: dict | None = None) -> list[dict]:
        loader = make_loader(split, collate, max_tokens=64, train=True, seed=3, num_workers=workers)
        if resume is not None:
            loader.load_state_dict(resume)
        out = []
        for number in (resume or {"epoch": 0})["epoch"], 1:
            loader.batch_sampler.set_epoch(number)
            out += list(loader)
        return out

    def same(a: list[dict], b: list[dict]) -> None:
        assert len(a) == len(b) > 0
        for x, y in zip(a, b, strict=True):
            assert x["counts"] == y["counts"] and x["references"] == y["references"]
            for key in ("src", "tgt_in", "tgt_out", "index"):
                assert torch.equal(x[key], y[key]), key

    same(run(0), run(2))
    state = {"epoch": 0, "consumed": 3}
    resumed = run(2, state)
    same(resumed, run(0, state))
    same(resumed, run(0)[3:])  # the resumed epoch starts at its fourth batch

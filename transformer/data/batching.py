"""Batching, in one place for training and inference: length-bucketed batches under a token budget, the collate
functions that pad them, and the DataLoaders over them (resumable mid-epoch for training).

A batch of B examples whose longest has L tokens costs B * L padded tokens: that product is what fills the
GPU, so `max_tokens` caps it (as fairseq does). Sorting by length before cutting keeps L close to every
example's length, so little of the budget goes to padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset
from torch import Tensor
from torch.utils.data import DataLoader, Sampler


def example_lengths(dataset: Dataset) -> np.ndarray:
    """Cost of each example in tokens: len(src_ids), or max(len(src_ids), len(tgt_ids) + 1) for seq2seq.

    The +1 is the bos of tgt_in (or the eos of tgt_out). Read from Arrow without decoding the rows: only the
    list offsets of the memory-mapped table are touched, so memory does not grow with the tokens of the corpus.
    """
    # a select()/shuffle() view has an indices mapping: slicing honours it (and copies); a plain split is read as is
    table = dataset.data.table if dataset._indices is None else dataset.with_format("arrow")[:]
    lengths = pc.list_value_length(table.column("src_ids")).to_numpy(zero_copy_only=False)
    if "tgt_ids" in table.column_names:
        tgt = pc.list_value_length(table.column("tgt_ids")).to_numpy(zero_copy_only=False)
        lengths = np.maximum(lengths, tgt + 1)
    return lengths.astype(np.int64)


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples, each within `max_tokens` padded tokens and/or `batch_size` examples.

    Every epoch: sort by length (ties broken at random from seed + epoch, so batches change between epochs),
    cut greedily into batches, shuffle the batch order from seed + epoch. shuffle=False keeps the sorted order.

    Distributed (num_replicas > 1): all ranks compute the same batch list and rank r takes batches r, r + R, ...
    DDP hangs when ranks run different numbers of steps, so the list is made divisible by R: by repeating
    batches from its start (the default; a few examples are seen twice per epoch), or with drop_last=True by
    dropping the last few batches (a few examples are skipped that epoch). Either way every rank gets
    len(sampler) batches.

    An example longer than max_tokens alone raises ValueError: prepare truncates to the max lengths, so raise
    max_tokens above them.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        max_tokens: int | None = None,
        batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if max_tokens is None and batch_size is None:
            raise ValueError("give max_tokens, batch_size or both")
        for name, value in (("max_tokens", max_tokens), ("batch_size", batch_size)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} is outside [0, num_replicas={num_replicas})")
        self.lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)  # an empty example still takes a slot
        if len(self.lengths) == 0:
            raise ValueError("no examples to batch")
        if max_tokens is not None and self.lengths.max() > max_tokens:
            i = int(self.lengths.argmax())
            raise ValueError(
                f"example {i} has {self.lengths[i]} tokens, more than max_tokens={max_tokens}: "
                "raise max_tokens above the max lengths of the dataset"
            )
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        # Batch sizes depend only on the sorted lengths, not on how ties are broken: the same every epoch.
        self.sizes = _cut(np.sort(self.lengths), max_tokens, batch_size)
        total = len(self.sizes)
        if drop_last and total < num_replicas:
            raise ValueError(f"{total} batches cannot give each of {num_replicas} replicas one with drop_last=True")
        self.num_batches = total // num_replicas if drop_last else -(-total // num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches()[self.rank :: self.num_replicas]:
            yield batch.tolist()

    def batches(self) -> list[np.ndarray]:
        """This epoch's batches for all ranks (num_batches * num_replicas of them)."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            ties = rng.permutation(len(self.lengths))
            order = ties[np.argsort(self.lengths[ties], kind="stable")]
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = np.split(order, np.cumsum(self.sizes)[:-1])
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        wanted = self.num_batches * self.num_replicas
        return [batches[i % len(batches)] for i in range(wanted)]


def _cut(sorted_lengths: np.ndarray, max_tokens: int | None, batch_size: int | None) -> list[int]:
    """Greedy batch sizes over ascending lengths: the newest example is always the longest of its batch."""
    sizes, count = [], 0
    for length in sorted_lengths.tolist():
        full = (max_tokens is not None and (count + 1) * length > max_tokens) or count == batch_size
        if count and full:
            sizes.append(count)
            count = 0
        count += 1
    sizes.append(count)
    return sizes


# (up to this length, pad to a multiple of this): 24 lengths up to 1,024; past 64 tokens under a quarter is padding
BUCKETS = ((64, 8), (128, 16), (256, 32), (512, 64), (1024, 128))


def bucket_length(length: int, limit: int | None = None) -> int:
    """The padded length of a batch whose longest sequence has `length` tokens, when lengths snap to buckets: the
    next multiple of 8 up to 64, of 16 up to 128, of 32 up to 256, of 64 up to 512, then of 128 (past 64 tokens
    under a quarter of padding), never beyond `limit` (the model's positions) unless `length` is. A compiled model
    then meets a handful of shapes instead of one per length."""
    step = next((step for up_to, step in BUCKETS if length <= up_to), BUCKETS[-1][1])
    padded = max(step, -(-length // step) * step)
    return padded if limit is None else max(length, min(padded, limit))


def bucket_lengths(lengths: np.ndarray, limit: int | None = None) -> np.ndarray:
    """bucket_length of each of `lengths` (the token budget's view of bucketed batches)."""
    table = {n: bucket_length(n, limit) for n in np.unique(lengths).tolist()}
    return np.vectorize(table.__getitem__, otypes=[np.int64])(lengths) if len(lengths) else lengths


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int, length: int | None = None) -> Tensor:
    """Right-padded (B, L) LongTensor, L = the longest sequence (at least 1), or `length` when given."""
    longest = max(1, max(len(s) for s in sequences))
    out = torch.full((len(sequences), max(longest, length or 0)), pad_id, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def token_counts(
    src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None = None, S: int | None = None, T: int | None = None
) -> dict[str, int]:
    """The batch's sizes as host ints, counted from the examples, so that the training step never reads them back
    from the device: `real` tokens and `padded` tokens of src (padded to S, else the longest) and tgt_out (one
    longer than each target: its eos; padded to T) and, with targets, `target`: the tgt_out tokens the loss sums
    over."""
    padded = len(src) * (S or max(1, max(len(s) for s in src)))
    real = sum(len(s) for s in src)
    counts = {"real": real, "padded": padded}
    if tgt is not None:
        target = sum(len(t) + 1 for t in tgt)
        padded += len(tgt) * (T or max(len(t) + 1 for t in tgt))
        counts = {"real": real + target, "padded": padded, "target": target}
    return counts


def collate_classification(examples: list[Mapping[str, Any]], pad_id: int = 0, pad=None) -> dict[str, Tensor]:
    """{"src": (B, S), "label": (B,), "counts": token_counts}. Bind pad_id with functools.partial (it pickles for
    workers). `pad`: as collate_seq2seq's."""
    src = [ex["src_ids"] for ex in examples]
    S = max(1, max(map(len, src)))
    S = pad(S) if pad is not None else S
    return {
        "src": pad_sequences(src, pad_id, S),  # (B, S)
        "label": torch.tensor([ex["label"] for ex in examples], dtype=torch.long),  # (B,)
        "counts": token_counts(src, S=S),
    }


def collate_seq2seq(
    examples: list[Mapping[str, Any]], pad_id: int = 0, bos_id: int = 2, eos_id: int = 3, pad=None
) -> dict[str, Tensor]:
    """{"src": (B, S), "tgt_in": (B, T) = bos + tgt, "tgt_out": (B, T) = tgt + eos, "index": (B,), "counts"}.

    tgt_in and tgt_out are the decoder input and its labels shifted by one (teacher forcing); pads in
    tgt_out are ignored by the loss. `index` is each example's row, to match outputs back to references.
    `pad`: longest length -> padded length (e.g. bucket_length), else the longest. `counts`: token_counts, host
    ints.
    """
    tgt = [list(ex["tgt_ids"]) for ex in examples]
    src = [ex["src_ids"] for ex in examples]
    S, T = max(1, max(map(len, src))), max(map(len, tgt)) + 1
    S, T = (pad(S), pad(T)) if pad is not None else (S, T)
    return {
        "src": pad_sequences(src, pad_id, S),  # (B, S)
        "tgt_in": pad_sequences([[bos_id] + t for t in tgt], pad_id, T),  # (B, T)
        "tgt_out": pad_sequences([t + [eos_id] for t in tgt], pad_id, T),  # (B, T)
        "index": torch.tensor([ex["index"] for ex in examples], dtype=torch.long),  # (B,)
        "counts": token_counts(src, tgt, S, T),
    }


class Collate:
    """Pads a list of prepared examples into the batch dict the LightningModules take.

    classification: src (B, S), label (B,), index (B,); pretrain: src (B, S), index (B,), noised by the module
    seq2seq: src (B, S), tgt_in = BOS + target (B, T), tgt_out = target + EOS (B, T), index (B,),
             references: raw reference strings per example (for BLEU / ROUGE on detokenized text)
    all: counts, the batch's token counts as host ints (token_counts)

    With `buckets`, every padded length snaps to bucket_length(longest, bucket_limit) (for a compiled model).
    """

    def __init__(
        self, objective: str, pad_id: int, bos_id: int, eos_id: int, buckets: bool = False, bucket_limit=None
    ) -> None:
        self.objective, self.pad_id, self.bos_id, self.eos_id = objective, pad_id, bos_id, eos_id
        self.buckets, self.bucket_limit = buckets, bucket_limit

    @classmethod
    def of(cls, objective: str, tokenizer: Any, buckets: bool = False, bucket_limit: int | None = None) -> Collate:
        """The collation of an objective's batches, with the (target) tokenizer's special ids."""
        return cls(objective, tokenizer.pad_id, tokenizer.decoder_start_id, tokenizer.eos_id, buckets, bucket_limit)

    def _pad(self, length: int) -> int:
        return bucket_length(length, self.bucket_limit)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        pad = self._pad if self.buckets else None  # a bound method: pickles for workers
        if self.objective in ("classification", "pretrain"):
            if self.objective == "classification":
                batch = collate_classification(examples, self.pad_id, pad)
            else:  # the clean text: the module corrupts it (objectives/pretrain.py)
                src = [ex["src_ids"] for ex in examples]
                batch = {"src": pad_sequences(src, self.pad_id), "counts": token_counts(src)}
            batch["index"] = torch.tensor([ex["index"] for ex in examples], dtype=torch.long)
            return batch
        batch = collate_seq2seq(examples, self.pad_id, self.bos_id, self.eos_id, pad)
        batch["references"] = [ex.get("references") or [ex["target"]] for ex in examples]
        return batch


class ResumableBatches(Sampler[list[int]]):
    """Wraps a batch sampler so that an epoch can start after its first `skip` batches (mid-epoch resume)."""

    def __init__(self, batches) -> None:
        self.batches = batches
        self.epoch, self._resume_epoch, self._skip = 0, -1, 0

    @property
    def sampler(self) -> ResumableBatches:
        # Lightning calls set_epoch on `loader.batch_sampler.sampler`, not on the batch sampler itself
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches.set_epoch(epoch)

    def resume(self, epoch: int, skip: int) -> None:
        self._resume_epoch, self._skip = epoch, skip

    def skipped(self) -> int:
        """Batches the current epoch leaves out (so consumed counts stay absolute)."""
        return self._skip if self._resume_epoch == self.epoch else 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        skip = self.skipped()
        self._resume_epoch = -1  # the skip applies to the resumed epoch only
        for i, batch in enumerate(self.batches):
            if i >= skip:
                yield batch


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position inside the epoch is saved in checkpoints and restored on resume.

    Lightning stores `state_dict()` of loaders that have one. It does not fetch ahead from loaders with a
    length, so the batches yielded so far are the batches training consumed.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._yielded = 0

    def __iter__(self):
        self._yielded = self.batch_sampler.skipped()
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "consumed": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.resume(state["epoch"], state["consumed"])


def make_loader(
    dataset: Dataset,
    collate: Collate,
    max_tokens: int | None,
    batch_size: int | None = None,
    *,
    train: bool = False,
    lengths: np.ndarray | None = None,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of token-budget batches: shuffled and resumable mid-epoch for training (train=True), in length
    order for evaluation. `lengths`: example_lengths(dataset), when the caller keeps them.

    num_workers > 0: collation runs in that many worker processes, kept for the whole run (persistent), off the
    training step's critical path; the batch order is the sampler's, which stays in the main process, so batches
    and a resumed run are the same as with none. pin_memory: page-locked batches, so that the copies to a GPU
    (which Lightning issues non-blocking) overlap with the step."""
    sampler = TokenBudgetBatchSampler(
        example_lengths(dataset) if lengths is None else lengths,
        max_tokens=max_tokens,
        batch_size=batch_size,
        shuffle=train,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
    )
    return (ResumableDataLoader if train else DataLoader)(
        dataset,
        batch_sampler=ResumableBatches(sampler) if train else sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        # its own generator: creating an iterator must not draw from the global RNG that dropout uses,
        # or a resumed run (which creates one more iterator) would diverge from the uninterrupted one
        generator=torch.Generator().manual_seed(seed),
    )


def evaluation_loader(dataset: Dataset, objective: str, tokenizer: Any, max_tokens: int | None) -> DataLoader:
    """The batches that evaluate a prepared split, in one process (scripts/evaluate.py)."""
    return make_loader(dataset, Collate.of(objective, tokenizer), max_tokens)


def padding_efficiency(batch: Mapping[str, Tensor] | Tensor | Sequence[int], pad_id: int = 0) -> float:
    """Real tokens / padded tokens of one batch, in (0, 1].

    Accepts a collated batch (counts "src" and, for seq2seq, "tgt_out"), one (B, L) tensor, or the lengths
    of the batch's examples.
    """
    if isinstance(batch, Mapping):
        tensors = [batch[k] for k in ("src", "tgt_out") if k in batch]
    elif isinstance(batch, Tensor):
        tensors = [batch]
    else:
        lengths = np.asarray(batch)
        return float(lengths.sum() / (len(lengths) * lengths.max()))
    real = sum(int((t != pad_id).sum()) for t in tensors)
    return real / sum(t.numel() for t in tensors)

"""Token-budget batches of prepared splits as Lightning dataloaders, resumable mid-epoch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from transformer.data import TokenBudgetBatchSampler, collate_classification, collate_seq2seq, example_lengths
from transformer.data.batching import BatchingConfig, pad_sequences


class Collate:
    """Pads a list of prepared examples into the batch dict the LightningModules take.

    classification: src (B, S), label (B,), index (B,); pretrain: src (B, S), index (B,), noised by the module
    seq2seq: src (B, S), tgt_in = BOS + target (B, T), tgt_out = target + EOS (B, T), index (B,),
             references: raw reference strings per example (for BLEU / ROUGE on detokenized text)
    """

    def __init__(self, objective: str, pad_id: int, bos_id: int, eos_id: int) -> None:
        self.objective, self.pad_id, self.bos_id, self.eos_id = objective, pad_id, bos_id, eos_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.objective in ("classification", "pretrain"):
            if self.objective == "classification":
                batch = collate_classification(examples, self.pad_id)
            else:  # the clean text: the module corrupts it (training/pretrain.py)
                batch = {"src": pad_sequences([ex["src_ids"] for ex in examples], self.pad_id)}
            batch["index"] = torch.tensor([ex["index"] for ex in examples], dtype=torch.long)
            return batch
        batch = collate_seq2seq(examples, self.pad_id, self.bos_id, self.eos_id)
        batch["references"] = [ex.get("references") or [ex["target"]] for ex in examples]
        return batch


class ResumableBatches(torch.utils.data.Sampler[list[int]]):
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


class TextDataModule(pl.LightningDataModule):
    def __init__(self, prepared, objective: str, batching: BatchingConfig, seed: int) -> None:
        super().__init__()
        self.prepared, self.objective, self.batching, self.seed = prepared, objective, batching, seed
        tok = prepared.tgt_tokenizer
        self.collate = Collate(objective, tok.pad_id, tok.bos_id, tok.eos_id)
        self._lengths: dict[str, np.ndarray] = {}

    def _loader(self, split: str, train: bool) -> DataLoader:
        data = self.prepared.splits[split]
        if split not in self._lengths:
            self._lengths[split] = example_lengths(data)
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        b = self.batching
        sampler = TokenBudgetBatchSampler(
            self._lengths[split],
            max_tokens=b.max_tokens if train else b.eval_max_tokens,
            batch_size=b.batch_size if train else None,
            shuffle=train,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        if train:
            sampler = ResumableBatches(sampler)
        return (ResumableDataLoader if train else DataLoader)(
            data,
            batch_sampler=sampler,
            collate_fn=self.collate,
            num_workers=b.num_workers,
            persistent_workers=b.num_workers > 0,
            # its own generator: creating an iterator must not draw from the global RNG that dropout uses,
            # or a resumed run (which creates one more iterator) would diverge from the uninterrupted one
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_batches_per_epoch(self) -> int:
        """Batches per epoch and rank, without building a loader (so Lightning's loader is built after a resume
        restored its state)."""
        return len(self._loader("train", train=True).batch_sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test" if "test" in self.prepared.splits else "validation", train=False)

"""The prepared splits as Lightning dataloaders (their batching is data/batching.py's, shared with inference)."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from transformer.data.batching import Collate, bucket_lengths, example_lengths, make_loader
from transformer.data.config import BatchingConfig


class TextDataModule(pl.LightningDataModule):
    """The splits' loaders. With `buckets`, training batches are padded to bucketed lengths (at most
    `max_length`, the model's positions) and the token budget counts those padded lengths."""

    def __init__(
        self,
        prepared,
        objective: str,
        batching: BatchingConfig,
        seed: int,
        buckets: bool = False,
        max_length: int | None = None,
    ) -> None:
        super().__init__()
        self.prepared, self.objective, self.batching, self.seed = prepared, objective, batching, seed
        self.collate = Collate.of(objective, prepared.tgt_tokenizer)
        self.train_collate = Collate.of(objective, prepared.tgt_tokenizer, buckets, max_length)
        self.buckets, self.max_length = buckets, max_length
        self._lengths: dict[str, np.ndarray] = {}

    def _loader(self, split: str, train: bool) -> DataLoader:
        data = self.prepared.splits[split]
        if split not in self._lengths:
            self._lengths[split] = example_lengths(data)
        lengths = self._lengths[split]
        if train and self.buckets:
            lengths = bucket_lengths(lengths, self.max_length)
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        b = self.batching
        return make_loader(
            data,
            self.train_collate if train else self.collate,
            max_tokens=b.max_tokens if train else b.eval_max_tokens,
            batch_size=b.batch_size if train else None,
            train=train,
            lengths=lengths,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            num_workers=b.num_workers,
            pin_memory=trainer is not None and trainer.strategy.root_device.type == "cuda",
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

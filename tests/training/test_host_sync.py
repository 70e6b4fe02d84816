"""The training step never waits for the device: between two logging steps, nothing in the step (the module, the
guard, the normalization, the callbacks, the progress bar, Lightning's loops) reads a tensor back to the host.

On CPU there is no device to wait for, so the reads themselves are counted: every Tensor method that turns a
tensor into a Python value (item, bool, float, int, index, tolist, cpu, numpy) would be a sync on a GPU."""

from __future__ import annotations

import traceback

import pytest
import pytorch_lightning as pl
import torch

from transformer.training.train import train

READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "cpu", "numpy")
LOG_EVERY = 5


class HostReads(pl.Callback):
    """Counts host reads from the start of each step to the start of the next (so every hook of the step, and
    Lightning's bookkeeping after it, is inside), for the steps that do not log: global step k + 1 is not a
    multiple of log_every_n_steps (Lightning logs those, and so do we)."""

    def __init__(self) -> None:
        self.counting = False
        self.reads: list[str] = []  # where each read came from
        self.counted_steps = 0
        self._originals = {}

    def _patch(self) -> None:
        for name in READS:
            original = getattr(torch.Tensor, name)
            self._originals[name] = original

            def counted(tensor, *args, _original=original, _name=name, **kwargs):
                if self.counting:
                    frames = traceback.extract_stack(limit=8)[:-1]
                    self.reads.append(f"{_name}: " + " <- ".join(f"{f.filename}:{f.lineno}" for f in frames[::-1]))
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, counted)

    def restore(self) -> None:
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)

    def on_train_start(self, trainer, pl_module) -> None:
        self._patch()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        # reads of the previous window belong to the previous step; open a window for this one if it does not log
        self.counting = step >= 2 and (step + 1) % LOG_EVERY != 0 and step + 1 < trainer.max_steps
        self.counted_steps += self.counting

    def on_train_end(self, trainer, pl_module) -> None:
        self.counting = False
        self.restore()


@pytest.mark.parametrize("task", ["sentiment", pytest.param("translation", marks=pytest.mark.slow)])
def test_no_host_reads_in_the_steps_between_logging_steps(task, tmp_path, compose_config):
    overrides = [
        f"task={task}",
        "model=tiny",
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "dataset.max_examples=200",
        "dataset.tokenizer.vocab_size=300",
        "trainer.max_steps=12",
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        f"trainer.log_every_n_steps={LOG_EVERY}",
        "+trainer.limit_val_batches=0",
        "+trainer.limit_test_batches=1",
        "batching.max_tokens=512",
        "decoding.beam_size=1",
        "decoding.max_len_b=2",
    ]  # the default callbacks and logger, progress bar included
    counter = HostReads()
    try:
        train(compose_config("train", overrides), callbacks=[counter])
    finally:
        counter.restore()
    assert counter.counted_steps >= 6
    assert counter.reads == [], "\n".join(counter.reads[:20])

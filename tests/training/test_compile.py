"""compile=true: training batches padded to bucketed lengths, blocks compiled for training only, so a run of a few
hundred steps with validations (greedy decoding with a growing KV cache) builds no more graphs than there are
buckets and never reaches dynamo's recompile limit."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from transformer.data.batching import bucket_length
from transformer.training.train import train


class Shapes(pl.Callback):
    """The (S, T) of every training batch."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.add((batch["src"].size(1), batch["tgt_in"].size(1)))


@pytest.fixture
def graph_counting(monkeypatch):
    """Dynamo's counters from zero, the recompile limit an error, and the aot_eager backend: the graphs dynamo
    captures are the same as Inductor's, without the minutes of code generation on a CPU."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_run_builds_a_graph_per_bucket_at_most(tmp_path, compose_config, graph_counting):
    shapes = Shapes()
    overrides = [
        "task=translation",
        "model=tiny",
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "dataset.max_examples=2000",
        "dataset.tokenizer.vocab_size=300",
        "trainer.max_steps=200",
        "trainer.max_epochs=-1",
        "+trainer.val_check_interval=50",
        "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=1",
        "~callbacks.progress_bar",
        "logger={}",
        "batching.max_tokens=1024",
        "decoding.beam_size=2",
        "compile=true",
    ]
    metrics = train(compose_config("train", overrides), callbacks=[shapes])
    assert metrics["global_step"] == 200 and "val/bleu" in metrics
    lengths = {n for shape in shapes.seen for n in shape}
    assert all(n == bucket_length(n) for n in lengths), shapes.seen  # every padded length is a bucket
    graphs = graph_counting["stats"]["unique_graphs"]
    assert 2 <= graphs <= len(lengths), (graphs, shapes.seen)  # an encoder and a decoder graph at least

"""compile=true: training batches padded to bucketed lengths, blocks compiled for training only, so a run of a few
hundred steps with validations (greedy decoding with a growing KV cache) builds no more graphs than there are
buckets and never reaches dynamo's recompile limit."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
import torch._dynamo
from helpers import run_if
from torch._dynamo.utils import counters

from transformer.data.batching import bucket_length
from transformer.errors import ConfigError
from transformer.schema import typed
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


def tiny_translation(run_dir, cache, *extra: str) -> list[str]:
    return [
        "task=translation",
        "model=tiny",
        f"paths.output_dir={run_dir}",
        f"paths.cache_dir={cache}",
        "dataset.max_examples=2000",
        "dataset.tokenizer.vocab_size=300",
        "trainer.max_epochs=-1",
        "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=1",
        "~callbacks.progress_bar",
        "logger={}",
        "batching.max_tokens=1024",
        "decoding.beam_size=2",
        *extra,
    ]


@pytest.mark.slow
def test_compiled_run_builds_a_graph_per_bucket_at_most(tmp_path, compose_config, graph_counting):
    shapes = Shapes()
    overrides = tiny_translation(
        tmp_path / "run", tmp_path / "cache", "trainer.max_steps=200", "+trainer.val_check_interval=50", "compile=true"
    )
    metrics = train(compose_config("train", overrides), callbacks=[shapes])
    assert metrics["global_step"] == 200 and "val/bleu" in metrics
    lengths = {n for shape in shapes.seen for n in shape}
    assert all(n == bucket_length(n) for n in lengths), shapes.seen  # every padded length is a bucket
    graphs = graph_counting["stats"]["unique_graphs"]
    assert 2 <= graphs <= len(lengths), (graphs, shapes.seen)  # an encoder and a decoder graph at least


def test_cuda_graphs_without_a_gpu_are_refused_in_one_line(compose_config):
    with pytest.raises(ConfigError, match="hardware.cuda_graphs=true needs a GPU, but trainer.accelerator=cpu"):
        typed(compose_config("train", ["task=translation", "hardware.cuda_graphs=true", "paths.output_dir=unused"]))


@run_if(min_cuda_gpus=1)
def test_cuda_graphs_train_on_a_gpu(tmp_path, compose_config):
    """hardware.cuda_graphs=true: the blocks run as CUDA graphs (one recording per bucketed shape), the loss falls."""
    import csv

    overrides = tiny_translation(
        tmp_path / "run", tmp_path / "cache", "hardware=gpu", "hardware.cuda_graphs=true", "trainer.max_steps=60",
        "logger=csv", "trainer.log_every_n_steps=10",
    )  # fmt: skip
    metrics = train(compose_config("train", overrides))
    assert metrics["global_step"] == 60
    rows = [r for r in csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").open()) if r.get("train/loss")]
    losses = [float(r["train/loss"]) for r in rows]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]

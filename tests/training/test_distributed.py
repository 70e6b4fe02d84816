"""Distributed arithmetic on CPU (gloo): gradients do not depend on how an optimizer step is split over ranks and
accumulation steps; validation counts each example once; data preparation runs once for concurrent ranks."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.distributed_worker import EXAMPLES, examples, model_config

from transformer.data import DatasetConfig, TokenBudgetBatchSampler, collate_seq2seq, prepare_dataset
from transformer.model import EncoderDecoder

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "distributed_worker.py"


def worker(mode: str, out: Path, devices: int, accumulate: int = 1, strategy: str = "ddp") -> Path:
    args = [mode, "--devices", str(devices), "--accumulate", str(accumulate), "--out", str(out), "--strategy", strategy]
    result = subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_gradients_do_not_depend_on_ranks_or_accumulation(tmp_path):
    one = torch.load(worker("grads", tmp_path / "one.pt", devices=1), weights_only=True)
    accumulated = torch.load(worker("grads", tmp_path / "acc.pt", devices=1, accumulate=2), weights_only=True)
    two_ranks = torch.load(worker("grads", tmp_path / "ddp.pt", devices=2), weights_only=True)
    assert one.keys() == accumulated.keys() == two_ranks.keys() and one
    for name in one:
        torch.testing.assert_close(accumulated[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(two_ranks[name], one[name], rtol=1e-4, atol=1e-6, msg=name)

    # The split matters for these examples: the mean of two half-step means (what per-micro-batch averaging gives)
    # is not the step's mean over tokens, so the comparison above can fail.
    torch.manual_seed(0)
    model = EncoderDecoder(model_config())
    rows = examples(EXAMPLES)

    def grad_of(parts: list[list[dict]]) -> torch.Tensor:
        model.zero_grad()
        for part in parts:
            batch = collate_seq2seq(part)
            (model.loss(batch["src"], batch["tgt_in"], batch["tgt_out"], 0.1) / len(parts)).backward()
        return model.decoder.layers[0].ffn.fc1.weight.grad.clone()

    whole, halves = grad_of([rows]), grad_of([rows[0::2], rows[1::2]])
    assert (whole - halves).abs().max() > 1e-3 * whole.abs().max()


def test_validation_counts_each_example_once(tmp_path):
    rows = examples(13, seed=1)
    lengths = [len(r["src_ids"]) + len(r["tgt_ids"]) for r in rows]
    shards = [list(TokenBudgetBatchSampler(lengths, max_tokens=40, num_replicas=2, rank=r)) for r in range(2)]
    assert sum(len(b) for shard in shards for b in shard) > len(rows)  # the 2-rank sampler repeats examples

    one = json.loads(worker("evaluate", tmp_path / "one.json", devices=1).read_text())
    two = json.loads(worker("evaluate", tmp_path / "two.json", devices=2).read_text())
    assert set(one) == {"val/acc", "val/f1", "val/bleu", "val/chrf"}
    assert two == pytest.approx(one, abs=1e-6)


@pytest.mark.slow  # FSDP; DDP keeps the same check in the default suite
def test_fsdp_gradients_and_evaluation_match_one_process(tmp_path):
    """FSDP (2 CPU processes, gloo): the sharded model's gradients are those of one process on the whole step, and
    validation (greedy decoding, whose number of steps differs between ranks) neither hangs nor changes."""
    one = torch.load(worker("grads", tmp_path / "one.pt", devices=1), weights_only=True)
    sharded = torch.load(worker("grads", tmp_path / "fsdp.pt", devices=2, strategy="fsdp"), weights_only=True)
    assert one.keys() == sharded.keys() and one
    for name in one:
        torch.testing.assert_close(sharded[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
    evaluated = json.loads(worker("evaluate", tmp_path / "one.json", devices=1).read_text())
    evaluated_sharded = json.loads(worker("evaluate", tmp_path / "fsdp.json", devices=2, strategy="fsdp").read_text())
    assert evaluated_sharded == pytest.approx(evaluated, abs=1e-6)


def _prepare(cache: str, queue) -> None:
    config = DatasetConfig(name="sentiment_sample", objective="classification", format="sample", sample="sentiment",
                           label_names=["negative", "positive"], max_examples=200)  # fmt: skip
    config.tokenizer.vocab_size = 200
    queue.put(prepare_dataset(config, None, cache).reused)


def test_concurrent_ranks_prepare_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_prepare, args=(str(tmp_path / "cache"), queue)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    assert sorted(queue.get(timeout=5) for _ in processes) == [False, True]  # one built, the other read it

"""A script for tests/training/test_distributed.py (Lightning re-launches it for rank 1, so it must be a file).

`grads`: one optimizer step of the tiny encoder-decoder on 8 fixed examples of uneven target lengths, split over
`--devices` ranks and `--accumulate` micro-batches; rank 0 saves the gradients the optimizer would see.
`evaluate`: validation accuracy and BLEU of fixed weights on an odd-sized set, over `--devices` ranks.
`--strategy fsdp`: the same with the model sharded over the ranks (training/fsdp.py) instead of replicated.
"""

from __future__ import annotations

import argparse
import json

import pytorch_lightning as pl
import torch
from torch.distributed.tensor import DTensor

from transformer.checkpoint import Artifacts
from transformer.config import ModelConfig
from transformer.data import TokenBudgetBatchSampler, collate_classification, collate_seq2seq
from transformer.decoding import DecodingConfig
from transformer.objectives.classification import ClassificationModule
from transformer.objectives.seq2seq import Seq2SeqModule
from transformer.optim import OptimConfig
from transformer.schema import FSDPConfig
from transformer.training.fsdp import FSDPStrategy, GatherForEvaluation

EXAMPLES = 8
VOCAB = 40


def examples(n: int, seed: int = 0) -> list[dict]:
    """Sources and targets of very different lengths, so that per-micro-batch means differ from the step's."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        src_len, tgt_len = 3 + i % 5, 1 + (7 * i) % 11
        rows.append(
            {
                "index": i,
                "src_ids": torch.randint(4, VOCAB, (src_len,), generator=g).tolist(),
                "tgt_ids": torch.randint(4, VOCAB, (tgt_len,), generator=g).tolist(),
                "label": i % 2,
                "target": "",
            }
        )
    return rows


class Batches(pl.LightningDataModule):
    def __init__(self, batches_per_rank: list[list[dict]]) -> None:
        super().__init__()
        self.per_rank = batches_per_rank

    def train_dataloader(self):
        batches = self.per_rank[self.trainer.global_rank]
        return torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=lambda batch: batch)


def model_config() -> ModelConfig:
    return ModelConfig.named("tiny", vocab_size=VOCAB, dropout=0.0, max_positions=64)


def artifacts(objective: str, metrics: list[str], tokenizer=None) -> Artifacts:
    """What a module needs of a checkpoint's artifacts: the model config, metrics and the target tokenizer."""
    return Artifacts(objective, "test", {"task": {"metrics": metrics}}, model_config(), tokenizer, tokenizer)


def strategy(args):
    if args.strategy == "fsdp":
        return FSDPStrategy(FSDPConfig(), bf16=False)
    return "ddp" if args.devices > 1 else "auto"


def callbacks(args) -> list[pl.Callback]:
    return [GatherForEvaluation()] if args.strategy == "fsdp" else []


def full(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded (FSDP) tensor gathered from all ranks; others as they are."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor.clone()


def grads(args) -> None:
    pl.seed_everything(0)
    module = Seq2SeqModule(artifacts("seq2seq", ["bleu"]), OptimConfig(warmup_steps=0), DecodingConfig())
    rows = examples(EXAMPLES)
    # the step's examples, split first over ranks, then over micro-batches
    per_rank = [rows[r :: args.devices] for r in range(args.devices)]
    micro = [[part[m :: args.accumulate] for m in range(args.accumulate)] for part in per_rank]
    batches = [[collate_seq2seq(mb) for mb in rank] for rank in micro]

    original = module.on_before_optimizer_step

    def save_grads(optimizer) -> None:
        original(optimizer)  # the normalization under test
        if args.strategy == "fsdp":  # the model is sharded indeed
            assert all(isinstance(p, DTensor) for p in module.parameters())
        grads = {n: full(p.grad) for n, p in module.named_parameters() if p.grad is not None}  # all ranks gather
        if module.trainer.is_global_zero:
            torch.save(grads, args.out)

    module.on_before_optimizer_step = save_grads
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy=strategy(args),
        callbacks=callbacks(args),
        max_steps=1,
        accumulate_grad_batches=args.accumulate,
        precision="32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
    )
    trainer.fit(module, datamodule=Batches(batches))


class EvalBatches(pl.LightningDataModule):
    """An odd-sized validation set batched by our token-budget sampler, sharded by rank as in training."""

    def __init__(self, rows: list[dict], objective: str) -> None:
        super().__init__()
        self.rows, self.objective = rows, objective

    def val_dataloader(self):
        lengths = [len(r["src_ids"]) + len(r["tgt_ids"]) for r in self.rows]
        sampler = TokenBudgetBatchSampler(
            lengths, max_tokens=40, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank
        )

        def collate(batch):
            out = collate_classification(batch) if self.objective == "classification" else collate_seq2seq(batch)
            out["index"] = torch.tensor([r["index"] for r in batch])
            out["references"] = [[" ".join(map(str, r["tgt_ids"]))] for r in batch]
            return out

        return torch.utils.data.DataLoader(self.rows, batch_sampler=sampler, collate_fn=collate)


class IdTokenizer:
    bos_id, eos_id = 2, 3

    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def evaluate(args) -> None:
    rows = examples(13, seed=1)  # odd: a 2-rank sampler repeats a batch
    results = {}
    for objective in ("classification", "seq2seq"):
        pl.seed_everything(0)
        if objective == "classification":
            module = ClassificationModule(artifacts("classification", ["acc", "f1"]), OptimConfig())
        else:
            decoding = DecodingConfig(beam_size=1, max_len_a=0.0, max_len_b=6)
            module = Seq2SeqModule(artifacts("seq2seq", ["bleu", "chrf"], IdTokenizer()), OptimConfig(), decoding)
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=args.devices,
            strategy=strategy(args),
            callbacks=callbacks(args),
            precision="32-true",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
        )
        metrics = trainer.validate(module, datamodule=EvalBatches(rows, objective), verbose=False)[0]
        results.update({k: float(v) for k, v in metrics.items() if k != "val/loss"})
    if trainer.is_global_zero:
        with open(args.out, "w") as handle:
            json.dump(results, handle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["grads", "evaluate"])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    grads(args) if args.mode == "grads" else evaluate(args)

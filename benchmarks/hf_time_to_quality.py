"""End-to-end wall time to a target SST-2 dev accuracy: our recipe against an HF-Trainer script, one run each.

    python benchmarks/hf_time_to_quality.py --data-root ../shared/data            # target 84% dev accuracy
    python benchmarks/hf_time_to_quality.py --data-root ../shared/data --hf-budget-ratio 3

Both sides start from raw text and random weights, and the clock includes everything: tokenizer training,
encoding, model building, training and the dev evaluations. Each side runs in its own subprocess, one after
the other, so they never share the cores.

  - ours: `scripts/train.py experiment=sst2` (token-budget, length-bucketed batches, bf16 on CPUs that have it),
    validating 4 times an epoch; it stops at the first validation at or above the target.
  - HF: what the HF text-classification example does for a model trained from scratch: a WordPiece tokenizer
    trained on the train split (the recipe's vocabulary size), `padding="max_length"` (the example's default
    `pad_to_max_length=True`, max_seq_length 128), `BertForSequenceClassification` with our recipe's dimensions,
    and `Trainer` with batch 32, the recipe's peak learning rate, epochs and warmup share, its default linear
    schedule, bf16 where ours uses it, and evaluation 4 times an epoch; it stops at the target too.

HF gets at most `--hf-budget-ratio` times our time-to-target: if it is still below the target then, the ratio is
reported as a lower bound (">= 3.0x") together with the accuracy HF had reached.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVALS_PER_EPOCH = 4


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row["sentence"].strip() for row in rows], [int(row["label"]) for row in rows]


def run_ours(args: argparse.Namespace, out: Path) -> dict:
    """Our recipe in-process (this runs inside the `ours` subprocess)."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    import transformer.schema  # noqa: F401  (registers the structured configs)
    from transformer.hardware import resolve_precision
    from transformer.training.train import train

    start = time.perf_counter()
    result: dict = {"reached": False}

    class StopAtTarget(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:  # HF's warmup share is taken from it
            result["steps_per_epoch"] = trainer.num_training_batches

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            acc = float(trainer.callback_metrics["val/acc"])
            result["history"] = result.get("history", []) + [(round(time.perf_counter() - start, 1), acc)]
            if acc >= args.target and not result["reached"]:
                result.update(reached=True, seconds=time.perf_counter() - start, accuracy=acc)
                trainer.should_stop = True

    overrides = [
        "experiment=sst2",
        f"paths.data_root={args.data_root}",
        f"paths.cache_dir={out / 'cache'}",
        f"paths.output_dir={out / 'run'}",
        "~callbacks.progress_bar",
        "logger={}",
        f"+trainer.val_check_interval={1 / EVALS_PER_EPOCH}",
        "trainer.num_sanity_val_steps=0",
        *args.ours_overrides,
    ]
    with initialize_config_module("transformer.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    train(cfg, callbacks=[StopAtTarget()])
    result["total_seconds"] = time.perf_counter() - start
    recipe = OmegaConf.to_container(cfg, resolve=True)
    result["recipe"] = {k: recipe[k] for k in ("model", "optim", "batching")}
    result["recipe"].update(
        epochs=cfg.trainer.max_epochs,
        precision=resolve_precision(cfg.precision, "cpu"),
        vocab_size=cfg.dataset.tokenizer.vocab_size,
    )
    return result


def run_hf(args: argparse.Namespace, out: Path, recipe: dict, budget_seconds: float) -> dict:
    """The HF-Trainer script (this runs inside the `hf` subprocess)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    from datasets import Dataset
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import BertProcessing
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        PreTrainedTokenizerFast,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    start = time.perf_counter()
    result: dict = {"reached": False}
    sst2 = Path(args.data_root) / "sst2"
    train_text, train_labels = read_tsv(sst2 / "train.tsv")
    dev_text, dev_labels = read_tsv(sst2 / "dev.tsv")

    model_cfg, optim = recipe["model"], recipe["optim"]
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(train_text, vocab_size=recipe["vocab_size"], show_progress=False)
    wordpiece.post_processor = BertProcessing(  # [CLS] text [SEP], as BERT's tokenizer does
        ("[SEP]", wordpiece.token_to_id("[SEP]")), ("[CLS]", wordpiece.token_to_id("[CLS]"))
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer,
        **{f"{name}_token": f"[{name.upper()}]" for name in ("unk", "pad", "cls", "sep", "mask")},
    )
    if tokenizer.vocab_size != recipe["vocab_size"] or tokenizer.unk_token_id in tokenizer("good film")["input_ids"]:
        raise RuntimeError(f"the HF tokenizer is broken: vocab {tokenizer.vocab_size}")

    def encode(batch):
        return tokenizer(batch["sentence"], padding="max_length", max_length=128, truncation=True)

    train_ds = Dataset.from_dict({"sentence": train_text, "label": train_labels}).map(encode, batched=True)
    dev_ds = Dataset.from_dict({"sentence": dev_text, "label": dev_labels}).map(encode, batched=True)

    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=model_cfg["d_model"],
        num_hidden_layers=model_cfg["n_encoder_layers"],
        num_attention_heads=model_cfg["n_heads"],
        intermediate_size=model_cfg["d_ff"],
        hidden_act=model_cfg["activation"],
        hidden_dropout_prob=model_cfg["dropout"],
        attention_probs_dropout_prob=model_cfg["attention_dropout"],
        num_labels=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(args.seed)
    model = BertForSequenceClassification(config)

    steps_per_epoch = math.ceil(len(train_ds) / args.hf_batch_size)
    epochs = args.hf_epochs
    ours_steps = recipe["steps_per_epoch"] * recipe["epochs"]
    warmup_ratio = min(1.0, optim["warmup_steps"] / max(1, ours_steps))

    class StopAtTarget(TrainerCallback):
        def on_evaluate(self, targs, state, control, metrics=None, **kwargs):
            acc = float(metrics["eval_accuracy"])
            result["history"] = result.get("history", []) + [(round(time.perf_counter() - start, 1), acc)]
            if acc >= args.target and not result["reached"]:
                result.update(reached=True, seconds=time.perf_counter() - start, accuracy=acc)
                control.should_training_stop = True

        def on_step_end(self, targs, state, control, **kwargs):
            if time.perf_counter() - start > budget_seconds:
                result["budget_exhausted_at_step"] = state.global_step
                control.should_training_stop = True

    def accuracy(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    training_args = TrainingArguments(
        output_dir=str(out / "hf_run"),
        per_device_train_batch_size=args.hf_batch_size,
        per_device_eval_batch_size=64,
        learning_rate=optim["lr"],
        weight_decay=optim["weight_decay"],
        adam_beta2=optim["betas"][1],
        warmup_steps=round(warmup_ratio * steps_per_epoch * epochs),  # the recipe's warmup share of the run
        num_train_epochs=epochs,
        eval_strategy="steps",
        eval_steps=max(1, steps_per_epoch // EVALS_PER_EPOCH),
        save_strategy="no",
        logging_steps=100,
        report_to=[],
        use_cpu=True,
        bf16=recipe["precision"] == "bf16-mixed",
        seed=args.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        compute_metrics=accuracy,
        callbacks=[StopAtTarget()],
    )
    trainer.train()
    if not result["reached"]:  # the last evaluation before the budget ran out
        result["accuracy"] = max((acc for _, acc in result.get("history", [])), default=float("nan"))
    result["total_seconds"] = time.perf_counter() - start
    result["parameters"] = sum(p.numel() for p in model.parameters())
    return result


def subprocess_json(side: str, args: argparse.Namespace, extra: list[str]) -> dict:
    """Run one side in a fresh process; it writes its result as JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = Path(f.name)
    command = [sys.executable, __file__, "--side", side, "--result", str(result_path), *extra, *sys.argv[1:]]
    subprocess.run(command, check=True)
    return json.loads(result_path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("TRANSFORMER_DATA_ROOT", "../shared/data"))
    parser.add_argument("--target", type=float, default=0.84)
    parser.add_argument("--hf-budget-ratio", type=float, default=3.0, help="HF's time cap, in multiples of ours")
    parser.add_argument("--hf-batch-size", type=int, default=32)
    parser.add_argument("--hf-epochs", type=float, default=None, help="default: the recipe's epochs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work-dir", default=None, help="default: a temporary directory")
    parser.add_argument("--ours-overrides", nargs="*", default=[], help="extra Hydra overrides for our run")
    parser.add_argument("--side", choices=["ours", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--budget-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--recipe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (Path(args.data_root) / "sst2" / "train.tsv").is_file():
        sys.exit(f"error: no sst2/train.tsv under --data-root {args.data_root}: point it at the SST-2 GLUE files")

    if args.side:  # a child process: run one side and write its result
        work = Path(args.work_dir) / args.side
        work.mkdir(parents=True, exist_ok=True)
        if args.side == "ours":
            result = run_ours(args, work)
        else:
            recipe = json.loads(args.recipe)
            args.hf_epochs = args.hf_epochs or recipe["epochs"]
            result = run_hf(args, work, recipe, args.budget_seconds)
        Path(args.result).write_text(json.dumps(result))
        return

    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="time_to_quality_"))
    shared = ["--work-dir", str(work_dir)]
    ours = subprocess_json("ours", args, shared)
    if not ours["reached"]:
        sys.exit(f"error: our recipe never reached {args.target:.1%} (history {ours.get('history')}); no comparison")
    recipe = dict(ours["recipe"])
    recipe["steps_per_epoch"] = ours["steps_per_epoch"]
    budget = args.hf_budget_ratio * ours["seconds"]
    hf = subprocess_json(
        "hf", args, [*shared, "--budget-seconds", str(budget), "--recipe", json.dumps(recipe, default=str)]
    )

    print(f"\nTime to {args.target:.0%} SST-2 dev accuracy (wall clock, everything included), {os.cpu_count()} CPUs")
    print(f"{'side':<34} {'seconds':>8} {'dev acc':>8}")
    print(f"{'ours (experiment=sst2)':<34} {ours['seconds']:>8.0f} {ours['accuracy']:>8.2%}")
    if hf["reached"]:
        print(f"{'HF Trainer, padding=max_length':<34} {hf['seconds']:>8.0f} {hf['accuracy']:>8.2%}")
        print(f"HF / ours: {hf['seconds'] / ours['seconds']:.2f}x")
    else:
        print(f"{'HF Trainer, padding=max_length':<34} {'> ' + format(budget, '.0f'):>8} {hf['accuracy']:>8.2%}")
        print(f"HF / ours: >= {args.hf_budget_ratio:.1f}x (stopped at the budget; best dev acc {hf['accuracy']:.2%})")
    print(json.dumps({"ours": ours, "hf": hf}, default=str))


if __name__ == "__main__":
    main()

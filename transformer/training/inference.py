"""Self-contained checkpoints: safe loading, and evaluation / prediction from the .ckpt file alone."""

from __future__ import annotations

import pickle
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from transformer.config import ModelConfig
from transformer.data import DatasetConfig, TokenBudgetBatchSampler, Tokenizer, encode_split, example_lengths
from transformer.data.batching import pad_sequences
from transformer.training.classification import ClassificationModule
from transformer.training.datamodule import Collate
from transformer.training.optim import OptimConfig
from transformer.training.seq2seq import DecodingConfig, Seq2SeqModule
from transformer.training.train import CHECKPOINT_FORMAT, resolve_precision, typed, write_json


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not of the expected kind."""


def load_checkpoint(path: str | Path, objective: str | None = None) -> dict[str, Any]:
    """torch.load with weights_only=True (no pickled code runs), then checks that it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist: pass ckpt=<run dir>/checkpoints/<name>.ckpt (e.g. last.ckpt)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({reason[:120]}): copy it again or use another one"
        ) from None
    artifacts = checkpoint.get("transformer") if isinstance(checkpoint, dict) else None
    if not isinstance(artifacts, dict) or artifacts.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this framework's scripts/train.py")
    if objective is not None and artifacts["objective"] != objective:
        raise CheckpointError(
            f"{path} is a {artifacts['task']} ({artifacts['objective']}) checkpoint, but this needs a "
            f"{objective} one: pass a checkpoint trained with a matching task"
        )
    return checkpoint


def tokenizers(artifacts: dict[str, Any]) -> tuple[Tokenizer, Tokenizer]:
    src = Tokenizer.from_bytes(artifacts["src_tokenizer"])
    tgt = src if artifacts["tgt_tokenizer"] is None else Tokenizer.from_bytes(artifacts["tgt_tokenizer"])
    return src, tgt


def restore_module(checkpoint: dict[str, Any], decoding_overrides: dict[str, Any] | None = None):
    """The trained LightningModule, rebuilt from the configs stored in the checkpoint."""
    artifacts = checkpoint["transformer"]
    model_config = ModelConfig.from_dict(artifacts["model_config"])
    optim = typed(OptimConfig, artifacts["config"]["optim"], "optim")
    if artifacts["objective"] == "classification":
        module = ClassificationModule(model_config, optim, artifacts)
    else:
        decoding = dict(artifacts["config"].get("decoding", {}))
        decoding.update({k: v for k, v in (decoding_overrides or {}).items() if v is not None})
        _, tgt = tokenizers(artifacts)
        module = Seq2SeqModule(model_config, optim, typed(DecodingConfig, decoding, "decoding"), tgt, artifacts)
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Metrics of a checkpoint on a split; writes metrics.json and one prediction per line."""
    checkpoint = load_checkpoint(cfg.ckpt)
    artifacts = checkpoint["transformer"]
    module = restore_module(checkpoint, OmegaConf.to_container(cfg.get("decoding") or {}))
    train_cfg = artifacts["config"]
    dataset_node = cfg.get("dataset") or train_cfg["dataset"]
    dataset = DatasetConfig.from_dict(
        OmegaConf.to_container(dataset_node) if isinstance(dataset_node, DictConfig) else dict(dataset_node)
    )
    if dataset.objective != artifacts["objective"]:
        raise CheckpointError(
            f"{cfg.ckpt} is a {artifacts['task']} ({artifacts['objective']}) checkpoint, but dataset "
            f"{dataset.name!r} is {dataset.objective}: pass a matching dataset= or checkpoint"
        )
    src_tok, tgt_tok = tokenizers(artifacts)
    split = encode_split(dataset, cfg.paths.data_root, cfg.split, src_tok, tgt_tok, artifacts["label_names"])
    loader = evaluation_loader(split, artifacts["objective"], tgt_tok, cfg.batching.eval_max_tokens)

    trainer = pl.Trainer(
        accelerator="auto",
        devices=1,
        precision=resolve_precision("auto", "gpu" if torch.cuda.is_available() else "cpu"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    results = trainer.test(module, dataloaders=loader, verbose=False)[0]
    metrics = {k.replace("test/", f"{cfg.split}/", 1): float(v) for k, v in results.items()}
    out_dir = Path(cfg.output_dir) if cfg.get("output_dir") else Path(cfg.ckpt).resolve().parent
    write_json(out_dir / f"metrics_{cfg.split}.json", metrics)
    lines = prediction_lines(module, artifacts)
    (out_dir / f"predictions_{cfg.split}.txt").write_text("".join(line + "\n" for line in lines))
    return metrics


def evaluation_loader(split, objective: str, tokenizer: Tokenizer, max_tokens: int):
    sampler = TokenBudgetBatchSampler(example_lengths(split), max_tokens=max_tokens, shuffle=False)
    collate = Collate(objective, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)
    return DataLoader(split, batch_sampler=sampler, collate_fn=collate)


def prediction_lines(module, artifacts: dict[str, Any]) -> list[str]:
    """Predictions of the last test run, in example order."""
    if artifacts["objective"] == "classification":
        names = artifacts["label_names"]
        return [f"{names[label]}\t{prob:.4f}" for _, label, prob in sorted(module.predictions)]
    return [text for _, text in sorted(module.predictions)]


def predict(cfg: DictConfig, stdin: Iterable[str] | None = None) -> list[str]:
    """Label with probability (classification) or generated text (seq2seq) for each input line."""
    if cfg.get("text") is not None:
        texts = [str(cfg.text)]
    elif cfg.get("input") is not None:
        path = Path(cfg.input)
        if not path.is_file():
            raise FileNotFoundError(f"input file {path} does not exist: pass input=<text file, one line each>")
        texts = path.read_text(encoding="utf-8").splitlines()
    else:
        texts = [line.rstrip("\n") for line in (stdin if stdin is not None else sys.stdin)]
    if not texts or any(not t.strip() for t in texts):
        raise ValueError('predict needs non-empty text: pass text="..." or a file/stdin without empty lines')
    checkpoint = load_checkpoint(cfg.ckpt)
    artifacts = checkpoint["transformer"]
    module = restore_module(checkpoint, OmegaConf.to_container(cfg.get("decoding") or {}))
    src_tok, _ = tokenizers(artifacts)
    max_len = artifacts["config"]["dataset"].get("max_source_len") or module.model.config.max_positions
    outputs: list[str] = []
    for start in range(0, len(texts), cfg.batch_size):
        ids = [row[:max_len] for row in src_tok.encode(texts[start : start + cfg.batch_size])]
        src = pad_sequences(ids, src_tok.pad_id)
        with torch.inference_mode():
            if artifacts["objective"] == "classification":
                probs, labels = module(src).float().softmax(-1).max(-1)
                names = artifacts["label_names"]
                outputs += [f"{names[k]}\t{p:.4f}" for k, p in zip(labels.tolist(), probs.tolist(), strict=True)]
            else:
                outputs += module.generate(src)
    return outputs

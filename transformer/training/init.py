"""`init_from=<checkpoint or run dir>`: start a run from another run's weights (fine-tuning), with a load report.
`init_from=hf:<folder or hub id>` starts from a pretrained Hugging Face model instead (transformer/hf/): its
architecture, its tokenizer and its tensors renamed to ours, with the same report.

Every tensor of the new model whose name and shape match one in the checkpoint is copied: an encoder-decoder's
encoder into a classifier, a classifier's encoder into an encoder-decoder, a whole model into the same kind. The
report lists what was loaded, what stays newly initialized, what the checkpoint had that the model does not use,
and what matched by name but not by shape (e.g. another vocabulary).

Tokenizers: the weights only mean something with the tokenizer they were trained with. `init_tokenizer=auto`
(default) encodes the run's data with the checkpoint's tokenizer when the checkpoint comes from pretraining, and
otherwise requires the run's own tokenizer to be the checkpoint's; `checkpoint` always uses the checkpoint's;
`run` always the run's own, and then a different one is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transformer.checkpoint import Artifacts, load_checkpoint, resolve_checkpoint
from transformer.data import Tokenizer
from transformer.errors import ConfigError
from transformer.hf.families import FAMILIES
from transformer.hf.pretrained import Pretrained

log = logging.getLogger(__name__)

PRETRAINING_OBJECTIVES = ("pretrain",)  # checkpoints whose tokenizer fine-tuning keeps by default
INIT_TOKENIZER_CHOICES = ("auto", "checkpoint", "run")


@dataclass
class InitReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"init_from {self.source}: {len(self.loaded)} tensors loaded, {len(self.new)} newly initialized, "
            f"{len(self.unused)} unused, {len(self.mismatched)} shape-mismatched"
        ]
        if self.new:
            lines.append(f"  newly initialized: {', '.join(group(self.new))}")
        if self.unused:
            lines.append(f"  unused (in the checkpoint only): {', '.join(group(self.unused))}")
        for name, want, have in self.mismatched:
            lines.append(f"  shape-mismatched, left newly initialized: {name} {list(want)} vs checkpoint {list(have)}")
        return "\n".join(lines)


def group(names: list[str]) -> list[str]:
    """Tensor names shortened to their modules, layers collapsed: decoder.layers.*.ffn ..."""
    seen: dict[str, None] = {}
    for name in names:
        parts = name.split(".")
        parts = ["*" if part.isdigit() else part for part in parts[:-1]]
        seen[".".join(parts[:4]) or name] = None
    return list(seen)


def open_init(path: str) -> tuple[Path, dict[str, Any]]:
    resolved, _ = resolve_checkpoint(path)
    return resolved, load_checkpoint(resolved)


def keeps_checkpoint_tokenizer(choice: str, artifacts: Artifacts) -> bool:
    if choice not in INIT_TOKENIZER_CHOICES:
        raise ConfigError(f"init_tokenizer={choice!r} is not one of {', '.join(INIT_TOKENIZER_CHOICES)}")
    if choice == "auto":
        return artifacts.objective in PRETRAINING_OBJECTIVES
    return choice == "checkpoint"


def check_same_tokenizers(path: Path, artifacts: Artifacts, src: Tokenizer, tgt: Tokenizer) -> None:
    if artifacts.src_tokenizer != src or (artifacts.objective == "seq2seq" and artifacts.tgt_tokenizer != tgt):
        raise ConfigError(
            f"init_from={path} was trained with another tokenizer than this run's, so its embeddings would read "
            f"the wrong tokens: pass init_tokenizer=checkpoint to encode this run's data with the checkpoint's"
        )


def check_pretrained_fits(pretrained: Pretrained, config) -> None:
    """A pretrained family serves one objective: BERT and RoBERTa classify, BART and Marian generate."""
    if pretrained.family.objective != config.task.objective:
        serving = [name for name, f in FAMILIES.items() if f.objective == config.task.objective]
        raise ConfigError(
            f"init_from={config.init_from} is a {pretrained.family.model_type} model, which serves "
            f"{pretrained.family.objective}, but task={config.task.name} is {config.task.objective}: start it from "
            f"one of {', '.join(serving) or 'none'}"
        )


def initialize(model: nn.Module, checkpoint: dict[str, Any], source: str) -> InitReport:
    """Copy the checkpoint's matching tensors into `model` (names relative to the LightningModule's `model.`)."""
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    return load_weights(model, weights, source)


@torch.no_grad()
def load_weights(
    model: nn.Module, weights: dict[str, torch.Tensor], source: str, unused: list[str] | None = None
) -> InitReport:
    """Copy the tensors of `weights` (by our names) that match the model's; `unused`: the source's tensors that
    were not renamed to ours (a pretrained folder's), reported as unused."""
    state = model.state_dict()
    report = InitReport(source)
    for name, tensor in state.items():
        if name not in weights:
            report.new.append(name)
        elif weights[name].shape != tensor.shape:
            report.mismatched.append((name, tuple(tensor.shape), tuple(weights[name].shape)))
        else:
            tensor.copy_(weights[name])
            report.loaded.append(name)
    report.unused = [name for name in weights if name not in state] + list(unused or [])
    if not report.loaded:
        raise ConfigError(
            f"init_from={source} shares no tensor with this model (names and shapes differ): start from a "
            f"checkpoint of the same model size"
        )
    return report

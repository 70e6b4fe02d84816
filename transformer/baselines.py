"""Extractive lead baseline for summarization: the first k words of the source, with k tuned on validation.

Scored by the same function as the models (transformer.training.metrics.generation_metrics), against the same
references (the target plus the dataset's extra reference columns), so the two are comparable side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transformer.data import prepare_from_config
from transformer.errors import ConfigError
from transformer.schema import LeadBaselineConfig, typed
from transformer.training.checkpoint import write_json
from transformer.training.metrics import generation_metrics

log = logging.getLogger(__name__)


def lead_words(text: str, k: int) -> str:
    """The first k whitespace-separated words of `text`, joined by single spaces."""
    return " ".join(text.split()[:k])


def split_texts(dataset) -> tuple[list[str], list[list[str]]]:
    """Sources and reference lists of a prepared seq2seq split."""
    sources, targets = list(dataset["source"]), list(dataset["target"])
    if "references" not in dataset.column_names:
        return sources, [[target] for target in targets]
    return sources, [refs or [t] for refs, t in zip(dataset["references"], targets, strict=True)]


def lead_scores(
    sources: Sequence[str], references: Sequence[Sequence[str]], ks: Sequence[int], metrics: Sequence[str]
) -> dict[int, dict[str, float]]:
    """Metrics of the lead-k baseline for each k."""
    return {k: generation_metrics([lead_words(s, k) for s in sources], references, metrics) for k in ks}


def lead_baseline(cfg: DictConfig) -> dict[str, Any]:
    """Tune k on `tune_split` by `select_by`, then score that k on `eval_split`; writes `output` when set."""
    config: LeadBaselineConfig = typed(cfg)
    if config.task.objective != "seq2seq":
        raise ConfigError(f"the lead baseline needs a seq2seq task, got task={config.task.name}")
    metrics = list(config.task.metrics)
    if config.select_by not in metrics:
        raise ConfigError(f"select_by={config.select_by!r} is not one of the task's metrics {metrics}")
    ks = list(config.ks)
    if not ks or min(ks) < 1:
        raise ConfigError(f"ks must be positive word counts, got {ks}")
    prepared = prepare_from_config(config)
    for split in (config.tune_split, config.eval_split):
        if split not in prepared.splits:
            raise ConfigError(f"split {split!r} not in the dataset; it has {sorted(prepared.splits)}")

    tuning = lead_scores(*split_texts(prepared.splits[config.tune_split]), ks, metrics)
    for k, scores in tuning.items():
        log.info("lead-%d on %s: %s", k, config.tune_split, _format(scores))
    best_k = max(ks, key=lambda k: tuning[k][config.select_by])
    final = lead_scores(*split_texts(prepared.splits[config.eval_split]), [best_k], metrics)[best_k]
    result = {
        "k": best_k,
        config.tune_split: tuning[best_k],
        config.eval_split: final,
        "tuning": {str(k): scores for k, scores in tuning.items()},
    }
    print(f"lead-{best_k} (k tuned on {config.tune_split} by {config.select_by})")
    print(f"  {config.tune_split}: {_format(tuning[best_k])}")
    print(f"  {config.eval_split}: {_format(final)}")
    if config.output:
        write_json(Path(config.output), result)
    return result


def _format(scores: dict[str, float]) -> str:
    return " ".join(f"{name} {value:.2f}" for name, value in scores.items())

"""The strong simple baseline of each task, beside which every model figure stands (scripts/baseline.py):
  - classification: TF-IDF of word uni- and bigrams + logistic regression (scikit-learn), C tuned on validation;
  - summarization: lead-k, the first k words of the source, k tuned on validation;
  - translation: copy-source, the source sentence as its own translation (names, numbers and punctuation).
Each is scored by the same functions as the models (transformer.metrics), against the same references
(for seq2seq the target plus the dataset's extra reference columns), so the figures compare side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transformer.checkpoint import write_json
from transformer.data import prepare_from_config
from transformer.errors import ConfigError, UserError
from transformer.metrics import classification_metrics, generation_metrics
from transformer.schema import BaselineConfig, typed

log = logging.getLogger(__name__)

DEFAULT_METHODS = {"classification": "tfidf_lr", "summarization": "lead", "translation": "copy_source"}


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


def tfidf_scores(train, tune, evaluate, cs: Sequence[float], ngram_max: int, num_classes: int, metrics, select_by):
    """TF-IDF + logistic regression fitted on `train` for each C; returns (tuning {C: scores}, best C, its scores
    on `evaluate`). The TF-IDF vocabulary comes from the training texts only."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise UserError(
            "the TF-IDF baseline needs scikit-learn: pip install -e '.[baselines]' (or pip install scikit-learn)"
        ) from None
    vectorizer = TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf=True, lowercase=True)
    features = vectorizer.fit_transform(train["text"])
    tune_x, eval_x = vectorizer.transform(tune["text"]), vectorizer.transform(evaluate["text"])
    tuning, fitted = {}, {}
    for c in cs:
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(features, train["label"])
        fitted[c] = model
        tuning[c] = classification_metrics(model.predict(tune_x), tune["label"], num_classes, metrics)
    best = max(cs, key=lambda c: tuning[c][select_by])
    final = classification_metrics(fitted[best].predict(eval_x), evaluate["label"], num_classes, metrics)
    return tuning, best, final


def baseline(cfg: DictConfig) -> dict[str, Any]:
    """Tune the task's baseline on `tune_split`, score it on `eval_split`, print both; writes `output` if set."""
    config: BaselineConfig = typed(cfg)
    task = config.task
    method = (
        config.method
        or DEFAULT_METHODS.get(task.name)
        or ("tfidf_lr" if task.objective == "classification" else "lead")
    )
    metrics = list(task.metrics)
    select_by = config.select_by or task.monitor.split("/", 1)[-1]
    if select_by not in metrics:
        raise ConfigError(f"select_by={select_by!r} is not one of the task's metrics {metrics}: set select_by=")
    prepared = prepare_from_config(config)
    eval_split = config.eval_split or ("test" if "test" in prepared.splits else "validation")
    for split in (config.tune_split, eval_split):
        if split not in prepared.splits:
            raise ConfigError(f"split {split!r} not in the dataset; it has {sorted(prepared.splits)}")
    tune, evaluate = prepared.splits[config.tune_split], prepared.splits[eval_split]

    if method == "tfidf_lr":
        if "train" not in prepared.splits:
            raise ConfigError("the TF-IDF baseline trains on the dataset's train split, which it does not have")
        num_classes = max(2, len(prepared.label_names or []))
        tuning, best, final = tfidf_scores(
            prepared.splits["train"], tune, evaluate, config.cs, config.ngram_max, num_classes, metrics, select_by
        )
        name, setting = f"TF-IDF (1-{config.ngram_max}-grams) + logistic regression, C={best}", {"C": best}
    elif method == "lead":
        tuning = lead_scores(*split_texts(tune), config.ks, metrics)
        best = max(config.ks, key=lambda k: tuning[k][select_by])
        final = lead_scores(*split_texts(evaluate), [best], metrics)[best]
        name, setting = f"lead-{best}", {"k": best}
    else:  # copy_source: nothing to tune
        sources, references = split_texts(evaluate)
        final = generation_metrics(sources, references, metrics)
        tune_sources, tune_references = split_texts(tune)
        best, tuning = None, {None: generation_metrics(tune_sources, tune_references, metrics)}
        name, setting = "copy-source", {}
    for value, scores in tuning.items():
        log.info("%s %s on %s: %s", method, value, config.tune_split, _format(scores))
    result = {
        "method": method,
        "baseline": name,
        **setting,
        "select_by": select_by,
        config.tune_split: tuning[best],
        eval_split: final,
        "tuning": {str(value): scores for value, scores in tuning.items()},
    }
    print(f"{name} (tuned on {config.tune_split} by {select_by})" if setting else name)
    print(f"  {config.tune_split}: {_format(tuning[best])}")
    if eval_split != config.tune_split:
        print(f"  {eval_split}: {_format(final)}")
    if config.output:
        write_json(Path(config.output), result)
    return result


def _format(scores: dict[str, float]) -> str:
    return " ".join(f"{name} {value:.4g}" for name, value in scores.items())

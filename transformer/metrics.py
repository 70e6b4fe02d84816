"""The metrics of every task, from the field's libraries: torchmetrics (accuracy, macro-F1), sacreBLEU (BLEU, chrF)
and rouge-score (ROUGE-1/2/L). Models and baselines are scored by these same functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from transformer.errors import ConfigError

if TYPE_CHECKING:
    import torch

GENERATION_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL")
CLASSIFICATION_METRICS = ("acc", "f1")


def classification_metrics(
    predicted: Sequence[int] | torch.Tensor,
    target: Sequence[int] | torch.Tensor,
    num_classes: int,
    names: Sequence[str],
) -> dict[str, float]:
    """Accuracy (micro, 0-1) and macro-F1 (0-1) of predicted class ids against the labels."""
    # imported here: the configs import this module's names, and torch and torchmetrics take seconds to import
    import torch
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    unknown = sorted(set(names) - set(CLASSIFICATION_METRICS))
    if unknown:
        raise ConfigError(f"unknown metrics {unknown}; choose among {CLASSIFICATION_METRICS}")
    predicted, target = torch.as_tensor(predicted), torch.as_tensor(target)
    functions = {
        "acc": lambda: multiclass_accuracy(predicted, target, num_classes, average="micro"),
        "f1": lambda: multiclass_f1_score(predicted, target, num_classes, average="macro"),
    }
    return {name: float(functions[name]()) for name in names}


def generation_metrics(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], names: Sequence[str]
) -> dict[str, float]:
    """Corpus metrics (0-100) of detokenized hypotheses against one or more raw references per example.

    BLEU uses sacreBLEU's defaults (13a tokenizer, cased); ROUGE takes the best reference per example
    (rouge-score's score_multi) with stemming, averaged F-measures.
    """
    import sacrebleu  # imported here, as torch above

    unknown = sorted(set(names) - set(GENERATION_METRICS))
    if unknown:
        raise ConfigError(f"unknown metrics {unknown}; choose among {GENERATION_METRICS}")
    if len(hypotheses) != len(references):
        raise ConfigError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    results: dict[str, float] = {}
    if not hypotheses:
        return results
    # sacreBLEU wants one stream per reference position; pad short reference lists with their first entry
    n_refs = max(len(refs) for refs in references)
    streams = [[refs[i] if i < len(refs) else refs[0] for refs in references] for i in range(n_refs)]
    if "bleu" in names:
        results["bleu"] = sacrebleu.corpus_bleu(list(hypotheses), streams).score
    if "chrf" in names:
        results["chrf"] = sacrebleu.corpus_chrf(list(hypotheses), streams).score
    rouge_types = [name for name in names if name.startswith("rouge")]
    if rouge_types:
        # imported here: rouge_score pulls in nltk and scipy (~1 s), which every CLI start would otherwise pay
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(rouge_types, use_stemmer=True)
        totals = dict.fromkeys(rouge_types, 0.0)
        for hyp, refs in zip(hypotheses, references, strict=True):
            scores = scorer.score_multi(list(refs), hyp)
            for name in rouge_types:
                totals[name] += scores[name].fmeasure
        results.update({name: 100 * total / len(hypotheses) for name, total in totals.items()})
    return results

"""The simple baselines of scripts/baseline.py: each is tuned on the tuning split only, and its scores are those
of the models' own metric functions on its outputs, recomputed here independently."""

from __future__ import annotations

import json

import pytest

from transformer.baselines import baseline, lead_words
from transformer.data import prepare_from_config
from transformer.metrics import classification_metrics, generation_metrics
from transformer.schema import typed


def test_lead_words():
    assert lead_words("Hi  all.\nThe meeting moved", 3) == "Hi all. The"
    assert lead_words("short", 10) == "short"


def small(tmp_path, task: str) -> list[str]:
    return [f"task={task}", f"paths.cache_dir={tmp_path / 'cache'}", "dataset.max_examples=300",
            "dataset.tokenizer.vocab_size=300"]  # fmt: skip


def test_lead_baseline_tunes_k_on_validation(tmp_path, compose_config):
    overrides = [*small(tmp_path, "summarization"), "ks=[1,3,8,40]", f"output={tmp_path / 'lead.json'}"]
    cfg = compose_config("baseline", overrides)
    result = baseline(cfg)
    assert result["method"] == "lead" and result["k"] in (1, 3, 8, 40)
    tuning = result["tuning"]
    assert tuning[str(result["k"])]["rougeL"] == max(scores["rougeL"] for scores in tuning.values())
    assert len({scores["rougeL"] for scores in tuning.values()}) > 1  # k matters

    test = prepare_from_config(typed(cfg)).splits["test"]
    hypotheses = [lead_words(source, result["k"]) for source in test["source"]]
    expected = generation_metrics(hypotheses, [[t] for t in test["target"]], ["rouge1", "rouge2", "rougeL"])
    assert result["test"] == pytest.approx(expected)
    assert json.loads((tmp_path / "lead.json").read_text())["k"] == result["k"]


def test_copy_source_scores_the_sources_as_translations(tmp_path, compose_config):
    cfg = compose_config("baseline", small(tmp_path, "translation"))
    result = baseline(cfg)
    assert result["method"] == "copy_source" and result["baseline"] == "copy-source"
    test = prepare_from_config(typed(cfg)).splits["test"]
    expected = generation_metrics(list(test["source"]), [[t] for t in test["target"]], ["bleu", "chrf"])
    assert result["test"] == pytest.approx(expected)


def test_tfidf_logistic_regression_is_tuned_on_validation(tmp_path, compose_config):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    cfg = compose_config("baseline", [*small(tmp_path, "sentiment"), "cs=[0.01,1,100]"])
    result = baseline(cfg)
    assert result["method"] == "tfidf_lr" and result["C"] in (0.01, 1.0, 100.0)
    tuning = result["tuning"]
    assert tuning[str(result["C"])]["acc"] == max(scores["acc"] for scores in tuning.values())
    splits = prepare_from_config(typed(cfg)).splits
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    model = LogisticRegression(C=result["C"], max_iter=2000)
    model.fit(vectorizer.fit_transform(splits["train"]["text"]), splits["train"]["label"])
    predicted = model.predict(vectorizer.transform(splits["test"]["text"]))
    expected = classification_metrics(predicted, splits["test"]["label"], 2, ["acc", "f1"])
    assert result["test"] == pytest.approx(expected)
    assert result["test"]["acc"] > 0.55  # the sample's words carry the label: a bag of words beats chance


def test_baseline_rejects_bad_settings(tmp_path, compose_config):
    base = small(tmp_path, "summarization")
    for override, message in [
        ("select_by=bleu", "select_by"),
        ("ks=[0,2]", "ks must be positive"),
        ("method=tfidf_lr", "does not fit task=summarization"),
        ("cs=[0]", "cs must be positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            baseline(compose_config("baseline", [*base, override]))

"""The lead-k summarization baseline: k is the best on the tuning split, and its scores are those of the
models' own scorer on the first k words."""

from __future__ import annotations

import json

import pytest

from transformer.baselines import lead_baseline, lead_words
from transformer.data import prepare_from_config
from transformer.schema import typed
from transformer.training.metrics import generation_metrics


def test_lead_words():
    assert lead_words("Hi  all.\nThe meeting moved", 3) == "Hi all. The"
    assert lead_words("short", 10) == "short"


def test_lead_baseline_tunes_k_on_validation(tmp_path, compose_config):
    overrides = [
        f"paths.cache_dir={tmp_path / 'cache'}",
        "dataset.max_examples=150",
        "dataset.tokenizer.vocab_size=300",
        "ks=[1,3,8,40]",
        f"output={tmp_path / 'lead.json'}",
    ]
    cfg = compose_config("lead_baseline", overrides)
    result = lead_baseline(cfg)
    assert result["k"] in (1, 3, 8, 40)
    tuning = result["tuning"]
    assert tuning[str(result["k"])]["rougeL"] == max(scores["rougeL"] for scores in tuning.values())
    assert len({scores["rougeL"] for scores in tuning.values()}) > 1  # k matters

    test = prepare_from_config(typed(cfg)).splits["test"]
    hypotheses = [lead_words(source, result["k"]) for source in test["source"]]
    expected = generation_metrics(hypotheses, [[t] for t in test["target"]], ["rouge1", "rouge2", "rougeL"])
    assert result["test"] == pytest.approx(expected)
    assert json.loads((tmp_path / "lead.json").read_text())["k"] == result["k"]


def test_lead_baseline_rejects_bad_settings(tmp_path, compose_config):
    base = [f"paths.cache_dir={tmp_path / 'cache'}", "dataset.max_examples=50", "dataset.tokenizer.vocab_size=200"]
    with pytest.raises(ValueError, match="select_by"):
        lead_baseline(compose_config("lead_baseline", [*base, "select_by=bleu"]))
    with pytest.raises(ValueError, match="ks must be positive"):
        lead_baseline(compose_config("lead_baseline", [*base, "ks=[0,2]"]))

"""The synthetic demo samples: deterministic files, clean splits, and tasks that need word order."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from transformer.data.samples import (
    SAMPLE_KINDS,
    SPLIT_SIZES,
    SPLITS,
    generate_sample,
    sentiment_label,
    translation_lexicon,
)

Rows = list[dict[str, str]]
COLUMNS = {"sentiment": {"text", "label"}, "translation": {"source", "target"}, "summarization": {"source", "target"}}


@pytest.fixture(scope="module")
def sample_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("samples")
    return {kind: generate_sample(kind, root / kind) for kind in SAMPLE_KINDS}


@pytest.fixture(scope="module")
def samples(sample_paths: dict[str, dict[str, Path]]) -> dict[str, dict[str, Rows]]:
    return {
        kind: {
            split: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            for split, path in paths.items()
        }
        for kind, paths in sample_paths.items()
    }


def test_unknown_kind_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sentiment, translation, summarization"):
        generate_sample("poetry", tmp_path / "poetry")
    assert not (tmp_path / "poetry").exists()


def test_same_seed_gives_identical_bytes_in_another_process(
    sample_paths: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    # A fresh interpreter with another string-hash seed catches any dependence on hash() or set order.
    script = (
        "import sys; from pathlib import Path; from transformer.data.samples import SAMPLE_KINDS, generate_sample\n"
        "for kind in SAMPLE_KINDS: generate_sample(kind, Path(sys.argv[1]) / kind, seed=0)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env)
    for kind, paths in sample_paths.items():
        assert sorted(p.name for p in (tmp_path / kind).iterdir()) == sorted(p.name for p in paths.values())
        for split, path in paths.items():
            assert (tmp_path / kind / path.name).read_bytes() == path.read_bytes(), (kind, split)


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_another_seed_gives_another_sample(kind: str, sample_paths: dict[str, dict[str, Path]], tmp_path: Path) -> None:
    other = generate_sample(kind, tmp_path, seed=1)
    assert all(other[split].read_bytes() != sample_paths[kind][split].read_bytes() for split in SPLITS)


def test_rewriting_replaces_the_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    for split in SPLITS:
        (tmp_path / f"{split}.jsonl").write_text("stale\n", encoding="utf-8")
    paths = generate_sample("sentiment", tmp_path, seed=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    assert all(not path.read_text(encoding="utf-8").startswith("stale") for path in paths.values())


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_splits_have_their_sizes_and_columns(
    kind: str, sample_paths: dict[str, dict[str, Path]], samples: dict[str, dict[str, Rows]]
) -> None:
    assert list(sample_paths[kind]) == list(SPLITS)
    assert all(path.name == f"{split}.jsonl" for split, path in sample_paths[kind].items())
    for split, size in zip(SPLITS, SPLIT_SIZES[kind], strict=True):
        rows = samples[kind][split]
        assert len(rows) == size
        assert all(set(row) == COLUMNS[kind] for row in rows)
        assert all(isinstance(value, str) and value.strip() for row in rows for value in row.values())


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_no_input_occurs_twice(kind: str, samples: dict[str, dict[str, Rows]]) -> None:
    key = "text" if kind == "sentiment" else "source"
    inputs = [row[key] for split in SPLITS for row in samples[kind][split]]
    repeated = [text for text, count in Counter(inputs).items() if count > 1]
    assert not repeated, repeated[:3]


# --- sentiment -------------------------------------------------------------------------------------------------


def test_sentiment_labels_are_balanced(samples: dict[str, dict[str, Rows]]) -> None:
    for split, rows in samples["sentiment"].items():
        share = sum(row["label"] == "positive" for row in rows) / len(rows)
        assert 0.45 <= share <= 0.55, (split, share)
        assert {row["label"] for row in rows} == {"negative", "positive"}


def test_sentiment_labels_follow_the_rules(samples: dict[str, dict[str, Rows]]) -> None:
    rows = [row for split in SPLITS for row in samples["sentiment"][split]]
    wrong = [row for row in rows if sentiment_label(row["text"]) != row["label"]]
    assert not wrong, wrong[:3]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("the plot is good but the acting is not great.", "negative"),
        ("the plot is not good but the acting is great.", "positive"),
        ("although the plot is dull, the acting is great.", "positive"),
        ("the plot is dull, although the acting is great.", "negative"),
        ("the plot is dull even though the acting is great.", "negative"),
        ("the ending wasn't bad. however, the score is extremely weak.", "negative"),
        ("the film, which i did not expect, is good.", "positive"),
        ("i didn't read the book first. we never hated the songs.", "positive"),
    ],
)
def test_sentiment_rules_read_word_order(text: str, label: str) -> None:
    # Pairs of rows above share their bag of words but not their label.
    assert sentiment_label(text) == label


def test_sentiment_label_rejects_a_review_without_opinion() -> None:
    with pytest.raises(ValueError, match="no polar word"):
        sentiment_label("i watched it last night at home.")


def _word_counts(rows: Rows, vocabulary: dict[str, int]) -> np.ndarray:
    counts = np.zeros((len(rows), len(vocabulary)), dtype=np.float32)
    for i, row in enumerate(rows):
        for word in re.findall(r"[a-z']+", row["text"]):
            if word in vocabulary:
                counts[i, vocabulary[word]] += 1
    return counts


def _logistic_regression(x: np.ndarray, y: np.ndarray, steps: int = 100, lr: float = 0.1) -> np.ndarray:
    """Full-batch Adam on the logistic loss; returns weights with the bias last."""
    x = np.hstack([x, np.ones((len(x), 1), dtype=np.float32)])
    w, m, v = (np.zeros(x.shape[1], dtype=np.float32) for _ in range(3))
    for step in range(1, steps + 1):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) / len(y)
        m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
        w -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return w


def test_bag_of_words_baselines_are_far_from_the_rules(samples: dict[str, dict[str, Rows]]) -> None:
    train, validation = samples["sentiment"]["train"], samples["sentiment"]["validation"]
    vocabulary: dict[str, int] = {}
    for row in train:
        for word in re.findall(r"[a-z']+", row["text"]):
            vocabulary.setdefault(word, len(vocabulary))
    x_train, x_val = _word_counts(train, vocabulary), _word_counts(validation, vocabulary)
    y_train = np.array([row["label"] == "positive" for row in train], dtype=np.float32)
    y_val = np.array([row["label"] == "positive" for row in validation], dtype=np.float32)

    # Multinomial naive Bayes with add-one smoothing (equal priors: the labels are balanced).
    log_ratio = np.log(x_train[y_train == 1].sum(0) + 1) - np.log(x_train[y_train == 0].sum(0) + 1)
    log_ratio -= np.log(x_train[y_train == 1].sum() + len(vocabulary)) - np.log(
        x_train[y_train == 0].sum() + len(vocabulary)
    )
    naive_bayes = float(((x_val @ log_ratio > 0) == y_val).mean())
    weights = _logistic_regression(x_train, y_train)
    logistic = float(((x_val @ weights[:-1] + weights[-1] > 0) == y_val).mean())
    rules = np.mean([sentiment_label(row["text"]) == row["label"] for row in validation])

    assert len(vocabulary) >= 400
    assert naive_bayes < 0.75 and logistic < 0.75, (naive_bayes, logistic)
    assert rules == 1.0


# --- translation -----------------------------------------------------------------------------------------------


def test_translation_maps_each_source_to_one_target(samples: dict[str, dict[str, Rows]]) -> None:
    targets: dict[str, set[str]] = defaultdict(set)
    for split in SPLITS:
        for row in samples["translation"][split]:
            targets[row["source"]].add(row["target"])
    assert all(len(found) == 1 for found in targets.values())
    lengths = [len(source.split()) for source in targets]
    assert min(lengths) >= 5 and max(lengths) <= 30


def test_translation_lexicon_forms_belong_to_one_part_of_speech() -> None:
    lexicon = translation_lexicon()
    owners: dict[str, list[str]] = defaultdict(list)
    for part, words in lexicon.items():
        for word in words:
            owners[word].append(part)
    assert {word: parts for word, parts in owners.items() if len(parts) > 1} == {}
    assert sum(len(words) for words in lexicon.values()) >= 300


def _finite_verb(words: list[str], verbs: dict[str, str]) -> str:
    return next(word for word in words if word in verbs)


def test_subordinate_clauses_move_the_verb_to_the_end(samples: dict[str, dict[str, Rows]]) -> None:
    lexicon = translation_lexicon()
    verbs, moved, checked = lexicon["verb"], 0, 0
    for row in samples["translation"]["train"]:
        source, target = row["source"].removesuffix("."), row["target"].removesuffix(".")
        for conjunction, translated in lexicon["conjunction"].items():
            if f" {conjunction} " not in source:
                continue
            clause = source.split(f" {conjunction} ", 1)[1].split()
            if "not" in clause or "cannot" in clause:
                continue  # "does not see" has no one-word finite verb to look for
            finite = _finite_verb(clause, verbs)
            assert target.split(f", {translated} ", 1)[1].split()[-1] == verbs[finite], row
            checked += 1
            moved += clause.index(finite) < len(clause) - 1
    assert checked > 5_000 and moved > 0.8 * checked


def test_fronted_adverbs_put_the_verb_second(samples: dict[str, dict[str, Rows]]) -> None:
    lexicon = translation_lexicon()
    verbs, checked = lexicon["verb"], 0
    for row in samples["translation"]["train"]:
        words = row["source"].removesuffix(".").split()
        if words[0].lower() not in lexicon["adverb"] or "not" in words or "cannot" in words:
            continue
        finite = _finite_verb(words, verbs)
        assert words.index(finite) >= 2  # English keeps the subject before the verb
        assert row["target"].split()[1] == verbs[finite], row
        checked += 1
    assert checked > 1_000


# --- summarization ---------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9$%]+", text.lower())


def _recall(sentence: str, target: str) -> float:
    """Share of the target's words that the sentence contains (ROUGE-1 recall)."""
    wanted, found = Counter(_words(target)), Counter(_words(sentence))
    return sum(min(count, found[word]) for word, count in wanted.items()) / sum(wanted.values())


def test_summaries_are_not_copied_from_the_source(samples: dict[str, dict[str, Rows]]) -> None:
    for split in SPLITS:
        for row in samples["summarization"][split]:
            assert row["target"] not in row["source"], row
            # Names, companies, places and days in the headline all come from the document.
            names = [word for word in row["target"].split() if word.istitle() and word.isalpha()]
            assert all(name in row["source"] for name in names), row


def test_the_lead_sentence_is_a_weak_summary(samples: dict[str, dict[str, Rows]]) -> None:
    lead, best, lead_is_best = [], [], 0
    for row in samples["summarization"]["validation"]:
        sentences = re.split(r"(?<=\.) ", row["source"])
        recalls = [_recall(sentence, row["target"]) for sentence in sentences]
        lead.append(recalls[0])
        best.append(max(recalls))
        lead_is_best += recalls[0] == max(recalls)
        assert 3 <= len(sentences) <= 8  # an email's greeting shares a line with its first sentence
    assert np.mean(lead) < 0.35 and np.mean(best) > np.mean(lead) + 0.25, (np.mean(lead), np.mean(best))
    assert lead_is_best < 0.4 * len(lead)

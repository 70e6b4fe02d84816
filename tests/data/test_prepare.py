import json
import os

import pandas as pd
import pytest

from transformer.data import DataError, DatasetConfig, Tokenizer, encode_split, load_prepared, prepare_dataset
from transformer.data import prepare as prepare_module


def config(**overrides) -> DatasetConfig:
    """A tiny seq2seq dataset under <data_root>/raw (the `corpus` fixture's folder)."""
    values = {
        "name": "tiny",
        "objective": "seq2seq",
        "local_dir": "raw",
        "format": "jsonl",
        "splits": {"train": "train.jsonl", "validation": "validation.jsonl"},
        "tokenizer": {"vocab_size": 60},
        "max_source_len": 32,
        "max_target_len": 32,
    }
    return DatasetConfig.from_dict({**values, **overrides})


def classification(**overrides) -> DatasetConfig:
    return config(objective="classification", label_names=["negative", "positive"], **overrides)


@pytest.fixture
def seq2seq_files(corpus):
    corpus.jsonl("train.jsonl", corpus.seq2seq_rows(150))
    corpus.jsonl("validation.jsonl", corpus.seq2seq_rows(20, seed=1))
    return corpus


def test_seq2seq_columns_and_ids(seq2seq_files, tmp_path):
    data = prepare_dataset(config(max_target_len=6), tmp_path, tmp_path / "cache")
    train = data.splits["train"]
    assert set(data.splits) == {"train", "validation"} and len(train) == 150
    assert set(train.column_names) == {"index", "source", "target", "src_ids", "tgt_ids"}
    assert data.tgt_tokenizer is data.src_tokenizer  # shared by default
    rows = seq2seq_files.seq2seq_rows(150)
    assert train["index"][:] == list(range(150)) and train["source"][:] == [r["source"] for r in rows]
    for row in train.select(range(20)):
        assert data.src_tokenizer.decode(row["src_ids"]) == row["source"]  # none is longer than 32 tokens
        full = data.tgt_tokenizer.encode([row["target"]])[0]
        assert row["tgt_ids"] == full[:5]  # room left for bos (tgt_in) / eos (tgt_out) within 6
    truncated = sum(len(t) > 5 for t in data.tgt_tokenizer.encode(train["target"][:]))
    assert truncated > 0 and data.meta["splits"]["train"]["truncated_target"] == truncated
    assert data.meta["splits"]["train"]["truncated_source"] == 0
    assert (tmp_path / "cache" / "tiny" / "meta.json").is_file()


@pytest.mark.parametrize(
    "name", ["train.csv", "train.tsv", "train.json", "train.jsonl", "train.parquet", "train.csv.gz"]
)
def test_classification_from_every_format(corpus, tmp_path, name):
    rows = corpus.classification_rows(120)
    frame = pd.DataFrame([{"sentence": r["text"], "polarity": int(r["label"] == "positive")} for r in rows])
    frame.loc[0, "sentence"] = 'quoted "text", with a comma'
    path = corpus.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = name.split(".")[1]
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t", quoting=3)
    elif fmt == "json":
        path.write_text(frame.to_json(orient="records"))
    elif fmt == "jsonl":
        path.write_text(frame.to_json(orient="records", lines=True))
    else:
        frame.to_parquet(path)
    cfg = classification(
        format=fmt, splits={"train": name, "validation": name}, text_column="sentence", label_column="polarity"
    )
    data = prepare_dataset(cfg, tmp_path, tmp_path / "cache")
    train = data.splits["train"]
    assert set(train.column_names) == {"index", "text", "label", "src_ids"}
    assert train["text"][0] == 'quoted "text", with a comma'
    assert train["label"][:] == frame["polarity"].tolist()
    assert data.label_names == ["negative", "positive"] and data.tgt_tokenizer is data.src_tokenizer


def test_string_labels_map_through_label_names(corpus, tmp_path):
    rows = corpus.classification_rows(100)
    corpus.jsonl("train.jsonl", rows)
    corpus.jsonl("validation.jsonl", rows[:10])
    data = prepare_dataset(classification(), tmp_path, tmp_path / "cache")
    assert data.splits["train"]["label"][:] == [["negative", "positive"].index(r["label"]) for r in rows]


def test_parallel_gz_files(corpus, tmp_path):
    src = corpus.sentences(100)
    tgt = [s.upper() for s in src]
    for stem, n in (("train", 100), ("val", 10)):
        corpus.lines(f"{stem}.de.gz", src[:n])
        corpus.lines(f"{stem}.en.gz", tgt[:n])
    cfg = config(format="parallel", src_lang="de", tgt_lang="en", splits={"train": "train", "validation": "val"})
    data = prepare_dataset(cfg, tmp_path, tmp_path / "cache")
    assert data.splits["train"]["source"][:] == src and data.splits["validation"]["target"][:] == tgt[:10]


def test_references_and_lowercase(corpus, tmp_path):
    rows = [{**r, "annotations": ["Ref One", "", "ref two"]} for r in corpus.seq2seq_rows(100)]
    rows[0]["target"] = "Mixed Case"
    corpus.jsonl("train.jsonl", rows)
    corpus.jsonl("validation.jsonl", [{**r, "annotations": []} for r in rows[:5]])
    data = prepare_dataset(config(reference_columns=["annotations"], lowercase=True), tmp_path, tmp_path / "cache")
    train = data.splits["train"]
    assert train["target"][0] == "mixed case"
    assert train["references"][0] == ["mixed case", "ref one", "ref two"]  # empty references dropped
    assert data.splits["validation"]["references"][1] == [rows[1]["target"]]


def test_max_examples_takes_the_first_rows(seq2seq_files, tmp_path):
    data = prepare_dataset(config(max_examples=30), tmp_path, tmp_path / "cache")
    assert len(data.splits["train"]) == 30 and len(data.splits["validation"]) == 20
    assert data.splits["train"]["source"][:] == [r["source"] for r in seq2seq_files.seq2seq_rows(30)]


def test_separate_tokenizers(seq2seq_files, tmp_path):
    cfg = config(tokenizer={"vocab_size": 50, "shared": False, "tgt_vocab_size": 40})
    data = prepare_dataset(cfg, tmp_path, tmp_path / "cache")
    assert data.src_tokenizer is not data.tgt_tokenizer
    assert (data.src_tokenizer.vocab_size, data.tgt_tokenizer.vocab_size) == (50, 40)
    reloaded = load_prepared(data.dir)
    assert reloaded.tgt_tokenizer == data.tgt_tokenizer and reloaded.src_tokenizer == data.src_tokenizer


def test_valid_cache_is_reused_without_reading_raw_data(seq2seq_files, tmp_path, monkeypatch):
    first = prepare_dataset(config(), tmp_path, tmp_path / "cache")
    assert not first.reused

    def fail(*args, **kwargs):
        raise AssertionError("raw data read although the cache is valid")

    monkeypatch.setattr(prepare_module, "load_splits", fail)
    monkeypatch.setattr(prepare_module, "train_tokenizer", fail)
    second = prepare_dataset(config(), tmp_path, tmp_path / "cache")
    assert second.reused and second.meta["fingerprint"] == first.meta["fingerprint"]
    assert second.splits["train"]["src_ids"][:] == first.splits["train"]["src_ids"][:]
    assert second.src_tokenizer == first.src_tokenizer


def test_stale_cache_is_rebuilt(seq2seq_files, tmp_path):
    cache = tmp_path / "cache"
    first = prepare_dataset(config(), tmp_path, cache)
    # changed raw file
    seq2seq_files.jsonl("validation.jsonl", seq2seq_files.seq2seq_rows(25, seed=1))
    changed = prepare_dataset(config(), tmp_path, cache)
    assert not changed.reused and len(changed.splits["validation"]) == 25
    assert changed.meta["fingerprint"] != first.meta["fingerprint"]
    # changed tokenizer setting
    smaller = prepare_dataset(config(tokenizer={"vocab_size": 50}), tmp_path, cache)
    assert not smaller.reused and smaller.src_tokenizer.vocab_size == 50
    assert prepare_dataset(config(tokenizer={"vocab_size": 50}), tmp_path, cache).reused
    assert not prepare_dataset(config(tokenizer={"vocab_size": 50}), tmp_path, cache, force=True).reused
    assert sorted(n for n in os.listdir(cache) if not n.endswith(".lock")) == [
        "tiny"
    ]  # no temp or old folders left behind


def test_interrupted_prepare_keeps_the_previous_cache(seq2seq_files, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = prepare_dataset(config(), tmp_path, cache)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "_encode", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(config(max_source_len=8), tmp_path, cache)
    assert sorted(n for n in os.listdir(cache) if not n.endswith(".lock")) == ["tiny"]
    assert load_prepared(cache / "tiny").meta["fingerprint"] == first.meta["fingerprint"]
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(config(name="fresh"), tmp_path, cache)
    assert sorted(n for n in os.listdir(cache) if not n.endswith(".lock")) == [
        "tiny"
    ]  # nothing that could pass for a "fresh" cache


def test_a_cache_without_meta_is_not_valid(seq2seq_files, tmp_path):
    data = prepare_dataset(config(), tmp_path, tmp_path / "cache")
    (data.dir / "meta.json").unlink()
    with pytest.raises(DataError, match="not a prepared dataset"):
        load_prepared(data.dir)
    assert not prepare_dataset(config(), tmp_path, tmp_path / "cache").reused


def test_meta_records_what_was_hashed(seq2seq_files, tmp_path):
    data = prepare_dataset(config(), tmp_path, tmp_path / "cache")
    meta = json.loads((data.dir / "meta.json").read_text())
    files = meta["inputs"]["source"]["files"]
    assert files["train"][0][0] == str((seq2seq_files.root / "train.jsonl").resolve())
    assert meta["inputs"]["config"]["tokenizer"]["vocab_size"] == 60
    assert meta["vocab_size"] == {"src": 60, "tgt": 60} and meta["version"] == prepare_module.CACHE_VERSION


def test_several_encoding_processes_give_the_same_result(seq2seq_files, tmp_path, monkeypatch):
    one = prepare_dataset(config(), tmp_path, tmp_path / "one", num_proc=1)
    monkeypatch.setattr(prepare_module, "PROCESS_MIN_ROWS", 10)  # let the tiny train split use 2 processes
    two = prepare_dataset(config(), tmp_path, tmp_path / "two", num_proc=2)
    assert two.splits["train"][:] == one.splits["train"][:]


@pytest.mark.parametrize("kind", ["sentiment", "translation", "summarization"])
def test_generated_sample_goes_through_the_jsonl_path(sample_stand_in, tmp_path, kind):
    objective = "classification" if kind == "sentiment" else "seq2seq"
    labels = {"label_names": ["negative", "positive"]} if kind == "sentiment" else {}
    cfg = DatasetConfig.from_dict(
        {
            "name": f"{kind}_sample",
            "objective": objective,
            "format": "sample",
            "sample": kind,
            "tokenizer": {"vocab_size": 60},
            **labels,
        }
    )
    data = prepare_dataset(cfg, None, tmp_path / "cache")
    assert {"train", "validation", "test"} <= set(data.splits)
    assert (tmp_path / "cache" / f"{kind}_sample" / "raw" / "train.jsonl").is_file()
    assert data.meta["inputs"]["source"]["kind"] == "sample"
    assert prepare_dataset(cfg, None, tmp_path / "cache").reused


def test_tokenizer_bytes_from_the_cache_restore_it(seq2seq_files, tmp_path):
    data = prepare_dataset(config(), tmp_path, tmp_path / "cache")
    restored = Tokenizer.from_bytes(data.src_tokenizer.to_bytes())
    assert restored.encode(["the cat"]) == data.src_tokenizer.encode(["the cat"])


def test_encode_split_with_given_tokenizers(seq2seq_files, tmp_path):
    data = prepare_dataset(config(), tmp_path, tmp_path / "cache")
    split = encode_split(config(), tmp_path, "validation", data.src_tokenizer, data.tgt_tokenizer)
    assert split[:] == data.splits["validation"][:]
    with pytest.raises(DataError, match="has no split 'test'"):
        encode_split(config(), tmp_path, "test", data.src_tokenizer)


def test_encode_split_uses_the_given_label_names(corpus, tmp_path):
    rows = corpus.classification_rows(100)
    corpus.jsonl("train.jsonl", rows)
    corpus.jsonl("validation.jsonl", rows[:10])
    data = prepare_dataset(classification(), tmp_path, tmp_path / "cache")
    split = encode_split(
        classification(), tmp_path, "validation", data.src_tokenizer, label_names=["positive", "negative"]
    )
    assert split["label"][:] == [1 - label for label in data.splits["validation"]["label"][:]]
    assert split["src_ids"][:] == data.splits["validation"]["src_ids"][:]

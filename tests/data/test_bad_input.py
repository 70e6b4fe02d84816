"""Every kind of bad input gets a one-line DataError (or a counted skip), and never a cache."""

import gzip
import os
import time

import pytest

from transformer.data import DataError, DatasetConfig, prepare_dataset
from transformer.data import sources as sources_module


def config(**overrides) -> DatasetConfig:
    values = {
        "name": "bad",
        "objective": "seq2seq",
        "local_dir": "raw",
        "format": "jsonl",
        "splits": {"train": "train.jsonl", "validation": "validation.jsonl"},
        "tokenizer": {"vocab_size": 60},
    }
    return DatasetConfig.from_dict({**values, **overrides})


def parallel() -> DatasetConfig:
    return config(format="parallel", src_lang="de", tgt_lang="en", splits={"train": "train", "validation": "val"})


@pytest.fixture
def good_val_pair(corpus):
    corpus.lines("val.de", corpus.sentences(5))
    corpus.lines("val.en", corpus.sentences(5, seed=1))
    return corpus


def fails(cfg: DatasetConfig, tmp_path, pattern: str) -> str:
    """Prepare must raise a one-line DataError matching `pattern` and leave nothing in the cache folder."""
    with pytest.raises(DataError, match=pattern) as error:
        prepare_dataset(cfg, tmp_path, tmp_path / "cache")
    message = str(error.value)
    assert "\n" not in message
    cache = tmp_path / "cache"
    left = [] if not cache.exists() else [name for name in os.listdir(cache) if not name.endswith(".lock")]
    assert left == []  # neither a cache nor a temp folder left (the empty lock file may stay)
    return message


@pytest.fixture
def good_validation(corpus):
    corpus.jsonl("validation.jsonl", corpus.seq2seq_rows(10, seed=1))
    return corpus


def test_missing_file(good_validation, tmp_path):
    fails(config(), tmp_path, r"train file not found: .*raw/train\.jsonl")


def test_missing_data_folder(tmp_path):
    fails(config(local_dir="nowhere"), tmp_path, r"local data folder .*nowhere does not exist")


def test_relative_local_dir_without_data_root_or_hub(tmp_path):
    with pytest.raises(DataError, match="paths.data_root=.* or set TRANSFORMER_DATA_ROOT"):
        prepare_dataset(config(), None, tmp_path / "cache")


@pytest.mark.parametrize("name", ["train.jsonl", "train.jsonl.gz"])
def test_empty_file(good_validation, tmp_path, name):
    good_validation.bytes(name, b"")
    fails(config(splits={"train": name, "validation": "validation.jsonl"}), tmp_path, r"train\.jsonl(\.gz)? is empty")


def test_empty_parallel_file(good_val_pair, tmp_path):
    good_val_pair.lines("train.de", good_val_pair.sentences(10))
    good_val_pair.bytes("train.en", b"")
    fails(parallel(), tmp_path, r"train\.en is empty")


def test_header_only_csv(good_validation, tmp_path):
    good_validation.lines("train.csv", ["source,target"])
    cfg = config(format="csv", splits={"train": "train.csv", "validation": "train.csv"})
    fails(cfg, tmp_path, "has no rows")


def test_missing_column_names_the_available_ones(good_validation, tmp_path):
    good_validation.jsonl("train.jsonl", [{"src": "a b", "tgt": "b a"}] * 5)
    fails(config(), tmp_path, r"train\.jsonl: column 'source' not found; available columns: \['src', 'tgt'\]")


def test_missing_reference_column(corpus, tmp_path):
    corpus.jsonl("train.jsonl", corpus.seq2seq_rows(50))
    corpus.jsonl("validation.jsonl", corpus.seq2seq_rows(5))
    fails(config(reference_columns=["annotations"]), tmp_path, "column 'annotations' not found")


@pytest.mark.parametrize("label", [2, -1, "neutral", None])
def test_label_outside_the_label_set(corpus, tmp_path, label):
    rows = corpus.classification_rows(50)
    rows[7]["label"] = label
    corpus.jsonl("train.jsonl", rows)
    corpus.jsonl("validation.jsonl", rows[:5])
    cfg = config(objective="classification", label_names=["negative", "positive"])
    fails(cfg, tmp_path, rf"train\.jsonl: row 7 has label {label!r}, outside label_names \['negative', 'positive'\]")


def test_int_and_digit_labels_index_label_names(corpus, tmp_path):
    rows = [{"text": s, "label": [0, "1", "negative", "positive"][i % 4]} for i, s in enumerate(corpus.sentences(80))]
    corpus.jsonl("train.jsonl", rows)
    corpus.jsonl("validation.jsonl", rows[:8])
    data = prepare_dataset(
        config(objective="classification", label_names=["negative", "positive"]), tmp_path, tmp_path / "cache"
    )
    assert data.splits["validation"]["label"][:] == [0, 1, 0, 1, 0, 1, 0, 1]


def test_empty_and_whitespace_rows_are_skipped_and_counted(corpus, tmp_path, capsys):
    rows = corpus.seq2seq_rows(60)
    rows[3]["source"] = ""
    rows[5]["target"] = "   \t "
    rows[8]["source"] = None
    corpus.jsonl("train.jsonl", rows)
    corpus.jsonl("validation.jsonl", rows[:10])
    data = prepare_dataset(config(), tmp_path, tmp_path / "cache")
    assert len(data.splits["train"]) == 57 and len(data.splits["validation"]) == 7
    assert data.meta["splits"]["train"]["skipped"] == 3 and data.meta["splits"]["validation"]["skipped"] == 3
    assert "skipped 6 empty" in data.summary()


def test_blank_lines_in_parallel_files_are_skipped_as_pairs(corpus, tmp_path):
    src, tgt = corpus.sentences(40), corpus.sentences(40, seed=1)
    src[4], tgt[9] = "  ", ""
    for stem in ("train", "val"):
        corpus.lines(f"{stem}.de", src)
        corpus.lines(f"{stem}.en", tgt)
    data = prepare_dataset(parallel(), tmp_path, tmp_path / "cache")
    assert len(data.splits["train"]) == 38 and data.meta["splits"]["train"]["skipped"] == 2
    assert data.splits["train"]["source"][4] == src[5]  # pairs stay aligned


def test_a_split_of_only_empty_rows(corpus, tmp_path):
    corpus.jsonl("train.jsonl", corpus.seq2seq_rows(50))
    corpus.jsonl("validation.jsonl", [{"source": " ", "target": "x"}] * 3)
    fails(config(), tmp_path, r"validation\.jsonl: no usable rows \(3 with empty text skipped\)")


@pytest.mark.parametrize("name", ["train.jsonl", "train.jsonl.gz"])
def test_invalid_utf8_names_file_byte_and_line(good_validation, tmp_path, name):
    good = "".join(f'{{"source": "a{i}", "target": "b{i}"}}\n' for i in range(3)).encode()
    good_validation.bytes(name, good + b'{"source": "caf\xe9", "target": "x"}\n')
    offset = len(good) + len('{"source": "caf')
    cfg = config(splits={"train": name, "validation": "validation.jsonl"})
    fails(cfg, tmp_path, rf"{name}: invalid UTF-8 at byte {offset}( of the decompressed text)? \(line 4\)")


def test_invalid_utf8_across_a_read_chunk(good_validation, tmp_path, monkeypatch):
    monkeypatch.setattr(sources_module, "_CHUNK", 7)  # multi-byte characters cut by every chunk boundary
    text = "".join(f'{{"source": "Straße {i}", "target": "ü{i}"}}\n' for i in range(20)).encode()
    good_validation.bytes("train.jsonl", text)
    sources_module.check_utf8(good_validation.root / "train.jsonl")  # valid: no false alarm
    good_validation.bytes("train.jsonl", text + b"\xff\n")
    with pytest.raises(DataError, match=rf"invalid UTF-8 at byte {len(text)} \(line 21\)"):
        sources_module.check_utf8(good_validation.root / "train.jsonl")


def test_invalid_utf8_in_parallel_file(good_val_pair, tmp_path):
    good_val_pair.lines("train.de", good_val_pair.sentences(5))
    good_val_pair.bytes("train.en", b"one\ntwo\nbad \xc3\x28 byte\nfour\nfive\n")
    fails(parallel(), tmp_path, r"train\.en: invalid UTF-8 at byte 12 \(line 3\)")


def test_parallel_files_with_different_line_counts(good_val_pair, tmp_path):
    good_val_pair.lines("train.de.gz", good_val_pair.sentences(12))
    good_val_pair.lines("train.en.gz", good_val_pair.sentences(10))
    fails(parallel(), tmp_path, r"train\.de\.gz has 12 lines, .*train\.en\.gz has 10")


def test_long_rows_are_truncated_and_counted(corpus, tmp_path):
    rows = corpus.seq2seq_rows(60)
    rows[0] = {"source": " ".join(["cat dog"] * 50), "target": " ".join(["bird"] * 40)}
    corpus.jsonl("train.jsonl", rows)
    corpus.jsonl("validation.jsonl", rows[:3])
    data = prepare_dataset(config(max_source_len=20, max_target_len=10), tmp_path, tmp_path / "cache")
    first = data.splits["train"][0]
    assert len(first["src_ids"]) == 20 and len(first["tgt_ids"]) == 9
    assert data.meta["splits"]["train"]["truncated_source"] >= 1
    assert data.meta["splits"]["validation"]["truncated_target"] >= 1
    assert "truncated" in data.summary()


def test_vocabulary_too_large_for_the_corpus(corpus, tmp_path):
    corpus.jsonl("train.jsonl", corpus.seq2seq_rows(20))
    corpus.jsonl("validation.jsonl", corpus.seq2seq_rows(5))
    message = fails(
        config(tokenizer={"vocab_size": 5000}), tmp_path, r"dataset\.tokenizer\.vocab_size=5000 is too large"
    )
    assert message.rsplit(" ", 1)[1].isdigit()  # "... lower it to at most N"


def test_vocabulary_too_small_for_the_characters(corpus, tmp_path):
    corpus.jsonl("train.jsonl", corpus.seq2seq_rows(20))
    corpus.jsonl("validation.jsonl", corpus.seq2seq_rows(5))
    fails(config(tokenizer={"vocab_size": 10}), tmp_path, r"vocab_size=10 is too small .* raise it above \d+")


def test_bad_gzip_file(good_validation, tmp_path):
    good_validation.root.joinpath("train.jsonl.gz").write_bytes(gzip.compress(b"{}")[:-6] + b"garbage")
    cfg = config(splits={"train": "train.jsonl.gz", "validation": "validation.jsonl"})
    fails(cfg, tmp_path, r"cannot read .*train\.jsonl\.gz: CRC check failed")


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        ({"colour": "red"}, r"unknown key\(s\) \['colour'\] in dataset"),
        ({"tokenizer": {"vocab": 10}}, r"unknown key\(s\) \['vocab'\] in dataset\.tokenizer"),
        ({"objective": "regression"}, "dataset.objective='regression' is not one of"),
        ({"format": "xml"}, "dataset.format='xml' is not one of"),
        ({"splits": {"train": "a", "dev": "b"}}, r"unknown split\(s\) \['dev'\]"),
        ({"splits": {"train": "a"}}, r"needs \['validation'\]"),
        ({"max_source_len": 0}, "max_source_len must be an integer >= 2"),
        ({"max_examples": -3}, "max_examples must be a positive integer or null"),
        ({"tokenizer": {"model_type": "wordpiece"}}, "tokenizer.model_type='wordpiece'"),
        ({"tokenizer": {"tgt_vocab_size": 100}}, "needs tokenizer.shared=false"),
        ({"objective": "classification"}, "label_names must be a list of distinct names"),
        ({"format": "parallel"}, "parallel needs dataset.src_lang and dataset.tgt_lang"),
        ({"format": "sample", "sample": "poetry"}, "dataset.sample='poetry' is not one of"),
        ({"format": "sample", "sample": "sentiment"}, "'sentiment' is a classification sample"),
        ({"local_dir": None}, "needs a source"),
    ],
)
def test_bad_config_values(overrides, pattern):
    with pytest.raises(ValueError, match=pattern) as error:
        config(**overrides)
    assert "\n" not in str(error.value)


def test_unreachable_hub_fails_fast_and_says_how_to_use_local_files(tmp_path, monkeypatch):
    import huggingface_hub

    def unreachable(self, repo_id, **kwargs):
        assert kwargs.get("timeout") == sources_module.HUB_TIMEOUT_S
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
    monkeypatch.setattr(sources_module.datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(sources_module.datasets.config, "HF_DATASETS_OFFLINE", False)
    cfg = config(hub="someone/corpus")  # local_dir 'raw' is relative and there is no data root: the Hub
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"cannot reach the Hugging Face Hub for 'someone/corpus'") as error:
        prepare_dataset(cfg, None, tmp_path / "cache")
    assert time.perf_counter() - start < 5
    assert "dataset.local_dir=raw paths.data_root=<root>" in str(error.value)
    assert "TRANSFORMER_DATA_ROOT" in str(error.value)


def test_offline_hub_without_a_cached_copy(tmp_path, monkeypatch):
    def not_cached(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/corpus' on the Hub (offline mode)")

    monkeypatch.setattr(sources_module.datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(sources_module.datasets, "load_dataset", not_cached)
    with pytest.raises(DataError, match=r"cannot load someone/corpus\[train\] in offline mode .* paths\.data_root"):
        prepare_dataset(config(hub="someone/corpus"), None, tmp_path / "cache")

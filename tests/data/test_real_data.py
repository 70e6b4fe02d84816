"""Smoke test: a small slice of each real dataset (../shared/data beside the repository) through the local-files
path, with the shipped dataset configs. Skipped where the data is absent."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from transformer.data import prepare_from_config
from transformer.schema import typed

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DATASETS = {
    "sst2": "sentiment",
    "multi30k_de_en": "translation",
    "multi30k_en_de": "translation",
    "aeslc": "summarization",
}
ROWS = 200


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """name -> PreparedData, each slice prepared once for this module."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    cache = tmp_path_factory.mktemp("real")
    out = {}
    for name, task in DATASETS.items():
        overrides = [
            f"task={task}",
            f"dataset={name}",
            f"paths.data_root={SHARED_DATA}",
            f"paths.cache_dir={cache}",
            f"dataset.max_examples={ROWS}",
            "dataset.tokenizer.vocab_size=250",
        ]
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):  # clears Hydra on exit
            out[name] = prepare_from_config(typed(compose(config_name="prepare_data", overrides=overrides)))
    return out


@pytest.mark.parametrize("name", DATASETS)
def test_slice_is_prepared_from_local_files(prepared, name):
    data = prepared[name]
    assert data.meta["source"] == "local" and data.src_tokenizer.vocab_size == 250
    expected = {"sst2": {"train", "validation"}}.get(name, {"train", "validation", "test"})
    assert set(data.splits) == expected
    for split in data.splits.values():
        assert 0 < len(split) <= ROWS
        row = split[0]
        assert row["src_ids"] and max(row["src_ids"]) < 250
        assert len(row["src_ids"]) <= data.config.max_source_len


def test_sst2_labels_and_text(prepared):
    train = prepared["sst2"].splits["train"]
    assert set(train["label"][:]) == {0, 1} and prepared["sst2"].label_names == ["negative", "positive"]
    assert train[0]["text"] == "hide new secretions from the parental units"  # the first row, stripped
    assert prepared["sst2"].src_tokenizer.decode(train[0]["src_ids"]) == train[0]["text"]


def test_multi30k_directions_are_mirrors(prepared):
    de_en, en_de = prepared["multi30k_de_en"].splits["validation"], prepared["multi30k_en_de"].splits["validation"]
    assert de_en["source"][:] == en_de["target"][:] and de_en["target"][:] == en_de["source"][:]
    assert de_en[0]["source"].startswith("Eine Gruppe von Männern")
    assert prepared["multi30k_de_en"].tgt_tokenizer is prepared["multi30k_de_en"].src_tokenizer


def test_aeslc_references_hold_the_annotations(prepared):
    data = prepared["aeslc"]
    validation = data.splits["validation"][0]
    assert validation["references"][0] == validation["target"] and len(validation["references"]) == 4
    assert data.splits["train"][0]["references"] == [data.splits["train"][0]["target"]]  # no annotations in train
    assert all(len(ids) <= data.config.max_target_len - 1 for ids in data.splits["train"]["tgt_ids"][:])

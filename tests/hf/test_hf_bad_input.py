"""init_from=hf: bad inputs are one-line ConfigErrors, and the pretrained recipes compose."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers.hf import save_classifier

from transformer.errors import ConfigError
from transformer.hf.pretrained import read_pretrained


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    save_classifier(folder, "bert", layers=1)
    return folder


def one_line(match: str, spec: str) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        read_pretrained(spec)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_folder_without_config_json(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    one_line("has no config.json", f"hf:{tmp_path}")


def test_unsupported_model_type_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    message = one_line("model_type 'gpt2' is not supported", f"hf:{tmp_path}")
    assert "bart, bert, marian, pegasus, roberta" in message


def test_tokenizer_larger_than_the_embedding(tmp_path, bert):
    shutil.copytree(bert, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 100}))
    one_line(r"tokenizer has \d+ tokens but the embedding only 100 rows", f"hf:{tmp_path}")


def test_missing_folder_and_hub_id_without_network(tmp_path, monkeypatch):
    one_line("no such folder", f"hf:{tmp_path / 'missing'}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # as without network, at once
    one_line("cannot download bert-base-uncased from the Hugging Face Hub", "hf:bert-base-uncased")


def test_family_of_another_objective(tmp_path, compose_config, bert):
    from transformer.schema import typed
    from transformer.training.init import check_pretrained_fits

    cfg = compose_config("train", ["task=translation", f"init_from=hf:{bert}", f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="bert model, which serves classification.*one of bart, marian"):
        check_pretrained_fits(read_pretrained(f"hf:{bert}"), typed(cfg))


@pytest.mark.parametrize(
    ("recipe", "hub_id", "task"),
    [
        ("sst2_bert", "bert-base-uncased", "sentiment"),
        ("aeslc_bart", "facebook/bart-base", "summarization"),
        ("multi30k_de_en_marian", "Helsinki-NLP/opus-mt-de-en", "translation"),
    ],
)
def test_pretrained_recipes_compose(recipe, hub_id, task, compose_config, tmp_path):
    from transformer.schema import typed

    config = typed(compose_config("train", [f"experiment={recipe}", f"paths.output_dir={tmp_path}"]))
    assert config.init_from == f"hf:{hub_id}" and config.task.name == task
    assert config.optim.lr <= 3e-5 and config.optim.label_smoothing in (0.0, 0.1)

"""The dataset configs compose with prepare_data.yaml, and prepare_from_config / the script run on them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from transformer.data import DatasetConfig, prepare_from_config
from transformer.errors import ConfigError
from transformer.schema import DATASET_OBJECTIVE, typed

TASK_DATASETS = {
    "sentiment": ["sentiment_sample", "sst2"],
    "translation": ["translation_sample", "multi30k_de_en", "multi30k_en_de", "wmt14_en_de"],
    "summarization": ["summarization_sample", "aeslc"],
    "pretrain": ["pretrain_sample", "sst2_text", "multi30k_text", "aeslc_text"],
}
PAIRS = [(task, name) for task, names in TASK_DATASETS.items() for name in names]


def compose_prepare(configs_dir: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(configs_dir), version_base="1.3"):
        return compose(config_name="prepare_data", overrides=overrides)


def test_every_dataset_file_is_listed(configs_dir):
    assert sorted(p.stem for p in (configs_dir / "dataset").glob("*.yaml")) == sorted(n for _, n in PAIRS)


@pytest.mark.parametrize("task", TASK_DATASETS)
def test_each_task_composes_with_its_default_dataset(configs_dir, hydra_clean, task):
    cfg = compose_prepare(configs_dir, [f"task={task}"])
    dataset = DatasetConfig.from_dict(OmegaConf.to_container(cfg.dataset, resolve=True))
    assert dataset.name == TASK_DATASETS[task][0] and dataset.objective == DATASET_OBJECTIVE[cfg.task.objective]
    assert cfg.num_proc is None and cfg.force is False


@pytest.mark.parametrize("task,name", PAIRS)
def test_each_dataset_composes(configs_dir, hydra_clean, task, name):
    cfg = compose_prepare(configs_dir, [f"task={task}", f"dataset={name}", "dataset.max_examples=10"])
    dataset = DatasetConfig.from_dict(OmegaConf.to_container(cfg.dataset, resolve=True))
    assert dataset.name == name and dataset.objective == DATASET_OBJECTIVE[cfg.task.objective]
    assert dataset.max_examples == 10


def test_en_de_reverses_de_en(configs_dir, hydra_clean):
    de_en = compose_prepare(configs_dir, ["task=translation", "dataset=multi30k_de_en"]).dataset
    en_de = compose_prepare(configs_dir, ["task=translation", "dataset=multi30k_en_de"]).dataset
    assert (en_de.src_lang, en_de.tgt_lang) == (de_en.tgt_lang, de_en.src_lang)
    assert {k: v for k, v in en_de.items() if k not in ("name", "src_lang", "tgt_lang")} == {
        k: v for k, v in de_en.items() if k not in ("name", "src_lang", "tgt_lang")
    }


def test_task_and_dataset_objectives_must_agree(configs_dir, hydra_clean, tmp_path):
    cfg = compose_prepare(configs_dir, ["task=sentiment", "dataset=aeslc", f"paths.cache_dir={tmp_path}"])
    with pytest.raises(
        ConfigError, match="task 'sentiment' needs a classification dataset, but dataset 'aeslc' is seq2seq"
    ):
        typed(cfg)
    assert not any(tmp_path.iterdir())  # refused before any preparation


@pytest.mark.parametrize("task", TASK_DATASETS)
def test_prepare_from_config_on_the_samples(configs_dir, hydra_clean, sample_stand_in, tmp_path, capsys, task):
    overrides = [f"task={task}", f"paths.cache_dir={tmp_path}", "dataset.tokenizer.vocab_size=60"]
    data = prepare_from_config(typed(compose_prepare(configs_dir, overrides)))
    name = TASK_DATASETS[task][0]
    assert data.dir == tmp_path / name and (tmp_path / name / "raw" / "train.jsonl").is_file()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: train 120, validation 20, test 20 | vocab 60")
    assert lines[0].endswith("s)") and str(tmp_path / name) in lines[0]
    again = prepare_from_config(typed(compose_prepare(configs_dir, overrides)))
    assert again.reused and capsys.readouterr().out.strip().endswith("(reused)")


@pytest.mark.slow
def test_prepare_data_script(corpus, tmp_path):
    """The real entry point, in a subprocess: SST-2-shaped local files under a data root set by env var."""
    rows = corpus.classification_rows(200)
    lines = ["sentence\tlabel"] + [f"{r['text']} \t{int(r['label'] == 'positive')}" for r in rows]
    corpus.lines("sst2/train.tsv", lines)
    corpus.lines("sst2/dev.tsv", lines[:21])
    script = Path(__file__).resolve().parents[2] / "scripts" / "prepare_data.py"
    env = {**os.environ, "TRANSFORMER_DATA_ROOT": str(corpus.root), "TRANSFORMER_CACHE_DIR": str(tmp_path / "cache")}
    args = ["task=sentiment", "dataset=sst2", "dataset.tokenizer.vocab_size=60", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].startswith("sst2: train 200, validation 20 | vocab 60")
    assert (tmp_path / "cache" / "sst2" / "meta.json").is_file()

"""Every config option and every experiment composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from transformer import NAMED_SIZES, ModelConfig
from transformer.data import DatasetConfig
from transformer.training.datamodule import BatchingConfig
from transformer.training.optim import OptimConfig
from transformer.training.seq2seq import DecodingConfig
from transformer.training.train import typed

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


SWEEP = [
    (group, name)
    for group in ("task", "dataset", "model", "optim", "hardware", "logger", "callbacks")
    for name in options(group)
] + [("experiment", name) for name in options("experiment")]


@pytest.mark.parametrize("group,name", SWEEP, ids=[f"{g}={n}" for g, n in SWEEP])
def test_every_option_composes_and_instantiates(group, name, compose_config, tmp_path):
    overrides = [f"{group}={name}", f"paths.output_dir={tmp_path}"]
    if group == "dataset":  # pair each dataset with a task of its objective
        objective = compose_config("train", overrides).dataset.objective
        overrides.append("task=translation" if objective == "seq2seq" else "task=sentiment")
    cfg = compose_config("train", overrides)
    OmegaConf.resolve(cfg)
    model = ModelConfig.from_dict({**OmegaConf.to_container(cfg.model), "vocab_size": 1000})
    assert model.d_model % model.n_heads == 0
    DatasetConfig.from_dict(OmegaConf.to_container(cfg.dataset))
    assert cfg.dataset.objective == cfg.task.objective
    typed(OptimConfig, cfg.optim, "optim")
    typed(BatchingConfig, cfg.batching, "batching")
    typed(DecodingConfig, cfg.decoding, "decoding")
    for node in list(cfg.callbacks.values()) + list(cfg.logger.values()):
        assert instantiate(node) is not None
    assert cfg.trainer.accelerator in ("cpu", "gpu")


def test_model_files_match_named_sizes(compose_config, tmp_path):
    for size, dims in NAMED_SIZES.items():
        cfg = compose_config("train", [f"model={size}"])
        assert {k: cfg.model[k] for k in dims} == dims
    # the shared keys in train.yaml are ModelConfig's defaults
    shared = compose_config("train").model
    defaults = ModelConfig()
    assert all(shared[k] == getattr(defaults, k) for k in shared if k not in NAMED_SIZES["small"])


@pytest.mark.parametrize("name", ["prepare_data", "evaluate", "predict"])
def test_other_entry_configs_compose(name, compose_config):
    cfg = compose_config(name, ["ckpt=x.ckpt"] if name != "prepare_data" else [])
    assert cfg is not None

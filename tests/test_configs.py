"""Every config option and every experiment composes, passes the schema's checks, and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from transformer import ModelConfig, named_sizes
from transformer.errors import ConfigError
from transformer.schema import DATASET_OBJECTIVE, TrainConfig, typed
from transformer.training.stages import compose_stage, stage_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


SWEEP = [
    (group, name)
    for group in ("task", "dataset", "model", "optim", "hardware", "logger", "callbacks", "hparams_search")
    for name in options(group)
] + [("experiment", name) for name in options("experiment")]
TASK_OF = {"classification": "sentiment", "seq2seq": "translation", "text": "pretrain"}


@pytest.mark.parametrize("group,name", SWEEP, ids=[f"{g}={n}" for g, n in SWEEP])
def test_every_option_composes_and_instantiates(group, name, compose_config, tmp_path):
    overrides = [f"{group}={name}", f"paths.output_dir={tmp_path}"]
    if group == "dataset":  # pair each dataset with a task of its objective
        objective = compose_config("train", overrides).dataset.objective
        overrides.append(f"task={TASK_OF[objective]}")
    cfg = compose_config("train", overrides)
    if group in ("hardware",):  # GPU configs are checked against the machine later, in train()
        cfg.trainer.accelerator = "cpu"
    config = typed(cfg)
    assert isinstance(config, TrainConfig)
    assert config.dataset.objective == DATASET_OBJECTIVE[config.task.objective]
    for node in list(cfg.callbacks.values()) + list(cfg.logger.values()):
        assert instantiate(node) is not None
    if config.pretrain_run:  # a recipe's pretraining run composes and passes the checks too
        stage = typed(compose_stage(stage_overrides(cfg, tmp_path / "pretrain")))
        assert stage.task.objective == "pretrain" and stage.paths.output_dir == str(tmp_path / "pretrain")


def test_model_files_are_the_named_sizes(compose_config):
    for size, dims in named_sizes().items():
        cfg = compose_config("train", [f"model={size}"])
        assert {k: cfg.model[k] for k in dims} == dims
        assert {k: getattr(ModelConfig.named(size), k) for k in dims} == dims
    assert named_sizes()["base"]["d_model"] == 512 and named_sizes()["big"]["n_heads"] == 16


def test_callbacks_combine(compose_config, tmp_path):
    cfg = compose_config(
        "train",
        [
            "callbacks=[default,early_stopping,averaging]",
            f"paths.output_dir={tmp_path}",
            "+callbacks.mine._target_=pytorch_lightning.callbacks.Timer",
        ],
    )
    names = set(cfg.callbacks)
    assert {"model_checkpoint", "early_stopping", "average_last_epochs", "mine"} <= names
    kinds = {type(instantiate(node)).__name__ for node in cfg.callbacks.values()}
    assert {"ModelCheckpoint", "EarlyStopping", "AverageLastEpochs", "Timer"} <= kinds


def test_sample_tuning_follows_the_sample_dataset(compose_config):
    sample = compose_config("train", ["task=sentiment"])
    real = compose_config("train", ["task=sentiment", "dataset=sst2"])
    assert sample.trainer.max_epochs == 4 and sample.batching.max_tokens == 2048  # sample_tuning/sentiment_sample
    assert real.trainer.max_epochs == 10 and real.batching.max_tokens == 4096  # the plain defaults
    assert real.optim.warmup_steps == 400


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.d_model=30"], "d_model=30 is not divisible by n_heads=4"),
        (["task=translation", "decoding.min_len=-1"], "decoding.min_len must be >= 0"),
        (["task.monitor=val/bleu"], "task.monitor='val/bleu' is never logged by task 'sentiment'"),
        (["callbacks.model_checkpoint.monitor=val/rougeL"], "callbacks.model_checkpoint.monitor='val/rougeL'"),
        (["task=sentiment", "dataset=aeslc"], "task 'sentiment' needs a classification dataset"),
        (["trainer.max_epochs=many"], "trainer.max_epochs='many' does not fit"),
        (["+trainer.max_epoch=3"], "did you mean trainer.max_epochs"),
        (["optim.schedule=linear"], "optim.schedule='linear' is not one of"),
        (["task.metrics=[acc,bleu]"], "task.metrics has ['bleu']"),
    ],
)
def test_schema_checks_give_one_line_errors(overrides, message, compose_config, tmp_path):
    cfg = compose_config("train", [*overrides, f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError) as error:
        typed(cfg)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_yaml_holds_values_only(compose_config):
    """Every key the YAML files set is a field of the schema: the struct config rejects any other."""
    from omegaconf.errors import ConfigKeyError

    cfg = compose_config("train")
    with pytest.raises(ConfigKeyError):
        OmegaConf.merge(cfg, {"optim": {"lr_typo": 1}})


@pytest.mark.parametrize("name", ["prepare_data", "evaluate", "predict", "baseline", "attend"])
def test_other_entry_configs_compose(name, compose_config):
    cfg = compose_config(name, ["ckpt=x.ckpt"] if name in ("evaluate", "predict", "attend") else [])
    if name in ("prepare_data", "baseline"):
        typed(cfg)
    assert cfg is not None

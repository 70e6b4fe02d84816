"""`run(cfg)`: what scripts/train.py runs. A plain run is train(cfg); with `pretrain_run=[...]` a pretraining run
trains first, so that a pretrain-then-fine-tune recipe is one command. The stages are orchestrated here, above
train(), which knows nothing of them.

The overrides are composed with Hydra's compose API against the same train config (as if given on the command
line of a second `train.py`), plus what the two runs share: the hardware group, paths.data_root, paths.cache_dir,
seed, precision and compile. The pretraining run lives in `<run dir>/pretrain/` and always resumes from its own
newest checkpoint, so a relaunched (preempted) recipe continues where it stopped: inside the pretraining, or
straight to fine-tuning once `pretrain/metrics.json` exists. Its weights then become the fine-tuning run's
init_from (with init_tokenizer=auto, its tokenizer too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict

from transformer.errors import ConfigError
from transformer.schema import typed
from transformer.training.rundir import run_directory
from transformer.training.train import check_writable, train

log = logging.getLogger(__name__)

STAGE_DIR = "pretrain"


def run(cfg: DictConfig, callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Train as configured, the pretraining stage first when pretrain_run is set; returns the run's metrics (a
    preempted stage returns {"preempted": True, ...}: relaunch the same command to resume it)."""
    if not cfg.get("pretrain_run"):
        return train(cfg, callbacks)
    config = typed(cfg)  # every check of the fine-tuning config, before the pretraining starts
    if cfg.get("init_from"):
        raise ConfigError("pretrain_run and init_from are both set: the pretraining run gives init_from, drop one")
    check_writable(config.paths.output_dir)
    # both stages in one owned run directory: a fresh recipe makes room for the whole of it, pretrain/ included,
    # so the fine-tuning then continues what is there (its own checkpoints, after a preemption)
    with run_directory(config):
        init_from, pretrain = run_pretraining(cfg)
        if init_from is None:  # preempted while pretraining
            return pretrain
        cfg.init_from = init_from  # the checkpoints' stored config says where the weights came from
        cfg.resume, cfg.overwrite = "auto", False
        return train(cfg, callbacks, extra={"pretrain": pretrain})


def stage_overrides(cfg: DictConfig, output_dir: Path) -> list[str]:
    """The pretraining run's overrides: what it shares with this run first, then its own (which win)."""
    shared = [
        f"paths.output_dir={output_dir}",
        "resume=auto",
        f"seed={cfg.seed}",
        f"precision={cfg.precision}",
        f"compile={cfg.compile}",
        f"verbose={cfg.get('verbose', False)}",
        f"paths.cache_dir={cfg.paths.cache_dir}",
    ]
    if cfg.paths.data_root is not None:
        shared.append(f"paths.data_root={cfg.paths.data_root}")
    hardware = _hardware_choice()
    if hardware is not None:
        shared.append(f"hardware={hardware}")
    return shared + list(cfg.pretrain_run)


def _hardware_choice() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("hardware")


@contextmanager
def _hydra():
    """The running Hydra (scripts) or, for callers without one (tests), the package's configs for a moment."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        yield GlobalHydra.instance().hydra
        return
    with initialize_config_module("transformer.configs", version_base=None):
        yield GlobalHydra.instance().hydra


def compose_stage(overrides: list[str]) -> DictConfig:
    from hydra.errors import HydraException
    from hydra.types import RunMode

    with _hydra() as hydra:
        try:
            cfg = hydra.compose_config("train", overrides, run_mode=RunMode.RUN, with_log_configuration=False)
        except HydraException as error:
            first = str(error).strip().splitlines()[0]
            raise ConfigError(f"pretrain_run: {first}") from None
    with open_dict(cfg):
        cfg.pop("hydra", None)  # what hydra.compose() leaves out too
    if cfg.task.objective != "pretrain":
        raise ConfigError(f"pretrain_run must train task=pretrain, not task={cfg.task.name}: add task=pretrain to it")
    if cfg.get("pretrain_run"):
        raise ConfigError("a pretrain_run cannot have a pretrain_run of its own")
    return cfg


def run_pretraining(cfg: DictConfig) -> tuple[str | None, dict[str, Any]]:
    """Train (or resume, or reuse) the pretraining run; returns (the checkpoint for init_from, its metrics).
    A preempted pretraining returns (None, {"preempted": True, ...})."""
    output_dir = Path(cfg.paths.output_dir) / STAGE_DIR
    done = output_dir / "metrics.json"
    if done.is_file():
        log.info("pretraining already done in %s: fine-tuning from it", output_dir)
        metrics = json.loads(done.read_text())
    else:
        log.info("pretraining first, in %s", output_dir)
        metrics = train(compose_stage(stage_overrides(cfg, output_dir)))
        if metrics.get("preempted"):
            return None, metrics
    # the checkpoint resolve_checkpoint would choose (averaged, else best, else last), named by the metrics that
    # every rank gets: under DDP, rank 1 may look before rank 0 has written metrics.json
    last = output_dir / "checkpoints" / "last.ckpt"  # saved behind a barrier: present on every rank after fit
    chosen = metrics.get("averaged_checkpoint") or metrics.get("best_checkpoint")  # relative to output_dir
    return str(output_dir / chosen) if chosen else str(last if last.is_file() else output_dir), metrics

"""Console entry points (scripts/*.py and the `transformer-*` commands): plain `@hydra.main` apps over functions
that tests call directly, with the configs shipped inside the package (configs/, as transformer.configs).

Everything Hydra offers works as Hydra documents it: `-m` sweeps, `--cfg job`, `--info`, `-c`, `--help`,
`+key=value`, `~key`, `--config-dir` / `hydra.searchpath` for your own configs, sweeper and launcher plugins.
What we add is one line instead of a report for the errors a user can fix: Hydra's composition errors
(unknown option, misspelled key, wrong type, unparsable override) and our own `UserError`s, printed as
`error: ...` with exit status 2. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from transformer import schema
from transformer.console import quiet
from transformer.errors import UserError

CONFIG_PATH = "pkg://transformer.configs"  # the repository's configs/, package data (setup.py)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def short(error: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line reports in one line: the problem, the key, the choices, the fix."""
    text = str(error).strip()
    lines = text.splitlines()
    first = lines[0].strip() if lines else type(error).__name__
    if "Available options in" in text:
        start = next(i for i, line in enumerate(lines) if line.startswith("Available options in"))
        options = list(itertools.takewhile(lambda line: line.startswith("\t"), lines[start + 1 :]))
        options = [option.strip() for option in options]
        return f"{first}; choose one of {', '.join(options)}"
    if isinstance(error, OverrideParseException):
        return (
            f"cannot parse the override ({first}); Hydra treats , ' \" [ ] {{ }} specially, so quote the value "
            f"inside the shell quotes, e.g. \"text='Hi, it\\'s me'\" (predict also reads stdin or input=)"
        )
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException):
        return f"{schema.one_line(cause)}; `--cfg job` shows every key and its value"
    return schema.one_line(error)


def check_early(cfg: DictConfig) -> None:
    """The errors a user makes most, answered before the heavy stack (torch, Lightning, datasets: seconds) is
    imported: every check of the config's schema, and a checkpoint or input file that does not exist. The
    functions called next check the same again, for their Python callers."""
    config = schema.typed(cfg)
    ckpt = getattr(config, "ckpt", None)
    for path in ckpt if isinstance(ckpt, list) else [ckpt] if ckpt is not None else []:
        if not Path(str(path)).exists():
            raise UserError(
                f"checkpoint {path} does not exist: pass a run directory or <run dir>/checkpoints/<name>.ckpt"
            )
    source = getattr(config, "input", None)
    if source is not None and not Path(source).is_file():
        raise UserError(f"input file {source} does not exist: pass input=<text file, one line each>")


def run(function: Callable[[DictConfig], Any], config_name: str) -> None:
    """Run `function` as a Hydra app on configs/<config_name>.yaml."""

    job_started = False

    @hydra.main(config_path=CONFIG_PATH, config_name=config_name, version_base="1.3")
    def main(cfg: DictConfig) -> Any:
        nonlocal job_started
        job_started = True
        if not cfg.get("verbose", False):
            quiet()
        try:
            return function(cfg)
        except UserError as error:
            fail(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)

    user_wants_full_error = "HYDRA_FULL_ERROR" in os.environ
    # With HYDRA_FULL_ERROR set, Hydra raises its errors instead of printing them, so they reach us here.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        if user_wants_full_error or job_started:  # inside the job it is not a composition error: keep the trace
            raise
        fail(short(error))
    except OSError as error:  # Hydra could not create the run directory (or its log file) before the job
        if user_wants_full_error or job_started or error.filename is None:
            raise
        fail(
            f"cannot write {error.filename} ({error.strerror}): choose a writable run directory with "
            f"hydra.run.dir=<dir> (hydra.sweep.dir=<dir> under -m)"
        )
    finally:
        if not user_wants_full_error:
            os.environ.pop("HYDRA_FULL_ERROR", None)


def prepare_main() -> None:
    from transformer.data import prepare_from_config

    def prepare_job(cfg: DictConfig) -> None:
        prepare_from_config(schema.typed(cfg))

    run(prepare_job, "prepare_data")


def baseline_main() -> None:
    def baseline_job(cfg: DictConfig) -> None:
        from transformer.baselines import baseline

        baseline(cfg)

    run(baseline_job, "baseline")


def train_main() -> None:
    def train_job(cfg: DictConfig) -> float | None:
        """Returns the monitored metric, which sweepers (e.g. Optuna) optimize; a preempted run exits with 75."""
        # imported inside the job: --help, --cfg and composition errors answer without loading Lightning
        from pytorch_lightning.utilities import rank_zero_only

        from transformer.training import stages
        from transformer.training.preemption import PREEMPTED_EXIT_CODE
        from transformer.training.summary import closing_summary

        metrics = stages.run(cfg)
        if metrics.get("preempted"):
            raise SystemExit(PREEMPTED_EXIT_CODE)
        if rank_zero_only.rank == 0:
            print(closing_summary(metrics, cfg.paths.output_dir, cfg.task.monitor), flush=True)
        value = metrics.get(cfg.task.monitor)
        return None if value is None else float(value)

    run(train_job, "train")


def evaluate_main() -> None:
    def evaluate_job(cfg: DictConfig) -> None:
        check_early(cfg)
        from transformer.inference import evaluate  # inside the job, as in train_main

        print(json.dumps(evaluate(cfg), indent=2, sort_keys=True))

    run(evaluate_job, "evaluate")


def predict_main() -> None:
    def predict_job(cfg: DictConfig) -> None:
        check_early(cfg)
        from transformer.inference import predict

        lines = predict(cfg)  # interactive=true prints as it goes
        if not cfg.interactive:
            print("\n".join(lines))

    run(predict_job, "predict")


def attend_main() -> None:
    def attend_job(cfg: DictConfig) -> None:
        check_early(cfg)
        from transformer.inference import attend

        print("\n".join(str(path) for path in attend(cfg)))

    run(attend_job, "attend")


def export_main() -> None:
    def export_job(cfg: DictConfig) -> None:
        check_early(cfg)
        from transformer.export import export

        print("\n".join(str(path) for path in export(cfg)))

    run(export_job, "export")


def serve_main() -> None:
    def serve_job(cfg: DictConfig) -> None:
        check_early(cfg)
        from transformer.serve import serve

        serve(cfg)

    run(serve_job, "serve")

"""Console entry points (scripts/*.py and the `transformer-*` commands). Each is a thin Hydra main over a
function that tests call directly. Bad input ends with one line on stderr and exit status 2."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
GROUPS = ("task", "dataset", "model", "optim", "hardware", "logger", "callbacks", "experiment", "paths")


def check_group_choices(argv: list[str], config_dir: str = CONFIG_DIR) -> None:
    """Reject `group=name` overrides whose config file does not exist, before Hydra prints a long report."""
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in GROUPS or value in ("", "null"):
            continue
        options = sorted(p.stem for p in (Path(config_dir) / key).glob("*.yaml"))
        if value not in options:
            raise SystemExit(
                f"error: unknown {key} {value!r}; choose one of {', '.join(options)} (files in configs/{key}/)"
            )


def check_overrides(argv: list[str], config_name: str) -> None:
    """Compose once up front so that a bad override ends in one line instead of Hydra's multi-line report."""
    overrides = [a for a in argv if not a.startswith(("-", "hydra.", "hydra/", "+hydra", "~hydra"))]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            compose(config_name=config_name, overrides=overrides)
    except OverrideParseException as error:
        first = str(error).strip().splitlines()[0]
        raise SystemExit(
            f"error: cannot parse the override ({first}); Hydra treats , ' \" [ ] {{ }} specially, so quote the "
            f"value inside the shell quotes, e.g. \"text='Hi, it\\'s me'\" (predict.py also reads stdin or input=)"
        ) from None
    except Exception as error:  # noqa: BLE001 - any composition failure is the user's input
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        raise SystemExit(f"error: {' '.join(lines[:2]) or type(error).__name__}") from None
    finally:
        GlobalHydra.instance().clear()


def run_cli(function: Callable[[DictConfig], object], config_name: str) -> None:
    check_group_choices(sys.argv[1:])
    check_overrides(sys.argv[1:], config_name)

    @hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")
    def main(cfg: DictConfig) -> None:
        try:
            function(cfg)
        except (ValueError, TypeError, FileNotFoundError, OmegaConfBaseException) as error:
            logging.getLogger(__name__).debug("failed", exc_info=True)
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2) from None

    main()


def _print_lines(lines) -> None:
    for line in lines:
        print(line)


def prepare_main() -> None:
    from transformer.data import prepare_from_config

    run_cli(prepare_from_config, "prepare_data")


def lead_baseline_main() -> None:
    from transformer.baselines import lead_baseline

    run_cli(lead_baseline, "lead_baseline")


def train_main() -> None:
    from transformer.training.train import train

    run_cli(train, "train")


def evaluate_main() -> None:
    import json

    from transformer.training.inference import evaluate

    run_cli(lambda cfg: print(json.dumps(evaluate(cfg), indent=2, sort_keys=True)), "evaluate")


def predict_main() -> None:
    from transformer.training.inference import predict

    run_cli(lambda cfg: _print_lines(predict(cfg)), "predict")

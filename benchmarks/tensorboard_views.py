"""What the TensorBoard views (attention images, samples, confusion matrix, hparams) cost on the default runs.

    python benchmarks/tensorboard_views.py                     # sentiment, translation, summarization; 2 epochs
    python benchmarks/tensorboard_views.py --tasks sentiment --epochs 4

Each task's default run (the offline sample with its demo tuning, TensorBoard logger) trains in this process with
the views timed from inside: the seconds spent in TensorBoardViews.on_validation_end and in log_hparams, against
the seconds of the training epochs (which include their validation). The share is views / epochs; the issue's
bound is 3%. Timing the callback itself, rather than two whole runs against each other, keeps the machine's
drift out of a difference of a few percent.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import pytorch_lightning as pl
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

import transformer.schema  # noqa: F401  (registers the structured configs)
from transformer.training import tensorboard as views
from transformer.training import train as train_module


class EpochClock(pl.Callback):
    def __init__(self) -> None:
        self.seconds = 0.0
        self.epochs = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds += time.perf_counter() - self.start
        self.epochs += 1


def timed(function, totals: dict[str, float], key: str):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

    return wrapper


def measure(task: str, epochs: int, out: str) -> dict:
    totals: dict[str, float] = {}
    original_view, original_hparams = views.TensorBoardViews.on_validation_end, train_module.log_hparams
    views.TensorBoardViews.on_validation_end = timed(original_view, totals, "views")
    train_module.log_hparams = timed(original_hparams, totals, "hparams")
    GlobalHydra.instance().clear()
    overrides = [f"task={task}", f"trainer.max_epochs={epochs}", f"paths.output_dir={out}/{task}",
                 "~callbacks.progress_bar"]  # fmt: skip
    with initialize_config_module("transformer.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    clock = EpochClock()
    try:
        metrics = train_module.train(cfg, callbacks=[clock])
    finally:
        views.TensorBoardViews.on_validation_end, train_module.log_hparams = original_view, original_hparams
    spent = totals.get("views", 0.0) + totals.get("hparams", 0.0)
    return {
        "task": task,
        "epochs": clock.epochs,
        "epoch_seconds": round(clock.seconds, 1),
        "views_seconds": round(totals.get("views", 0.0), 2),
        "hparams_seconds": round(totals.get("hparams", 0.0), 2),
        "share_of_epochs": round(spent / clock.seconds, 4),
        "global_step": metrics["global_step"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sentiment", "translation", "summarization"])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for task in args.tasks:
            rows.append(measure(task, args.epochs, out))
            print(json.dumps(rows[-1]), flush=True)
    print("| task | epochs | epoch time | views | hparams | share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['task']} | {r['epochs']} | {r['epoch_seconds']} s | {r['views_seconds']} s | "
              f"{r['hparams_seconds']} s | {100 * r['share_of_epochs']:.2f}% |")  # fmt: skip


if __name__ == "__main__":
    main()

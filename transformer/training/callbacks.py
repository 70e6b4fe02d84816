"""Training-time measurements logged to TensorBoard (tokens/second, padding efficiency, model FLOP/s and MFU) and
the one-line summary of each validation in the log."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.trainer.states import TrainerFn

from transformer.config import ModelConfig
from transformer.flops import training_flops
from transformer.objectives.base import logging_step

log = logging.getLogger(__name__)


class TokenThroughput(pl.Callback):
    """Logs, every log_every_n_steps, `train/tokens_per_sec` (real, non-pad tokens of all ranks),
    `train/padding_efficiency`, the achieved model FLOP/s of all ranks (`train/model_tflops`) and, when the device's
    peak is known, `train/mfu`, each over the steps of the logging interval.

    Padding efficiency is real tokens / padded tokens of the batch tensors ("src", plus "tgt_out" for seq2seq),
    from the counts collation made on the host (data/batching.py's token_counts), so nothing is read back from the
    device. Model FLOPs come from the batch's shapes (transformer/flops.py). Time is the host's, from each step's
    start to its end, summed over the interval: the device may run behind the host within an interval, but the
    logging step reads the loss back (objectives/base.py) before this callback closes it, so the sum over an
    interval is the device's time too. Lightning's ThroughputMonitor takes one fixed FLOP count per batch; our
    token-budget batches change shape every step, hence this callback.
    """

    def __init__(self, pad_id: int = 0, model_config: ModelConfig | None = None, peak_flops: float | None = None):
        self.pad_id = pad_id
        self.model_config, self.peak_flops = model_config, peak_flops
        self._start = 0.0
        self.tokens, self.seconds = 0, 0.0  # real tokens of all ranks and time in training steps, this process
        self._interval = [0, 0, 0.0, 0.0]  # real tokens, padded tokens, model FLOPs (this rank), seconds

    @property
    def tokens_per_sec(self) -> float | None:
        """Real tokens per second of all ranks over this process's training steps (None before any)."""
        return self.tokens / self.seconds if self.seconds > 0 else None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        counts = batch["counts"]
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        world = trainer.world_size
        self.tokens += counts["real"] * world
        self.seconds += elapsed
        interval = self._interval
        interval[0] += counts["real"]
        interval[1] += counts["padded"]
        interval[3] += elapsed
        if self.model_config is not None:
            B, S = batch["src"].shape
            T = batch["tgt_out"].size(1) if "tgt_out" in batch else None
            predicted = counts.get("target") if "labels" in batch else None  # masked LM: the labelled tokens
            interval[2] += training_flops(self.model_config, B, S, T, predicted)
        if not logging_step(trainer):
            return
        real, padded, flops, seconds = interval
        self._interval = [0, 0, 0.0, 0.0]
        values = {
            "train/tokens_per_sec": real * world / seconds,
            "train/padding_efficiency": real / max(padded, 1),
        }
        progress = {}
        if self.model_config is not None:
            achieved = flops * world / seconds  # FLOP/s of all ranks
            progress["train/model_tflops"] = achieved / 1e12
            if self.peak_flops:
                progress["train/mfu"] = achieved / (self.peak_flops * world)
        pl_module.progress.update(progress)
        kwargs = {"on_step": True, "on_epoch": False, "batch_size": 1}
        pl_module.log_dict({**values, **progress}, **kwargs)


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, showing the training values of the latest logging step (the module's
    `progress`: train/loss, model TFLOP/s, MFU). Metrics logged with prog_bar=True would be read back from the
    device after every step (Lightning converts them to numbers for the bar), a sync per step; these are read
    once per logging interval (objectives/base.py). Shown under short names (loss, TFLOP/s, MFU), which fit the
    metrics column of an 80-column terminal that Rich would otherwise cut ("train/model_tflo…")."""

    SHORT = {"train/loss": "loss", "train/model_tflops": "TFLOP/s", "train/mfu": "MFU"}

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the logger's version: the run directory already says it
        for key, value in getattr(pl_module, "progress", {}).items():
            metrics[self.SHORT.get(key, key)] = value
        return metrics


class ValidationStep(pl.Callback):
    """Validates a run that stops on trainer.max_steps in the middle of an epoch, and remembers the global step of
    the latest validation, so train() can tell whether the final weights were validated.

    Lightning validates at the end of an epoch only, so a run whose max_steps falls inside one would end without a
    validation: ModelCheckpoint would warn that the monitored metric is missing ("could not find val/acc ...
    HINT: Did you call log()?") and keep last.ckpt only, or score the final weights with an earlier validation.
    Setting `trainer.should_stop` at that step makes Lightning validate there, as it does for early stopping, so the
    top-k checkpoints get the final weights with their own score."""

    def __init__(self) -> None:
        self.step = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        at_max_steps = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        if at_max_steps and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


class ValidationSummary(pl.Callback):
    """One log line per validation (rank 0): the epoch and step, every val/* metric and the best monitored value
    so far, e.g. `validation, epoch 2, step 750: val/loss 0.4123 | val/acc 0.842 | val/f1 0.8401 (best val/acc
    0.845 at step 500)`. The validation train() runs after fitting (of the final or averaged weights) says so."""

    def __init__(self, monitor: str, mode: str) -> None:
        self.monitor, self.mode = monitor, mode
        self.best: tuple[float, int] | None = None  # value, step

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if not values:
            return
        step = trainer.global_step
        text = " | ".join(f"{k} {v:.4g}" for k, v in sorted(values.items(), key=lambda kv: kv[0] != "val/loss"))
        fitting = trainer.state.fn == TrainerFn.FITTING
        where = f"epoch {trainer.current_epoch}, step {step}" if fitting else f"after training, step {step}"
        value = values.get(self.monitor)
        if fitting and value is not None:
            better = self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
            if better:
                self.best = (value, step)
        best = f" (best {self.monitor} {self.best[0]:.4g} at step {self.best[1]})" if fitting and self.best else ""
        log.info("validation, %s: %s%s", where, text, best)


class RandomState(pl.Callback):
    """Saves the torch random generators in checkpoints and restores them on resume, so that dropout after a
    resume draws the same masks as the uninterrupted run (Lightning restores the data order, not the RNG).

    Every rank's generators are saved (each rank draws its own masks): Lightning builds the checkpoint on every
    rank and writes rank 0's, so state_dict gathers them there. A run resumed on another number of ranks cannot
    repeat the old masks; rank r then takes saved rank r mod (saved ranks)."""

    def state_dict(self) -> dict[str, Any]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        ranks: list[Any] = [state]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ranks = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, state)
        return {"ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict.get("ranks") or [state_dict]  # checkpoints before per-rank states held one
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        state = ranks[rank % len(ranks)]
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

"""`TransformerModule`: what every objective's LightningModule shares, written once. It owns the training step's
plumbing (the loss normalized by the optimizer step's size, the guard against NaN/inf losses, gradients and
weights, the optimizer and its schedule), the checkpoint artifacts, the sharding hook, and the wiring of
validation and test; an objective (objectives/classification.py, seq2seq.py, pretrain.py) adds only its model, loss
and metrics:

    step_loss(batch)                       -> (summed loss, its size in tokens or examples, batch size)
    evaluate_batch(batch, batch_idx, stage)   one validation/test batch (stage: val | test)
    log_metrics(stage)                        the split's metrics, at the end of validation/test
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.trainer.states import TrainerFn

from transformer.checkpoint import Artifacts, find_resume_checkpoint
from transformer.errors import UserError
from transformer.objectives.precision import MasterWeights
from transformer.optim import OptimConfig, apply_config, build_optimizer, fusable, total_training_steps

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError):
    """The loss (or the gradients) stayed NaN/inf for too many steps in a row."""


class NonFiniteWeightsError(UserError):
    """An optimizer step made the weights NaN/inf."""


class TransformerModule(pl.LightningModule):
    """The shared steps of the objectives' LightningModules (see the module docstring for what each adds).

    The training step never waits for the device: the loss's size comes from the collated batch on the host, the
    NaN guard decides on the device, the gradient scaling is one fused call, and what is read back (the loss for
    the log and the progress bar, the guard's counters) is read once per logging interval (`log_every_n_steps`),
    in `optimizer_step`, and before any checkpoint is written."""

    def __init__(self, artifacts: Artifacts, optim: OptimConfig, max_nonfinite_steps: int = 10) -> None:
        super().__init__()
        self.artifacts = artifacts  # configs, tokenizers and labels, stored in every checkpoint
        self.optim = optim
        self.guard = NonFiniteGuard(max_nonfinite_steps)
        self.step_size = StepNormalizer()
        self.train_loss = IntervalMean()  # the summed losses of the logging interval, on the device
        self.progress: dict[str, float] = {}  # the latest logging step's values, for the progress bar (ProgressBar)
        self.master: MasterWeights | None = None  # precision=bf16-true: the fp32 weights the optimizer updates
        self._outputs: list[tuple] = []  # this validation's (or test's) per-example outputs, from evaluate_batch
        self.predictions: list[tuple] = []  # the last test's outputs, by example index
        self.last_validation: dict[int, tuple] = {}  # the latest validation's outputs, by example index

    def step_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int, int]:
        """(the micro-batch's summed loss, the number of tokens or examples it sums over, its batch size): the
        two sizes are Python ints, from the batch's shapes or from the counts collation made on the host."""
        raise NotImplementedError

    def evaluate_batch(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        raise NotImplementedError

    def log_metrics(self, stage: str) -> None:
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        """The summed loss, counted for the step's normalization (StepNormalizer divides by the optimizer step's
        tokens or examples) and its log, and checked by the guard on the device: a NaN/inf loss skips its step."""
        summed, size, _ = self.step_loss(batch)
        self.guard.check_loss(summed)
        self.step_size.add(size)
        self.train_loss.add(summed, size)
        return summed

    def on_before_optimizer_step(self, optimizer) -> None:
        self.step_size.apply(self)
        self.guard.check_gradients(self, optimizer)
        if self.master is not None:
            self.master.copy_gradients()  # clipped and stepped in fp32

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.master is not None:
            self.master.copy_weights()
        self.guard.after_step(self)
        if logging_step(self.trainer):  # the one read of the interval, before on_train_batch_end (checkpoints)
            self.guard.read(self)
            self.progress["train/loss"] = self.train_loss.read()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if "train/loss" in self.progress and logging_step(self.trainer):
            self.log("train/loss", self.progress["train/loss"], on_step=True, on_epoch=False, batch_size=1)

    def on_train_end(self) -> None:
        self.guard.read(self)  # a streak or bad weights after the last logging step still stop the run

    def configure_optimizers(self) -> dict[str, Any]:
        # fused AdamW would unscale a GradScaler's gradients itself, after clipping saw them scaled
        scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None
        fused_ok = not scaled and fusable(self.model)
        masters = self.master.bind(self) if self.master is not None else None
        optimizer, scheduler = build_optimizer(
            self.model, self.optim, total_training_steps(self.trainer), fused_ok, masters
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer) -> None:
        super().optimizer_zero_grad(epoch, batch_idx, optimizer)
        if self.master is not None:  # the optimizer holds the masters: the bf16 gradients are cleared here
            self.zero_grad(set_to_none=True)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's mixed-precision plugin refuses to clip for a fused optimizer, for a GradScaler's sake; without
        # a scaler (bf16) the gradients are the true ones, so they are clipped here as Lightning would clip them; with
        # master weights the optimizer's (fp32) gradients are the ones it steps with
        if not gradient_clip_val or (not fused(optimizer) and self.master is None):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def on_train_start(self) -> None:
        self.guard.start(self)
        if self.trainer.ckpt_path:  # resumed: the optimizer settings are this run's, which may differ (allow_changes)
            scheduler = self.trainer.lr_scheduler_configs[0].scheduler
            apply_config(self.trainer.optimizers[0], scheduler, self.model, self.optim)

    def configure_model(self) -> None:
        # bf16-true: the fp32 masters are taken here, before Lightning casts the module (strategy setup)
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        if fitting and self.trainer.precision == "bf16-true" and self.master is None:
            self.master = MasterWeights(self)
        # hardware=fsdp: the strategy (training/fsdp.py) shards the model block by block; other strategies have no
        # shard_model. Asked of the strategy, so that the objectives do not import the training layer above them.
        shard_model = getattr(self.trainer.strategy, "shard_model", None)
        if shard_model is not None:
            shard_model(self.model)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.trainer is not None and self.trainer.training:
            self.guard.read(self)  # weights that went NaN/inf stop the run here, before this checkpoint takes them
        if self.master is not None and self.master.pairs:
            self.master.store(checkpoint["state_dict"])  # fp32, as a bf16-mixed run's
        self.artifacts.store(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.master is not None:  # resuming a bf16-true run: its fp32 masters
            self.master.load(checkpoint["state_dict"])

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def validation_step(self, batch, batch_idx):
        self.evaluate_batch(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._outputs = []

    def test_step(self, batch, batch_idx):
        self.evaluate_batch(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test")


def logging_step(trainer: pl.Trainer | None) -> bool:
    """Whether this optimizer step is one Lightning logs (every log_every_n_steps, and the last): asked in
    optimizer_step and on_train_batch_end, before Lightning counts the step. LearningRateMonitor asks the same."""
    if trainer is None or trainer.fit_loop._should_accumulate():
        return False
    return trainer._logger_connector.should_update_logs or trainer.global_step >= trainer.max_steps > 0


class IntervalMean:
    """A mean over the logging interval kept on the device: each step adds its summed value (a tensor) and its
    size (a host int); `read` returns the mean (the one host read) and starts the next interval."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.size = 0

    def add(self, summed: torch.Tensor, size: int) -> None:
        value = summed.detach().float()
        self.total = value if self.total is None else self.total + value
        self.size += size

    def read(self) -> float:
        mean = float(self.total) / max(self.size, 1) if self.total is not None else math.nan
        self.total, self.size = None, 0
        return mean


class NonFiniteGuard:
    """Keeps NaN/inf out of the weights. A step whose loss or gradient norm is NaN/inf is skipped, and
    `max_in_a_row` such steps in a row stop the run. Should a step still make the weights NaN/inf (an update too
    large for the number format), the run stops before any checkpoint takes them (and checkpoint.py refuses to
    write NaN/inf anyway); the message names the last good checkpoint, the one a relaunch resumes from. Under DDP
    and FSDP the ranks agree, so all skip or stop at the same step (one would hang otherwise). Under a GradScaler
    (precision=16-mixed) the scaler skips the steps of inf gradients itself, as part of its scale search, so
    those are not counted here.

    Nothing is read back per step. The decision stays on the device: the step's flag (loss and gradient norm
    finite, on every rank) is fused AdamW's `found_inf`, with which the optimizer leaves the weights, its moments
    and its step count as they are (optim.py builds AdamW fused wherever the parameters allow). The counters
    (skipped steps, the streak, the step of the last skip, the first step whose weights went bad) are device
    tensors too, read by `read`: once per logging interval, before each checkpoint, and at the end of training.
    So a streak stops the run at the next read, a few steps later than it reached `max_in_a_row`, with the weights
    still untouched by any of its steps. An optimizer without `found_inf` (FSDP's sharded parameters) falls back to
    reading the flag at every step and dropping the gradients, as before."""

    LOSS, GRADIENTS = 1, 2

    def __init__(self, max_in_a_row: int = 10) -> None:
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.total = 0
        self._loss_ok: torch.Tensor | None = None  # this step's micro-batch losses all finite (1.0) or not
        self._state: torch.Tensor | None = None  # [step, total, in a row, longest streak, last skip, kinds, bad w]

    def start(self, module: pl.LightningModule) -> None:
        # step: the global step on the device; bad weights: the first step that made them NaN/inf, or -1
        self._state = torch.tensor(
            [module.global_step, self.total, self.in_a_row, self.in_a_row, -1, 0, -1],
            dtype=torch.float64 if module.device.type != "mps" else torch.float32,
            device=module.device,
        )

    def check_loss(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).float()
        self._loss_ok = finite if self._loss_ok is None else self._loss_ok * finite

    def check_gradients(self, module: pl.LightningModule, optimizer) -> None:
        """Before the optimizer step (after normalization, before clipping): the flag that skips it."""
        loss_ok = self._loss_ok if self._loss_ok is not None else torch.ones((), device=module.device)
        self._loss_ok = None
        if getattr(module.trainer.precision_plugin, "scaler", None) is not None:
            return  # the GradScaler skips steps of inf gradients itself
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        grads_ok = finite_flag(grads, norm=2.0) if grads else torch.ones((), device=module.device)
        flags = all_ranks(module, torch.stack([loss_ok, grads_ok.to(loss_ok.dtype)]))
        ok = flags.prod()
        if self._state is None:
            self.start(module)
        if not getattr(optimizer, "_step_supports_amp_scaling", False) or not fused(optimizer):
            self._record(module, flags)
            if not bool(ok >= 1):  # no device-side skip: read the flag now and drop the gradients
                for param in module.parameters():
                    param.grad = None
                self.read(module)
            return
        target = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer  # Lightning's wrapper
        found_inf = (1.0 - ok).float()
        if getattr(target, "found_inf", None) is None:
            target.found_inf = found_inf
        else:
            target.found_inf.copy_(found_inf)
        self._record(module, flags)

    def _record(self, module: pl.LightningModule, flags: torch.Tensor) -> None:
        """The counters after this step: flags = (loss finite, gradients finite) on every rank."""
        state = self._state
        skipped = 1.0 - flags.prod().to(state.dtype)
        kind = (1.0 - flags[0].to(state.dtype)) * self.LOSS + flags[0].to(state.dtype) * (
            1.0 - flags[1].to(state.dtype)
        ) * self.GRADIENTS  # the loss when it was bad, else the gradients
        step, total, in_a_row, longest, last, kinds, bad = state.unbind()
        in_a_row = (in_a_row + 1.0) * skipped
        new = torch.stack(
            [
                step,
                total + skipped,
                in_a_row,
                torch.maximum(longest, in_a_row),
                torch.where(skipped > 0, step, last),
                torch.where(
                    skipped > 0, torch.where(in_a_row > 1, kinds.long() | kind.long(), kind.long()), kinds.long()
                ).to(state.dtype),
                bad,
            ]
        )
        state.copy_(new)

    def after_step(self, module: pl.LightningModule) -> None:
        """After the optimizer step: whether the weights stayed finite (recorded, read with the counters), and
        the step counted."""
        if self._state is None:
            return
        weights_ok = all_ranks(module, finite_flag(list(module.parameters()))).to(self._state.dtype)
        bad = self._state[6]
        self._state[6] = torch.where((bad < 0) & (weights_ok < 1), self._state[0], bad)
        self._state[0] += 1

    def read(self, module: pl.LightningModule) -> None:
        """The one host read: warn about the steps skipped since the last read, stop the run on a streak of
        `max_in_a_row` or on weights that went NaN/inf."""
        if self._state is None:
            return
        step, total, in_a_row, longest, last, kinds, bad = (int(v) for v in self._state.tolist())
        self._state[3] = self._state[2]  # the longest streak since this read starts from the current one
        if bad >= 0:
            raise NonFiniteWeightsError(
                f"the weights became NaN/inf at step {bad} although its loss and gradients were finite (an update "
                f"too large): training stopped, {last_good(module)}; lower optim.lr or optim.weight_decay "
                f"(relaunch with allow_changes=[optim.lr] to keep the run)"
            )
        new, self.total, self.in_a_row = total - self.total, total, in_a_row
        if not new:
            return
        what = {self.LOSS: "loss", self.GRADIENTS: "gradients"}.get(kinds, "loss or gradients")
        log.warning(
            "non-finite %s at step %d: step skipped (%d in a row, %d in all%s)",
            what,
            last,
            in_a_row,
            total,
            f"; {new} since the last log" if new > 1 else "",
        )
        for logger in module.loggers:  # to the loggers directly: read() also runs where self.log may not
            logger.log_metrics({"train/nonfinite_steps": float(total)}, step=module.global_step)
        if longest >= self.max_in_a_row:
            what = {self.LOSS: "the loss was", self.GRADIENTS: "the gradients were"}.get(
                kinds, "the loss or the gradients were"
            )
            raise NonFiniteLossError(
                f"{what} NaN/inf for {longest} steps in a row (max_nonfinite_steps={self.max_in_a_row}; the last "
                f"at step {last}): training stopped, {last_good(module)}; lower optim.lr (relaunch with "
                f"allow_changes=[optim.lr] to keep the run), raise optim.warmup_steps or use precision=32-true"
            )


def fused(optimizer) -> bool:
    target = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
    return all(group.get("fused") for group in target.param_groups)


def finite_flag(tensors: list[torch.Tensor], norm: float = float("inf")) -> torch.Tensor:
    """1.0 when every tensor is finite, else 0.0, on the device: one fused norm (a NaN/inf element makes it NaN/inf;
    norm=2 is the gradient norm that clipping computes, which also overflows for gradients too large to use). A
    sharded tensor (FSDP's DTensor) is checked by its local shard, as each rank holds one."""
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
    local = [t.detach() for t in local if t.numel()]
    if not local:
        return torch.ones(())
    norms = torch._foreach_norm(local, norm)
    total = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]), norm)
    return torch.isfinite(total).float()


def all_ranks(module: pl.LightningModule, flags: torch.Tensor) -> torch.Tensor:
    """Flags (1.0 / 0.0) that hold on every rank: one all-reduce on the device, no host read."""
    flags = flags.to(module.device)
    trainer = module.trainer
    if trainer is not None and trainer.world_size > 1:
        flags = trainer.strategy.reduce(flags, reduce_op="sum") / trainer.world_size
    return (flags >= 1).float()


def all_ranks_finite(module: pl.LightningModule, tensors: list[torch.Tensor], norm: float = float("inf")) -> bool:
    """Whether every tensor is finite on every rank (one host read)."""
    return bool(all_ranks(module, finite_flag(tensors, norm)) >= 1)


def last_good(module: pl.LightningModule) -> str:
    """Which checkpoint a relaunch resumes from (the run directory's newest full one: all hold finite weights)."""
    found = find_resume_checkpoint(Path(module.trainer.default_root_dir), module.artifacts.task)
    if found is None:
        return "no checkpoint was written yet, so a relaunch starts afresh"
    return f"the last good checkpoint is {found}, which a relaunch resumes from"


class StepNormalizer:
    """Normalizes the loss by the number of target tokens (or examples) of the whole optimizer step, across
    accumulation steps and ranks, as fairseq does, so that gradients do not depend on how a step is split.

    Each micro-batch's training_step returns its summed loss and `add`s its size (a host int). Lightning divides
    what training_step returns by accumulate_grad_batches (A), and DDP averages gradients over the W ranks, so
    after the last micro-batch the gradient is sum(grad of summed losses) / (A * W). `apply` (before clipping and
    the optimizer step) multiplies it by A * W / (the step's size summed over ranks): the gradient of the mean over
    all the step's tokens, in one fused multiply (the sum over ranks stays on the device). Then 2 ranks x B
    examples give the gradient of 1 rank on the same 2B examples, and accumulation 2 the gradient of one batch
    twice as large (tests/training/test_distributed.py).
    """

    def __init__(self) -> None:
        self.size = 0

    def add(self, size: int) -> None:
        self.size += size

    def apply(self, module: pl.LightningModule) -> None:
        trainer = module.trainer
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        scale: float | torch.Tensor = trainer.accumulate_grad_batches * trainer.world_size
        if trainer.world_size > 1:
            total = torch.tensor(float(self.size), device=module.device)
            total = trainer.strategy.reduce(total, reduce_op="sum")
            scale = scale / total.clamp(min=1.0)
        else:
            scale = scale / max(self.size, 1)
        self.size = 0
        if grads:
            torch._foreach_mul_(grads, scale)


def gather_unique(outputs: list[tuple]) -> dict[int, tuple]:
    """{example index: the rest of its tuple} over all ranks, each example once: the evaluation samplers give
    every rank the same number of batches by repeating a few, which must not count twice in a metric."""
    if dist.is_available() and dist.is_initialized():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, outputs)
        outputs = [item for part in gathered for item in part]
    return {item[0]: tuple(item[1:]) for item in outputs}

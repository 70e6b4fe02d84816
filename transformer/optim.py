"""AdamW with an inverse-square-root (Noam) or cosine learning-rate schedule, both with linear warmup.

Two options for fine-tuning, both off by default:
- `layer_decay` < 1: layer-wise learning-rate decay (ELECTRA, BEiT). The embeddings are depth 0, the L blocks depths
  1..L from the bottom (encoder then decoder), everything above them (final norms, head, output projection) depth
  L + 1, and a parameter at depth d trains with lr * layer_decay ** (L + 1 - d): the pre-trained lower layers move
  least.
- `freeze_embeddings_steps` = N > 0: the embeddings keep their values for the first N optimizer steps (their group's
  lr is 0), so a randomly initialised head cannot wreck them while it is still far off; then they train as usual.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from transformer.config import OptimConfig


def lr_multiplier(step: int, config: OptimConfig, total_steps: int) -> float:
    """Factor applied to the peak lr at optimizer step `step` (0-based)."""
    step += 1
    warmup = config.warmup_steps
    if warmup and step < warmup:
        return step / warmup
    if config.schedule == "noam":  # lr * min(step / warmup, sqrt(warmup / step)): the paper's shape
        return math.sqrt(max(warmup, 1) / step)
    if config.schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


# Containers that torch.compile, FSDP1 and activation checkpointing may add to parameter names.
WRAPPERS = ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
STACKS = ("encoder", "decoder")  # their blocks are counted bottom-up in this order


def parameter_depths(model: nn.Module) -> dict[str, int]:
    """{parameter name, as `named_parameters()` gives it: depth}: 0 the embeddings (`<stack>.embed.*`), 1..L the
    blocks (`<stack>.layers.<i>.*`, encoder then decoder), L + 1 anything else (final norms, head, output projection,
    copy module, MLM head). A parameter shared under several names (a tied embedding) takes its lowest depth."""
    aliases = [
        (param, [part for part in name.split(".") if part not in WRAPPERS])
        for name, param in model.named_parameters(remove_duplicate=False)
    ]
    blocks = dict.fromkeys(STACKS, 0)  # blocks per stack, counted over all parameters (frozen ones too)
    for _, parts in aliases:
        if len(parts) > 2 and parts[0] in STACKS and parts[1] == "layers":
            blocks[parts[0]] = max(blocks[parts[0]], int(parts[2]) + 1)
    below = {"encoder": 0, "decoder": blocks["encoder"]}  # blocks under each stack's first one
    top = sum(blocks.values()) + 1
    lowest: dict[int, int] = {}  # id(param) -> depth
    for param, parts in aliases:
        if len(parts) > 1 and parts[0] in STACKS and parts[1] == "embed":
            depth = 0
        elif len(parts) > 2 and parts[0] in STACKS and parts[1] == "layers":
            depth = below[parts[0]] + int(parts[2]) + 1
        else:
            depth = top
        lowest[id(param)] = min(depth, lowest.get(id(param), top))
    return {name: lowest[id(param)] for name, param in model.named_parameters()}


def group_name(depth: int, top: int, per_depth: bool) -> str:
    if depth == 0:
        return "embeddings"
    if not per_depth:  # only freezing: one group above the embeddings
        return "rest"
    return "top" if depth == top else f"block{depth}"


def param_groups(model: nn.Module, config: OptimConfig) -> tuple[list[dict], list[bool]]:
    """AdamW's parameter groups, without weight decay on the `config.no_decay` names, and for each group whether it
    holds embeddings (the groups frozen for the first `freeze_embeddings_steps`)."""
    trainable = [(name, param) for name, param in model.named_parameters() if param.requires_grad]

    def decays(name: str) -> bool:
        return not any(key in name for key in config.no_decay)

    if config.layer_decay == 1.0 and config.freeze_embeddings_steps == 0:
        # the two groups of before these options, so that the optimizer states of older checkpoints still load
        decay = [param for name, param in trainable if decays(name)]
        no_decay = [param for name, param in trainable if not decays(name)]
        groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return groups, [False, False]
    depths = parameter_depths(model)
    top = max(depths.values())
    buckets: dict[int, tuple[list[nn.Parameter], list[nn.Parameter]]] = {}  # depth -> (decay, no decay)
    for name, param in trainable:
        depth = depths[name] if config.layer_decay < 1.0 else min(depths[name], 1)  # only embeddings | the rest
        buckets.setdefault(depth, ([], []))[0 if decays(name) else 1].append(param)
    groups, embeddings = [], []
    for depth in sorted(buckets):
        lr = config.lr * config.layer_decay ** (top - depth)  # the peak lr without layer decay
        label = group_name(depth, top, config.layer_decay < 1.0)
        decay, no_decay = buckets[depth]
        for params, weight_decay, suffix in ((decay, config.weight_decay, ""), (no_decay, 0.0, "_no_decay")):
            if params:  # the names make LearningRateMonitor log `lr-AdamW/<name>` rather than `lr-AdamW/pg<i>`
                groups.append({"params": params, "weight_decay": weight_decay, "lr": lr, "name": label + suffix})
                embeddings.append(depth == 0)
    return groups, embeddings


def build_optimizer(
    model: nn.Module,
    config: OptimConfig,
    total_steps: int,
    fused: bool | None = None,
    masters: dict[nn.Parameter, torch.Tensor] | None = None,
):
    """AdamW without weight decay on biases, norms and embeddings, and a per-step LambdaLR.

    The schedule multiplies each group's own lr (the peak lr, scaled down by layer decay), and the embeddings' by 0
    while they are frozen. Freezing through the lr rather than requires_grad: DDP and FSDP never see the trainable
    parameters change, AdamW's decoupled weight decay (lr * weight_decay) is 0 too, and Adam's moments warm up.
    `fused`: AdamW's fused kernel; None: wherever the parameters allow (fusable). `masters`: the tensors to update
    in place of the model's parameters (fp32 master weights of a bf16 model, objectives/precision.py).
    """
    groups, embeddings = param_groups(model, config)
    if masters is not None:
        groups = [{**group, "params": [masters[p] for p in group["params"]]} for group in groups]
    optimizer = torch.optim.AdamW(
        groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fusable(model) if fused is None else fused
    )
    frozen = config.freeze_embeddings_steps

    def schedule(step: int) -> float:
        return lr_multiplier(step, config, total_steps)

    def embedding_schedule(step: int) -> float:
        return 0.0 if step < frozen else lr_multiplier(step, config, total_steps)

    lambdas = [embedding_schedule if embedding else schedule for embedding in embeddings]  # one per group
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
    return optimizer, {"scheduler": scheduler, "interval": "step", "name": "train/lr"}  # LearningRateMonitor's tag


def fusable(model: nn.Module) -> bool:
    """Whether AdamW can run fused (one kernel per step on CUDA and CPU): plain floating-point tensors on those
    devices. Fused AdamW also skips a step on the device when its `found_inf` flag is set, which is how the NaN
    guard (objectives/base.py) keeps a non-finite step out of the weights without reading anything back."""
    return all(
        type(p) is nn.Parameter and p.is_floating_point() and p.device.type in ("cpu", "cuda")
        for p in model.parameters()
    )


def apply_config(optimizer: torch.optim.Optimizer, scheduler, model: nn.Module, config: OptimConfig) -> None:
    """Give a resumed run's optimizer and schedule the values of `config`: Lightning restores the checkpoint's (peak
    lr, weight decay, betas, eps), which a relaunch may change (allow_changes=[optim.lr]); the schedule's shape
    (warmup_steps, schedule, min_lr_ratio) comes from the new lambdas already. The parameter groups must be the
    checkpoint's: layer_decay, freeze_embeddings_steps and no_decay regroup them, so those cannot change. With the
    checkpoint's own values this sets the values it restored, bit for bit."""
    groups, _ = param_groups(model, config)
    for i, (live, new) in enumerate(zip(optimizer.param_groups, groups, strict=True)):
        peak = new.get("lr", config.lr)
        live.update(weight_decay=new["weight_decay"], betas=config.betas, eps=config.eps, initial_lr=peak)
        scheduler.base_lrs[i] = peak
        live["lr"] = peak * scheduler.lr_lambdas[i](scheduler.last_epoch)  # what LambdaLR.get_lr computes


def total_training_steps(trainer) -> int:
    """Optimizer steps of the whole run, from max_steps or from the datamodule's batches per epoch.

    Lightning's `trainer.estimated_stepping_batches` would build the train loader before a resumed run restores
    its position in the epoch, so the data order after resuming would be wrong.
    """
    if trainer.max_steps and trainer.max_steps > 0:
        return trainer.max_steps
    batches = trainer.datamodule.train_batches_per_epoch()
    if trainer.limit_train_batches is not None and trainer.limit_train_batches != 1.0:
        limit = trainer.limit_train_batches
        batches = int(limit) if isinstance(limit, int) else int(batches * limit)
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches) * max(1, trainer.max_epochs or 1))

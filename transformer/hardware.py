"""The one place that checks the requested accelerator and chooses the numeric precision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from transformer.errors import ConfigError

GPU_ACCELERATORS = ("gpu", "cuda")


def cpu_supports_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls are native there (elsewhere bf16 autocast on CPU is slow)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: Any, accelerator: str, bf16_weights: bool = False) -> str | int:
    """`auto` becomes bf16-mixed on GPUs with bf16 and on CPUs with native bf16, otherwise 32-true.

    bf16_weights (hardware.bf16_weights): a bf16 precision becomes bf16-true, bf16 weights with fp32 masters in the
    optimizer (objectives/precision.py); with `auto` on hardware without bf16 it has no effect."""
    resolved = _resolve(precision, accelerator)
    if not bf16_weights:
        return resolved
    if str(resolved).startswith("bf16"):
        return "bf16-true"
    if precision == "auto":
        return resolved
    raise ConfigError(
        f"hardware.bf16_weights=true keeps bf16 weights, but precision={precision}: use precision=auto or "
        f"bf16-mixed, or hardware.bf16_weights=false"
    )


def _resolve(precision: Any, accelerator: str) -> str | int:
    if precision != "auto":
        return precision
    if accelerator in GPU_ACCELERATORS:
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator == "auto" and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def check_accelerator(trainer: dict[str, Any]) -> None:
    """A config that asks for GPUs this machine does not have stops here, in one line, before any work."""
    if trainer.get("accelerator") not in GPU_ACCELERATORS:
        return
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        raise ConfigError(
            f"the config asks for a GPU (trainer.accelerator={trainer['accelerator']}), but torch "
            f"{torch.__version__} sees none: use hardware=cpu, or install a CUDA build of torch on a GPU machine"
        )
    devices = trainer.get("devices", 1)
    if isinstance(devices, int) and devices > available:
        raise ConfigError(
            f"trainer.devices={devices} GPUs requested, but this machine has {available}: "
            f"set trainer.devices={available} (or -1 for all)"
        )

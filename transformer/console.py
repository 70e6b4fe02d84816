"""A quiet console by default (the commands' `verbose=false`): the libraries' lines that tell a user nothing about
their run are dropped, one by one, by message; everything else, our warnings and errors included, is kept.
`verbose=true` keeps it all.

Dropped: Lightning's litlogger tip, its "GPU available: False" / "TPU available: False" lines (a CPU machine has
neither; an available accelerator is still reported), the FutureWarning of torch's `LeafSpec` that Lightning's
`_pytree` triggers twice a run, and the progress bars of HF `datasets` while a cache is built. Lightning's model
summary (its "Total FLOPs: 0" and its bf16 size warning) is not drawn at all without verbose: train() logs the
model's size in one line instead.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
DROPPED_LINES = ("💡 Tip: For seamless cloud logging", "GPU available: False", "TPU available: False")


class DropLines(logging.Filter):
    """Drops the log records whose message starts with one of `prefixes`."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


LIGHTNING_FILTER = DropLines(DROPPED_LINES)


def quiet() -> None:
    """Drop the noise above for the rest of this process (idempotent: a sweep's jobs call it again)."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).addFilter(LIGHTNING_FILTER)  # addFilter ignores a filter it already has
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"pytorch_lightning\.utilities\._pytree",
    )
    if "datasets" in sys.modules:
        from datasets.utils import disable_progress_bars

        disable_progress_bars()
    else:  # read when datasets is imported (not before it is needed: start-up stays fast)
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

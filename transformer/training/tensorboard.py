"""What TensorBoard shows beyond scalars: the model at work on a few fixed validation examples, after every
validation, and the run's hyperparameters beside its final metrics (the HPARAMS tab).

`TensorBoardViews` (callbacks/default.yaml) writes, when a TensorBoard logger is configured, at each validation:
  - images `attention/<kind>/example<i>`: the last layer's mean of heads and each head, for the first `examples`
    validation examples (encoder self-attention for classification; cross-attention for seq2seq, the decoder
    reading the source while it writes its own greedy output);
  - text `samples/validation` (seq2seq): the first `texts` outputs beside their references;
  - image `confusion_matrix` (classification).
Rank 0 draws them from the outputs every rank already gathered for the metrics, so it adds no communication.
With hardware=fsdp the attention images are left out (a forward on one rank alone would wait for the others).
`log_hparams` is called by train() once the final metrics are known.
"""

from __future__ import annotations

import html
from typing import Any

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from torch.distributed.tensor import DTensor

from transformer.attend_report import compact_figure, heatmap
from transformer.inference import maps_of_ids


def tensorboard(trainer: pl.Trainer) -> TensorBoardLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


class TensorBoardViews(pl.Callback):
    def __init__(self, examples: int = 2, texts: int = 8) -> None:
        self.examples, self.texts = examples, texts

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = tensorboard(trainer)
        pretraining = pl_module.artifacts.objective == "pretrain"  # its metrics are the view
        if logger is None or trainer.sanity_checking or not trainer.is_global_zero or pretraining:
            return
        writer, step = logger.experiment, trainer.global_step
        outputs = getattr(pl_module, "last_validation", {})
        classification = pl_module.artifacts.objective == "classification"
        if classification and outputs:
            writer.add_figure("confusion_matrix", self.confusion(outputs, pl_module), step)
        if not classification and outputs:
            writer.add_text("samples/validation", self.samples(outputs), step)
        if self.examples > 0 and not any(isinstance(p, DTensor) for p in pl_module.parameters()):
            self.attention(trainer, pl_module, writer, step, classification)

    def attention(self, trainer, pl_module, writer, step: int, classification: bool) -> None:
        datamodule = trainer.datamodule
        split = datamodule.prepared.splits["validation"]
        kind = "encoder" if classification else "cross"
        was_training = pl_module.training
        pl_module.eval()
        try:
            for i in range(min(self.examples, len(split))):
                src_ids = split[i]["src_ids"]
                maps = maps_of_ids(pl_module, pl_module.artifacts, src_ids)
                layer = maps.layers(kind).size(0) - 1
                writer.add_figure(f"attention/{kind}/example{i}", compact_figure(maps, kind, layer), step)
        finally:
            pl_module.train(was_training)

    def samples(self, outputs: dict[int, tuple]) -> str:
        """A markdown table: example, output, first reference."""
        rows = ["| example | output | reference |", "| --- | --- | --- |"]
        for index in sorted(outputs)[: self.texts]:
            hypothesis, references = outputs[index]
            cells = [str(index), hypothesis, references[0] if references else ""]
            rows.append("| " + " | ".join(html.escape(c).replace("|", "\\|") for c in cells) + " |")
        return "\n".join(rows)

    def confusion(self, outputs: dict[int, tuple], pl_module) -> Any:
        from torchmetrics.functional.classification import multiclass_confusion_matrix

        names = pl_module.artifacts.label_names or [str(c) for c in range(pl_module.num_classes)]
        predicted = torch.tensor([outputs[i][0] for i in sorted(outputs)])
        target = torch.tensor([outputs[i][1] for i in sorted(outputs)])
        matrix = multiclass_confusion_matrix(predicted, target, len(names)).float()  # rows: true, cols: predicted
        shares = matrix / matrix.sum(1, keepdim=True).clamp_min(1)
        size = max(3.0, 0.6 * len(names) + 1.5)
        fig = Figure(figsize=(size + 0.8, size), dpi=72)
        ax = fig.subplots()
        heatmap(ax, shares, [f"true {n}" for n in names], [f"pred. {n}" for n in names], "confusion (row shares)")
        for r, row in enumerate(matrix.tolist()):
            for c, count in enumerate(row):
                ax.text(c, r, f"{int(count)}", ha="center", va="center", fontsize=9, color="black")
        fig.subplots_adjust(left=0.3, bottom=0.3, right=0.97, top=0.9)
        return fig


def log_hparams(trainer: pl.Trainer, config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """The run's settings and its final metrics in TensorBoard's HPARAMS tab, so runs compare side by side."""
    logger = tensorboard(trainer)
    if logger is None or not trainer.is_global_zero:
        return
    params = {
        "task": config["task"]["name"],
        "dataset": config["dataset"]["name"],
        "seed": config["seed"],
        "precision": str(config["precision"]),
        "model": config["model"],
        "optim": config["optim"],
        "batching": config["batching"],
        "trainer": {k: v for k, v in config["trainer"].items() if isinstance(v, int | float | str | bool)},
    }
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    logger.log_hyperparams(params, metrics={f"hparams/{k}": v for k, v in numeric.items()})
    logger.experiment.flush()

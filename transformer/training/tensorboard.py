"""What TensorBoard shows, arranged for what a user looks at first.

TensorBoard's TIME SERIES tab groups the cards by the first segment of their tags, sorts the groups by name and
opens the first two. `TensorBoardLogger` (logger/tensorboard.yaml) makes those two `train` (loss, learning rate
`train/lr`, tokens/s, padding efficiency, FLOP/s; without Lightning's `epoch` card) and `val` (the metrics'
curves); the images follow under `views/`. Test metrics, logged once at the end, are written to the
sub-run `test` under their validation tag (`test/acc` -> tag `val/acc` of run `<run>/test`, as Keras writes
its train and validation runs): the test score is a point beside the validation curve instead of a group of
single-point cards. Runs are named by the run (and a sweep job by its number and overrides: `run_label`).

`TensorBoardViews` (callbacks/default.yaml) writes at each validation, when a TensorBoard logger is configured:
  - images `views/attention/example<i>` for the first `examples` validation examples, captioned with the
    sentence, its label (or reference) and the prediction (in the image, and as the image's description): the
    attention rollout to the classifier's pooled output, or the last layer's cross-attention for seq2seq
    (attend_report.captioned_figure);
  - image `views/confusion_matrix` (classification): counts, coloured and annotated by the share of the true
    class;
  - text `samples/validation` (seq2seq): the first `texts` outputs beside their references.
Rank 0 draws them from the outputs every rank already gathered for the metrics, so it adds no communication.
With hardware=fsdp the attention images are left out (a forward on one rank alone would wait for the others).

`log_hparams` (called by train() once the final metrics are known) fills the HPARAMS tab: the run's settings,
with lr, parameters, seed, batch and dataset first (HPARAMS shows the first five), and the final validation and
test metrics, read from the scalars above (no `hparams/*` cards).
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger as LightningTensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torch.distributed.tensor import DTensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams, image

from transformer.attend_report import captioned_figure
from transformer.inference import maps_of_ids

TEST_RUN = "test"  # the sub-run of the test metrics


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger without its `epoch` card, with one `train/lr` card when the parameter groups
    share their learning rate, and the test metrics in the sub-run `test` under their validation tags (see the
    module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._test_writer: SummaryWriter | None = None
        self._one_lr: bool | None = None  # whether all parameter groups share one lr (decided at the first log)

    @property
    def test_writer(self) -> SummaryWriter:
        if self._test_writer is None:
            self._test_writer = SummaryWriter(os.path.join(self.log_dir, TEST_RUN))
        return self._test_writer

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = dict(metrics)
        metrics.pop("epoch", None)  # Lightning's convenience copy of the epoch, a card before the loss
        lrs = {name: float(metrics[name]) for name in metrics if name.startswith("train/lr/")}
        if lrs and self._one_lr is None:
            self._one_lr = len(set(lrs.values())) == 1
        if lrs and self._one_lr:  # the groups' lr cards would be copies of one curve: one card
            metrics = {k: v for k, v in metrics.items() if k not in lrs} | {"train/lr": next(iter(lrs.values()))}
        tested = {name: metrics.pop(name) for name in [n for n in metrics if n.startswith("test/")]}
        if metrics:
            super().log_metrics(metrics, step)
        for name, value in tested.items():
            self.test_writer.add_scalar(validation_tag(name), float(value), step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self._test_writer is not None:
            self._test_writer.flush()


def validation_tag(test_name: str) -> str:
    """`test/acc` -> `val/acc`: the tag a test metric has in the test sub-run."""
    return "val/" + test_name.split("/", 1)[1]


def tensorboard(trainer: pl.Trainer) -> LightningTensorBoardLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, LightningTensorBoardLogger)), None)


def add_captioned_figure(writer: SummaryWriter, tag: str, fig: Figure, caption: str, step: int) -> None:
    """writer.add_figure with the caption as the image's description (TensorBoard's tag description). Written in
    the images plugin's own format (data_compat's conversion of the PNG summary), which keeps the description."""
    from tensorboard.data_compat import migrate_value
    from torch.utils.tensorboard._utils import figure_to_image

    summary = image(tag, figure_to_image(fig, close=True), dataformats="CHW")
    summary.value[0].metadata.summary_description = caption
    converted = migrate_value(summary.value[0])
    del summary.value[:]
    summary.value.append(converted)
    writer._get_file_writer().add_summary(summary, step)  # what add_image does


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
            writer.add_figure("views/confusion_matrix", self.confusion(outputs, pl_module), step)
        if not classification and outputs:
            writer.add_text("samples/validation", self.samples(outputs), step)
        if self.examples > 0 and not any(isinstance(p, DTensor) for p in pl_module.parameters()):
            self.attention(trainer, pl_module, writer, step)

    def attention(self, trainer, pl_module, writer, step: int) -> None:
        split = trainer.datamodule.prepared.splits["validation"]
        artifacts = pl_module.artifacts
        was_training = pl_module.training
        pl_module.eval()
        try:
            for i in range(min(self.examples, len(split))):
                row = split[i]
                maps = maps_of_ids(pl_module, artifacts, row["src_ids"])
                lines = self.caption(row, maps, artifacts.label_names)
                tag = f"views/attention/example{i}"
                add_captioned_figure(writer, tag, captioned_figure(maps, lines), "  \n".join(lines), step)
        finally:
            pl_module.train(was_training)

    @staticmethod
    def caption(row: dict[str, Any], maps, label_names: list[str]) -> list[str]:
        """The example's text, its label (or reference) and the model's prediction, one line each."""
        if maps.objective == "classification":
            label = label_names[row["label"]] if label_names else str(row["label"])
            probability = (maps.probabilities or {}).get(maps.prediction)
            predicted = f"{maps.prediction} ({probability:.2f})" if probability is not None else maps.prediction
            return [f"text: {row.get('text', '')}", f"label: {label}    predicted: {predicted}"]
        return [f"source: {row.get('source', '')}", f"reference: {row.get('target', '')}", f"output: {maps.prediction}"]

    def samples(self, outputs: dict[int, tuple]) -> str:
        """A markdown table: example, output, first reference."""
        rows = ["| example | output | reference |", "| --- | --- | --- |"]
        for index in sorted(outputs)[: self.texts]:
            hypothesis, references = outputs[index]
            cells = [str(index), hypothesis, references[0] if references else ""]
            rows.append("| " + " | ".join(html.escape(c).replace("|", "\\|") for c in cells) + " |")
        return "\n".join(rows)

    def confusion(self, outputs: dict[int, tuple], pl_module) -> Figure:
        """Rows: the true classes, columns: the predicted ones; each cell its count and its share of the row,
        coloured by that share; the full label names on both axes."""
        from torchmetrics.functional.classification import multiclass_confusion_matrix

        names = pl_module.artifacts.label_names or [str(c) for c in range(pl_module.num_classes)]
        predicted = torch.tensor([outputs[i][0] for i in sorted(outputs)])
        target = torch.tensor([outputs[i][1] for i in sorted(outputs)])
        matrix = multiclass_confusion_matrix(predicted, target, len(names)).float()  # rows: true, cols: predicted
        shares = matrix / matrix.sum(1, keepdim=True).clamp_min(1)
        size = max(3.6, 0.9 * len(names) + 2.2)
        fig = Figure(figsize=(size + 0.6, size), dpi=80, layout="constrained")
        ax = fig.subplots()
        ax.imshow(shares.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 3 else 0, ha="right", fontsize=10)
        ax.set_yticks(range(len(names)), names, fontsize=10)
        ax.set_xlabel("predicted", fontsize=10)
        ax.set_ylabel("true", fontsize=10)
        ax.set_title(f"{int(matrix.sum())} validation examples\ncount (share of the true class)", fontsize=10)
        for r, row in enumerate(matrix.tolist()):
            for c, count in enumerate(row):
                colour = "white" if shares[r, c] > 0.6 else "black"
                text = f"{int(count)}\n({shares[r, c]:.1%})"
                ax.text(c, r, text, ha="center", va="center", fontsize=10, color=colour)
        return fig


HEADLINE = {"1.lr": "lr", "2.parameters": "parameters", "3.seed": "seed", "4.batch": "batch", "5.dataset": "dataset"}


def log_hparams(trainer: pl.Trainer, config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """The run's settings and its final metrics in TensorBoard's HPARAMS tab, so runs compare side by side.

    HPARAMS sorts the settings by name and shows the first five: lr, parameters, seed, batch and dataset get
    names that sort first (`1.lr`, ...) and their plain names as display names. The metrics are the final
    validation (the monitored one first) and test values, read from the runs' scalars."""
    logger = tensorboard(trainer)
    if logger is None or not trainer.is_global_zero:
        return
    batching = config["batching"]
    batch = f"{batching['max_tokens']} tokens" if batching.get("max_tokens") else f"{batching['batch_size']} examples"
    settings: dict[str, Any] = {
        "1.lr": float(config["optim"]["lr"]),
        "2.parameters": float(metrics.get("parameters", 0)),
        "3.seed": int(config["seed"]),
        "4.batch": batch,
        "5.dataset": config["dataset"]["name"],
        "task": config["task"]["name"],
        "precision": str(config["precision"]),
    }
    for group in ("model", "optim", "batching", "trainer"):
        for key, value in (config.get(group) or {}).items():
            if value is not None and not isinstance(value, dict):
                settings[f"{group}/{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    monitor = config["task"].get("monitor", "val/loss")
    names = sorted(
        (k for k, v in metrics.items() if k.startswith(("val/", "test/")) and isinstance(v, int | float)),
        key=lambda k: (not k.startswith("val/"), k.split("/", 1)[1] != monitor.split("/", 1)[1], k),
    )
    experiment, start, end = hparams(settings, dict.fromkeys(names, 0.0))
    name_metrics(experiment)
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, start, end):
        writer.add_summary(summary)
    writer.flush()


def name_metrics(experiment) -> None:
    """Display names for the headline settings, and the test metrics read from the test sub-run."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    value = experiment.value[0]
    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.display_name = HEADLINE.get(info.name, info.name)
    for info in data.experiment.metric_infos:
        name = info.name.tag
        info.display_name = name
        if name.startswith("test/"):
            info.name.group, info.name.tag = TEST_RUN, validation_tag(name)
    value.metadata.plugin_data.content = data.SerializeToString()

"""The files `transformer-attend` writes for one input: PNG figures (matplotlib), a JSON file with every weight, and
one self-contained HTML page (no network access needed) to browse the maps. Also the figures TensorBoard shows
during training (training/tensorboard.py)."""

from __future__ import annotations

import html
import json
import math
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from transformer.attend import (  # noqa: E402
    KINDS,
    AttentionMaps,
    alignment,
    head_summaries,
    merge_words,
    pooled_rollout,
    sum_words,
)

TITLES = {"encoder": "encoder self-attention", "decoder": "decoder self-attention", "cross": "cross-attention"}


def axes_tokens(maps: AttentionMaps, kind: str) -> tuple[list[str], list[str]]:
    """(row tokens, column tokens) of a kind of map."""
    return {
        "encoder": (maps.source, maps.source),
        "decoder": (maps.target, maps.target_in),
        "cross": (maps.target, maps.source),
    }[kind]


def heatmap(ax, weights: torch.Tensor, rows: list[str], cols: list[str], title: str, labels: bool = True) -> None:
    # the colour scale runs from 0 to the panel's largest weight: broad heads stay readable
    top = max(float(weights.max()), 1e-6)
    ax.imshow(weights.numpy(), cmap="Blues", vmin=0.0, vmax=top, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    small = max(4, min(9, int(220 / max(len(rows), len(cols), 1))))
    if labels:
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=small)
        ax.set_yticks(range(len(rows)), rows, fontsize=small)
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def layer_figure(maps: AttentionMaps, kind: str, layer: int) -> Figure:
    """Every head of one layer, and their mean, as heat maps with the tokens on the axes."""
    weights = maps.layers(kind)[layer]  # (H, Q, K)
    rows, cols = axes_tokens(maps, kind)
    panels = weights.size(0) + 1
    ncols = min(panels, 3 if panels <= 9 else 4)
    nrows = math.ceil(panels / ncols)
    side = max(2.6, min(5.0, 0.22 * max(len(rows), len(cols)) + 1.2))
    fig, axes = plt.subplots(nrows, ncols, figsize=(side * ncols, side * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= panels:
            ax.axis("off")
            continue
        title = f"head {index}" if index < panels - 1 else "mean of heads"
        panel = weights[index] if index < panels - 1 else weights.mean(0)
        heatmap(ax, panel, rows, cols, title)
    note = "rows attend to columns; colours up to each panel's largest weight"
    fig.suptitle(f"{TITLES[kind]}, layer {layer}  ({note})", fontsize=11)
    fig.tight_layout()
    return fig


def captioned_figure(maps: AttentionMaps, caption: list[str]) -> Figure:
    """One figure for TensorBoard, readable in its card (400 pixels wide, text at 10-12 px): the `caption` lines
    on top (the sentence, its label or reference, the prediction), then what attend.py draws for the prediction,
    on words: the attention rollout to the pooled output for a classifier (a bar per input word), the last
    layer's cross-attention (mean of heads, output words down, source words across) for seq2seq."""
    lines = [wrapped for line in caption for wrapped in textwrap.wrap(line, 62, max_lines=3, placeholder=" ...")]
    words = merge_words(maps)
    classification = maps.objective == "classification"
    tokens = max(len(words.source), len(words.target))
    height = 3.0 if classification else max(3.4, min(6.5, 0.18 * tokens + 1.6))
    top = 0.2 * len(lines) + 0.15  # inches of caption
    fig = Figure(figsize=(5.0, height + top), dpi=80, layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0, 1, height / (height + top)))
    fig.text(0.02, 0.99, "\n".join(lines), ha="left", va="top", fontsize=11)
    ax = fig.subplots()
    size = max(6, min(11, int(260 / max(tokens, 1))))
    if classification:
        shares = sum_words(pooled_rollout(maps), maps.source)
        ax.bar(range(len(words.source)), shares.numpy(), color="tab:blue")
        ax.set_xticks(range(len(words.source)), words.source, rotation=60, ha="right", fontsize=size)
        ax.tick_params(axis="y", labelsize=9)
        ax.set_title("attention rollout: share of the pooled output from each word", fontsize=10)
    else:
        layer = words.cross.size(0) - 1
        heatmap(ax, words.cross[layer].mean(0), words.target, words.source, f"cross-attention, layer {layer}, mean")
        ax.tick_params(labelsize=size)
        ax.set_xlabel("source", fontsize=10)
        ax.set_ylabel("output", fontsize=10)
    return fig


def rollout_figure(tokens: list[str], shares: torch.Tensor, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(tokens) + 1.5), 3.0))
    ax.bar(range(len(tokens)), shares.numpy(), color="tab:blue")
    ax.set_xticks(range(len(tokens)), tokens, rotation=60, ha="right", fontsize=9)
    ax.set_ylabel("share of the pooled output")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def alignment_figure(maps: AttentionMaps, layer: int, soft: torch.Tensor, hard: list[int]) -> Figure:
    side = max(4.0, min(12.0, 0.3 * max(len(maps.source), len(maps.target)) + 2.0))
    fig, ax = plt.subplots(figsize=(side, side))
    heatmap(ax, soft, maps.target, maps.source, f"alignment: cross-attention of layer {layer}, mean of heads")
    ax.scatter(hard, range(len(hard)), marker="s", s=18, facecolors="none", edgecolors="tab:red", label="argmax")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    return fig


def report_data(maps: AttentionMaps, shown: AttentionMaps, alignment_layer: int | None = None) -> dict[str, Any]:
    """Everything the JSON file and the HTML page hold: tokens, maps (per kind: [layer][head][row][column]),
    per-head summaries, and the rollout (classification) or the alignment (seq2seq). `maps` are on pieces,
    `shown` the maps on the axes the user asked for (the same, or merge_words(maps))."""
    words = shown.words
    data: dict[str, Any] = {
        "objective": maps.objective,
        "prediction": maps.prediction,
        "probabilities": maps.probabilities,
        "axes": "words" if words else "pieces",
        "tokens": {"source": shown.source, "target": shown.target, "target_in": shown.target_in},
        "maps": {},
        "heads": {},
    }
    for kind in KINDS:
        weights = shown.layers(kind)
        if weights is None:
            continue
        data["maps"][kind] = rounded(weights)
        data["heads"][kind] = head_summaries(shown, kind)
    if maps.objective == "classification":
        shares = pooled_rollout(maps)
        if words:
            shares = sum_words(shares, maps.source)
        data["rollout"] = {"tokens": shown.source, "shares": rounded(shares), "pooling": maps.pooling}
    else:
        layer, soft, hard = alignment(shown, alignment_layer)
        data["alignment"] = {
            "layer": layer,
            "soft": rounded(soft),
            "hard": [[shown.target[t], shown.source[s]] for t, s in enumerate(hard)],
            "hard_index": hard,
        }
    return data


def rounded(tensor: torch.Tensor) -> Any:
    return torch.round(tensor.float(), decimals=5).tolist()


def write_report(
    maps: AttentionMaps, out_dir: str | Path, words: bool = False, alignment_layer: int | None = None
) -> list[Path]:
    """attention.json, attention.html and the PNGs of one input into out_dir; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = merge_words(maps) if words else maps
    data = report_data(maps, shown, alignment_layer)
    written = []
    for kind in KINDS:
        weights = shown.layers(kind)
        for layer in range(0 if weights is None else weights.size(0)):
            written.append(save(layer_figure(shown, kind, layer), out / f"{kind}_layer{layer}.png"))
    if "rollout" in data:
        shares = torch.tensor(data["rollout"]["shares"])
        title = f"attention rollout: what the prediction ({maps.prediction}) draws from each input {data['axes'][:-1]}"
        written.append(save(rollout_figure(shown.source, shares, title), out / "rollout.png"))
    if "alignment" in data:
        layer = data["alignment"]["layer"]
        soft = torch.tensor(data["alignment"]["soft"])
        written.append(
            save(alignment_figure(shown, layer, soft, data["alignment"]["hard_index"]), out / "alignment.png")
        )
    json_path = out / "attention.json"
    json_path.write_text(json.dumps(data) + "\n")
    html_path = out / "attention.html"
    html_path.write_text(render_html(data))
    return [json_path, html_path, *written]


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_html(data: dict[str, Any]) -> str:
    """One page, its data and script inline: pick the kind, layer and head; hover a row token to see what it
    attends to."""
    title = f"attention: {data['prediction']}"
    payload = json.dumps(data).replace("</", "<\\/")  # no "</script>" inside the script
    page = resources.files("transformer").joinpath("attention_page.html").read_text(encoding="utf-8")
    return page.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)

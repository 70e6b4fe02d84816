"""Run an export folder that writer.py wrote: `load(folder)` runs it through ONNX Runtime (or torch.export for .pt2):
ExportedClassifier gives class probabilities, ExportedSeq2Seq greedy decoding with the caches, on ids or on text.

This is what a deployment needs; it imports nothing of the writer (the graph wrappers, the exporters, the
checkpoint reading).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from transformer.data import Tokenizer
from transformer.decoding import max_lengths
from transformer.export.spec import METADATA, layer_names


class OnnxGraph:
    """An ONNX Runtime session on the CPU, called with named numpy arrays; returns named numpy arrays."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))


class TorchGraph:
    """A torch.export program (.pt2), called like OnnxGraph."""

    def __init__(self, path: Path, input_names: list[str], output_names: list[str]) -> None:
        self.module = torch.export.load(path).module()
        self.input_names, self.output_names = input_names, output_names

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            outputs = self.module(*(torch.from_numpy(feeds[name]) for name in self.input_names))
        return {name: t.numpy() for name, t in zip(self.output_names, outputs, strict=True)}


class Exported:
    """An export folder: its export.json (`meta`), graphs and tokenizers (when the folder has them)."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / METADATA).read_text())
        self.graphs = {}
        for name, g in self.meta["graphs"].items():
            path = self.folder / g["file"]
            if path.suffix == ".onnx":
                self.graphs[name] = OnnxGraph(path, threads)
            else:
                self.graphs[name] = TorchGraph(path, list(g["inputs"]), list(g["outputs"]))
        files = self.meta.get("tokenizers") or {}
        self.src_tokenizer = Tokenizer.load(self.folder / files["src"]) if "src" in files else None
        self.tgt_tokenizer = Tokenizer.load(self.folder / files["tgt"]) if "tgt" in files else None

    def encode(self, texts: list[str]) -> np.ndarray:
        """Right-padded source ids (B, S) int64 of texts, each cut to max_source_len tokens."""
        if self.src_tokenizer is None:
            raise ValueError(f"{self.folder} has no tokenizer: pass ids")
        rows = [row[: self.meta["max_source_len"]] for row in self.src_tokenizer.encode(texts)]
        src = np.full((len(rows), max([1, *map(len, rows)])), self.meta["pad_id"], dtype=np.int64)
        for i, row in enumerate(rows):
            src[i, : len(row)] = row
        return src


class ExportedClassifier(Exported):
    """A classifier's export folder: class probabilities of ids or texts."""

    def probabilities(self, src: np.ndarray) -> np.ndarray:
        """Source ids (B, S) int64, padded with pad_id -> class probabilities (B, C)."""
        return self.graphs["classifier"](src=src)["probs"]

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(label, probability) of the most likely class of each text."""
        probs = self.probabilities(self.encode(texts))
        names = self.meta.get("label_names") or [str(k) for k in range(probs.shape[1])]
        return [(names[k], float(p[k])) for k, p in zip(probs.argmax(-1), probs, strict=True)]


class ExportedSeq2Seq(Exported):
    """An encoder-decoder's export folder: greedy decoding of ids or texts, the caches fed back step by step."""

    def greedy(
        self, src: np.ndarray, max_len_a: float | None = None, max_len_b: int | None = None, min_len: int | None = None
    ) -> list[list[int]]:
        """transformer.decoding.greedy_search through the graphs: source ids (B, S) int64 -> B token lists
        (without BOS and EOS). Length settings default to export.json's decoding."""
        m, d = self.meta, self.meta["decoding"]
        max_len_a = d["max_len_a"] if max_len_a is None else max_len_a
        max_len_b = d["max_len_b"] if max_len_b is None else max_len_b
        min_len = d["min_len"] if min_len is None else min_len
        bos, eos = m["bos_id"], m["eos_id"]
        n_layers, H, Dh = m["model"]["n_decoder_layers"], m["model"]["n_heads"], m["model"]["head_dim"]
        encoded = self.graphs["encoder"](src=src)
        step = self.graphs["decoder_step"]
        # per-row inputs that stay the same at every step, and the self-attention caches that grow
        state = {k: v for k, v in encoded.items() if k != "memory"}
        if m["model"]["copy_attention"]:
            state.update(src=src, memory=encoded["memory"])
        past = {name: np.zeros((len(src), H, 0, Dh), np.float32) for name in layer_names("past", n_layers)}

        pad_mask = torch.from_numpy(encoded["memory_pad_mask"])
        budget = max_lengths(pad_mask, max_len_a, max_len_b, m["max_positions"] - 1).numpy()  # (B,) as greedy_search
        steps = int(budget.max()) + 1
        out = np.full((len(src), steps), eos, dtype=np.int64)
        active = np.arange(len(src))  # the sentence of each row of the shrinking batch
        tokens = np.full((len(src), 1), bos, dtype=np.int64)
        for t in range(steps):
            result = step(tokens=tokens, **state, **past)
            logits = result["logits"]  # (n, V)
            if t < min_len:
                logits[:, eos] = -np.inf
            next_tokens = np.where(budget[active] <= t, eos, logits.argmax(-1))  # out of budget: force EOS
            out[active, t] = next_tokens
            past = {name: result[name.replace("past", "present", 1)] for name in past}
            keep = next_tokens != eos
            if not keep.all():  # finished sentences leave the batch
                if not keep.any():
                    break
                active, next_tokens = active[keep], next_tokens[keep]
                state = {k: v[keep] for k, v in state.items()}
                past = {k: v[keep] for k, v in past.items()}
            tokens = next_tokens[:, None]
        return [row[: row.index(eos)] if eos in row else row for row in out.tolist()]

    def generate(self, texts: list[str]) -> list[str]:
        """Greedy outputs of texts, detokenized; an empty text gives an empty output."""
        todo = [i for i, text in enumerate(texts) if text.strip()]
        outputs = [""] * len(texts)
        if todo:
            hyps = self.greedy(self.encode([texts[i] for i in todo]))
            for i, hyp in zip(todo, hyps, strict=True):
                outputs[i] = self.tgt_tokenizer.decode(hyp)
        return outputs


def load(folder: str | Path, threads: int | None = None) -> ExportedClassifier | ExportedSeq2Seq:
    """The runtime of an export folder; threads: ONNX Runtime's intra-op threads (None: its default)."""
    meta = json.loads((Path(folder) / METADATA).read_text())
    runtime = ExportedClassifier if meta["objective"] == "classification" else ExportedSeq2Seq
    return runtime(folder, threads)

"""Run an export folder that writer.py wrote: `load(folder)` runs it through ONNX Runtime (or torch.export for .pt2):
ExportedClassifier gives class probabilities, ExportedSeq2Seq greedy decoding with the caches, on ids or on text.

`load` first verifies the folder (`read_export`): export.json's digest, version and schema, and every file's size
and SHA-256 as export.json records them. A damaged folder is refused with one line that names the file and what is
wrong, never run into NaN probabilities or shifted tokens.

This is what a deployment needs; it imports nothing of the writer (the graph wrappers, the exporters, the
checkpoint reading).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transformer.data import (
    Tokenizer,
    pretrained_tokenizer,  # noqa: F401  (registers the pretrained kinds)
)
from transformer.decoding import max_lengths
from transformer.export.spec import (
    DTYPES,
    FORMATS,
    GRAPHS,
    METADATA,
    VERSION,
    ExportError,
    digest,
    file_sha256,
    layer_names,
)

# ----------------------------------------------------------------------------------------------------------------
# Reading and verifying a folder


class Invalid(Exception):
    """One thing wrong with an export folder; read_export turns it into an ExportError naming the folder and the fix."""


def field(values: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str = "") -> Any:
    """values[key], of one of `kinds` (bool is not an int here). `where`: the path of `values` in export.json."""
    if key not in values:
        raise Invalid(f"{METADATA}: {where}{key} is missing")
    value = values[key]
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
        raise Invalid(f"{METADATA}: {where}{key} is {value!r}, expected {names}")
    return value


def integer(values: dict[str, Any], key: str, low: int, high: int | None = None, where: str = "") -> int:
    value = field(values, key, int, where)
    if value < low or (high is not None and value > high):
        expected = f"from {low} to {high}" if high is not None else f">= {low}"
        raise Invalid(f"{METADATA}: {where}{key} is {value}, expected an integer {expected}")
    return value


def number(values: dict[str, Any], key: str, low: float = -math.inf, where: str = "") -> float:
    value = field(values, key, (int, float), where)
    if not math.isfinite(value) or value < low:
        raise Invalid(f"{METADATA}: {where}{key} is {value}, expected a finite number >= {low}")
    return value


def choice(values: dict[str, Any], key: str, choices: Any) -> str:
    value = field(values, key, str)
    if value not in choices:
        raise Invalid(f"{METADATA}: {key} is {value!r}, expected one of {', '.join(choices)}")
    return value


def plain_name(name: str, where: str) -> str:
    """A file name inside the folder: no path (`../x`, `/x`, `a/b`) leads a runtime to read another file."""
    if not name or name in (".", "..", METADATA) or Path(name).name != name or "\\" in name:
        raise Invalid(f"{METADATA}: {where} is {name!r}, expected the name of a file in the folder")
    return name


def check_schema(meta: dict[str, Any]) -> None:
    """Required keys, their types and sane values: what the runtime reads, and nothing it could misread."""
    fmt = choice(meta, "format", FORMATS)
    objective = choice(meta, "objective", GRAPHS)
    field(meta, "torch_version", str)
    if fmt == "onnx":
        integer(meta, "opset", 1)
    model = field(meta, "model", dict)
    for key in ("d_model", "n_heads", "head_dim", "vocab_size", "tgt_vocab_size", "num_classes"):
        integer(model, key, 1, where="model.")
    for key in ("n_encoder_layers", "n_decoder_layers"):
        integer(model, key, 0, where="model.")
    field(model, "copy_attention", bool, "model.")
    max_positions = integer(meta, "max_positions", 1)
    integer(meta, "max_source_len", 1, max_positions)
    vocab = model["vocab_size"] if objective == "classification" else min(model["vocab_size"], model["tgt_vocab_size"])
    for key in ("pad_id", "unk_id", "bos_id", "eos_id"):
        integer(meta, key, 0, vocab - 1)
    decoding = field(meta, "decoding", dict)
    integer(decoding, "beam_size", 1, where="decoding.")
    number(decoding, "max_len_a", 0, "decoding.")
    integer(decoding, "max_len_b", 0, where="decoding.")
    integer(decoding, "min_len", 0, where="decoding.")
    number(decoding, "length_penalty", where="decoding.")
    if objective == "classification":
        names = field(meta, "label_names", list)
        if len(names) != model["num_classes"] or not all(isinstance(name, str) for name in names):
            raise Invalid(
                f"{METADATA}: label_names is {names!r}, expected model.num_classes={model['num_classes']} names"
            )
    elif meta.get("label_names") not in (None, []):
        raise Invalid(f"{METADATA}: label_names is {meta['label_names']!r}, expected null for a seq2seq export")
    files = field(meta, "files", dict)
    for name in files:
        plain_name(name, f"a key of files ({name!r})")
        entry = field(files, name, dict, "files.")
        integer(entry, "bytes", 0, where=f"files.{name}.")
        sha = field(entry, "sha256", str, f"files.{name}.")
        if len(sha) != 64 or sha.strip("0123456789abcdef"):
            raise Invalid(f"{METADATA}: files.{name}.sha256 is {sha!r}, expected 64 hexadecimal digits")

    def listed(name: str, where: str) -> None:
        if plain_name(name, where) not in files:
            raise Invalid(f"{METADATA}: {where} {name} has no entry in files (no size or SHA-256 to verify it by)")

    graphs = field(meta, "graphs", dict)
    if sorted(graphs) != sorted(GRAPHS[objective]):
        raise Invalid(f"{METADATA}: graphs are {sorted(graphs)}, expected {list(GRAPHS[objective])} for {objective}")
    for name in graphs:
        graph = field(graphs, name, dict, "graphs.")
        file = field(graph, "file", str, f"graphs.{name}.")
        if not file.endswith(FORMATS[fmt]):
            raise Invalid(f"{METADATA}: graphs.{name}.file is {file!r}, expected a {FORMATS[fmt]} file ({fmt})")
        listed(file, f"graphs.{name}.file")
        for side in ("inputs", "outputs"):
            for tensor in field(graph, side, dict, f"graphs.{name}."):
                where = f"graphs.{name}.{side}.{tensor}"
                spec = field(graph[side], tensor, dict, f"graphs.{name}.{side}.")
                field(spec, "shape", list, f"{where}.")
                if field(spec, "dtype", str, f"{where}.") not in DTYPES:
                    raise Invalid(
                        f"{METADATA}: {where}.dtype is {spec['dtype']!r}, expected one of {', '.join(DTYPES)}"
                    )
    tokenizers = field(meta, "tokenizers", (dict, type(None)))
    for side in ("src", "tgt") if tokenizers is not None else ():
        listed(field(tokenizers, side, str, "tokenizers."), f"tokenizers.{side}")
    field(meta, "check", (dict, type(None)))


def verify_files(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Each file is there, of the size and SHA-256 that export.json records (the size first: it costs no read)."""
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            raise Invalid(f"{name} is missing")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise Invalid(f"{name} has {size} bytes, {METADATA} records {entry['bytes']} (truncated or replaced)")
        if file_sha256(path) != entry["sha256"]:
            raise Invalid(f"{name} differs from the SHA-256 that {METADATA} records (damaged or replaced)")


def reexport_hint(folder: Path, meta: Any) -> str:
    checkpoint = meta.get("checkpoint") if isinstance(meta, dict) else None
    return f"scripts/export.py ckpt={checkpoint if isinstance(checkpoint, str) else '<checkpoint>'} output_dir={folder}"


def read_export(folder: str | Path) -> dict[str, Any]:
    """export.json of an export folder, verified: its digest (no value edited since the export), its version, its
    schema, and the size and SHA-256 of every file it lists. Raises ExportError, one line naming what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(
            f"export folder {folder} does not exist: pass the output_dir that scripts/export.py wrote (the folder with "
            f"{METADATA})"
        )
    if not (folder / METADATA).is_file():
        raise ExportError(
            f"export {folder} has no {METADATA} (damaged, or not an export): "
            f"re-export it ({reexport_hint(folder, None)})"
        )
    meta = None
    try:
        try:
            meta = json.loads((folder / METADATA).read_bytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise Invalid(f"{METADATA} is not valid JSON ({error})") from error
        if not isinstance(meta, dict):
            raise Invalid(f"{METADATA} holds a {type(meta).__name__}, not an object")
        if "digest" in meta and meta["digest"] != digest(meta):
            raise Invalid(f"{METADATA} was changed after the export (its digest does not match its values)")
        version = meta.get("version", 1)
        if version != VERSION:
            age = "an older" if not isinstance(version, int) or version < VERSION else "a newer"
            raise ExportError(
                f"export {folder} was written by {age} version of transformer-export ({METADATA} version {version}, "
                f"this runtime reads version {VERSION}): re-export it ({reexport_hint(folder, meta)})"
            )
        if "digest" not in meta:
            raise Invalid(f"{METADATA}: digest is missing")
        check_schema(meta)
        verify_files(folder, meta["files"])
    except Invalid as problem:
        raise ExportError(
            f"export {folder} is damaged: {problem}; re-export it ({reexport_hint(folder, meta)})"
        ) from None
    return meta


# ----------------------------------------------------------------------------------------------------------------
# Running a folder


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
    """An export folder: its export.json (`meta`), graphs and tokenizers (when the folder has them).

    `meta`: export.json as read_export verified it (load passes it); None verifies the folder here."""

    def __init__(self, folder: str | Path, threads: int | None = None, meta: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.meta = read_export(self.folder) if meta is None else meta
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
            raise ExportError(f"{self.folder} has no tokenizer: pass ids")
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
        names = self.meta["label_names"]
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
    """The runtime of an export folder, once verified (read_export: ExportError, one line, for a damaged folder);
    threads: ONNX Runtime's intra-op threads (None: its default)."""
    meta = read_export(folder)
    runtime = ExportedClassifier if meta["objective"] == "classification" else ExportedSeq2Seq
    return runtime(folder, threads, meta)

"""Write an export folder (transformer-export): the graphs of a checkpoint, its tokenizers and export.json, and
check the folder against PyTorch.

The wrappers below only rearrange inputs and outputs around the model's own modules, so the graphs compute what
greedy_search does (transformer/export/__init__.py lists their inputs and outputs).

A folder is written atomically (`replacing`): into a temporary folder beside the target, sealed (export.json
records every file's size and SHA-256, the check's results and its own digest), verified as the runtime will
verify it, then renamed into place. A re-export replaces the old folder only then, in one step.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import errno
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.export import Dim

from transformer.attention import AttentionCache
from transformer.data import SentencePieceTokenizer
from transformer.decoding import DecodingConfig, greedy_search
from transformer.errors import UserError
from transformer.export.runtime import ExportedClassifier, load, read_export
from transformer.export.spec import FORMATS, METADATA, VERSION, ExportError, Spec, digest, file_sha256, layer_names
from transformer.model import EncoderClassifier, EncoderDecoder
from transformer.schema import ExportConfig, typed

if TYPE_CHECKING:
    from transformer.checkpoint import Artifacts

MIN_OPSET = 18  # the dynamo exporter writes 18+; converting down fails (LayerNormalization, Split)
# the model sizes a runtime reads (cache shapes, vocabulary)
MODEL_KEYS = ("d_model", "n_heads", "head_dim", "n_encoder_layers", "n_decoder_layers", "vocab_size", "tgt_vocab_size",
              "num_classes", "copy_attention")  # fmt: skip
CHECK_ATOL = 1e-4  # fp32 class probabilities: exported graph vs PyTorch


# ----------------------------------------------------------------------------------------------------------------
# Graph wrappers: named, flat tensor inputs and outputs around the model's modules


class ClassifierGraph(nn.Module):
    """src (B, S) -> class probabilities (B, C)."""

    def __init__(self, model: EncoderClassifier) -> None:
        super().__init__()
        self.model = model
        self.inputs = {"src": Spec(("batch", "src_len"), "int64")}
        self.outputs = {"probs": Spec(("batch", model.config.num_classes))}

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        (src,) = inputs
        return (self.model(src).float().softmax(-1),)  # (B, C)


class EncoderGraph(nn.Module):
    """src (B, S) -> memory, its pad mask and every decoder layer's cross-attention keys and values."""

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.cross_attns = nn.ModuleList(layer.cross_attn for layer in model.decoder.layers)
        c = model.config
        cross = Spec(("batch", c.n_heads, "src_len", c.head_dim))
        self.inputs = {"src": Spec(("batch", "src_len"), "int64")}
        self.outputs = {
            "memory": Spec(("batch", "src_len", c.d_model)),
            "memory_pad_mask": Spec(("batch", "src_len"), "bool"),
            **{name: cross for name in layer_names("cross", c.n_decoder_layers)},
        }

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        (src,) = inputs
        memory, pad_mask = self.encoder(src)  # (B, S, D), (B, S): EncoderDecoder.encode
        cross = []
        for attention in self.cross_attns:
            # a cross-attention fills its static cache from memory on its first call, as greedy_search's first
            # step does; the attention output for this stand-in query is unused (and pruned from the graph)
            cache = AttentionCache()
            attention(memory[:, :1], memory, key_padding_mask=pad_mask, cache=cache)
            cross += [cache.k, cache.v]  # (B, H, S, Dh) each
        return (memory, pad_mask, *cross)


class DecoderStepGraph(nn.Module):
    """One step of incremental decoding: the newest token and the caches -> next-token logits and the caches
    grown by one position."""

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.model = without_encoder(model)
        c = model.config
        self.n_layers = c.n_decoder_layers
        self.copies = model.copy is not None
        cross = Spec(("batch", c.n_heads, "src_len", c.head_dim))
        past = Spec(("batch", c.n_heads, "past_len", c.head_dim))
        present = Spec(("batch", c.n_heads, "past_len + 1", c.head_dim))
        copy_inputs = {"src": Spec(("batch", "src_len"), "int64"), "memory": Spec(("batch", "src_len", c.d_model))}
        self.inputs = {
            "tokens": Spec(("batch", 1), "int64"),
            "memory_pad_mask": Spec(("batch", "src_len"), "bool"),
            **(copy_inputs if self.copies else {}),
            **{name: cross for name in layer_names("cross", self.n_layers)},
            **{name: past for name in layer_names("past", self.n_layers)},
        }
        self.outputs = {
            "logits": Spec(("batch", c.tgt_vocab_size)),
            **{name: present for name in layer_names("present", self.n_layers)},
        }

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        x = dict(zip(self.inputs, inputs, strict=True))
        caches = []  # (self-attention, cross-attention) per layer; P = 0 works like a fresh cache
        for i in range(self.n_layers):
            own = AttentionCache(x[f"past_key_{i}"], x[f"past_value_{i}"])
            cross = AttentionCache(x[f"cross_key_{i}"], x[f"cross_value_{i}"], static=True)
            caches.append((own, cross))
        # memory is read by copy attention only: the static caches hold the cross-attention keys and values
        memory = x["memory"] if self.copies else torch.empty(0)
        logits = self.model.decode(x["tokens"], memory, x["memory_pad_mask"], caches, x.get("src"))[:, -1]  # (B, V)
        present = [t for own, _ in caches for t in (own.k, own.v)]  # (B, H, P+1, Dh) each
        return (logits.float(), *present)


def without_encoder(model: EncoderDecoder) -> EncoderDecoder:
    """The model's decoding half: a shallow copy sharing its decoder, output projection and copy attention, minus
    the encoder, so that the decoder step's graph (torch.export keeps every parameter) carries no encoder weights."""
    half = copy.copy(model)  # the same config and submodules; its own module table
    half._modules = {name: module for name, module in model._modules.items() if name != "encoder"}
    return half


def graphs(model: nn.Module) -> dict[str, nn.Module]:
    """The graphs that serve `model`, by name, in eval mode."""
    if isinstance(model, EncoderClassifier):
        wrappers = {"classifier": ClassifierGraph(model)}
    elif isinstance(model, EncoderDecoder):
        wrappers = {"encoder": EncoderGraph(model), "decoder_step": DecoderStepGraph(model)}
    else:
        raise UserError(f"cannot export a {type(model).__name__}: export classifiers and encoder-decoders")
    return {name: wrapper.eval() for name, wrapper in wrappers.items()}


# ----------------------------------------------------------------------------------------------------------------
# Writing the graphs


def example_inputs(wrapper: nn.Module, sizes: dict[str, int]) -> tuple[Tensor, ...]:
    """Tensors of the wrapper's input specs, dynamic axes at `sizes` (not 0 or 1: torch.export would fix them)."""
    examples = []
    for spec in wrapper.inputs.values():
        shape = [sizes[d] if isinstance(d, str) else d for d in spec.shape]
        if spec.dtype == "int64":
            examples.append(torch.ones(shape, dtype=torch.long))  # id 1 (unk): a valid token, not padding
        elif spec.dtype == "bool":
            examples.append(torch.zeros(shape, dtype=torch.bool))
        else:
            examples.append(torch.randn(shape))
    return tuple(examples)


def dynamic_shapes(wrapper: nn.Module, dims: dict[str, Dim]) -> tuple:
    """torch.export's dynamic_shapes for forward(*inputs): one {axis: Dim} per input."""
    specs = wrapper.inputs.values()
    return (tuple({i: dims[d] for i, d in enumerate(spec.shape) if isinstance(d, str)} for spec in specs),)


@contextlib.contextmanager
def quiet_exporter():
    """Hide the exporters' notes that need no action: ONNX's log lines about optional packages (torchvision) and
    its graph optimizer's reports (onnxscript, onnx_ir: Hydra's jobs log INFO to stdout, where the file list goes),
    its note that it names an axis once (it names them all), and torch's own deprecation warning of LeafSpec."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="# The axis name: ")
            warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def write_graph(wrapper: nn.Module, path: Path, fmt: str, opset: int, max_positions: int) -> list[Path]:
    """Export one wrapper to path (.onnx or .pt2). Returns the files written."""
    dims = {
        "batch": Dim("batch"),
        "src_len": Dim("src_len", max=max_positions),
        "past_len": Dim("past_len", min=0, max=max_positions - 1),  # the step's position; 0 at the first step
    }
    sizes = {"batch": 2, "src_len": min(5, max_positions), "past_len": min(3, max_positions - 1)}
    args = example_inputs(wrapper, sizes)
    shapes = dynamic_shapes(wrapper, dims)
    if fmt == "torch_export":
        with quiet_exporter():
            torch.export.save(torch.export.export(wrapper, args, dynamic_shapes=shapes), path)
        return [path]
    # protobuf caps a file at 2 GB: weights beyond 1 GB go to <name>.onnx.data beside the graph
    external = sum(p.numel() * p.element_size() for p in wrapper.parameters()) > 2**30
    with quiet_exporter():
        torch.onnx.export(
            wrapper,
            args,
            path,
            input_names=list(wrapper.inputs),
            output_names=list(wrapper.outputs),
            opset_version=opset,
            dynamic_shapes=shapes,
            external_data=external,
            verbose=False,
        )
    data = path.with_name(path.name + ".data")
    return [path, data] if data.is_file() else [path]


def export_model(
    model: nn.Module,
    out_dir: str | Path,
    fmt: str = "onnx",
    opset: int = 18,
    decoding: DecodingConfig | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[Path]:
    """Write the graphs of `model` (an EncoderClassifier or EncoderDecoder) and export.json into out_dir, a new folder
    or an earlier export, which it replaces once the new one is complete and verified (`replacing`).

    `metadata` adds to export.json (the checkpoint, tokenizers, labels: export() passes them). Returns the files."""
    check_settings(fmt, opset)
    with replacing(out_dir) as folder:
        names = write_export(model, folder, fmt, opset, decoding, metadata)
    return [Path(out_dir) / name for name in names]


def write_export(
    model: nn.Module,
    folder: Path,
    fmt: str,
    opset: int,
    decoding: DecodingConfig | None = None,
    metadata: dict[str, Any] | None = None,
    checked: bool = False,
) -> list[str]:
    """The graphs of `model` and export.json, sealed over every file in `folder` (the tokenizers written before
    included). checked: run the graphs against `model` first (check) and record what it measured. Returns the
    folder's file names."""
    model = model.eval()
    c = model.config
    described = {}
    for name, wrapper in graphs(model).items():
        path = folder / f"{name}{FORMATS[fmt]}"
        write_graph(wrapper, path, fmt, opset, c.max_positions)
        described[name] = {
            "file": path.name,
            "inputs": {k: spec.to_dict() for k, spec in wrapper.inputs.items()},
            "outputs": {k: spec.to_dict() for k, spec in wrapper.outputs.items()},
        }
    d = decoding or DecodingConfig()
    classifier = isinstance(model, EncoderClassifier)
    meta = {
        "version": VERSION,
        "format": fmt,
        "opset": opset if fmt == "onnx" else None,
        "torch_version": torch.__version__,
        "objective": "classification" if classifier else "seq2seq",
        "pad_id": c.pad_id,
        "unk_id": SentencePieceTokenizer.unk_id,
        "bos_id": c.start_id,  # the decoder's first input
        "eos_id": c.eos_id,
        "max_positions": c.max_positions,
        "max_source_len": c.max_length,
        "model": {key: getattr(c, key) for key in MODEL_KEYS},
        "decoding": {
            "beam_size": d.beam_size,
            "max_len_a": d.max_len_a,
            "max_len_b": d.max_len_b,
            "min_len": d.min_len,
            "length_penalty": d.length_penalty,
        },
        "graphs": described,
        "tokenizers": None,
        **(metadata or {}),
    }
    # a classifier's names by class id (a checkpoint without names: the ids themselves); a seq2seq model has none
    meta["label_names"] = (meta.get("label_names") or [str(k) for k in range(c.num_classes)]) if classifier else None
    meta["check"] = None
    seal(folder, meta)
    if checked:
        meta["check"] = check(model, folder)
        seal(folder, meta)
    return sorted(path.name for path in folder.iterdir())


def seal(folder: Path, meta: dict[str, Any]) -> None:
    """Write export.json with the size and SHA-256 of every other file in folder and, last, its own digest."""
    meta["files"] = {
        path.name: {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(folder.iterdir())
        if path.name != METADATA
    }
    meta.pop("digest", None)
    meta["digest"] = digest(meta)
    (folder / METADATA).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")


def write_tokenizers(artifacts: Artifacts, out: Path) -> dict[str, str]:
    """The checkpoint's SentencePiece model(s) as .model files in out. Returns their names, by side."""
    if artifacts.shared_tokenizer:
        artifacts.src_tokenizer.save(out / "tokenizer.model")
        return {"src": "tokenizer.model", "tgt": "tokenizer.model"}
    artifacts.src_tokenizer.save(out / "src_tokenizer.model")
    artifacts.tgt_tokenizer.save(out / "tgt_tokenizer.model")
    return {"src": "src_tokenizer.model", "tgt": "tgt_tokenizer.model"}


def export(cfg: DictConfig) -> list[Path]:
    """transformer-export: a checkpoint's graphs, tokenizers and export.json (ExportConfig), written atomically and
    checked against PyTorch (check=true) before they take the place of an earlier export. Returns the files."""
    from transformer.checkpoint import run_directory
    from transformer.inference import open_fine_tuned  # Lightning and the task modules: only when exporting

    config: ExportConfig = typed(cfg)
    check_settings(config.format, config.opset)
    if config.output_dir:  # refused before the checkpoint is read (replacing checks again)
        check_output_dir(Path(config.output_dir).resolve())
    path, artifacts, module = open_fine_tuned(config.ckpt)
    out = Path(config.output_dir) if config.output_dir else run_directory(path) / f"export_{config.format}"
    if config.format == HF_FORMAT:
        return export_pretrained(module.model, artifacts, out, config.check)
    metadata = {
        "checkpoint": str(path.resolve()),
        "task": artifacts.task,
        "label_names": artifacts.label_names,
        "max_source_len": artifacts.max_source_len,
    }
    decoding = getattr(module, "decoding", None)
    with replacing(out) as folder:
        metadata["tokenizers"] = write_tokenizers(artifacts, folder)
        names = write_export(module.model, folder, config.format, config.opset, decoding, metadata, config.check)
    print(f"wrote {out}; {describe_check(json.loads((out / METADATA).read_text())['check'])}", file=sys.stderr)
    return [out / name for name in names]


HF_FORMAT = "hf"


def export_pretrained(model: nn.Module, artifacts, out: Path, check: bool) -> list[Path]:
    """format=hf: a save_pretrained folder (transformer/hf/), checked (check=true) by loading it with transformers
    and comparing its logits with ours on a sample."""
    from transformer.hf.pretrained import write_pretrained

    model = model.float().eval()
    state = {k: v for k, v in model.state_dict().items()}
    with replacing(out, verify=lambda folder: None) as folder:  # check_pretrained verifies (check=true)
        family = write_pretrained(
            folder, model.config, state, artifacts.objective, artifacts.src_tokenizer, artifacts.tgt_tokenizer,
            artifacts.label_names,
        )  # fmt: skip
        error = check_pretrained(model, folder, family.objective) if check else None
    measured = "not checked (check=false)" if error is None else f"transformers' logits within {error:.1e} of ours"
    print(f"wrote {out} ({family.architecture}); {measured}", file=sys.stderr)
    return sorted(out.iterdir())


@torch.no_grad()
def check_pretrained(model: nn.Module, folder: Path, objective: str) -> float:
    """Load `folder` with transformers' Auto classes and compare its logits with the model's on check_sample."""
    if importlib.util.find_spec("transformers") is None:
        raise UserError("format=hf check=true loads the export with transformers: install it, or pass check=false")
    import transformers

    c = model.config
    src = torch.from_numpy(check_sample(c.vocab_size, c.max_length, c.pad_id))
    mask = src.ne(c.pad_id).long()
    if objective == "classification":
        theirs = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
        expected, got = theirs(input_ids=src, attention_mask=mask).logits, model(src)
    else:
        theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
        tgt_in = torch.cat([torch.full_like(src[:, :1], c.start_id), src[:, :-1].clamp_min(0)], dim=1)
        tgt_in = tgt_in.masked_fill(src.eq(c.pad_id), c.pad_id)  # right-padded like a batch of targets
        keep = src.ne(c.pad_id)
        expected = theirs(input_ids=src, attention_mask=mask, decoder_input_ids=tgt_in).logits[keep]
        got = model(src, tgt_in)[keep]
    error = float((expected - got).abs().max())
    if not error <= CHECK_ATOL:
        raise ExportMismatch(f"{folder}: transformers' logits differ from ours by {error:.2e} > {CHECK_ATOL}")
    return error


def describe_check(measured: dict[str, Any] | None) -> str:
    """One line for what check() measured (export.json's `check`)."""
    if measured is None:
        return "not checked against PyTorch (check=false)"
    rows = f"check against PyTorch on {measured['rows']} sample rows"
    if "max_abs_error" in measured:
        return f"{rows}: class probabilities within {measured['max_abs_error']:.1e} (tolerance {measured['atol']:.0e})"
    return f"{rows}: greedy decoding identical, token for token ({measured['tokens']} tokens)"


def check_settings(fmt: str, opset: int) -> None:
    """A known format, an opset the exporter writes, and for ONNX the packages of the `export` extra."""
    if fmt == HF_FORMAT:
        missing = [name for name in ("safetensors", "tokenizers") if importlib.util.find_spec(name) is None]
        if missing:
            raise UserError(f"format=hf needs {', '.join(missing)}: pip install 'transformer[hf]'")
        return
    if fmt not in FORMATS:
        raise UserError(
            f"format={fmt!r} is not one of {', '.join(FORMATS)}: pass format=onnx (ONNX Runtime) or "
            f"format=torch_export (.pt2 files for torch.export.load), or format={HF_FORMAT} (a folder for transformers)"
        )
    if fmt != "onnx":
        return
    if opset < MIN_OPSET:
        raise UserError(f"opset={opset} is too old for torch.onnx's exporter: pass opset={MIN_OPSET} or newer")
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"format=onnx needs {', '.join(missing)}: pip install 'transformer[export]'")


# ----------------------------------------------------------------------------------------------------------------
# Writing a folder atomically: a temporary folder beside the target, verified, then renamed into place

RENAME_EXCHANGE = 2  # renameat2's flag (linux/fs.h): swap two paths in one step
AT_FDCWD = -100  # renameat2's "relative to the working directory"


@contextlib.contextmanager
def replacing(out_dir: str | Path, verify=read_export) -> Iterator[Path]:
    """A new, empty temporary folder beside out_dir (`.<name>.tmp-<pid>`) to write an export into. When the block
    ends, the folder is verified (read_export: the digest, schema and hashes a runtime will check), flushed to disk
    and put in out_dir's place in one step, so out_dir always holds the old complete export or the new one. On an
    error out_dir stays as it was and the temporary folder is removed; one left by a killed export is removed by the
    next export to the same place."""
    out = Path(out_dir).resolve()
    check_output_dir(out)
    remove_leftovers(out)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as error:
        raise ExportError(
            f"cannot write output_dir {out} ({error.strerror}): pass an output_dir in a folder you can write"
        ) from error
    try:
        yield staging
        try:
            verify(staging)  # what a runtime will verify; the writer's own bug if it fails
        except ExportError as error:
            raise ExportMismatch(f"the new export does not verify: {error}") from error
        sync(staging)
        swap(staging, out)
        sync(out.parent)
    finally:
        discard(staging)  # the old export after the swap; the incomplete new one after an error


def check_output_dir(out: Path) -> None:
    """out is new, an empty folder, or an earlier export (it has export.json): the export replaces it as a whole.
    Anything else (a file, a folder of other files) is refused before anything is written."""
    existing = next(path for path in (out, *out.parents) if path.exists())
    if existing == out.parent == out:
        raise ExportError(f"output_dir {out} is the file system's root: pass a folder below it")
    if not existing.is_dir():
        where = "is a file" if existing == out else f"is inside {existing}, which is a file"
        raise ExportError(f"output_dir {out} {where}: pass a folder (a new one, or an earlier export to replace)")
    earlier = (out / METADATA).is_file() or (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    if existing == out and any(out.iterdir()) and not earlier:
        raise ExportError(
            f"output_dir {out} is not an export (it holds other files and no {METADATA}), and an export replaces its "
            f"folder as a whole: pass a new or empty folder, or an earlier export"
        )


def remove_leftovers(out: Path) -> None:
    """The temporary folders of earlier exports to `out` whose process has ended (killed mid-export)."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.tmp-(\d+)(-old)?")
    for path in out.parent.iterdir() if out.parent.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not running(int(match[1])):
            discard(path)


def running(pid: int) -> bool:
    """Whether another process with this id runs on this machine (our own id: a folder we no longer write)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def discard(folder: Path) -> None:
    """Remove a temporary folder; what a failure leaves, the next export removes."""
    shutil.rmtree(folder, ignore_errors=True)


def sync(folder: Path) -> None:
    """Flush a folder's files and its entries to disk, so that a power loss after the rename cannot leave it partial."""
    for path in [*(p for p in folder.iterdir() if p.is_file()), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def swap(staging: Path, out: Path) -> None:
    """Put the new export (staging) at out. An old one there is exchanged with it in one step where the system can
    (Linux renameat2), so out is never absent; elsewhere two renames leave out absent for that moment, with the old
    export kept beside it. Either way the old export ends up at staging's path, for discard."""
    if not out.exists():
        os.rename(staging, out)
        return
    if exchange(staging, out):
        return
    old = staging.with_name(f"{staging.name}-old")
    os.rename(out, old)
    os.rename(staging, out)
    os.rename(old, staging)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE, glibc 2.28+). False where the system or the
    file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


# ----------------------------------------------------------------------------------------------------------------
# Checking an export against PyTorch


class ExportMismatch(RuntimeError):
    """The exported graphs disagree with the PyTorch model (an exporter bug, not a user error)."""


def check_sample(vocab_size: int, max_len: int, pad_id: int = SentencePieceTokenizer.pad_id) -> np.ndarray:
    """Four right-padded rows of random non-special ids (4, S) of different lengths, for export checks."""
    rng = np.random.default_rng(0)
    lengths = [min(n, max_len) for n in (12, 7, 3, 1)]
    src = np.full((len(lengths), max(lengths)), pad_id, dtype=np.int64)
    for i, n in enumerate(lengths):
        src[i, :n] = rng.integers(4, vocab_size, n)
    return src


def check(model: nn.Module, folder: str | Path, src: np.ndarray | None = None) -> dict[str, Any]:
    """Run the export in `folder` against `model` on src (default: check_sample): class probabilities within
    CHECK_ATOL, or greedy decoding token for token. Returns what it measured (export.json's `check`); raises
    ExportMismatch."""
    runtime = load(folder)
    c = model.config
    src = check_sample(c.vocab_size, runtime.meta["max_source_len"], c.pad_id) if src is None else src
    if isinstance(runtime, ExportedClassifier):
        with torch.inference_mode():
            expected = model(torch.from_numpy(src)).float().softmax(-1).numpy()
        error = float(np.abs(runtime.probabilities(src) - expected).max())
        if not error <= CHECK_ATOL:
            raise ExportMismatch(f"{folder}: class probabilities differ from PyTorch's by {error:.2e} > {CHECK_ATOL}")
        return {"against": "pytorch", "rows": len(src), "max_abs_error": error, "atol": CHECK_ATOL}
    d = runtime.meta["decoding"]
    m = runtime.meta
    expected = greedy_search(model, torch.from_numpy(src), m["bos_id"], m["eos_id"], d["max_len_a"], d["max_len_b"],
                             min_len=d["min_len"])  # fmt: skip
    got = runtime.greedy(src)
    if got != expected:
        row = next(i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e)
        raise ExportMismatch(f"{folder}: greedy decoding of row {row} gives {got[row]}, PyTorch {expected[row]}")
    return {"against": "pytorch", "rows": len(src), "tokens": sum(map(len, expected)), "identical": True}

"""Export a trained checkpoint as ONNX or torch.export graphs (transformer-export), and run an export folder.

A classifier becomes one graph, an encoder-decoder two, for incremental decoding with explicit caches:

    classifier     src (B, S) int64 ids -> probs (B, C); the padding mask is derived from pad ids in the graph
    encoder        src (B, S) -> memory (B, S, D), memory_pad_mask (B, S) bool,
                   cross_key_i / cross_value_i (B, H, S, Dh): decoder layer i's cross-attention keys and values
    decoder_step   tokens (B, 1) the newest token, memory_pad_mask, cross_key_i / cross_value_i,
                   past_key_i / past_value_i (B, H, P, Dh) the self-attention cache of the P tokens so far,
                   and with copy attention also src (B, S) and memory (B, S, D)
                   -> logits (B, V) (log-probabilities with copy attention), present_key_i / present_value_i
                   (B, H, P+1, Dh): the caches to feed to the next step

The step's position is the cache length P, so the first step (the BOS token) takes empty (B, H, 0, Dh) caches.
Batch, source length and P are dynamic. Beside the graphs: the SentencePiece model(s) and export.json, the
settings a runtime needs (special ids, lengths, decoding defaults, graph inputs and outputs).

    writer.py    the graph wrappers; export(cfg) and export_model write a folder atomically (a temporary folder,
                 sealed and verified, then renamed into place), check runs it against PyTorch
    runtime.py   load(folder): verifies the folder (read_export: export.json's digest and schema, every file's
                 SHA-256), then ExportedClassifier and ExportedSeq2Seq run it (no writer code)
    spec.py      what both read: export.json's name and version, the formats, graph input/output specs, cache
                 tensor names, the digests, ExportError
"""

from typing import Any

from transformer.export.runtime import ExportedClassifier, ExportedSeq2Seq, load, read_export
from transformer.export.spec import ExportError

WRITER_NAMES = ("ExportMismatch", "check", "export", "export_model")

__all__ = [
    "ExportError",
    "ExportMismatch",
    "ExportedClassifier",
    "ExportedSeq2Seq",
    "check",
    "export",
    "export_model",
    "load",
    "read_export",
]


def __getattr__(name: str) -> Any:
    """The writer's names, imported on first use: loading the runtime (a deployment) leaves the writer's imports
    (the model wrappers, the exporters, the checkpoint and config code) unloaded."""
    if name in WRITER_NAMES:
        from transformer.export import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

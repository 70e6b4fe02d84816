"""Prepare a dataset once: train the tokenizer(s) on train, encode every split, cache the result.

Cache layout, <cache_dir>/<name>/:
    meta.json   the fingerprint of everything that affects the result, counts, tokenizer files; written last
    spm.model   the shared tokenizer (separate ones: src.model and tgt.model)
    splits/     DatasetDict.save_to_disk; load_prepared memory-maps it
    raw/        the generated sample (format: sample only)

A cache is built in a temp folder beside the target and swapped in with os.replace, so an interrupted prepare
leaves either the previous cache or none, never a half-written one that looks valid. A valid cache is read
without writing anything (also on a read-only filesystem), and checked on load: ids outside the vocabulary or
labels outside label_names mean a damaged cache, refused in one line.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Features, List, Value

from transformer.data import pretrained_tokenizer  # noqa: F401  (registers the pretrained kinds)
from transformer.data.config import SPLITS, DataError, DatasetConfig
from transformer.data.sources import RawSplit, load_splits, source_identity, source_kind
from transformer.data.tokenizer import Tokenizer, train_tokenizer

log = logging.getLogger(__name__)

# Bump when the cached layout or the encoding changes: every older cache is then rebuilt.
CACHE_VERSION = 1
PROCESS_MIN_ROWS = 200_000  # per encoding process; below that, process start-up costs more than it saves


@dataclass
class PreparedData:
    """Encoded splits and their tokenizers.

    Split columns: `index` (row in the split), classification `text`, `label`, `src_ids`; seq2seq `source`,
    `target`, `src_ids`, `tgt_ids` (no bos/eos) and `references` when the dataset has reference columns.
    """

    dir: Path
    splits: dict[str, Dataset]
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer  # the same object as src_tokenizer when shared (and for classification)
    label_names: list[str] | None  # classification only
    meta: dict[str, Any]
    reused: bool = False  # True when a valid cache was loaded instead of built

    @property
    def objective(self) -> str:
        return self.meta["objective"]

    @property
    def config(self) -> DatasetConfig:
        return DatasetConfig.from_dict(self.meta["config"])

    def summary(self) -> str:
        """One line: counts, vocabulary, skipped and truncated rows, where the cache is."""
        stats = self.meta["splits"]
        counts = ", ".join(f"{split} {stats[split]['rows']}" for split in SPLITS if split in stats)
        seq2seq = self.objective == "seq2seq"
        if self.tgt_tokenizer is self.src_tokenizer:
            vocab = f"vocab {self.src_tokenizer.vocab_size}" + (" shared" if seq2seq else "")
        else:
            vocab = f"vocab {self.src_tokenizer.vocab_size} src / {self.tgt_tokenizer.vocab_size} tgt"
        skipped = sum(s["skipped"] for s in stats.values())
        truncated = f"truncated {sum(s['truncated_source'] for s in stats.values())} source"
        if seq2seq:
            truncated += f" / {sum(s['truncated_target'] for s in stats.values())} target"
        how = "reused" if self.reused else f"built in {self.meta['seconds']:.1f} s"
        return f"{self.meta['name']}: {counts} | {vocab} | skipped {skipped} empty, {truncated} | {self.dir} ({how})"


def prepare_dataset(
    dataset_cfg: DatasetConfig,
    data_root: str | Path | None,
    cache_dir: str | Path,
    num_proc: int | None = None,
    force: bool = False,
    tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
) -> PreparedData:
    """Return the prepared dataset, reusing `<cache_dir>/<name>/` when its fingerprint still matches.

    `tokenizers` (source, target; e.g. a pretrained checkpoint's) encode the data instead of tokenizers trained on
    it; that cache lives in `<cache_dir>/<name>-tok<hash>/`, beside the dataset's own.
    A valid cache is loaded without reading the raw data: the fingerprint uses file paths, sizes and mtimes.
    `num_proc`: encoding processes (None: one per PROCESS_MIN_ROWS rows, at most the CPU count).
    Processes that prepare the same dataset at once (the ranks of a torchrun or SLURM job) take turns on a file
    lock: the first builds the cache, the others then find it valid and read it. Where the lock cannot be created
    (a read-only filesystem) a valid cache is read without it, as nothing can be writing it there.
    """
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        # O_APPEND without writing: the lock file's mtime stays
        fd = os.open(Path(cache_dir) / f".{dataset_cfg.name}.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as error:
        if error.errno not in READ_ONLY:
            raise
        return _prepare(dataset_cfg, data_root, cache_dir, num_proc, force, tokenizers, read_only=error)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _prepare(dataset_cfg, data_root, cache_dir, num_proc, force, tokenizers)
    finally:
        os.close(fd)  # releases the lock


READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def _prepare(
    dataset_cfg: DatasetConfig,
    data_root: str | Path | None,
    cache_dir: str | Path,
    num_proc: int | None,
    force: bool,
    tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
    read_only: OSError | None = None,
) -> PreparedData:
    """The valid cache, else a new one built in its place; `read_only`: why the cache folder cannot be written
    (then a cache that must be built is a DataError)."""
    cfg = dataset_cfg
    fingerprint, inputs = cache_fingerprint(cfg, data_root, tokenizers)
    target = Path(cache_dir) / (cfg.name if tokenizers is None else f"{cfg.name}-tok{inputs['tokenizers'][:8]}")
    meta = None if force else _read_meta(target)
    if meta is not None and meta.get("fingerprint") == fingerprint:
        try:
            data = load_prepared(target)
            data.reused = True
            return data
        except DamagedCacheError:
            raise
        except (OSError, ValueError, RuntimeError) as e:  # e.g. a split folder deleted by hand
            if read_only is not None:
                raise DataError(f"cache {target} is unreadable ({e}) and cannot be rebuilt there") from None
            log.warning("cache %s is unreadable (%s): rebuilding", target, e)
    elif meta is not None:
        log.info("cache %s is stale: rebuilding", target)
    if read_only is not None:
        why = "force=true" if force else ("it is stale" if meta is not None else "there is none yet")
        raise DataError(
            f"the cache {target} needs building ({why}) but {cache_dir} cannot be written ({read_only.strerror}): "
            f"set paths.cache_dir to a writable folder, or prepare it where it is writable"
        )

    start = time.perf_counter()
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.name}.tmp-", dir=cache_dir))
    try:
        meta = _build(cfg, data_root, tmp, num_proc, tokenizers)
        meta.update(fingerprint=fingerprint, inputs=inputs, seconds=round(time.perf_counter() - start, 2))
        _write_json(tmp / "meta.json", meta)  # last: a folder without it is never taken for a cache
        _swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing left there after a successful swap
    return load_prepared(target)


def load_prepared(directory: str | Path) -> PreparedData:
    """Load a cache written by `prepare_dataset` (memory-mapped Arrow splits and the tokenizer files)."""
    directory = Path(directory)
    meta = _read_meta(directory)
    if meta is None:
        raise DataError(f"{directory} is not a prepared dataset (no meta.json): run scripts/prepare_data.py")
    if meta.get("version") != CACHE_VERSION:
        raise DataError(f"{directory} was prepared by cache version {meta.get('version')}: prepare it again")
    splits = datasets.load_from_disk(str(directory / "splits"))
    files = meta["tokenizers"]
    src = Tokenizer.load(directory / files["src"])
    tgt = src if files["tgt"] == files["src"] else Tokenizer.load(directory / files["tgt"])
    data = PreparedData(
        dir=directory,
        splits=dict(splits),
        src_tokenizer=src,
        tgt_tokenizer=tgt,
        label_names=meta.get("label_names"),
        meta=meta,
    )
    check_ids(data)
    return data


class DamagedCacheError(DataError):
    """A cache whose content contradicts its own tokenizers or labels."""


def check_ids(data: PreparedData) -> None:
    """Every token id inside its tokenizer's vocabulary and every label inside label_names: a damaged cache (bit
    rot, an edited file) would otherwise fail with an IndexError in the middle of training. One pass of Arrow's
    min_max over each column of the memory-mapped splits."""
    ranges = {"src_ids": data.src_tokenizer.vocab_size, "tgt_ids": data.tgt_tokenizer.vocab_size}
    if data.label_names:
        ranges["label"] = len(data.label_names)
    for split, ds in data.splits.items():
        for column, size in ranges.items():
            if column not in ds.column_names:
                continue
            values = ds.data.column(column)
            if column.endswith("_ids"):
                values = pc.list_flatten(values)
            bounds = pc.min_max(values).as_py()
            if bounds["min"] is not None and not (0 <= bounds["min"] and bounds["max"] < size):
                raise DamagedCacheError(
                    f"the prepared cache {data.dir} is damaged: {split} {column} holds values from {bounds['min']} to "
                    f"{bounds['max']}, outside [0, {size}); rebuild it with prepare_data.py force=true (and the same "
                    f"dataset settings), or delete {data.dir}"
                )


def prepare_from_config(config, tokenizers: tuple[Tokenizer, Tokenizer] | None = None) -> PreparedData:
    """Prepare the dataset of a typed entry config (TrainConfig, PrepareConfig, ...: see transformer/schema.py,
    which also checks that the task and the dataset agree) and print a one-line summary. `tokenizers`: see
    prepare_dataset."""
    data = prepare_dataset(
        config.dataset,
        data_root=config.paths.data_root,
        cache_dir=config.paths.cache_dir,
        num_proc=getattr(config, "num_proc", None),
        force=bool(getattr(config, "force", False)),
        tokenizers=tokenizers,
    )
    print(data.summary())
    return data


def encode_split(
    dataset_cfg: DatasetConfig,
    data_root: str | Path | None,
    split: str,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer | None = None,
    label_names: list[str] | None = None,
) -> Dataset:
    """One split of the raw data encoded with given tokenizers (e.g. a checkpoint's): in memory, not cached.

    Same columns as `PreparedData.splits`. `label_names` (e.g. the checkpoint's) replaces the config's.
    """
    cfg = dataset_cfg
    if label_names and cfg.objective == "classification":
        cfg = dataclasses.replace(cfg, label_names=list(label_names))
    with tempfile.TemporaryDirectory(prefix="transformer-encode-") as tmp:
        part = load_splits(cfg, data_root, work_dir=Path(tmp) / "work", raw_dir=Path(tmp) / "raw", only=[split])[split]
        if len(part.data) == 0:
            raise DataError(f"{part.origin}: no usable rows ({part.skipped} with empty text skipped)")
        encoded, _ = _encode(part.data, cfg, src_tokenizer, tgt_tokenizer or src_tokenizer)
    return encoded


def cache_fingerprint(
    cfg: DatasetConfig, data_root: str | Path | None, tokenizers: tuple[Tokenizer, Tokenizer] | None = None
) -> tuple[str, dict[str, Any]]:
    """Hash of everything that affects the prepared data, and what was hashed (kept in meta.json)."""
    inputs = {"version": CACHE_VERSION, "config": cfg.to_dict(), "source": source_identity(cfg, data_root)}
    if tokenizers is not None:
        digest = hashlib.sha256(b"".join(t.to_bytes() for t in dict.fromkeys(tokenizers))).hexdigest()
        inputs["tokenizers"] = digest
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return digest, inputs


def _build(
    cfg: DatasetConfig,
    data_root: str | Path | None,
    out: Path,
    num_proc: int | None,
    tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
) -> dict[str, Any]:
    """Write tokenizers and encoded splits into `out` and return the meta (without fingerprint)."""
    work = out / "work"
    raw = load_splits(cfg, data_root, work_dir=work, raw_dir=out / "raw")
    for part in raw.values():
        if part.skipped:
            log.warning("%s: skipped %d rows with empty text", part.origin, part.skipped)
        if len(part.data) == 0:
            raise DataError(f"{part.origin}: no usable rows ({part.skipped} with empty text skipped)")

    if tokenizers is None:
        src_tok, tgt_tok = _train_tokenizers(cfg, raw["train"])
    else:  # classification reads one side only
        src_tok, tgt_tok = tokenizers if cfg.objective == "seq2seq" else (tokenizers[0], tokenizers[0])
    files = {"src": "spm.model", "tgt": "spm.model"}
    if tgt_tok is not src_tok:
        files = {"src": "src.model", "tgt": "tgt.model"}
        tgt_tok.save(out / files["tgt"])
    src_tok.save(out / files["src"])

    rows = sum(len(part.data) for part in raw.values())
    procs = num_proc or max(1, min(os.cpu_count() or 1, rows // PROCESS_MIN_ROWS))
    encoded, stats = {}, {}
    for split, part in raw.items():
        encoded[split], truncated = _encode(part.data, cfg, src_tok, tgt_tok, procs, work / f"{split}-encoded.arrow")
        stats[split] = {"rows": len(encoded[split]), "skipped": part.skipped, **truncated}
        for side, count in truncated.items():
            if count:
                limit = cfg.max_source_len if side == "truncated_source" else cfg.max_target_len
                log.info("%s: %d %s longer than %d tokens truncated", split, count, side.split("_")[1] + "s", limit)
    DatasetDict(encoded).save_to_disk(str(out / "splits"))
    del raw, encoded
    shutil.rmtree(work)
    return {
        "version": CACHE_VERSION,
        "name": cfg.name,
        "objective": cfg.objective,
        "source": source_kind(cfg, data_root),
        "config": cfg.to_dict(),
        "label_names": cfg.label_names if cfg.objective == "classification" else None,
        "tokenizers": files,
        "vocab_size": {side: Tokenizer.load(out / name).vocab_size for side, name in files.items()},
        "splits": stats,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _train_tokenizers(cfg: DatasetConfig, train: RawSplit) -> tuple[Tokenizer, Tokenizer]:
    t = cfg.tokenizer
    options = {
        "model_type": t.model_type,
        "character_coverage": t.character_coverage,
        "input_sentence_size": t.input_sentence_size,
    }
    key = "dataset.tokenizer.vocab_size"
    if cfg.objective == "text":  # pretraining corrupts its input with <mask>: the piece must exist
        tok = train_tokenizer(_texts(train.data, "text"), t.vocab_size, setting=key, mask=True, **options)
        return tok, tok
    if cfg.objective == "classification":
        tok = train_tokenizer(_texts(train.data, "text"), t.vocab_size, setting=key, **options)
        return tok, tok
    if t.shared:
        sentences = itertools.chain(_texts(train.data, "source"), _texts(train.data, "target"))
        tok = train_tokenizer(sentences, t.vocab_size, setting=key, **options)
        return tok, tok
    src = train_tokenizer(_texts(train.data, "source"), t.vocab_size, setting=key, **options)
    tgt_key = "dataset.tokenizer.tgt_vocab_size" if t.tgt_vocab_size else key
    tgt = train_tokenizer(_texts(train.data, "target"), t.tgt_vocab_size or t.vocab_size, setting=tgt_key, **options)
    return src, tgt


def _texts(ds: Dataset, column: str) -> Iterator[str]:
    for batch in ds.select_columns([column]).iter(batch_size=10_000):
        yield from batch[column]


def _encode(
    ds: Dataset,
    cfg: DatasetConfig,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    procs: int = 1,
    cache_file: Path | None = None,
) -> tuple[Dataset, dict[str, int]]:
    """Add `index`, `src_ids` (and `tgt_ids`), truncated to the max lengths; return the truncation counts.

    Without `cache_file` the result is kept in memory.
    """
    seq2seq = cfg.objective == "seq2seq"
    ids = List(Value("int32"))  # vocabularies are far below 2**31; halves the cache
    features = ds.features.copy()
    features.update({"index": Value("int64"), "src_ids": ids, "src_truncated": Value("bool")})
    if seq2seq:
        features.update({"tgt_ids": ids, "tgt_truncated": Value("bool")})
    out = ds.map(
        _encode_batch,
        batched=True,
        with_indices=True,
        fn_kwargs={
            "src_column": "source" if seq2seq else "text",
            "src_tok": src_tok,
            "tgt_tok": tgt_tok if seq2seq else None,
            "max_source_len": cfg.max_source_len,
            "max_target_len": cfg.max_target_len - 1,  # room for bos (tgt_in) or eos (tgt_out)
        },
        features=Features(features),
        num_proc=procs if procs > 1 and len(ds) >= PROCESS_MIN_ROWS else None,
        keep_in_memory=cache_file is None,
        cache_file_name=None if cache_file is None else str(cache_file),
        new_fingerprint=hashlib.sha256(str(cache_file).encode()).hexdigest()[:16],
        desc="Encoding",
    )
    flags = {"truncated_source": "src_truncated"}
    if seq2seq:
        flags["truncated_target"] = "tgt_truncated"
    counts = {name: int(pc.sum(out.data.column(column)).as_py() or 0) for name, column in flags.items()}
    return out.remove_columns(list(flags.values())), counts


def _encode_batch(
    batch: dict[str, list],
    indices: list[int],
    src_column: str,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer | None,
    max_source_len: int,
    max_target_len: int,
) -> dict[str, list]:
    src = src_tok.encode(batch[src_column])
    out = {
        "index": indices,
        "src_ids": [ids[:max_source_len] for ids in src],
        "src_truncated": [len(ids) > max_source_len for ids in src],
    }
    if tgt_tok is not None:
        tgt = tgt_tok.encode_target(batch["target"])
        out["tgt_ids"] = [ids[:max_target_len] for ids in tgt]
        out["tgt_truncated"] = [len(ids) > max_target_len for ids in tgt]
    return out


def _read_meta(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _swap_in(new: Path, target: Path) -> None:
    """Replace `target` by `new` with renames only; the old cache is deleted after the swap.

    Two processes preparing the same dataset (e.g. DDP ranks) build identical caches; if another one swaps its
    cache in between our two renames, ours replaces it.
    """
    for attempt in range(3):
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        try:
            os.replace(new, target)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == 2:
                raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

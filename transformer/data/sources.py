"""Raw splits from local files, the HF Hub or a generated sample, mapped to canonical columns.

Canonical columns: classification `text` (str) and `label` (int, an index into label_names); seq2seq `source`
and `target` (str) and, when reference_columns is set, `references` (list[str]: the target, then the extra
references); text (pretraining) `text` only, one row per value of each of `text_columns`. Text is stripped (and
lowercased if asked); rows whose text is empty are dropped and counted.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, Features, List, Value

from transformer.data.config import DataError, DatasetConfig

log = logging.getLogger(__name__)

HUB_TIMEOUT_S = 5.0  # the Hub probe; without it an unreachable Hub costs ~25 s of retries per split
_CHUNK = 1 << 22


@dataclass
class RawSplit:
    """One split in canonical columns, with what was dropped on the way."""

    data: Dataset
    skipped: int  # rows with empty or whitespace-only text
    origin: str  # the file(s) or hub split it came from, for messages


def resolve_local_dir(cfg: DatasetConfig, data_root: str | Path | None) -> Path | None:
    """The local data folder, or None when `local_dir` is relative and no data root is set."""
    if cfg.local_dir is None:
        return None
    path = Path(cfg.local_dir).expanduser()
    if path.is_absolute():
        return path
    return Path(data_root).expanduser().resolve() / path if data_root else None


def source_kind(cfg: DatasetConfig, data_root: str | Path | None) -> str:
    """'sample', 'local' or 'hub': generated data first, then local files when they can be found, then the Hub."""
    if cfg.format == "sample":
        return "sample"
    if resolve_local_dir(cfg, data_root) is not None:
        return "local"
    if cfg.hub:
        return "hub"
    raise DataError(
        f"dataset {cfg.name!r}: local_dir={cfg.local_dir!r} is relative and no data root is set: "
        f"pass paths.data_root=<folder holding {cfg.local_dir}> or set TRANSFORMER_DATA_ROOT"
    )


def local_files(cfg: DatasetConfig, data_root: str | Path | None) -> dict[str, list[Path]]:
    """Files of each split; for `parallel`, [source file, target file]. Only looks at names, never content."""
    root = resolve_local_dir(cfg, data_root)
    assert root is not None
    if not root.is_dir():
        raise DataError(
            f"local data folder {root} does not exist (dataset.local_dir={cfg.local_dir}, paths.data_root={data_root})"
        )
    files = {}
    for split, name in cfg.splits.items():
        if cfg.format == "parallel":
            files[split] = [_find(root, f"{name}.{lang}", split) for lang in (cfg.src_lang, cfg.tgt_lang)]
        elif any(c in name for c in "*?["):
            files[split] = sorted(root.glob(name))
            if not files[split]:
                raise DataError(f"no file in {root} matches {name!r} ({split} split)")
        else:
            files[split] = [_find(root, name, split)]
    return files


def source_identity(cfg: DatasetConfig, data_root: str | Path | None) -> dict[str, Any]:
    """What the raw data is, cheaply: file path, size and mtime (content is never read), or the hub name."""
    kind = source_kind(cfg, data_root)
    if kind == "local":
        files = local_files(cfg, data_root)
        stats = {s: [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in ps] for s, ps in files.items()}
        return {"kind": kind, "files": stats}
    if kind == "hub":
        return {"kind": kind, "hub": cfg.hub, "hub_config": cfg.hub_config, "splits": _hub_splits(cfg)}
    module = _samples_module()
    if getattr(module, "__file__", None):  # the code of every module of the generator package
        code = b"".join(path.read_bytes() for path in sorted(Path(module.__file__).parent.glob("*.py")))
    else:
        code = module.__name__.encode()
    return {"kind": kind, "sample": cfg.sample, "seed": cfg.seed, "generator": hashlib.sha256(code).hexdigest()}


def load_splits(
    cfg: DatasetConfig,
    data_root: str | Path | None,
    work_dir: Path,
    raw_dir: Path,
    only: Sequence[str] | None = None,
) -> dict[str, RawSplit]:
    """Read every split (or those in `only`) and map it to canonical columns.

    `work_dir` takes the intermediate Arrow files (HF builder cache and map outputs), `raw_dir` the generated
    sample; both are removed by the caller.
    """
    kind = source_kind(cfg, data_root)
    names = _hub_splits(cfg) if kind == "hub" else cfg.splits
    missing = sorted(set(only or ()) - set(names))
    if missing:
        raise DataError(f"dataset {cfg.name!r} has no split {missing[0]!r}; it has {sorted(names)}")
    wanted = [split for split in names if only is None or split in only]
    if kind == "hub":
        loaded = {split: (_load_hub(cfg, names[split]), f"{cfg.hub}[{names[split]}]") for split in wanted}
    else:
        if kind == "sample":
            _samples_module().generate_sample(cfg.sample, raw_dir, seed=cfg.seed)
            files = {split: [raw_dir / name] for split, name in cfg.splits.items()}
            fmt = "jsonl"
        else:
            files, fmt = local_files(cfg, data_root), cfg.format
        loaded = {}
        for split in wanted:
            paths = files[split]
            origin = ", ".join(str(p) for p in paths)
            loaded[split] = (_load_local(cfg, fmt, split, paths, work_dir / "hf"), origin)
    return {
        split: _canonical(ds, cfg, origin, strict=kind != "hub", cache_file=work_dir / f"{split}-raw.arrow")
        for split, (ds, origin) in loaded.items()
    }


def check_utf8(path: Path) -> int:
    """Raise a DataError naming the byte offset and line of the first invalid UTF-8 byte, or an empty file.
    Returns the number of lines (a last line without a newline counts)."""
    offset, line = 0, 1  # of the start of `pending`
    pending, last = b"", b""
    with _open_bytes(path) as f:
        while True:
            try:
                chunk = f.read(_CHUNK)
            except (OSError, EOFError) as e:  # a corrupt or truncated .gz
                raise DataError(f"cannot read {path}: {e}") from None
            data = pending + chunk
            if not data:
                break
            try:
                data.decode("utf-8")
                good = len(data)
            except UnicodeDecodeError as e:
                if chunk and e.reason == "unexpected end of data":  # a character cut by the chunk boundary
                    good = e.start
                else:
                    where = f"byte {offset + e.start}" + (" of the decompressed text" if path.suffix == ".gz" else "")
                    bad_line = line + data.count(b"\n", 0, e.start)
                    raise DataError(
                        f"{path}: invalid UTF-8 at {where} (line {bad_line}): "
                        f"{data[e.start : e.start + 1]!r}; re-encode the file as UTF-8"
                    ) from None
            line += data.count(b"\n", 0, good)
            offset += good
            last = data[good - 1 : good] if good else last
            pending = data[good:]
            if not chunk:
                break
    if offset == 0:
        raise DataError(f"{path} is empty")
    return line - 1 if last == b"\n" else line


def read_parallel(
    src_path: Path, tgt_path: Path, src_column: str, tgt_column: str, cache_dir: Path | None = None
) -> Dataset:
    """Line-aligned plain-text files (optionally .gz) as one dataset with two columns.

    With `cache_dir`, the pairs are streamed into an Arrow file there, chunk by chunk, so memory does not grow
    with the corpus (a WMT-size corpus is gigabytes of text: benchmarks/data_scale.py); without, read in memory.
    Lines split on "\n" only (str.splitlines would also break at U+2028, U+0085 ... and misalign the pairs).
    """
    counts = [check_utf8(path) for path in (src_path, tgt_path)]
    if counts[0] != counts[1]:
        raise DataError(
            f"parallel files differ in length: {src_path} has {counts[0]} lines, {tgt_path} has {counts[1]}"
        )
    if cache_dir is None:
        return Dataset.from_dict({src_column: _read_lines(src_path), tgt_column: _read_lines(tgt_path)})
    features = Features({src_column: Value("string"), tgt_column: Value("string")})
    kwargs = {"src_path": str(src_path), "tgt_path": str(tgt_path), "src_column": src_column, "tgt_column": tgt_column}
    return Dataset.from_generator(_pairs, features=features, gen_kwargs=kwargs, cache_dir=str(cache_dir))


def _pairs(src_path: str, tgt_path: str, src_column: str, tgt_column: str) -> Iterator[dict[str, str]]:
    with _open_bytes(Path(src_path)) as src, _open_bytes(Path(tgt_path)) as tgt:
        for src_line, tgt_line in zip(src, tgt, strict=True):  # binary lines end at b"\n" only
            yield {
                src_column: src_line.decode("utf-8").removesuffix("\n").removesuffix("\r"),
                tgt_column: tgt_line.decode("utf-8").removesuffix("\n").removesuffix("\r"),
            }


def _lines(paths: list[str]) -> Iterator[dict[str, str]]:
    """Every line of the files, streamed (a pretraining corpus can be large); lines end at b"\\n" only."""
    for path in paths:
        with _open_bytes(Path(path)) as f:
            for line in f:
                yield {"text": line.decode("utf-8").removesuffix("\n").removesuffix("\r")}


def _find(root: Path, name: str, split: str) -> Path:
    for path in (root / name, root / f"{name}.gz"):
        if path.is_file():
            return path
    raise DataError(f"{split} file not found: {root / name} (nor {name}.gz)")


def _open_bytes(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_lines(path: Path) -> list[str]:
    try:
        with _open_bytes(path) as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if not data:
        raise DataError(f"{path} is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}: invalid UTF-8 at byte {e.start} (line {line}): {data[e.start : e.start + 1]!r}; "
            "re-encode the file as UTF-8"
        ) from None
    # split on "\n" only: str.splitlines would also break at U+2028, U+0085 ... and misalign the pairs
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _load_local(cfg: DatasetConfig, fmt: str, split: str, paths: list[Path], cache_dir: Path) -> Dataset:
    if fmt == "parallel":
        return read_parallel(paths[0], paths[1], cfg.source_column, cfg.target_column, cache_dir)
    if fmt == "text":
        for path in paths:
            check_utf8(path)
        return Dataset.from_generator(
            _lines,
            features=Features({"text": Value("string")}),
            gen_kwargs={"paths": [str(p) for p in paths]},
            cache_dir=str(cache_dir),
        )
    for path in paths:
        if fmt == "parquet":
            if path.stat().st_size == 0:
                raise DataError(f"{path} is empty")
        else:
            check_utf8(path)  # HF/pandas errors would not say where the bad byte is
    builder, options = {
        "csv": ("csv", {"na_filter": False}),  # keep "NA"/"null" as text, empty stays ""
        "tsv": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "na_filter": False}),
        "json": ("json", {}),
        "jsonl": ("json", {}),
        "parquet": ("parquet", {}),
    }[fmt]
    files = [str(p) for p in paths]
    try:
        ds = datasets.load_dataset(builder, data_files={split: files}, split=split, cache_dir=str(cache_dir), **options)
    except Exception as e:
        if "corresponds to no data" in str(e):  # what HF says about a file with a header and no rows
            raise DataError(f"{', '.join(files)} has no rows") from None
        raise DataError(f"cannot read {', '.join(files)} as {fmt}: {_one_line(e)}") from e
    if len(ds) == 0:
        raise DataError(f"{', '.join(files)} has no rows")
    return ds


def _hub_splits(cfg: DatasetConfig) -> dict[str, str]:
    if cfg.hub_splits is not None:
        return dict(cfg.hub_splits)
    return {split: split for split in (cfg.splits or ("train", "validation", "test"))}


def _hub_offline() -> bool:
    return bool(datasets.config.HF_HUB_OFFLINE or datasets.config.HF_DATASETS_OFFLINE)


def _load_hub(cfg: DatasetConfig, hub_split: str) -> Dataset:
    hint = (
        f"to use local files pass dataset.local_dir={cfg.local_dir or '<folder>'} paths.data_root=<root> "
        "(or set TRANSFORMER_DATA_ROOT=<root>)"
    )
    offline = _hub_offline()
    if not offline:
        # One quick request first: datasets itself retries for ~25 s before giving up on an unreachable Hub.
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            HfApi().dataset_info(cfg.hub, timeout=HUB_TIMEOUT_S)
        except RepositoryNotFoundError:
            raise DataError(
                f"dataset {cfg.hub!r} is not on the Hugging Face Hub: check dataset.hub, or {hint}"
            ) from None
        except Exception as e:
            raise DataError(
                f"cannot reach the Hugging Face Hub for {cfg.hub!r} ({type(e).__name__}): {hint}; "
                "HF_HUB_OFFLINE=1 uses a copy already in the HF cache"
            ) from None
    try:
        return datasets.load_dataset(cfg.hub, cfg.hub_config, split=hub_split)
    except Exception as e:
        where = " in offline mode (HF_HUB_OFFLINE)" if offline else ""
        raise DataError(f"cannot load {cfg.hub}[{hub_split}]{where}: {_one_line(e)}; {hint}") from None


def _samples_module() -> Any:
    # imported late: the generator is only needed for `format: sample`
    return importlib.import_module("transformer.data.samples")


def _canonical(ds: Dataset, cfg: DatasetConfig, origin: str, strict: bool, cache_file: Path) -> RawSplit:
    """Select, clean and rename the configured columns. `strict`: reference columns must exist."""
    if cfg.objective == "classification":
        needed = [cfg.text_column, cfg.label_column]
    elif cfg.objective == "text":
        needed = list(cfg.text_columns)
    else:
        needed = [cfg.source_column, cfg.target_column] + (cfg.reference_columns if strict else [])
    for column in needed:
        if column not in ds.column_names:
            raise DataError(f"{origin}: column {column!r} not found; available columns: {ds.column_names}")
    if cfg.max_examples is not None and len(ds) > cfg.max_examples:
        ds = ds.select(range(cfg.max_examples))
    if cfg.objective == "classification":
        clean, features = _clean_classification, Features({"text": Value("string"), "label": Value("int64")})
        kwargs = {"text_column": cfg.text_column, "label_column": cfg.label_column, "label_names": cfg.label_names}
    elif cfg.objective == "text":
        clean, features = _clean_text_rows, Features({"text": Value("string")})
        kwargs = {"text_columns": cfg.text_columns}
    else:
        references = [c for c in cfg.reference_columns if c in ds.column_names]
        for column in sorted(set(cfg.reference_columns) - set(references)):
            log.warning("%s has no reference column %r: its references hold the target only", origin, column)
        clean = _clean_seq2seq
        features = Features({"source": Value("string"), "target": Value("string")})
        if cfg.reference_columns:
            features["references"] = List(Value("string"))
        kwargs = {
            "source_column": cfg.source_column,
            "target_column": cfg.target_column,
            "reference_columns": references if cfg.reference_columns else None,
        }
    out = ds.map(
        clean,
        batched=True,
        with_indices=True,
        remove_columns=ds.column_names,  # lets the function return fewer rows than it got
        fn_kwargs={**kwargs, "lowercase": cfg.lowercase, "origin": origin},
        features=features,
        cache_file_name=str(cache_file),
        new_fingerprint=hashlib.sha256(str(cache_file).encode()).hexdigest()[:16],
        desc=f"Cleaning {cache_file.stem.removesuffix('-raw')}",
    )
    skipped = 0 if cfg.objective == "text" else len(ds) - len(out)  # text: one row may give several examples
    return RawSplit(out, skipped, origin)


def _clean_text(value: Any, lowercase: bool) -> str:
    text = "" if value is None else str(value).strip()
    return text.lower() if lowercase else text


def _clean_classification(
    batch: dict[str, list],
    indices: list[int],
    text_column: str,
    label_column: str,
    label_names: list[str],
    lowercase: bool,
    origin: str,
) -> dict[str, list]:
    ids = {name: i for i, name in enumerate(label_names)}
    texts, labels = [], []
    for row, text, label in zip(indices, batch[text_column], batch[label_column], strict=True):
        text = _clean_text(text, lowercase)
        if not text:
            continue
        if isinstance(label, str) and label.strip() in ids:
            label = ids[label.strip()]
        elif isinstance(label, str) and label.strip().lstrip("-").isdigit():
            label = int(label)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(label_names):
            raise DataError(
                f"{origin}: row {row} has label {label!r}, outside label_names {label_names} "
                "(an int label indexes that list, a str label must be in it)"
            )
        texts.append(text)
        labels.append(label)
    return {"text": texts, "label": labels}


def _clean_text_rows(
    batch: dict[str, list], indices: list[int], text_columns: list[str], lowercase: bool, origin: str
) -> dict[str, list]:
    """Every non-empty value of the text columns (a list value: each item) as one example, row by row."""
    texts = []
    for j in range(len(indices)):
        for column in text_columns:
            value = batch[column][j]
            for item in value if isinstance(value, list) else [value]:
                text = _clean_text(item, lowercase)
                if text:
                    texts.append(text)
    return {"text": texts}


def _clean_seq2seq(
    batch: dict[str, list],
    indices: list[int],
    source_column: str,
    target_column: str,
    reference_columns: list[str] | None,
    lowercase: bool,
    origin: str,
) -> dict[str, list]:
    out: dict[str, list] = {"source": [], "target": []}
    if reference_columns is not None:
        out["references"] = []
    for j, (source, target) in enumerate(zip(batch[source_column], batch[target_column], strict=True)):
        source, target = _clean_text(source, lowercase), _clean_text(target, lowercase)
        if not source or not target:
            continue
        out["source"].append(source)
        out["target"].append(target)
        if reference_columns is not None:
            extra = [batch[c][j] for c in reference_columns]
            flat = [r for value in extra for r in (value if isinstance(value, list) else [value])]
            out["references"].append([target] + [r for r in (_clean_text(v, lowercase) for v in flat) if r])
    return out


def _one_line(error: BaseException) -> str:
    """The innermost cause's message, first line: HF wraps builder errors in generic ones."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"

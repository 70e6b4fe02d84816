"""Typed dataset configuration: where the raw text comes from, its columns, the tokenizer and the lengths.

These dataclasses are the schema of the Hydra `dataset` group (registered in transformer/schema.py): the YAML files
hold only what differs from the defaults below, and composition rejects unknown keys and wrong types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from omegaconf import MISSING

from transformer.errors import ConfigError, UserError

SPLITS = ("train", "validation", "test")  # canonical split names; test is optional
FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "parallel", "text", "sample")  # text: one example per line
OBJECTIVES = ("classification", "seq2seq", "text")  # text: raw text for pretraining (task=pretrain)
SAMPLE_OBJECTIVES = {"sentiment": "classification", "translation": "seq2seq", "summarization": "seq2seq"}
SAMPLE_TEXT_COLUMNS = {
    "sentiment": ["text"],
    "translation": ["source", "target"],
    "summarization": ["source", "target"],
}


class DataError(UserError):
    """Raw data or a dataset setting that cannot work. The message is one line that says what to change."""


@dataclass
class TokenizerConfig:
    """SentencePiece settings. Ids are fixed: pad=0, unk=1, bos=2, eos=3."""

    model_type: str = "unigram"  # unigram | bpe
    vocab_size: int = 8000
    shared: bool = True  # seq2seq: one model for source and target (required to share embeddings)
    tgt_vocab_size: int | None = None  # separate target model only; None = vocab_size
    # share of training characters the model must cover, the rarest beyond it map to unk; SentencePiece advises
    # 1.0 for small alphabets (English, German) and 0.9995 for large ones (Japanese, Chinese)
    character_coverage: float = 1.0
    input_sentence_size: int = 1_000_000  # sentences sampled for training; 0 = all

    def __post_init__(self) -> None:
        if self.model_type not in ("unigram", "bpe"):
            raise DataError(f"tokenizer.model_type={self.model_type!r} is not one of ('unigram', 'bpe')")
        for name in ("vocab_size", "tgt_vocab_size"):
            value = getattr(self, name)
            # 4 ids are reserved for pad/unk/bos/eos, and SentencePiece needs room for the characters
            if value is not None and (not _is_int(value) or value < 8):
                raise DataError(f"tokenizer.{name} must be an integer >= 8, got {value!r}")
        if self.tgt_vocab_size is not None and self.shared:
            raise DataError("tokenizer.tgt_vocab_size needs tokenizer.shared=false (a shared model has one size)")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise DataError(f"tokenizer.character_coverage must be in [0.9, 1], got {self.character_coverage!r}")
        if not _is_int(self.input_sentence_size) or self.input_sentence_size < 0:
            raise DataError(f"tokenizer.input_sentence_size must be >= 0, got {self.input_sentence_size!r}")


@dataclass
class DatasetConfig:
    """One dataset: its source (local files, the HF Hub or a generated sample), columns and lengths.

    The source is chosen in this order: `format: sample` generates data; `local_dir` is used when it can be
    resolved (absolute, or relative to `data_root`); otherwise `hub`.
    """

    name: str = MISSING  # cache folder: <cache_dir>/<name>/
    objective: str = MISSING  # classification | seq2seq | text (pretraining)
    format: str | None = None  # csv | tsv | json | jsonl | parquet | parallel | text (local files); sample = generated
    local_dir: str | None = None  # absolute, or relative to paths.data_root
    # canonical split -> file name or glob inside local_dir; for `parallel` the file stem (train -> train.de.gz)
    # (test: null drops a split that an included dataset config has)
    splits: dict[str, str | None] = field(default_factory=dict)
    src_lang: str | None = None  # parallel files: <stem>.<src_lang>[.gz]
    tgt_lang: str | None = None
    hub: str | None = None  # HF Hub dataset name
    hub_config: str | None = None
    hub_splits: dict[str, str] | None = None  # canonical split -> hub split; None = the canonical names
    sample: str | None = None  # sentiment | translation | summarization (format: sample)
    seed: int = 0  # of the generated sample
    text_column: str = "text"  # classification
    label_column: str = "label"
    label_names: list[str] | None = None  # int labels index this list; str labels must be in it
    source_column: str | None = None  # seq2seq; None = src_lang if set, else "source"
    target_column: str | None = None  # None = tgt_lang if set, else "target"
    reference_columns: list[str] = field(default_factory=list)  # extra references kept raw for metrics
    # objective text: the columns read as text, every value (or list item) one example; [] = the format's own:
    # `text` for format text, both languages for parallel, the sample's text columns, else [text_column]
    text_columns: list[str] = field(default_factory=list)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    max_source_len: int = 256  # tokens; longer sources are truncated (and counted)
    max_target_len: int = 128  # tokens including bos (tgt_in) or eos (tgt_out)
    lowercase: bool = False  # applied to the raw text before everything else, references included
    max_examples: int | None = None  # first N rows of every split (quick runs and smoke tests)

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, dict):
            self.tokenizer = _build(TokenizerConfig, self.tokenizer, "dataset.tokenizer")
        if self.name == MISSING or self.objective == MISSING:
            raise DataError("the dataset needs a name and an objective: pick one with dataset=<name>")
        if not isinstance(self.name, str) or not self.name or "/" in self.name or self.name.startswith("."):
            raise DataError(f"dataset.name must be a plain folder name, got {self.name!r}")
        if self.objective not in OBJECTIVES:
            raise DataError(f"dataset.objective={self.objective!r} is not one of {OBJECTIVES}")
        if self.format is not None and self.format not in FORMATS:
            raise DataError(f"dataset.format={self.format!r} is not one of {FORMATS}")
        self.splits = {split: name for split, name in dict(self.splits).items() if name is not None}
        if self.format == "sample":
            if self.sample not in SAMPLE_OBJECTIVES:
                raise DataError(f"dataset.sample={self.sample!r} is not one of {tuple(SAMPLE_OBJECTIVES)}")
            if SAMPLE_OBJECTIVES[self.sample] != self.objective and self.objective != "text":
                raise DataError(f"dataset.sample={self.sample!r} is a {SAMPLE_OBJECTIVES[self.sample]} sample")
            self.splits = self.splits or {split: f"{split}.jsonl" for split in SPLITS}
        elif self.local_dir is None and self.hub is None:
            raise DataError(f"dataset {self.name!r} needs a source: dataset.local_dir, dataset.hub or format: sample")
        if self.local_dir is not None and self.format in (None, "sample"):
            raise DataError(f"dataset.local_dir needs dataset.format, one of {FORMATS[:-1]}")
        if self.format == "parallel" and not (self.src_lang and self.tgt_lang):
            raise DataError("dataset.format=parallel needs dataset.src_lang and dataset.tgt_lang")
        if self.format == "parallel" and self.objective == "classification":
            raise DataError("dataset.format=parallel is for seq2seq and text datasets")
        if self.format == "text" and self.objective != "text":
            raise DataError("dataset.format=text (one example per line) is for text datasets (objective: text)")
        _check_splits(self.splits, "dataset.splits", required=self.local_dir is not None or self.format == "sample")
        if self.hub_splits is not None:
            _check_splits(self.hub_splits, "dataset.hub_splits", required=True)
        self.source_column = self.source_column or self.src_lang or "source"
        self.target_column = self.target_column or self.tgt_lang or "target"
        if self.objective == "classification":
            names = self.label_names
            if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
                raise DataError(f"dataset.label_names must be a list of distinct names, got {names!r}")
            self.label_names = list(names)
        self.reference_columns = list(self.reference_columns)
        if self.objective == "text":
            self.text_columns = list(self.text_columns) or self.default_text_columns()
        for name in ("max_source_len", "max_target_len"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 2:
                raise DataError(f"dataset.{name} must be an integer >= 2, got {getattr(self, name)!r}")
        if self.max_examples is not None and (not _is_int(self.max_examples) or self.max_examples <= 0):
            raise DataError(f"dataset.max_examples must be a positive integer or null, got {self.max_examples!r}")

    def default_text_columns(self) -> list[str]:
        if self.format == "text":
            return ["text"]
        if self.format == "parallel":
            return [self.source_column, self.target_column]
        if self.format == "sample":
            return list(SAMPLE_TEXT_COLUMNS[self.sample])
        return [self.text_column]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DatasetConfig:
        """Build from a plain dict (the resolved Hydra node), rejecting unknown keys."""
        return _build(cls, values, "dataset")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise DataError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(known)}")
    return cls(**values)


def _check_splits(splits: Any, where: str, required: bool) -> None:
    if not isinstance(splits, dict) or not all(isinstance(v, str) and v for v in splits.values()):
        raise DataError(f"{where} must map split names to non-empty strings, got {splits!r}")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise DataError(f"{where} has unknown split(s) {unknown}; use {SPLITS}")
    missing = [s for s in ("train", "validation") if s not in splits]
    if required and missing:
        raise DataError(f"{where} needs {missing} (test is optional), got {sorted(splits)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class BatchingConfig:
    max_tokens: int | None = 4096
    batch_size: int | None = None
    eval_max_tokens: int | None = 8192
    num_workers: int = 0  # collation in this many persistent worker processes (hardware=gpu: 4); 0: in the step
    # training batches padded to a few lengths (data/batching.py bucket_length), so that a compiled model builds
    # one graph per bucket; null: on with compile=true or hardware.cuda_graphs, off otherwise (eager pays for every
    # padded token)
    bucket_lengths: bool | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is None and self.batch_size is None:
            raise ConfigError("batching needs max_tokens or batch_size: set batching.max_tokens=4096, for example")
        if not _is_int(self.num_workers) or self.num_workers < 0:
            raise ConfigError(
                f"batching.num_workers={self.num_workers!r}: give a whole number >= 0 (0 collates in the training "
                f"process)"
            )

"""Fixtures for the data tests: tiny corpora written under tmp_path, and a stand-in sample generator."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import sys
import types
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

REPO = Path(__file__).resolve().parents[2]

WORDS = (
    "the a cat dog bird sees likes chases small big red green house tree river runs sleeps quickly slowly "
    "near under over garden city film movie good bad great awful story actor plot music"
).split()


class Corpus:
    """Writes tiny corpora (plain or .gz by the file name) into one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def sentences(n: int, seed: int = 0) -> list[str]:
        """n random sentences over WORDS: enough text for a SentencePiece vocabulary of ~100."""
        rng = random.Random(seed)
        return [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(n)]

    @classmethod
    def classification_rows(cls, n: int, seed: int = 0) -> list[dict]:
        return [{"text": s, "label": ["negative", "positive"][i % 2]} for i, s in enumerate(cls.sentences(n, seed))]

    @classmethod
    def seq2seq_rows(cls, n: int, seed: int = 0) -> list[dict]:
        # target = source reversed: different strings over the same alphabet
        return [{"source": s, "target": " ".join(reversed(s.split()))} for s in cls.sentences(n, seed)]

    def bytes(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
        return path

    def lines(self, name: str, lines: list[str]) -> Path:
        return self.bytes(name, "".join(line + "\n" for line in lines).encode("utf-8"))

    def jsonl(self, name: str, rows: list[dict]) -> Path:
        return self.lines(name, [json.dumps(row) for row in rows])


def generate_sample_stand_in(kind: str, out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """The contract of transformer.data.samples.generate_sample, with tiny splits."""
    corpus = Corpus(Path(out_dir))
    rows = Corpus.classification_rows if kind == "sentiment" else Corpus.seq2seq_rows
    sizes = {"train": 120, "validation": 20, "test": 20}
    return {split: corpus.jsonl(f"{split}.jsonl", rows(n, seed + i)) for i, (split, n) in enumerate(sizes.items())}


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    return Corpus(tmp_path / "raw")


@pytest.fixture
def sample_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny generated samples: the stand-in replaces transformer.data.samples for this test only."""
    module = types.ModuleType("transformer.data.samples")
    module.generate_sample = generate_sample_stand_in
    monkeypatch.setitem(sys.modules, "transformer.data.samples", module)


@pytest.fixture
def sample_generator(request: pytest.FixtureRequest) -> str:
    """The real sample module when it exists, else the stand-in."""
    if importlib.util.find_spec("transformer.data.samples") is not None:
        return "real"
    request.getfixturevalue("sample_stand_in")
    return "stand-in"


@pytest.fixture
def hydra_clean():
    """Hydra's global instance cleared before and after the test."""
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def configs_dir() -> Path:
    return REPO / "configs"

"""A prepared cache that cannot be written or is damaged: a valid cache is read on a read-only filesystem, one that
must be (re)built there fails in one line, and token ids outside the vocabulary are found on load, not as an
IndexError in the middle of training."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from helpers import ROOT, TINY_RUN, run_script

from transformer.data import DataError, DatasetConfig, prepare_dataset


def classification(**overrides) -> DatasetConfig:
    values = {
        "name": "tiny",
        "objective": "classification",
        "local_dir": "raw",
        "format": "jsonl",
        "splits": {"train": "train.jsonl", "validation": "validation.jsonl"},
        "label_names": ["negative", "positive"],
        "tokenizer": {"vocab_size": 60},
    }
    return DatasetConfig.from_dict({**values, **overrides})


@pytest.fixture
def files(corpus):
    corpus.jsonl("train.jsonl", corpus.classification_rows(150))
    corpus.jsonl("validation.jsonl", corpus.classification_rows(20, seed=1))
    return corpus


def user_namespaces() -> bool:
    """Whether `unshare -rm` can give a process its own mounts (a read-only bind mount without privileges)."""
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def read_only(folder: Path, *command: str) -> list[str]:
    """`command` in a mount namespace where `folder` is a read-only bind mount of itself: writes there fail with
    EROFS, as on a read-only filesystem, also for root."""
    mount = f'mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && exec "$@"'
    return ["unshare", "-rm", "sh", "-c", mount, "sh", *command]


@pytest.mark.skipif(not user_namespaces(), reason="needs unprivileged user and mount namespaces (unshare -rm)")
def test_a_valid_cache_trains_from_a_read_only_filesystem(tmp_path):
    cache = tmp_path / "cache"
    sample = ["task=sentiment", "dataset.max_examples=200", "dataset.tokenizer.vocab_size=300"]
    built = run_script("prepare_data.py", *sample, f"paths.cache_dir={cache}")
    assert built.returncode == 0, built.stderr[-3000:]
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}

    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        command = read_only(cache, sys.executable, str(ROOT / "scripts" / script))
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)

    trained = run("train.py", *TINY_RUN, f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "(reused)" in trained.stdout and (tmp_path / "run" / "metrics.json").is_file()

    stale = run("prepare_data.py", "task=sentiment", "dataset.max_examples=100", f"paths.cache_dir={cache}")
    assert stale.returncode == 2, stale.stderr[-3000:]
    last = stale.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Read-only file system" in last and "paths.cache_dir" in last, last
    assert "Traceback" not in stale.stderr
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == before


def test_a_cache_whose_lock_cannot_be_created_is_read_or_refused(files, tmp_path, monkeypatch):
    """Without namespaces: the lock file's creation fails as on a read-only filesystem (os.open raises EROFS for
    it); this proves the fallback, not that nothing else writes (the test above does)."""
    cache = tmp_path / "cache"
    prepare_dataset(classification(), tmp_path, cache)
    real_open = os.open

    def no_lock(path, flags, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_lock)
    data = prepare_dataset(classification(), tmp_path, cache)
    assert data.reused and len(data.splits["train"]) == 150
    with pytest.raises(DataError, match="cannot be written .*Read-only file system.*paths.cache_dir") as refused:
        prepare_dataset(classification(max_examples=100), tmp_path, cache)
    assert "\n" not in str(refused.value)


def corrupt(split_dir: Path, column: str, value: int) -> None:
    """Rewrite the first row's first id (or its label) in place, as bit rot or a stray edit would; meta.json stays
    valid."""
    ds = datasets.load_from_disk(str(split_dir))

    def edit(row, index):
        if index == 0:
            row[column] = [value, *row[column][1:]] if isinstance(row[column], list) else value
        return row

    edited = ds.map(edit, with_indices=True, keep_in_memory=True)
    tmp = split_dir.with_name(split_dir.name + ".edited")
    edited.save_to_disk(str(tmp))
    del ds, edited
    shutil.rmtree(split_dir)
    tmp.rename(split_dir)


@pytest.mark.parametrize(("column", "value"), [("src_ids", 10**6), ("src_ids", -3), ("label", 7)])
def test_ids_outside_the_vocabulary_or_labels_are_found_on_load(files, tmp_path, column, value):
    cache = tmp_path / "cache"
    data = prepare_dataset(classification(), tmp_path, cache)
    vocab = data.src_tokenizer.vocab_size
    corrupt(cache / "tiny" / "splits" / "train", column, value)
    with pytest.raises(DataError) as raised:
        prepare_dataset(classification(), tmp_path, cache)
    message = str(raised.value)
    assert "\n" not in message and f"{cache / 'tiny'} is damaged" in message and "force=true" in message
    limit = f"outside [0, {vocab})" if column == "src_ids" else "outside [0, 2)"
    assert f"train {column}" in message and str(value) in message and limit in message

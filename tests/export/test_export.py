"""Export (transformer/export/): the graphs, run by ONNX Runtime or torch.export, compute what PyTorch does:
classifier probabilities within 1e-4 on the sentiment sample, and greedy decoding with explicit caches token for
token on the translation sample (plain and copy attention models). scripts/export.py writes the graphs, the
tokenizer and export.json; bad inputs end in one line on stderr with exit status 2.

Exports are atomic and verified: export.json records every file's SHA-256 and the check against PyTorch; load()
refuses a folder with any file flipped, truncated or removed, or an export.json edited or invalid; a re-export
killed at any step leaves the old complete export or the new one, and the next export removes the leftovers."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, TINY_RUN, run_script
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from transformer.checkpoint import Artifacts, load_checkpoint, resolve_checkpoint
from transformer.config import ModelConfig
from transformer.decoding import greedy_search
from transformer.errors import UserError
from transformer.export import ExportedClassifier, ExportedSeq2Seq, ExportMismatch, check, export, export_model, load
from transformer.export.spec import ExportError
from transformer.model import EncoderClassifier, EncoderDecoder
from transformer.objectives import restore_module
from transformer.training.train import train

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The module's runs and exports; cache/ holds each sample, prepared by the first run that reads it."""
    return tmp_path_factory.mktemp("export")


def compose(name: str, overrides: list[str]) -> DictConfig:
    """The packaged config `name` with overrides (as the conftest's compose_config, usable in module fixtures)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("transformer.configs", version_base="1.3"):
            return hydra_compose(config_name=name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def train_run(workdir: Path, name: str, *overrides: str) -> Path:
    """A tiny run directory, trained in this process (a subprocess would add seconds of imports)."""
    run = workdir / name
    train(compose("train", [*TINY_RUN, *overrides, f"paths.cache_dir={workdir / 'cache'}", f"paths.output_dir={run}"]))
    return run


@pytest.fixture(scope="module")
def sentiment_run(workdir) -> Path:
    return train_run(workdir, "sentiment")


@pytest.fixture(scope="module")
def translation_run(workdir) -> Path:
    return train_run(workdir, "translation", "task=translation")


def sample(workdir: Path, dataset: str, column: str, n: int) -> list[str]:
    """The first n texts of the offline sample's test split."""
    lines = (workdir / "cache" / dataset / "raw" / "test.jsonl").read_text().splitlines()[:n]
    return [json.loads(line)[column] for line in lines]


def restored(run: Path):
    """The run's checkpoint, and its model in eval mode."""
    checkpoint = load_checkpoint(resolve_checkpoint(run)[0])
    return checkpoint, restore_module(checkpoint).model


@pytest.fixture(scope="module")
def cli_export(workdir, sentiment_run):
    """scripts/export.py on the sentiment run directory, as a user runs it (check=true: the default)."""
    out = workdir / "classifier_onnx"
    result = run_script("export.py", f"ckpt={sentiment_run}", f"output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_cli_writes_graph_tokenizer_and_metadata(cli_export, sentiment_run):
    out, result = cli_export
    listed = [Path(line) for line in result.stdout.splitlines()]  # the files, and nothing else (no exporter logs)
    assert sorted(p.name for p in listed) == ["classifier.onnx", "export.json", "tokenizer.model"]
    assert all(p.parent == out and p.is_file() for p in listed)
    meta = json.loads((out / "export.json").read_text())
    checkpoint = load_checkpoint(meta["checkpoint"])
    assert meta["format"] == "onnx" and meta["opset"] == 18 and meta["objective"] == "classification"
    assert meta["label_names"] == ["negative", "positive"] and meta["max_source_len"] == 128
    assert (meta["pad_id"], meta["bos_id"], meta["eos_id"]) == (0, 2, 3)
    assert meta["graphs"]["classifier"]["inputs"] == {"src": {"shape": ["batch", "src_len"], "dtype": "int64"}}
    assert (out / "tokenizer.model").read_bytes() == checkpoint["transformer"]["src_tokenizer"]
    # every file's size and SHA-256, and what the check against PyTorch measured
    assert meta["files"] == {
        name: {"bytes": (out / name).stat().st_size, "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest()}
        for name in ("classifier.onnx", "tokenizer.model")
    }
    assert meta["check"]["against"] == "pytorch" and meta["check"]["rows"] == 4
    assert 0 <= meta["check"]["max_abs_error"] <= meta["check"]["atol"] == 1e-4
    said = f"wrote {out}; check against PyTorch on 4 sample rows: class probabilities within "
    assert result.stderr.strip().splitlines()[-1].startswith(said)  # the check's result, said
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")) == []  # no leftovers


def test_classifier_probabilities_match_pytorch_on_the_sentiment_sample(cli_export, sentiment_run, workdir):
    out, _ = cli_export
    _, model = restored(sentiment_run)
    runtime = load(out)
    assert isinstance(runtime, ExportedClassifier)
    src = runtime.encode(sample(workdir, "sentiment_sample", "text", 32))  # (32, S), padded
    with torch.inference_mode():
        expected = model(torch.from_numpy(src)).softmax(-1).numpy()
    np.testing.assert_allclose(runtime.probabilities(src), expected, rtol=0, atol=1e-4)
    alone = src[:1, : int((src[0] != 0).sum())]  # batch 1 at its own length: the axes are dynamic
    np.testing.assert_allclose(runtime.probabilities(alone), expected[:1], rtol=0, atol=1e-4)
    with torch.no_grad():
        model.head.bias[0] += 0.01  # the check that export runs notices a model that differs slightly
    with pytest.raises(ExportMismatch, match="class probabilities differ"):
        check(model, out)


def test_torch_export_classifier_matches_pytorch(sentiment_run, workdir):
    out = workdir / "classifier_pt2"
    export(compose("export", [f"ckpt={sentiment_run}", "format=torch_export", f"output_dir={out}"]))
    _, model = restored(sentiment_run)
    runtime = load(out)
    src = runtime.encode(sample(workdir, "sentiment_sample", "text", 8))
    with torch.inference_mode():
        expected = model(torch.from_numpy(src)).softmax(-1).numpy()
    np.testing.assert_allclose(runtime.probabilities(src), expected, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def translation_export(translation_run) -> Path:
    """The translation run exported in its run directory, with check=true (greedy on a sample)."""
    written = export(compose("export", [f"ckpt={translation_run}"]))
    out = translation_run / "export_onnx"  # the default: in the run
    assert {p.name for p in written} == {"encoder.onnx", "decoder_step.onnx", "tokenizer.model", "export.json"}
    assert all(p.parent == out for p in written)
    return out


def test_greedy_through_onnx_runtime_equals_greedy_search(translation_export, translation_run, workdir):
    """Sentences of different lengths finish at different steps (their budgets differ), so the batch shrinks."""
    out = translation_export
    check_results = json.loads((out / "export.json").read_text())["check"]
    assert check_results["against"] == "pytorch" and check_results["rows"] == 4 and check_results["identical"] is True
    checkpoint, model = restored(translation_run)
    runtime = load(out)
    assert isinstance(runtime, ExportedSeq2Seq)
    texts = sample(workdir, "translation_sample", "source", 16)
    src = runtime.encode(texts)
    d = runtime.meta["decoding"]  # the checkpoint's settings, the runtime's defaults
    expected = greedy_search(model, torch.from_numpy(src), 2, 3, d["max_len_a"], d["max_len_b"], min_len=d["min_len"])
    assert runtime.greedy(src) == expected
    assert len({len(hyp) for hyp in expected}) > 1
    tgt = Artifacts.of(checkpoint).tgt_tokenizer
    assert runtime.generate(["", texts[0]]) == ["", tgt.decode(expected[0])]


def test_copy_attention_decodes_alike_through_onnx_and_torch_export(translation_run, workdir):
    """A random copy-attention model with peaked distributions (weights x3): outputs of varied lengths, early EOS."""
    checkpoint, _ = restored(translation_run)
    src_tok = Artifacts.of(checkpoint).src_tokenizer
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig.named("tiny", vocab_size=src_tok.vocab_size, dropout=0.0, copy_attention=True))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    model.eval()
    texts = sample(workdir, "translation_sample", "source", 16)
    rows = src_tok.encode(texts)
    src = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
    for i, row in enumerate(rows):
        src[i, : len(row)] = row
    expected = greedy_search(model, torch.from_numpy(src), 2, 3, max_len_a=1.0, max_len_b=5)
    for fmt in ("onnx", "torch_export"):
        out = workdir / f"copy_{fmt}"
        export_model(model, out, fmt)
        assert load(out).greedy(src, max_len_a=1.0, max_len_b=5) == expected, fmt


def test_pretraining_checkpoint_gets_a_one_line_error(workdir, sentiment_run):
    """Through scripts/export.py: exit status 2 and one line on stderr, nothing written."""
    checkpoint = torch.load(resolve_checkpoint(sentiment_run)[0], weights_only=True)
    checkpoint["transformer"]["objective"] = "pretrain"  # all that export reads of it before refusing
    torch.save(checkpoint, workdir / "pretrain.ckpt")
    result = run_script("export.py", f"ckpt={workdir / 'pretrain.ckpt'}", f"output_dir={workdir / 'bad'}")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "is a pretraining checkpoint" in lines[0], lines
    assert not (workdir / "bad").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["ckpt={run}", "format=foo"], "format='foo' is not one of onnx, torch_export: pass format=onnx"),
        (["ckpt={run}", "opset=17"], "opset=17 is too old for torch.onnx's exporter: pass opset=18 or newer"),
        ([], "ckpt is required: pass ckpt=<value>"),
        (["ckpt=nowhere.ckpt"], "checkpoint nowhere.ckpt does not exist"),
    ],
    ids=["format", "opset", "no ckpt", "missing ckpt"],
)
def test_bad_inputs_are_user_errors(overrides, message, sentiment_run, workdir):
    """The CLI prints a UserError's first line and exits with status 2 (the test above runs it)."""
    overrides = [o.format(run=sentiment_run) for o in overrides]
    with pytest.raises(UserError) as error:
        export(compose("export", [*overrides, f"output_dir={workdir / 'bad'}"]))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (workdir / "bad").exists()


# ----------------------------------------------------------------------------------------------------------------
# Verified exports: load() refuses a damaged folder in one line that names the file and says to re-export


@pytest.fixture(scope="module")
def classifier_export(cli_export) -> Path:
    return cli_export[0]


def refused(folder: Path, *fragments: str) -> str:
    """load(folder)'s ExportError: one line, naming what is wrong (fragments) and saying to re-export."""
    with pytest.raises(ExportError) as error:
        load(folder)
    message = str(error.value)
    assert "\n" not in message and "re-export" in message, message
    assert all(fragment in message for fragment in fragments), message
    return message


def flip(path: Path) -> None:
    """Four bytes in the middle of the file inverted: the size stays, the contents change."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


DAMAGES = {"flipped": flip, "truncated": truncate, "removed": Path.unlink}
EXPORTED_FILES = {
    "classifier_export": ["classifier.onnx", "tokenizer.model", "export.json"],
    "translation_export": ["encoder.onnx", "decoder_step.onnx", "tokenizer.model", "export.json"],
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize(
    ("folder", "name"), [(folder, name) for folder, names in EXPORTED_FILES.items() for name in names]
)
def test_load_refuses_every_damaged_file(folder, name, damage, request, tmp_path):
    """Each file of a classifier and a translation export flipped, truncated or removed (today: the flipped graph
    loads and predicts ('negative', nan), a truncated one raises InvalidProtobuf, a removed one FileNotFoundError)."""
    copy = tmp_path / "export"
    shutil.copytree(request.getfixturevalue(folder), copy)
    DAMAGES[damage](copy / name)
    refused(copy, name)


def seal(meta: dict) -> dict:
    """export.json's digest: the SHA-256 of its other keys as compact JSON with sorted keys."""
    body = {key: value for key, value in meta.items() if key != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return {**body, "digest": hashlib.sha256(text.encode()).hexdigest()}


EDITS = {  # an edit of export.json, and what the error names
    "max_source_len 0": (lambda m: m.update(max_source_len=0), "max_source_len is 0"),
    "label_names removed": (lambda m: m.pop("label_names"), "label_names is missing"),
    "label_names short": (lambda m: m.update(label_names=["negative"]), "label_names"),
    "eos_id out of range": (lambda m: m.update(eos_id=m["model"]["vocab_size"]), "eos_id"),
    "num_classes a string": (lambda m: m["model"].update(num_classes="2"), "model.num_classes"),
    "graph outside": (lambda m: m["graphs"]["classifier"].update(file="../classifier.onnx"), "graphs.classifier.file"),
    "graph unlisted": (lambda m: m["files"].pop("classifier.onnx"), "classifier.onnx"),
    "objective unknown": (lambda m: m.update(objective="regression"), "objective"),
    "older version": (lambda m: m.pop("version"), "older"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_load_refuses_an_edited_export_json(edit, classifier_export, tmp_path):
    """An edit with the digest left as written is refused as an edit; one with the digest recomputed (a hand-made
    export.json) is refused by the schema check (today: max_source_len 0 gives nan, no label_names "0"/"1")."""
    change, fragment = EDITS[edit]
    copy = tmp_path / "export"
    shutil.copytree(classifier_export, copy)
    meta = json.loads((copy / "export.json").read_text())
    change(meta)
    (copy / "export.json").write_text(json.dumps(meta))
    refused(copy, "export.json", "changed")
    (copy / "export.json").write_text(json.dumps(seal(meta)))
    refused(copy, "export.json", fragment)


@pytest.mark.parametrize("text", ["", "{", "[]", "\udcff"], ids=["empty", "invalid", "a list", "not UTF-8"])
def test_load_refuses_an_unreadable_export_json(text, classifier_export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(classifier_export, copy)
    (copy / "export.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    refused(copy, "export.json")


def test_load_refuses_what_is_not_an_export_folder(tmp_path):
    for path in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(ExportError, match="export.json") as error:
            load(path)
        assert "\n" not in str(error.value)


# ----------------------------------------------------------------------------------------------------------------
# Atomic exports: a re-export replaces the old folder only once the new one is complete and verified


def tiny_classifier(seed: int) -> EncoderClassifier:
    torch.manual_seed(seed)
    return EncoderClassifier(ModelConfig.named("tiny", vocab_size=64)).eval()


TINY_SRC = np.array([[5, 6, 7, 8, 9, 0], [10, 11, 0, 0, 0, 0]])


@pytest.fixture(scope="module")
def tiny_export(workdir) -> Path:
    """tiny_classifier(0) exported as torch.export programs: the folder's handling is the format's, and they export
    in a second where ONNX takes several."""
    out = workdir / "tiny_pt2"
    export_model(tiny_classifier(0), out, "torch_export")
    return out


# re-export tiny_classifier(1) into argv[1], killed by SIGKILL at step argv[2]
KILLED_EXPORT = """
import os, signal, sys
import torch
from transformer import EncoderClassifier, ModelConfig
from transformer.export import writer

out, step = sys.argv[1], sys.argv[2]


def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


if step == "writing":  # the kill lands while the graph file is half written
    write_graph = writer.write_graph

    def half_written(wrapper, path, *args):
        write_graph(wrapper, path, *args)
        os.truncate(path, path.stat().st_size // 2)
        killed()

    writer.write_graph = half_written
else:  # swap: the new folder complete, before it takes the old one's place; discard: after, the old one still there
    setattr(writer, step, killed)
torch.manual_seed(1)
writer.export_model(EncoderClassifier(ModelConfig.named("tiny", vocab_size=64)).eval(), out, "torch_export")
"""


@pytest.mark.parametrize("step", ["writing", "swap", "discard"])
def test_a_reexport_killed_at_any_step_leaves_a_complete_export(step, tiny_export, tmp_path):
    """SIGKILL during a re-export leaves the old export (until the swap) or the new one (after), both complete and
    verified, never a mixture; the next export removes the killed one's temporary folder. (Today the folder is
    rewritten in place: a kill mid-write leaves half a graph under the old export.json.)"""
    out = tmp_path / "export"
    shutil.copytree(tiny_export, out)
    old = load(out).probabilities(TINY_SRC)
    with torch.inference_mode():
        new = tiny_classifier(1)(torch.from_numpy(TINY_SRC)).softmax(-1).numpy()
    assert not np.allclose(old, new, rtol=0, atol=1e-3)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", KILLED_EXPORT, str(out), step], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    expected = new if step == "discard" else old
    np.testing.assert_allclose(load(out).probabilities(TINY_SRC), expected, rtol=0, atol=1e-4)
    assert [p for p in tmp_path.iterdir() if p != out]  # the killed export's temporary folder...
    export_model(tiny_classifier(1), out, "torch_export")
    assert list(tmp_path.iterdir()) == [out]  # ...removed by the next export
    np.testing.assert_allclose(load(out).probabilities(TINY_SRC), new, rtol=0, atol=1e-4)


def test_a_failed_reexport_keeps_the_old_export_and_leaves_nothing(tiny_export, tmp_path, monkeypatch):
    """An error after the new graph is written (the disk fills up): the old export stays as it was, byte for byte,
    and the temporary folder is gone."""
    from transformer.export import writer

    out = tmp_path / "export"
    shutil.copytree(tiny_export, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_graph = writer.write_graph

    def disk_full(*args):
        write_graph(*args)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer, "write_graph", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_model(tiny_classifier(1), out, "torch_export")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert list(tmp_path.iterdir()) == [out]


# ----------------------------------------------------------------------------------------------------------------
# Output folders an export cannot write or must not replace: one line, nothing written, nothing removed


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root: a file's bytes, None for a folder."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", ["a file", "under a file", "a folder of other files", "read-only"])
def test_output_dirs_an_export_cannot_own_are_one_line_errors(case, sentiment_run, tmp_path, monkeypatch):
    """The export refuses before writing anything. Read-only: the tests run as root, whom the mode bits do not stop,
    so there os.mkdir answers as the kernel does for a user (EACCES); that case shows how the error is reported,
    not the kernel's permission check."""
    (tmp_path / "notes.txt").write_text("keep me\n")
    out, fragment = {
        "a file": (tmp_path / "notes.txt", "is a file"),
        "under a file": (tmp_path / "notes.txt" / "export", "is a file"),
        "a folder of other files": (tmp_path, "not an export"),
        "read-only": (tmp_path / "read_only" / "export", "Permission denied"),
    }[case]
    if case == "read-only":
        out.parent.mkdir()
        out.parent.chmod(0o555)
        mkdir = os.mkdir

        def refusing_mkdir(path, *args, **kwargs):
            if os.geteuid() == 0 and Path(os.fsdecode(path)).parent == out.parent:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
            return mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", refusing_mkdir)
    before = snapshot(tmp_path)
    with pytest.raises(ExportError) as error:
        export(compose("export", [f"ckpt={sentiment_run}", f"output_dir={out}"]))
    message = str(error.value)
    assert "\n" not in message and fragment in message and "output_dir" in message, message
    assert snapshot(tmp_path) == before


def test_cli_output_dir_under_a_file_is_one_line(sentiment_run, tmp_path):
    """Through scripts/export.py: exit status 2, one line on stderr, the file untouched and nothing else written."""
    (tmp_path / "notes.txt").write_text("keep me\n")
    result = run_script("export.py", f"ckpt={sentiment_run}", f"output_dir={tmp_path / 'notes.txt' / 'export'}")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "is a file" in lines[0], lines
    assert snapshot(tmp_path) == {"notes.txt": b"keep me\n"}

"""Export (transformer/export/): the graphs, run by ONNX Runtime or torch.export, compute what PyTorch does:
classifier probabilities within 1e-4 on the sentiment sample, and greedy decoding with explicit caches token for
token on the translation sample (plain and copy attention models). scripts/export.py writes the graphs, the
tokenizer and export.json; bad inputs end in one line on stderr with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_RUN, run_script
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from transformer.checkpoint import Artifacts, load_checkpoint, resolve_checkpoint
from transformer.config import ModelConfig
from transformer.decoding import greedy_search
from transformer.errors import UserError
from transformer.export import ExportedClassifier, ExportedSeq2Seq, ExportMismatch, check, export, export_model, load
from transformer.model import EncoderDecoder
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


def test_greedy_through_onnx_runtime_equals_greedy_search(translation_run, workdir):
    """Sentences of different lengths finish at different steps (their budgets differ), so the batch shrinks."""
    written = export(compose("export", [f"ckpt={translation_run}"]))  # with check=true: greedy on a sample
    out = translation_run / "checkpoints" / "export_onnx"  # next to the checkpoint
    assert {p.name for p in written} == {"encoder.onnx", "decoder_step.onnx", "tokenizer.model", "export.json"}
    assert all(p.parent == out for p in written)
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

"""init_from=hf: end to end on the offline samples: import a pretrained folder, fine-tune a few steps, predict,
evaluate, export back with format=hf, and load the export in transformers with equal logits."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY_RUN, run_script
from helpers.hf import SENTENCES, save_classifier, save_seq2seq

transformers = pytest.importorskip("transformers")

RUN = [arg for arg in TINY_RUN if not arg.startswith(("model=", "dataset.tokenizer", "logger"))]
FAST_DECODING = ["decoding.max_len_a=0", "decoding.max_len_b=5", "decoding.beam_size=1"]  # an untrained model's outputs


def fine_tune(tmp_path, task: str, folder, *extra: str):
    run = tmp_path / "run"
    result = run_script(
        "train.py", f"task={task}", f"init_from=hf:{folder}", *RUN, f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run}", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 newly initialized, 0 unused, 0 shape-mismatched" in result.stdout + result.stderr
    return run


def exported_logits_equal_ours(run, tmp_path, seq2seq: bool, compose_config=None):
    from transformer.inference import open_fine_tuned

    out = tmp_path / "export"
    if compose_config is None:
        result = run_script("export.py", f"ckpt={run}", "format=hf", f"output_dir={out}")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "logits within" in result.stderr
    else:
        from transformer.export.writer import export

        export(compose_config("export", [f"ckpt={run}", "format=hf", f"output_dir={out}"]))
    _, artifacts, module = open_fine_tuned(str(run))
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    src = batch["input_ids"]
    assert src.tolist() == [
        ids + [artifacts.src_tokenizer.pad_id] * (src.size(1) - len(ids))
        for ids in artifacts.src_tokenizer.encode(SENTENCES)
    ]  # the exported tokenizer reads as ours
    model = module.model.float().eval()
    with torch.no_grad():
        if not seq2seq:
            theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
            torch.testing.assert_close(model(src), theirs(**batch).logits, atol=1e-4, rtol=0)
            return
        theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
        tgt_in = torch.full_like(src[:, :4], model.config.start_id)
        torch.testing.assert_close(
            model(src, tgt_in), theirs(**batch, decoder_input_ids=tgt_in).logits, atol=1e-4, rtol=0
        )


def test_bert_sentiment_imported_fine_tuned_predicted_and_exported(tmp_path, compose_config, caplog):
    """In one process (the default suite's budget): import, two steps of fine-tuning, predict, export, reload."""
    from transformer.inference import Predictor
    from transformer.training.train import train

    save_classifier(tmp_path / "bert", "bert")
    run = tmp_path / "run"
    overrides = ["task=sentiment", f"init_from=hf:{tmp_path / 'bert'}", f"paths.output_dir={run}"]
    overrides += [f"paths.cache_dir={tmp_path / 'cache'}", *RUN, "logger={}"]
    with caplog.at_level("INFO"):
        metrics = train(compose_config("train", overrides))
    assert metrics["global_step"] == 2 and "val/acc" in metrics
    assert "33 tensors loaded, 0 newly initialized, 0 unused, 0 shape-mismatched" in caplog.text
    answers = Predictor(str(run))(["not bad at all", "Café 😀"])
    assert all(answer["label"] in ("negative", "positive") for answer in answers)
    exported_logits_equal_ours(run, tmp_path, seq2seq=False, compose_config=compose_config)


@pytest.mark.slow
def test_bert_sentiment_evaluates_and_serves(tmp_path):
    from transformer.inference import Predictor

    save_classifier(tmp_path / "bert", "roberta")
    run = fine_tune(tmp_path, "sentiment", tmp_path / "bert")
    evaluated = run_script("evaluate.py", f"ckpt={run}", "split=test")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "test/acc" in json.loads(evaluated.stdout[evaluated.stdout.index("{") :])
    texts = ["not bad at all", "terrible 😀"]
    expected = Predictor(str(run))(texts)
    assert len(expected) == 2 and all(answer["label"] in ("negative", "positive") for answer in expected)
    answers = served(run, tmp_path, {"text": texts})  # the HTTP server answers as the predictor does
    assert [a["label"] for a in answers] == [e["label"] for e in expected]
    for answer, want in zip(answers, expected, strict=True):
        assert answer["probability"] == pytest.approx(want["probability"], abs=1e-5)


def served(run, tmp_path, body: dict, timeout: float = 180):
    """scripts/serve.py on a free loopback port: one POST /predict, then SIGTERM."""
    import os
    import re
    import subprocess
    import sys
    import time
    import urllib.request

    from helpers import ROOT

    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "serve.py"), f"ckpt={run}", "port=0"], stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not (found := re.search(r"at http://127\.0\.0\.1:(\d+) ", log_path.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{found.group(1)}/predict", json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize(("model_type", "task"), [("bart", "summarization"), ("marian", "translation")])
def test_seq2seq_imported_fine_tuned_and_exported(tmp_path, model_type, task):
    save_seq2seq(tmp_path / model_type, model_type)
    run = fine_tune(tmp_path, task, tmp_path / model_type, "decoding.max_len_b=5")
    predicted = run_script("predict.py", f"ckpt={run}", "text='ein Hund läuft'")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    exported_logits_equal_ours(run, tmp_path, seq2seq=True)


@pytest.mark.slow  # ~20 s: data preparation, two steps, validation and test decoding
def test_our_default_seq2seq_trained_here_exports(tmp_path, compose_config):
    """A summarization model trained here in our default layout (pre-LN, sinusoidal positions, one shared
    tokenizer) exports with format=hf (as Pegasus) and loads in transformers with equal logits."""
    from transformer.training.train import train

    run = tmp_path / "run"
    overrides = [
        "task=summarization",
        "model=tiny",
        f"paths.output_dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *RUN,
    ]
    train(compose_config("train", [*overrides, "dataset.tokenizer.vocab_size=300", "logger={}", *FAST_DECODING]))
    exported_logits_equal_ours(run, tmp_path, seq2seq=True, compose_config=compose_config)
    assert json.loads((tmp_path / "export" / "config.json").read_text())["model_type"] == "pegasus"

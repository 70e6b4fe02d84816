"""init_from: a run starts from another run's matching weights, says what it loaded, and refuses a checkpoint whose
tokenizer would read the run's tokens wrongly unless told to encode the data with the checkpoint's tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TINY_RUN, run_script

from transformer.config import ModelConfig
from transformer.model import EncoderClassifier, EncoderDecoder
from transformer.training.init import group, initialize


def state(model: torch.nn.Module) -> dict:
    return {f"model.{k}": v.clone() for k, v in model.state_dict().items()}


def test_initialize_loads_matching_tensors_and_reports_the_rest():
    torch.manual_seed(0)
    config = ModelConfig.named("tiny", vocab_size=40, num_classes=3)
    seq2seq = EncoderDecoder(config)
    classifier = EncoderClassifier(config)
    report = initialize(classifier, {"state_dict": state(seq2seq)}, "x.ckpt")
    for name, value in classifier.state_dict().items():
        if name.startswith("encoder."):
            torch.testing.assert_close(value, seq2seq.state_dict()[name], rtol=0, atol=0)
    assert set(report.new) == {"head.weight", "head.bias"} and not report.mismatched
    assert "decoder.layers.*.cross_attn" in group(report.unused)

    other = EncoderClassifier(ModelConfig.named("tiny", vocab_size=50, num_classes=3))
    report = initialize(other, {"state_dict": state(classifier)}, "x.ckpt")
    assert [name for name, _, _ in report.mismatched] == ["encoder.embed.tokens.weight"]
    assert "1 shape-mismatched" in report.summary().splitlines()[0]
    with pytest.raises(ValueError, match="shares no tensor"):
        initialize(other, {"state_dict": {"model.nothing": torch.zeros(1)}}, "x.ckpt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("init")
    made = {}
    for task in ("sentiment", "translation"):
        result = run_script("train.py", f"task={task}", *TINY_RUN, f"paths.cache_dir={root / 'cache'}",
                            f"hydra.run.dir={root / task}")  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        made[task] = root / task
    made["cache"] = root / "cache"
    return made


def test_init_from_a_run(runs, tmp_path):
    base = [*TINY_RUN, f"paths.cache_dir={runs['cache']}"]
    same = run_script("train.py", *base, f"init_from={runs['sentiment']}", f"hydra.run.dir={tmp_path / 'a'}")
    assert same.returncode == 0, same.stderr[-3000:]
    assert "29 tensors loaded, 0 newly initialized, 0 unused, 0 shape-mismatched" in same.stdout + same.stderr

    other = run_script("train.py", *base, f"init_from={runs['translation']}", f"hydra.run.dir={tmp_path / 'b'}")
    assert other.returncode == 2
    assert other.stderr.strip().splitlines()[-1].startswith("error: ") and "init_tokenizer=checkpoint" in other.stderr

    kept = run_script("train.py", *base, f"init_from={runs['translation']}", "init_tokenizer=checkpoint",
                      f"hydra.run.dir={tmp_path / 'c'}")  # fmt: skip
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert "2 newly initialized" in kept.stdout + kept.stderr and "newly initialized: head" in kept.stdout + kept.stderr
    assert list(runs["cache"].glob("sentiment_sample-tok*"))  # the run's data, encoded with the checkpoint's

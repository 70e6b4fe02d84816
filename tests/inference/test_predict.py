"""predict (transformer/inference.py) on inputs that go wrong: texts that yield no tokens are answered alone, by an
empty line, beside their neighbours; a file that is not a checkpoint, or an input file that is not text, ends in one
line."""

from __future__ import annotations

import random

import pytest
from helpers import run_script

from transformer.checkpoint import CheckpointError, load_checkpoint
from transformer.errors import UserError
from transformer.inference import Predictor, predict

# Texts that pass the not-blank check (str.strip() keeps them) but that SentencePiece turns into no tokens at all.
NO_TOKENS = ["\u200b", "\x01\x02\x03", "\u200b\x7f\x1b\u200b"]


@pytest.fixture(scope="module")
def predictors(runs) -> dict[str, Predictor]:
    return {task: Predictor(str(run)) for task, run in runs.items()}


@pytest.mark.parametrize("task", ["sentiment", "translation"])
def test_a_text_without_tokens_gets_no_result_and_its_neighbours_theirs(task, predictors):
    predictor = predictors[task]
    assert all(ids == [] for ids in predictor.encode(NO_TOKENS)), "the texts must yield no tokens to mean anything"
    good = ["a wonderful film", "Two dogs run in the park.", "dull"]
    results = predictor([good[0], NO_TOKENS[0], good[1], *NO_TOKENS[1:], good[2]])
    assert [result is None for result in results] == [False, True, False, True, True, False]
    alone = [predictor.lines(predictor([text])[0], 0) for text in good]
    assert [predictor.lines(results[i], 0) for i in (0, 2, 5)] == alone  # the bad rows do not change the others


@pytest.mark.parametrize("task", ["sentiment", "translation"])
def test_predict_prints_an_empty_line_for_a_text_without_tokens_and_never_nan(task, runs, compose_config, capsys):
    stdin = ["a wonderful film\n", "\u200b\n", "\x01\x02\n", "dull and slow\n"]
    for batch_size in (1, 8):
        lines = predict(compose_config("predict", [f"ckpt={runs[task]}", f"batch_size={batch_size}"]), stdin=stdin)
        assert len(lines) == 4 and lines[1] == lines[2] == "" and lines[0] and lines[3]
        assert not any("nan" in line.lower() for line in lines)
        assert lines[0] == predict(compose_config("predict", [f"ckpt={runs[task]}", "text='a wonderful film'"]))[0]
    assert "input line 2 yields no tokens" in capsys.readouterr().err  # said, not silent


def test_an_input_file_that_is_not_text_is_one_line(runs, compose_config, tmp_path):
    binary = tmp_path / "garbage.bin"
    binary.write_bytes(b"fine\n\xff\xfe\x00\x81 not utf-8\n")
    with pytest.raises(UserError) as caught:
        predict(compose_config("predict", [f"ckpt={runs['sentiment']}", f"input={binary}"]))
    message = str(caught.value)
    assert f"input file {binary} is not UTF-8 text" in message and "offset 5" in message and "\n" not in message


def not_checkpoints(folder) -> dict[str, object]:
    """Files that are no checkpoint at all, each of which torch.load fails on with its own error."""
    files = {
        "random": random.Random(2).randbytes(4096),  # torch.load: IndexError: pop from empty list
        "random-too": random.Random(20).randbytes(4096),  # KeyError: 0
        "text": b"hello world\n",  # KeyError: 101
        "empty": b"",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.ckpt"
        paths[name].write_bytes(data)
    return paths


def test_a_file_that_is_no_checkpoint_is_refused_in_one_line(tmp_path):
    for name, path in not_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert f"checkpoint {path} is not a PyTorch checkpoint" in message and "\n" not in message, name


@pytest.mark.parametrize("script", ["predict.py", "export.py"])
def test_predict_and_export_refuse_a_text_file_as_ckpt_with_exit_2(script, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    result = run_script(script, f"ckpt={text}", *(["text=hi"] if script == "predict.py" else []), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"error: checkpoint {text} is not a PyTorch checkpoint (it does not start as the zip archive torch.save "
        f"writes): pass a .ckpt written by scripts/train.py, or its run directory"
    ]

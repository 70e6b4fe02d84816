"""End to end on the tiny model: prepare, train, checkpoint, evaluate and predict for every task; resume;
bad input. Runs in temporary directories."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from helpers import run_script

from transformer.checkpoint import CheckpointError, load_checkpoint
from transformer.inference import evaluate, predict
from transformer.training.averaging import average_checkpoints, epoch_checkpoints
from transformer.training.train import train

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["sentiment", "translation", "summarization"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Prepared samples shared by the tests of this session (each is prepared once)."""
    return tmp_path_factory.mktemp("cache")


def fast(task: str, run_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [
        f"task={task}",
        "model=tiny",
        f"paths.output_dir={run_dir}",
        f"paths.cache_dir={cache}",
        "dataset.max_examples=200",
        "dataset.tokenizer.vocab_size=300",
        "trainer.max_steps=8",
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2",
        "~callbacks.progress_bar",
        "batching.max_tokens=1024",
        "decoding.beam_size=2",
        "decoding.max_len_a=0.5",
        "decoding.max_len_b=4",
        "optim.warmup_steps=4",
        *extra,
    ]


@pytest.mark.parametrize("task", TASKS)
def test_train_evaluate_predict_end_to_end(task, tmp_path, cache_dir, compose_config):
    cfg = compose_config("train", fast(task, tmp_path / "run", cache_dir))
    metrics = train(cfg)

    run = tmp_path / "run"
    written = json.loads((run / "metrics.json").read_text())
    assert written["global_step"] == 8
    monitor = cfg.task.monitor
    assert monitor in written and math.isfinite(written[monitor])
    assert all(math.isfinite(v) for k, v in written.items() if k.startswith(("val/", "test/")))
    assert any(k.startswith("test/") for k in written)
    assert metrics[monitor] == written[monitor]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "tensorboard" / "run").glob("events.out.tfevents.*"))  # tensorboard/<run name>/

    ckpt = run / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(ckpt)  # weights_only: nothing pickled runs
    assert checkpoint["transformer"]["task"] == task

    eval_cfg = compose_config("evaluate", [f"ckpt={ckpt}", "split=validation", f"output_dir={tmp_path / 'eval'}"])
    eval_metrics = evaluate(eval_cfg)
    assert all(math.isfinite(v) for v in eval_metrics.values())
    lines = (tmp_path / "eval" / "predictions_validation.txt").read_text().splitlines()
    assert len(lines) == 200

    text = {
        "sentiment": "the film was not good",
        "translation": "the dog sees the cat",
        "summarization": "Hi all. The meeting is moved to Friday. Thanks.",
    }[task]
    outputs = predict(compose_config("predict", [f"ckpt={ckpt}", f"text={text!r}"]))
    assert len(outputs) == 1
    if task == "sentiment":
        label, prob = outputs[0].split("\t")
        assert label in ("negative", "positive") and 0.5 <= float(prob) <= 1.0


def test_resume_equals_uninterrupted(tmp_path, cache_dir, compose_config):
    """Resuming from a mid-epoch checkpoint ends with the same weights as the uninterrupted run, with the batches
    collated in the training process (num_workers=0) or in two persistent workers (as hardware=gpu does)."""
    common = [
        "trainer.max_epochs=2",
        "trainer.max_steps=-1",
        "dataset.max_examples=300",
        "++trainer.limit_val_batches=1",
        "logger={}",
        "callbacks.model_checkpoint.monitor=null",
        "callbacks.model_checkpoint.save_top_k=-1",
        "+callbacks.model_checkpoint.every_n_train_steps=5",
        "callbacks.model_checkpoint.filename='step{step}'",
    ]
    train(compose_config("train", fast("sentiment", tmp_path / "full", cache_dir, *common)))
    stopped = tmp_path / "full" / "checkpoints" / "step5.ckpt"
    state = torch.load(stopped, weights_only=True)
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "consumed": 5}]
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    for workers in (0, 2):
        run = tmp_path / f"resumed-{workers}"
        resumed = [*common, f"ckpt_path={stopped}", f"batching.num_workers={workers}"]
        train(compose_config("train", fast("sentiment", run, cache_dir, *resumed)))
        b = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        assert a["global_step"] == b["global_step"] > 5
        for name, value in a["state_dict"].items():
            torch.testing.assert_close(b["state_dict"][name], value, rtol=0, atol=0, msg=f"{workers} workers: {name}")


def test_bad_checkpoints_get_one_line_errors(tmp_path, compose_config):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a checkpoint written by this framework"):
        load_checkpoint(foreign)


def test_checkpoint_of_another_task_and_missing_key(tmp_path, cache_dir, compose_config):
    train(compose_config("train", fast("sentiment", tmp_path / "run", cache_dir, "logger={}")))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match="is a sentiment \\(classification\\) checkpoint"):
        load_checkpoint(ckpt, objective="seq2seq")
    wrong = compose_config("evaluate", [f"ckpt={ckpt}", "dataset=translation_sample"])
    with pytest.raises(CheckpointError, match="but dataset 'translation_sample' is seq2seq"):
        evaluate(wrong)
    result = run_script("evaluate.py")
    assert result.returncode == 2 and "ckpt" in result.stderr.strip().splitlines()[-1]
    result = run_script("predict.py", f"ckpt={tmp_path / 'nope.ckpt'}", "text=hello")
    assert result.returncode == 2 and "does not exist" in result.stderr.strip().splitlines()[-1]


def test_max_steps_mid_epoch_validates_once_and_keeps_its_best_checkpoint(tmp_path, cache_dir, compose_config):
    """Lightning validates at epoch ends only: a run stopped by max_steps inside an epoch is validated at that step
    (callbacks.ValidationStep), so its top-k checkpoint holds the final weights and their score, with no warning."""
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(compose_config("train", fast("sentiment", run, cache_dir, "trainer.max_steps=3", "logger={}")))
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "consumed": 3}]
    assert state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["is_last_batch"] is False  # inside the epoch
    assert metrics["best_checkpoint"] == str(Path("checkpoints") / "epoch000-step3.ckpt")
    assert metrics["best_score"] == metrics["val/acc"]  # the final weights, scored by their own validation
    assert not [w for w in caught if "could not find the monitored key" in str(w.message)]


def test_ddp_cpu_trains_two_processes_and_checkpoints(tmp_path, cache_dir):
    """hardware=ddp_cpu: two gloo processes share the run directory; only rank 0 writes metrics.json."""
    run = tmp_path / "run"
    args = fast("sentiment", run, cache_dir, "hardware=ddp_cpu", "logger=csv", "trainer.max_steps=4")
    result = run_script("train.py", *args, f"hydra.run.dir={run}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 4
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # rank 1 joined rank 0's run directory


@pytest.mark.slow  # two epochs of the default small model: minutes on 2 cores, the heaviest test by far
def test_short_sentiment_run_learns(tmp_path, cache_dir, compose_config):
    """Two epochs of the default sentiment run (small model, offline sample) end well above chance (50%);
    a bag of words scores about 60% on this sample, the full default run about 84%."""
    cfg = compose_config(
        "train",
        [
            "task=sentiment",
            f"paths.output_dir={tmp_path}",
            f"paths.cache_dir={cache_dir}",
            "trainer.max_epochs=2",
            "trainer.num_sanity_val_steps=0",
            "~callbacks.progress_bar",
            "logger={}",
            "+trainer.limit_test_batches=0",
        ],
    )
    metrics = train(cfg)
    assert metrics["val/acc"] > 0.65, metrics


def test_train_averages_the_last_epochs(tmp_path, cache_dir, compose_config):
    run = tmp_path / "run"
    overrides = fast(
        "translation",
        run,
        cache_dir,
        "callbacks=[default,averaging]",
        "callbacks.average_last_epochs.last_k=2",
        "trainer.max_steps=-1",
        "trainer.max_epochs=3",
        "dataset.max_examples=120",
    )
    metrics = train(compose_config("train", overrides))

    epochs = epoch_checkpoints(run / "checkpoints" / "epochs")
    assert [p.name for p in epochs] == ["epoch001.ckpt", "epoch002.ckpt"]  # only the last 2 are kept
    averaged = load_checkpoint(run / "checkpoints" / "averaged.ckpt")
    assert metrics["averaged_checkpoint"] == str(Path("checkpoints") / "averaged.ckpt")  # relative to the run
    first, second = (load_checkpoint(p)["state_dict"] for p in epochs)
    assert any(not torch.equal(first[k], second[k]) for k in first)
    for name, value in averaged["state_dict"].items():
        torch.testing.assert_close(value, (first[name] + second[name]) / 2, msg=name)

    # The test metrics of train() are those of the averaged weights: evaluate.py reproduces them from the file.
    split_metrics = evaluate(
        compose_config("evaluate", [f"ckpt={run / 'checkpoints' / 'averaged.ckpt'}", f"output_dir={tmp_path / 'eval'}"])
    )
    written = json.loads((run / "metrics.json").read_text())
    assert split_metrics["test/bleu"] == pytest.approx(written["test/bleu"], abs=1e-6)


def test_average_checkpoints_rejects_other_models(tmp_path, cache_dir, compose_config):
    for name, size in (("a", "tiny"), ("b", "small")):
        train(compose_config("train", fast("sentiment", tmp_path / name, cache_dir, f"model={size}", "logger={}")))
    paths = [tmp_path / name / "checkpoints" / "last.ckpt" for name in "ab"]
    with pytest.raises(ValueError, match="other parameters"):
        average_checkpoints(paths)
    with pytest.raises(ValueError, match="at least one"):
        average_checkpoints([])
    single = average_checkpoints(paths[:1])
    assert "optimizer_states" not in single
    for name, value in load_checkpoint(paths[0])["state_dict"].items():
        assert torch.equal(single["state_dict"][name], value)


@pytest.mark.slow
def test_compiled_run_writes_interchangeable_checkpoints(tmp_path, cache_dir, compose_config):
    """compile=true compiles each block in place: the checkpoint's keys are those of an eager run."""
    for name, extra in (("eager", []), ("compiled", ["compile=true"])):
        overrides = fast("sentiment", tmp_path / name, cache_dir, "logger={}", "trainer.max_steps=2", *extra)
        metrics = train(compose_config("train", overrides))
        assert math.isfinite(metrics["val/acc"])
    eager, compiled = (
        load_checkpoint(tmp_path / n / "checkpoints" / "last.ckpt")["state_dict"] for n in ("eager", "compiled")
    )
    assert eager.keys() == compiled.keys()


def test_model_flops_and_mfu_are_logged(tmp_path, cache_dir, compose_config):
    import csv

    overrides = fast("translation", tmp_path / "run", cache_dir, "logger=csv", "hardware.peak_flops=2e12")
    train(compose_config("train", overrides))
    rows = [r for r in csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").open()) if r.get("train/mfu")]
    assert len(rows) == 8  # every step (log_every_n_steps=1)
    for row in rows:
        tflops, mfu = float(row["train/model_tflops"]), float(row["train/mfu"])
        assert tflops > 0 and mfu == pytest.approx(tflops / 2, rel=1e-5)  # achieved / peak, 1 device

"""The console scripts behave like the Hydra apps they are: sweeps, --cfg, --info, --help, +key/~key, user config
directories, Optuna; DDP inside a multirun; and every bad input ends in one line on stderr with exit status 2,
leaving the cache and the run directory as they were."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT, run_script
from helpers import TINY_RUN as TINY

from transformer.training.summary import number


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The tiny sentiment sample, prepared once for this module."""
    cache = tmp_path_factory.mktemp("cli-cache")
    result = run_script("prepare_data.py", "dataset.max_examples=200", "dataset.tokenizer.vocab_size=300",
                        f"paths.cache_dir={cache}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return cache


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache) -> Path:
    """A tiny sentiment run directory."""
    run = tmp_path_factory.mktemp("cli-run") / "run"
    result = run_script("train.py", *TINY, f"paths.cache_dir={cache}", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    return run


def job_overrides(sweep: Path) -> list[list[str]]:
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) for job in jobs]


def test_multirun_over_groups_and_values(tmp_path, cache):
    sweep = tmp_path / "sweep"
    args = ["-m", "model=tiny,small", "optim.lr=choice(1e-3,3e-4)", *TINY[1:], f"paths.cache_dir={cache}"]
    result = run_script("train.py", *args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    overrides = job_overrides(sweep)
    assert len(overrides) == 4
    assert {(o[0], o[1]) for o in overrides} == {
        (f"model={m}", f"optim.lr={lr}") for m in ("tiny", "small") for lr in ("0.001", "0.0003")
    }
    for job in range(4):
        metrics = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert metrics["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # no stray run directories
    table = result.stdout[result.stdout.index("sweep done: 4 jobs in sweep") :].splitlines()
    assert table[1].split() == ["job", "overrides", "val/loss", "val/acc", "val/f1", "test/loss", "test/acc",
                                "test/f1", "steps", "time"]  # fmt: skip
    for job, row in enumerate(table[2:6]):
        metrics = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert row.split()[0].rstrip("*") == str(job) and " ".join(overrides[job][:2]) in row
        assert number(metrics["val/acc"]) in row and number(metrics["test/acc"]) in row
    assert sum(row.split()[0].endswith("*") for row in table[2:6]) == 1  # the best by val/acc


def test_multirun_with_ddp_runs_each_job_once_in_its_own_directory(tmp_path, cache):
    """Lightning re-launches the script for rank 1; inside a multirun it must run that one job, not the sweep."""
    sweep = tmp_path / "sweep"
    args = ["-m", "hardware=ddp_cpu", "seed=range(1,3)", *TINY, f"paths.cache_dir={cache}"]
    result = run_script("train.py", *args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [o[1] for o in job_overrides(sweep)] == ["seed=1", "seed=2"]
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    for job in ("0", "1"):
        files = {p.name for p in (sweep / job).iterdir()}
        assert {"metrics.json", "train.log", "train_ddp_process_1.log"} <= files
        assert json.loads((sweep / job / "metrics.json").read_text())["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]
    output = result.stdout + result.stderr  # Lightning logs through Hydra's handlers (stdout and train.log)
    assert output.count("Initializing distributed: GLOBAL_RANK: 1") == 2  # one rank 1 per job, no more


def test_optuna_sweep_runs_two_trials(tmp_path, cache):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    args = ["hparams_search=sst2_optuna", "hydra.sweeper.n_trials=2", *TINY, f"paths.cache_dir={cache}"]
    result = run_script("train.py", *args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [json.loads((sweep / job / "metrics.json").read_text())["val/acc"] for job in ("0", "1")]
    assert results["best_value"] == pytest.approx(max(values))  # train returns the monitored metric
    assert {"optim.lr", "model.dropout"} <= set(results["best_params"])


def test_cfg_info_help_and_append_delete(tmp_path):
    job = run_script("train.py", "--cfg", "job", "+callbacks.timer._target_=pytorch_lightning.callbacks.Timer",
                     "~callbacks.learning_rate_monitor", "task=translation")  # fmt: skip
    assert job.returncode == 0, job.stderr
    cfg = yaml.safe_load(job.stdout)
    assert cfg["task"]["name"] == "translation" and cfg["dataset"]["name"] == "translation_sample"
    assert "timer" in cfg["callbacks"] and "learning_rate_monitor" not in cfg["callbacks"]
    short = run_script("train.py", "-c", "job", "--package", "model", "model=tiny")
    assert short.returncode == 0 and yaml.safe_load(short.stdout)["d_model"] == 32
    hydra_cfg = run_script("train.py", "--cfg", "hydra")
    assert hydra_cfg.returncode == 0 and "run:" in hydra_cfg.stdout and "sweeper:" in hydra_cfg.stdout
    info = run_script("train.py", "--info")
    assert info.returncode == 0 and "pkg://transformer.configs" in info.stdout and "train_schema" in info.stdout
    help_ = run_script("train.py", "--help")
    assert help_.returncode == 0
    for line in ("model: base, big, small, tiny", "callbacks: averaging, default, early_stopping", "task: "):
        assert line in help_.stdout
    assert not (tmp_path / "outputs").exists()


def test_user_config_dir_and_search_path(tmp_path):
    mine = tmp_path / "myconf"
    (mine / "experiment").mkdir(parents=True)
    (mine / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: tiny\noptim:\n  lr: 0.0042\n"
    )
    for args in (["--config-dir", str(mine)], [f"hydra.searchpath=[file://{mine}]"]):
        result = run_script("train.py", *args, "experiment=mine", "--cfg", "job", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        cfg = yaml.safe_load(result.stdout)
        assert cfg["optim"]["lr"] == 0.0042 and cfg["model"]["d_model"] == 32


def _weights_only(trained: Path) -> Path:
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    path = trained.parent / "weights.ckpt"
    torch.save({"state_dict": checkpoint["state_dict"], "transformer": checkpoint["transformer"]}, path)
    return path


ERRORS = [
    # (script, arguments, text of the one line)
    (
        "train.py",
        ["task=poetry"],
        "Could not find 'task/poetry'; choose one of pretrain, sentiment, summarization, translation",
    ),
    ("train.py", ["model=huge"], "Could not find 'model/huge'; choose one of base, big, small, tiny"),
    ("train.py", ["hardware=tpu"], "Could not find 'hardware/tpu'; choose one of cpu, ddp_cpu, fsdp, fsdp_slurm, gpu"),
    ("train.py", ["dataset=imdb"], "Could not find 'dataset/imdb'; choose one of aeslc,"),
    ("train.py", ["optim.lr=fast"], "optim.lr: Value 'fast' of type 'str' could not be converted to Float"),
    ("train.py", ["optim.lr_typo=1"], "optim.lr_typo: Key 'lr_typo' not in 'OptimConfig'"),
    ("train.py", ["dataset.tokenizer.vocab_size=x"], "dataset.tokenizer.vocab_size: Value 'x'"),
    ("train.py", ["optim.lr=[1"], "cannot parse the override (no viable alternative at input '[1'); Hydra treats"),
    ("train.py", ["task=translation", "decoding.min_len=-1"], "decoding.min_len must be >= 0, got -1"),
    ("train.py", ["model.d_model=30"], "d_model=30 is not divisible by n_heads=4"),
    ("train.py", ["hardware=gpu"], "the config asks for a GPU (trainer.accelerator=gpu), but torch"),
    ("train.py", ["task=sentiment", "dataset=aeslc"], "task 'sentiment' needs a classification dataset"),
    ("train.py", ["callbacks.model_checkpoint.monitor=val/bleu"], "monitor='val/bleu' is never logged by task"),
    ("train.py", ["trainer.max_epochs=many"], "trainer.max_epochs='many' does not fit pytorch_lightning.Trainer"),
    ("train.py", ["+trainer.max_epoch=3"], "trainer.max_epoch is not an argument of pytorch_lightning.Trainer (did"),
    ("train.py", ["ckpt_path={missing}"], "does not exist: pass a run directory or"),
    ("train.py", ["ckpt_path={foreign}"], "is not a checkpoint written by this framework"),
    ("train.py", ["ckpt_path={weights}"], "holds weights only (no optimizer or loop state)"),
    ("train.py", ["task=translation", "ckpt_path={last}"], "is a sentiment checkpoint, but this run trains"),
    ("train.py", ["paths.output_dir={unwritable}"], "cannot write to the output directory"),
    ("train.py", ["hydra.run.dir={unwritable}"], "choose a writable run directory with hydra.run.dir=<dir>"),
    (
        "train.py",
        ["optim.lr=1e9", "optim.warmup_steps=1", "trainer.max_steps=40", "max_nonfinite_steps=3"],
        "steps in a row (max_nonfinite_steps=3; the last at step",
    ),  # fmt: skip
    ("evaluate.py", [], "ckpt is required: pass ckpt=<value>"),
    ("evaluate.py", ["ckpt={run}", "dataset=translation_sample"], "is a sentiment (classification) checkpoint, but"),
    ("evaluate.py", ["ckpt={empty}"], "has no checkpoint (looked for checkpoints/averaged.ckpt"),
    ("predict.py", ["ckpt={missing}", "text=hello"], "does not exist"),
    ("predict.py", ["ckpt={run}", "input={missing}"], "input file"),
    ("predict.py", ["ckpt={run}", "decoding.beam_sz=2", "text=hi"], "decoding.beam_sz: Key 'beam_sz' is not in struct"),
    ("prepare_data.py", ["task=summarization", "dataset=sst2"], "task 'summarization' needs a seq2seq dataset"),
]


@pytest.mark.parametrize("script,args,message", ERRORS, ids=[f"{s}:{' '.join(a)}" for s, a, _ in ERRORS])
def test_error_matrix(script, args, message, tmp_path, cache, trained):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    (tmp_path / "empty").mkdir()
    unwritable = tmp_path / "a-file"
    unwritable.write_text("not a directory")
    places = {
        "missing": tmp_path / "missing.ckpt",
        "foreign": foreign,
        "weights": _weights_only(trained),
        "last": trained / "checkpoints" / "last.ckpt",
        "run": trained,
        "empty": tmp_path / "empty",
        "unwritable": unwritable / "run",
    }
    cache_before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    run_before = {p: p.stat().st_mtime_ns for p in trained.rglob("*")}
    run_dir = tmp_path / "run"
    extra = [*TINY, f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}"] if script == "train.py" else []
    if script == "prepare_data.py":
        extra = [f"paths.cache_dir={cache}"]
    arguments = [a.format(**places) for a in args]
    result = run_script(script, *extra, *arguments, cwd=tmp_path)

    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len([line for line in lines if line.startswith("error: ")]) == 1
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == cache_before  # the cache is untouched
    assert {p: p.stat().st_mtime_ns for p in trained.rglob("*") if p.exists()} == run_before  # and the old run
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoints" / "last.ckpt").exists()


def test_unexpected_errors_keep_their_traceback(tmp_path):
    """Only the errors raised on purpose are shortened: a bug (here a callback that cannot be built) is not."""
    args = ["+callbacks.broken._target_=pytorch_lightning.callbacks.ModelCheckpoint", "+callbacks.broken.nope=1"]
    result = run_script("train.py", *TINY, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_predict_accepts_a_run_directory_and_echoes_empty_lines(trained):
    result = run_script("predict.py", f"ckpt={trained}", stdin="not bad at all\n\nawful\n")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("\n")
    assert lines[1] == "" and lines[0].split("\t")[0] in ("negative", "positive") and lines[2]
    assert "the run's best checkpoint" in result.stderr or "the run's last checkpoint" in result.stderr


FAST_ERRORS = [
    ("predict.py", ["text=hi"], "error: ckpt is required: pass ckpt=<value>"),
    ("evaluate.py", ["ckpt=nowhere.ckpt"], "error: checkpoint nowhere.ckpt does not exist: pass a run directory or"),
    ("attend.py", ["ckpt=nowhere", "text=hi"], "error: checkpoint nowhere does not exist: pass a run directory or"),
]


@pytest.mark.parametrize("script,args,message", FAST_ERRORS, ids=[s for s, _, _ in FAST_ERRORS])
def test_argument_and_checkpoint_errors_answer_before_torch_is_imported(script, args, message, tmp_path):
    start = time.perf_counter()
    result = run_script(script, *args, cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(message)
    assert elapsed < 4.0  # under 2 s on an idle machine; generous for a loaded one
    traced = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "scripts" / script), *args],
                            capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    imported = {line.split("|")[-1].strip() for line in traced.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "datasets", "pytorch_lightning"}, "the heavy stack came before the answer"


def test_help_starts_with_usage_common_commands_and_where_keys_are_documented():
    result = run_script("predict.py", "--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: transformer-predict ckpt=<checkpoint or run dir>")
    assert "Common commands" in result.stdout and "transformer-train task=sentiment" in result.stdout
    assert "transformer/schema.py" in result.stdout and "--cfg job" in result.stdout
    assert len(lines) < 40  # not a dump of the config


def test_cfg_job_says_which_sizes_come_from_the_data():
    """model.vocab_size is the tokenizer's size (train() sets it from the data), not ModelConfig's 8000."""
    shown = yaml.safe_load(run_script("train.py", "--cfg", "job").stdout)
    assert shown["model"]["vocab_size"] == "${dataset.tokenizer.vocab_size}"
    resolved = yaml.safe_load(run_script("train.py", "--cfg", "job", "--resolve", "task=translation").stdout)
    assert resolved["model"]["vocab_size"] == resolved["dataset"]["tokenizer"]["vocab_size"] == 1000

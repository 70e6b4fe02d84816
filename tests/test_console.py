"""A quiet console: a train run on the sample prints its progress, its own log lines and the closing summary, and
none of the libraries' noise (transformer/console.py) and no warning; verbose=true shows the libraries' lines."""

from __future__ import annotations

import re

from helpers import run_script

NOISE = [
    "litlogger",  # Lightning's tip
    "GPU available: False",
    "TPU available: False",
    "Total FLOPs",  # Lightning's model summary
    "is not supported by the model summary",
    "LeafSpec",
    "examples/s]",  # datasets' progress bars while the cache is built
]
WARNING = re.compile(r"\.py:\d+: |Warning\b|\[WARNING\]")  # warnings.warn's format, and logged warnings


def test_a_train_run_prints_its_results_and_no_noise(tmp_path):
    args = [
        "model=tiny",
        "dataset.max_examples=200",
        "dataset.tokenizer.vocab_size=300",
        "trainer.max_steps=6",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
        "+trainer.limit_test_batches=1",
        f"paths.cache_dir={tmp_path / 'cache'}",  # a new cache: the data is prepared in this run
    ]
    result = run_script("train.py", *args, "hydra.run.dir=run", cwd=tmp_path, warnings=True)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "training done in " in result.stdout and re.search(r"run directory +run$", result.stdout, re.M)
    assert "validation, epoch 0, step 5: val/loss" in result.stdout
    assert [line for line in output.splitlines() if any(n in line for n in NOISE)] == []
    assert [line for line in output.splitlines() if WARNING.search(line)] == []
    # the bar names its metrics short enough for an 80-column terminal, where Rich would cut "train/model_tflops"
    assert "TFLOP/s: " in result.stdout and "train/model_tflops" not in result.stdout and "…" not in result.stdout

    verbose = run_script("train.py", *args, "hydra.run.dir=verbose", "verbose=true", cwd=tmp_path, warnings=True)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    shown = verbose.stdout + verbose.stderr
    assert all(n in shown for n in ("litlogger", "GPU available: False", "Total FLOPs", "LeafSpec"))

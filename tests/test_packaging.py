"""The configs ship inside the package: a non-editable install runs `transformer-train` from any directory."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import TINY_RUN

ROOT = Path(__file__).resolve().parents[1]


def test_non_editable_install_runs_from_another_directory(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert "Deprecat" not in install.stderr and "deprecat" not in install.stderr  # a quiet install
    # the dependencies come from this environment; the package itself only from the fresh install
    packages = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
    (Path(packages) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}

    where = subprocess.run([python, "-c", "import transformer; print(transformer.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, env=env, check=True).stdout  # fmt: skip
    assert where.startswith(str(venv)), where
    train = venv / "bin" / "transformer-train"
    job = subprocess.run([train, "--cfg", "job", "model=tiny"], cwd=elsewhere, capture_output=True, text=True, env=env)
    assert job.returncode == 0, job.stderr[-3000:]
    assert yaml.safe_load(job.stdout)["model"]["d_model"] == 32
    args = TINY_RUN
    run = subprocess.run([train, *args, "hydra.run.dir=run"], cwd=elsewhere, capture_output=True, text=True, env=env,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (elsewhere / "run" / "metrics.json").is_file() and (elsewhere / "data" / "sentiment_sample").is_dir()

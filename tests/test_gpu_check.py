"""benchmarks/gpu_check.sh and its parts, on a CPU: the script parses, the ours-vs-HF rows run at tiny dims, and the
package (configs included) works from a source checkout with PYTHONPATH alone, as on an offline GPU host."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], check=True)


def test_a_source_checkout_composes_its_configs_with_pythonpath_alone(tmp_path):
    """No install: the editable finder is removed, so `transformer.configs` must come from the repository's configs/."""
    code = (
        "import sys\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
        "sys.path_hooks = [h for h in sys.path_hooks if 'editable' not in repr(h)]\n"
        "sys.path_importer_cache.clear()\n"
        "import transformer.schema\n"
        "from hydra import compose, initialize_config_module\n"
        "with initialize_config_module('transformer.configs', version_base='1.3'):\n"
        "    cfg = compose('train', ['task=translation', 'model=base'])\n"
        "print(transformer.configs.__file__, cfg.model.d_model)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    path, d_model = out.stdout.split()
    assert path == str(ROOT / "configs" / "__init__.py") and d_model == "512"


def test_the_ours_versus_hf_rows_run_at_tiny_dims():
    pytest.importorskip("transformers")
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_versus_hf.py"), "--tiny", "--device", "cpu"]
    command += ["--modes", "eager", "--warmup", "1", "--rounds", "1", "--chunk", "1"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| seq2seq") or line.startswith("| classifier")]
    assert len(rows) == 2 and all("eager" in row and row.rstrip(" |").endswith("x") for row in rows)

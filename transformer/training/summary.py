"""What a user reads when training ends: the closing summary of a run (printed by the train command on rank 0)
and one table for a `-m` sweep (`SweepSummary`, a Hydra callback: `hydra.callbacks` in configs/train.yaml).

Both read what the run wrote to metrics.json, so the table of a sweep is the same whichever launcher ran its jobs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def shown(path: str | Path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (OSError, ValueError):
        return str(path)


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def count(value: float) -> str:
    """26.8K, 2.61M parameters."""
    return f"{value / 1e6:.3g}M" if value >= 1e6 else f"{value / 1e3:.3g}K" if value >= 1e3 else f"{value:g}"


def number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def stage_metrics(metrics: dict[str, Any], stage: str) -> str:
    """`loss 0.4123  acc 0.842  f1 0.8401` for the stage's metrics (`val`, `test`), loss first."""
    names = sorted((k for k in metrics if k.startswith(f"{stage}/")), key=lambda k: (k != f"{stage}/loss", k))
    return "  ".join(f"{name.split('/', 1)[1]} {number(float(metrics[name]))}" for name in names)


def closing_summary(metrics: dict[str, Any], run_dir: str | Path, monitor: str | None = None) -> str:
    """The lines printed when a run ends: final validation and test metrics (and which weights they belong to),
    the best (by `monitor`) and averaged checkpoints, wall time, tokens/s and the run directory."""
    run_dir = Path(run_dir)
    facts = [f"{metrics['global_step']:,} steps"]
    if "parameters" in metrics:
        facts.append(f"{count(metrics['parameters'])} parameters")
    if metrics.get("tokens_per_sec"):
        facts.append(f"{metrics['tokens_per_sec']:,.0f} tokens/s")
    seconds = metrics.get("total_seconds", metrics.get("seconds"))
    took = f" in {duration(seconds)}" if seconds is not None else ""
    lines = [f"training done{took}: {', '.join(facts)}"]
    averaged, best = metrics.get("averaged_checkpoint"), metrics.get("best_checkpoint")
    rows: list[tuple[str, str]] = []
    # train() validates the final (or averaged) weights and tests the averaged, else the best, else the final ones
    if stage_metrics(metrics, "val"):
        rows.append((f"validation ({'averaged' if averaged else 'final'} weights)", stage_metrics(metrics, "val")))
    if stage_metrics(metrics, "test"):
        tested = "averaged weights" if averaged else "best checkpoint" if best else "final weights"
        rows.append((f"test ({tested})", stage_metrics(metrics, "test")))
    if best:
        score = metrics.get("best_score")
        scored = f"  ({monitor} {number(score)})" if score is not None and monitor else ""
        rows.append(("best checkpoint", shown(run_dir / best) + scored))
    if averaged:
        rows.append(("averaged checkpoint", shown(run_dir / averaged)))
    pretrain = metrics.get("pretrain")
    if isinstance(pretrain, dict):
        rows.append(("pretraining run", shown(run_dir / "pretrain")))
    rows.append(("run directory", shown(run_dir)))
    width = max(len(label) for label, _ in rows)
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines)


def job_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """Each job of a sweep directory (its numbered subfolders): number, overrides, metrics (None: no metrics.json)."""
    rows = []
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    for job in jobs:
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        metrics_file = job / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        rows.append({"job": job.name, "dir": job, "overrides": overrides or [], "metrics": metrics})
    return rows


def sweep_table(sweep_dir: str | Path, monitor: str | None = None, mode: str = "max") -> str:
    """One table for a sweep: the overrides that differ between its jobs, each job's final validation and test
    metrics, steps and time, the best job by `monitor` marked with `*`, and the sweep directory."""
    sweep_dir = Path(sweep_dir)
    rows = job_rows(sweep_dir) if sweep_dir.is_dir() else []
    if not rows:
        return f"sweep done: no job wrote to {shown(sweep_dir)}"
    common = set.intersection(*(set(row["overrides"]) for row in rows))
    metric_names = sorted(
        {k for row in rows if row["metrics"] for k in row["metrics"] if k.startswith(("val/", "test/"))},
        key=lambda k: (not k.startswith("val/"), k.split("/", 1)[1] != "loss", k),
    )
    header = ["job", "overrides", *metric_names, "steps", "time"]
    table = [header]
    scored = [(row["metrics"][monitor], row["job"]) for row in rows if row["metrics"] and monitor in row["metrics"]]
    best = (max(scored) if mode == "max" else min(scored))[1] if scored else None
    for row in rows:
        metrics = row["metrics"]
        swept = " ".join(o for o in row["overrides"] if o not in common) or "-"
        if metrics is None:
            cells = ["(no metrics.json: failed or preempted)"] + [""] * (len(metric_names) + 1)
        else:
            values = [number(float(metrics[k])) if k in metrics else "-" for k in metric_names]
            seconds = metrics.get("total_seconds", metrics.get("seconds"))
            cells = [*values, f"{metrics.get('global_step', '-')}", duration(seconds) if seconds is not None else "-"]
        table.append([row["job"] + ("*" if row["job"] == best else ""), swept, *cells])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [f"sweep done: {len(rows)} jobs in {shown(sweep_dir)}" + (f" (* best {monitor})" if best else "")]
    for r in table:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


class SweepSummary(Callback):
    """Prints `sweep_table` once a `-m` sweep has run all its jobs (Hydra's on_multirun_end)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        task = config.get("task") or {}
        print(sweep_table(config.hydra.sweep.dir, task.get("monitor"), task.get("mode", "max")), flush=True)

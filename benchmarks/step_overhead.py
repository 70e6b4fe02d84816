"""What the framework adds to a training step on CPU: train()'s Lightning step with the default callbacks against
a bare PyTorch loop over the same model, optimizer and batches, interleaved in one process.

    python benchmarks/step_overhead.py                        # tiny and small sentiment models, ~3 min on 2 cores
    python benchmarks/step_overhead.py --sizes tiny --rounds 5 --steps 60
    python benchmarks/step_overhead.py --sizes tiny '~callbacks.progress_bar'   # Hydra overrides of the config

Framework side: the LightningModule, Trainer (its callbacks: checkpointing, learning-rate monitor, Rich progress
bar, TensorBoard views, token throughput, ...) and loader exactly as train() builds them, from the packaged
configs (task=sentiment on the offline sample, batching.max_tokens=2048 as its sample tuning, precision=auto);
validation is off so that only training steps are timed. A step is the time from one `on_train_batch_start` to
the next: loading the batch, forward, backward, the optimizer step and every callback and logger hook.

Bare side: the same model (initialized from the same seed), the same optimizer and schedule (optim.py), the same
DataLoader, the same loss (`step_loss`), autocast as the precision says, gradient clipping at 1.0: a step is one
iteration of `for batch in loader` (loading included).

Each round fits `--steps` steps through Lightning, then runs as many bare steps; the first `--warmup` steps of
each are left out, and each figure is the median step over all rounds. Overhead = framework - bare.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch


class StepTimer(pl.Callback):
    """The seconds between consecutive on_train_batch_start calls (each a whole training step)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())

    def steps(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]


def compose(size: str, out: Path, cache: Path, steps: int, extra: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    import transformer.schema  # noqa: F401  (registers the structured configs)

    GlobalHydra.instance().clear()
    with initialize_config_module("transformer.configs", version_base="1.3"):
        cfg = hydra_compose(
            "train",
            [
                "task=sentiment",
                f"model={size}",
                f"paths.output_dir={out}",
                f"paths.cache_dir={cache}",
                f"trainer.max_steps={steps}",
                "trainer.max_epochs=1",
                "trainer.num_sanity_val_steps=0",
                "+trainer.limit_val_batches=0",
                "resume=never",
                "overwrite=true",
                *extra,
            ],
        )
    GlobalHydra.instance().clear()
    return cfg


def framework_steps(cfg, prepared, seed: int) -> tuple[list[float], str]:
    """One fit of cfg's max_steps through train()'s own Trainer and module; (step seconds, precision)."""

    from transformer.training.datamodule import TextDataModule
    from transformer.training.train import build_trainer

    config, model_config, module = build(cfg, prepared, seed)
    datamodule = TextDataModule(prepared, config.task.objective, config.batching, seed)
    timer = StepTimer()
    trainer = build_trainer(cfg, config, model_config, [timer])
    trainer.fit(module, datamodule=datamodule)
    return timer.steps(), str(trainer.precision)


def build(cfg, prepared, seed: int):
    """(typed config, model config, module) as train() builds them, seeded: both sides start from the same weights."""
    from omegaconf import OmegaConf

    from transformer.checkpoint import Artifacts
    from transformer.objectives import build_module
    from transformer.schema import typed
    from transformer.training.train import build_model_config

    config = typed(cfg)
    model_config = build_model_config(config, prepared)
    artifacts = Artifacts.new(
        OmegaConf.to_container(cfg, resolve=True),
        model_config,
        prepared.src_tokenizer,
        prepared.tgt_tokenizer,
        prepared.label_names,
    )
    pl.seed_everything(seed, verbose=False)
    return config, model_config, build_module(artifacts, config.optim, config.decoding, config.max_nonfinite_steps)


def bare_steps(cfg, prepared, seed: int, precision: str) -> list[float]:
    """The same model, optimizer, schedule, loader and loss in a plain loop; step seconds."""

    from transformer.data.batching import Collate, make_loader
    from transformer.optim import build_optimizer

    config, model_config, module = build(cfg, prepared, seed)
    module.train()
    steps = config.trainer["max_steps"]
    optimizer, schedule = build_optimizer(module.model, config.optim, steps)
    scheduler = schedule["scheduler"]
    loader = make_loader(
        prepared.splits["train"],
        Collate.of(config.task.objective, prepared.tgt_tokenizer),
        max_tokens=config.batching.max_tokens,
        batch_size=config.batching.batch_size,
        train=True,
        seed=seed,
    )
    dtype = torch.bfloat16 if precision.startswith("bf16") else None
    times, start = [], time.perf_counter()
    for i, batch in enumerate(loader):
        if i == steps:
            break
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            summed, size, _ = module.step_loss(batch)
        (summed / max(int(size), 1)).backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="steps per round and side")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out at the start of each round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the framework's config (key=value)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    from transformer.console import quiet
    from transformer.data import prepare_from_config
    from transformer.schema import typed

    quiet()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for size in args.sizes:
            cfg = compose(size, root / f"run-{size}", root / "cache", args.steps, args.overrides)
            prepared = prepare_from_config(typed(cfg))
            ours, bare, precision = [], [], ""
            for r in range(args.rounds):
                cfg = compose(size, root / f"run-{size}-{r}", root / "cache", args.steps, args.overrides)
                steps, precision = framework_steps(cfg, prepared, seed=42)
                ours += steps[args.warmup :]
                bare += bare_steps(cfg, prepared, 42, precision)[args.warmup :]
            results[size] = (statistics.median(ours), statistics.median(bare), precision)
    bf16 = Path("/proc/cpuinfo").read_text().count("avx512_bf16") if Path("/proc/cpuinfo").exists() else 0
    print(f"threads={args.threads} rounds={args.rounds} steps={args.steps} warmup={args.warmup} avx512_bf16={bf16 > 0}")
    print(f"{'model':8}{'precision':>12}{'framework ms':>14}{'bare ms':>10}{'overhead ms':>13}{'ratio':>8}")
    for size, (ours, bare, precision) in results.items():
        print(
            f"{size:8}{precision:>12}{ours * 1e3:>14.2f}{bare * 1e3:>10.2f}{(ours - bare) * 1e3:>13.2f}"
            f"{ours / bare:>7.2f}x"
        )


if __name__ == "__main__":
    main()

"""Fully sharded data parallel training (`hardware=fsdp`): PyTorch's FSDP2 (`fully_shard`) through Lightning's
ModelParallelStrategy, one shard group per encoder/decoder block and one for the rest of the model.

Why FSDP2 and not Lightning's `strategy="fsdp"` (FSDP1): FSDP1 refuses CPU devices (torch 2.13 and Lightning 2.6
both raise), so nothing about it could be tested without a GPU; FSDP2 runs on CPU with gloo, and
tests/training/test_distributed.py checks its gradients against one process. FSDP2 is also what PyTorch now develops.

Checkpoints during training are sharded (`hardware.fsdp.sharded_checkpoints`): `<name>.ckpt/` is a directory of
torch.distributed.checkpoint shards plus `meta.pt` (step, loops, our `transformer` artifacts). They are written
atomically (a temporary directory, then a rename), resume with the same or any other number of FSDP ranks, and
load everywhere else (evaluate, predict, averaging) through `transformer/checkpoint.py`, which gathers them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import ModelParallelStrategy

from transformer.checkpoint import nonfinite_state, refuse_nonfinite
from transformer.model import DecoderBlock, EncoderBlock
from transformer.schema import FSDPConfig

NAME = "fsdp"  # trainer.strategy=fsdp selects this strategy (hardware/fsdp.yaml)


class FSDPStrategy(ModelParallelStrategy):
    """ModelParallelStrategy with data parallelism only, our block-wise sharding and atomic sharded checkpoints."""

    def __init__(self, config: FSDPConfig, bf16: bool, **kwargs: Any) -> None:
        super().__init__(
            data_parallel_size="auto",  # set in setup_environment: every process
            tensor_parallel_size=1,
            save_distributed_checkpoint=config.sharded_checkpoints,
            **kwargs,
        )
        self.config = config
        self.bf16 = bf16

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes  # "auto" would be num_nodes
        super().setup_environment()

    def shard_model(self, model: torch.nn.Module) -> None:
        """fully_shard each encoder/decoder block, then the model (embeddings, output layers). Idempotent: Lightning
        calls configure_model before fit, validate and test alike."""
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

        if isinstance(model, FSDPModule):
            return
        mesh = self.device_mesh["data_parallel"]
        policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16 if self.bf16 and self.config.bf16_params else None,
            reduce_dtype=torch.float32,
        )
        for block in model.modules():
            if isinstance(block, EncoderBlock | DecoderBlock):
                fully_shard(block, mesh=mesh, reshard_after_forward=self.config.reshard_after_forward, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        if hasattr(model, "loss"):  # training calls EncoderDecoder.loss, not forward: it must gather the same way
            register_fsdp_forward_method(model, "loss")

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath, storage_options: Any | None = None) -> None:
        """Sharded: all ranks write into a temporary directory that rank 0 then renames, so a kill during the
        write never leaves a partial checkpoint under the final name (full checkpoints: AtomicCheckpointIO); none
        is written when a rank's shards hold NaN/inf."""
        if not self._save_distributed_checkpoint:  # rank 0 gathers and writes (AtomicCheckpointIO checks it)
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        path = Path(self.broadcast(str(filepath)))
        bad = nonfinite_state(checkpoint)  # this rank's shards; all ranks refuse together
        if int(self.reduce(torch.tensor(float(len(bad)), device=self.root_device), reduce_op="sum")):
            refuse_nonfinite(path, bad or ["shards of other ranks"])
        tmp = path.with_name(f".{path.name}.tmp")
        if self.is_global_zero and tmp.exists():
            shutil.rmtree(tmp)
        self.barrier("fsdp-save-start")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        self.barrier("fsdp-save-written")
        if self.is_global_zero:
            remove(path)
            tmp.rename(path)
        self.barrier("fsdp-save-done")


def load_full_state_dict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """module.load_state_dict for a full (gathered) state dict, also when the module is sharded: every rank holds
    the full tensors and keeps its own shard of each, without communication. (torch's set_model_state_dict skips
    the second name of a tied weight, e.g. the decoder's shared embedding, and then fails on it.)"""
    from torch.distributed.tensor import DTensor, distribute_tensor

    current = module.state_dict()
    local = {
        name: distribute_tensor(value, current[name].device_mesh, current[name].placements, src_data_rank=None)
        if isinstance(current.get(name), DTensor)
        else value
        for name, value in state_dict.items()
    }
    module.load_state_dict(local)


class GatherForEvaluation(pl.Callback):
    """Gathers the full weights on every rank for validation, test and prediction, and frees them afterwards.

    Each forward of a sharded block is a collective, so ranks must run the same number of forwards; beam search
    runs as many decoder steps as its longest hypothesis, which differs between ranks, and would hang. With the
    weights gathered once (the same memory as DDP during evaluation), forwards need no communication."""

    @staticmethod
    def _sharded(trainer: pl.Trainer) -> list[tuple[torch.nn.Module, bool]]:
        """(FSDP module, whether it is a block): the root keeps its own setting (FSDP2 never reshards it)."""
        from torch.distributed.fsdp import FSDPModule

        root = trainer.lightning_module.model
        return [(m, m is not root) for m in trainer.lightning_module.modules() if isinstance(m, FSDPModule)]

    def _gather(self, trainer: pl.Trainer) -> None:
        for module, block in self._sharded(trainer):
            if block:
                module.set_reshard_after_forward(False, recurse=False)
            module.unshard()

    def _free(self, trainer: pl.Trainer) -> None:
        strategy = trainer.strategy
        assert isinstance(strategy, FSDPStrategy)
        for module, block in self._sharded(trainer):
            module.reshard()
            if block:
                module.set_reshard_after_forward(strategy.config.reshard_after_forward, recurse=False)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._gather(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._free(trainer)

    def on_test_start(self, trainer, pl_module) -> None:
        self._gather(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._free(trainer)


def remove(path: Path) -> None:
    """A checkpoint, file or sharded directory."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()

"""Model FLOPs of a training step, for throughput and model FLOPs utilization (MFU).

Counted from the shapes the hardware computes (padded batches): every matmul of the model, 2 FLOPs per
multiply-add, and a training step as 3x the forward (the backward computes two matmuls per forward one), as in
the PaLM paper's MFU. Norms, softmax, dropout and the optimizer are left out; activation checkpointing's
recomputation is not counted (MFU counts the model's FLOPs, not the hardware's).

Notation: B batch, S source length, T target length, D d_model, F d_ff, V output vocabulary, C classes.
"""

from __future__ import annotations

from transformer.config import ModelConfig


def encoder_macs(config: ModelConfig, B: int, S: int) -> int:
    per_layer = B * S * (4 * config.d_model**2 + 2 * config.d_model * config.d_ff)  # Q, K, V, O and the FFN
    per_layer += B * 2 * S * S * config.d_model  # scores QK^T and the weighted sum of V
    return config.n_encoder_layers * per_layer


def decoder_macs(config: ModelConfig, B: int, S: int, T: int) -> int:
    D = config.d_model
    self_attn = B * T * 4 * D * D + B * 2 * T * T * D
    cross_attn = B * T * 2 * D * D + B * S * 2 * D * D + B * 2 * T * S * D  # Q, O on T; K, V on S
    ffn = B * T * 2 * D * config.d_ff
    macs = config.n_decoder_layers * (self_attn + cross_attn + ffn) + B * T * D * config.tgt_vocab_size
    if config.copy_attention:  # the pointer-generator's bilinear attention over the source
        macs += B * T * D * D + B * T * S * D
    return macs


def training_flops(config: ModelConfig, B: int, S: int, T: int | None = None, predicted: int | None = None) -> int:
    """FLOPs of one forward + backward pass: the encoder-decoder on (B, S) -> (B, T), the classifier (T=None), or
    the masked language model (T=None) whose head runs on `predicted` positions."""
    if predicted is not None:  # MaskedLM: dense + vocabulary projection at the labelled positions only
        macs = encoder_macs(config, B, S) + predicted * (config.d_model**2 + config.d_model * config.vocab_size)
    elif T is None:
        macs = encoder_macs(config, B, S) + B * config.d_model * config.num_classes
    else:
        macs = encoder_macs(config, B, S) + decoder_macs(config, B, S, T)
    return 3 * 2 * macs


# Dense bf16 peaks from the vendors' datasheets (FLOP/s), used when hardware.peak_flops is not set.
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def default_peak_flops() -> float | None:
    """The bf16 peak of this machine's first GPU if it is a known one; None on CPUs and unknown GPUs."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((peak for key, peak in GPU_PEAK_BF16.items() if key in name), None)

"""A large-vocabulary loss that never holds the (N, V) float32 logits: the output projection and the label-smoothed
cross-entropy computed together, a chunk of rows at a time.

`F.cross_entropy(F.linear(h, W).float(), target, label_smoothing=eps)` keeps, at vocabulary 32k, several (N, V)
tensors alive at once: the bf16 logits, their float32 copy, the saved log-softmax and its gradient. Here each chunk
of R rows makes its logits x (R, V) in float32, takes the loss of its rows and, when a gradient is wanted, the
gradient of the summed loss with respect to its logits at once (rows labelled `ignore_index` count zero):

    loss_i = lse_i - (1 - eps) x_i,t - eps mean_j x_i,j             lse_i = logsumexp_j x_i,j
    d loss_i / d x_i,j = softmax_j(x_i) - (1 - eps) [j = t] - eps / V

and turns it into the chunk's rows of dL/dh and its share of dL/dW. The chunk's logits are then freed, so the
peak holds one chunk, and the backward pass only scales the stored gradients by the incoming one (the loss is a
scalar at the end of the graph), as Liger-Kernel's fused linear cross-entropy does. Padding rows are projected
too (as by F.linear) rather than picked out by a boolean mask, whose size the host would have to wait for.
"""

from __future__ import annotations

import torch
from torch import Tensor

# rows per chunk: the chunk's float32 logits hold about as many elements as h's rows do (R V ~ N D, at least
# MIN_ROWS rows, so the matmuls stay large enough to be efficient)
MIN_ROWS = 1024


def chunk_rows(n: int, d: int, v: int) -> int:
    return max(MIN_ROWS, -(-n * d // v))


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross-entropy of softmax(h W^T) over the rows h (N, D) whose label target (N,) is not
    ignore_index."""

    @staticmethod
    def forward(
        ctx,
        h: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        smoothing: float,
        ignore_index: int,
        dtype: torch.dtype,
    ) -> Tensor:
        n, v = h.size(0), weight.size(0)
        hc, wc = h.to(dtype), weight.to(dtype)  # the compute dtype (autocast's, else h's)
        acc = torch.promote_types(dtype, torch.float32)  # softmax, loss and dL/dW: float32 (float64 for float64)
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hc) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=h.device) if ctx.needs_input_grad[1] else None
        total = torch.zeros((), dtype=acc, device=h.device)
        rows = chunk_rows(n, h.size(1), v)
        for start in range(0, n, rows):
            h_chunk, t = hc[start : start + rows], target[start : start + rows]
            valid = t.ne(ignore_index)  # (R,)
            t = t.masked_fill(~valid, 0)
            x = (h_chunk @ wc.t()).to(acc)  # (R, V)
            if bias is not None:  # a constant (BART's final_logits_bias): no gradient of its own
                x += bias.to(acc)
            lse = x.logsumexp(-1)  # (R,)
            x_t = x.gather(1, t[:, None]).squeeze(1)
            total += ((lse - (1.0 - smoothing) * x_t - smoothing * x.mean(-1)) * valid).sum()
            if not need_grad:
                continue
            grad_x = x.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            if smoothing:
                grad_x.sub_(smoothing / v)
            grad_x.scatter_add_(1, t[:, None], torch.full_like(x_t[:, None], smoothing - 1.0))
            grad_x = grad_x.mul_(valid[:, None]).to(dtype)
            if grad_h is not None:
                grad_h[start : start + rows] = grad_x @ wc
            if grad_w is not None:
                if dtype == acc:
                    grad_w.addmm_(grad_x.t(), h_chunk)
                else:  # a bf16 matmul, accumulated in float32 (as autocast's gradient lands in a float32 .grad)
                    grad_w.add_((grad_x.t() @ h_chunk).to(acc))
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (h.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        if grad_h is not None:
            grad_h = (grad_h * grad_output.to(grad_h.dtype)).to(h_dtype)
        if grad_w is not None:
            grad_w = (grad_w * grad_output).to(w_dtype)
        return grad_h, grad_w, None, None, None, None, None


def linear_cross_entropy(
    h: Tensor,
    weight: Tensor,
    target: Tensor,
    smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    bias: Tensor | None = None,
) -> Tensor:
    """F.cross_entropy(F.linear(h, weight, bias).float().flatten(0, -2), target.flatten(), ignore_index=ignore_index,
    label_smoothing=smoothing, reduction=reduction) without the (N, V) logits: h (..., D), weight (V, D), target
    (...), bias (V,) a constant (never given a gradient). Under autocast the projection runs in autocast's dtype, as
    F.linear would; the softmax in float32.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    rows, labels = h.reshape(-1, h.size(-1)), target.reshape(-1)  # (N, D), (N,)
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    with torch.autocast(device, enabled=False):
        total = _LinearCrossEntropy.apply(rows, weight, bias, labels, float(smoothing), ignore_index, dtype)
    return total if reduction == "sum" else total / labels.ne(ignore_index).sum()

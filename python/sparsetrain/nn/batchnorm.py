"""Batch norm fused with the sparse convolution in front of it (training mode).

PyTorch's training-mode batch norm reads its input about four times in the forward pass: for
the mean, for the variance, and to normalize. A SparseConv2d whose output goes straight into a
batch norm can sum each channel's values and squares while its kernel writes them (they are
in cache then: ``batch_norm_stats``); the batch norm then only normalizes, in one pass (the
ResNet-18 32x64x56x56 forward: 7.0 -> 1.5 ms). The backward pass is PyTorch's own batch-norm
gradient, given those statistics, so gradients are the same computation as nn.BatchNorm2d's.

The statistics travel on the output tensor, stamped with its version counter: an in-place
change between the convolution and the batch norm (or any other input) makes
FusedBatchNorm2d compute them itself, exactly as nn.BatchNorm2d. ``fuse_batch_norm`` in
sparsetrain/surgery.py finds the pairs and sets both sides up.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ..functional.common import cpu_autocast_enabled
from ..functional.conv_layouts import is_nhwc

_STATS = "_sparsetrain_batch_norm_stats"
_MAX_MEAN_SQUARE_OVER_VAR = 100.0


def attach_batch_norm_stats(y: torch.Tensor, stats: torch.Tensor) -> None:
    """Stamp y with its (channels, 2) float64 sums and sums of squares (per channel)."""
    setattr(y, _STATS, (stats, y._version))


def batch_norm_stats(x: torch.Tensor) -> torch.Tensor | None:
    """The sums stamped on x by its sparse convolution, if x is unchanged since; else None."""
    found = getattr(x, _STATS, None)
    if found is None or found[1] != x._version:
        return None
    return found[0]


class _NormalizeWithStats(torch.autograd.Function):
    """Training-mode batch norm of x given its batch mean and inverse standard deviation: one
    normalizing pass forward; PyTorch's batch-norm gradient backward (which accounts for
    the statistics depending on x)."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, invstd, eps):
        # Inference-mode batch norm with the batch's own statistics is exactly this normalize.
        out = torch.ops.aten.native_batch_norm(x, weight, bias, mean, var, False, 0.0, eps)[0]
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, mean, invstd = ctx.saved_tensors
        need = ctx.needs_input_grad
        # grad in x's memory format: mixed formats take PyTorch's slow path.
        fmt = torch.channels_last if is_nhwc(x) else torch.contiguous_format
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(memory_format=fmt),
            x,
            weight,
            None,
            None,
            mean,
            invstd,
            True,
            ctx.eps,
            [need[0], weight is not None and need[1], need[2]],
        )
        return gx, gw, gb, None, None, None, None


class FusedBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d (same parameters, buffers and state_dict) that, in training mode, takes
    the batch statistics its sparse convolution summed while writing the input, instead of
    computing them; any other input goes through nn.BatchNorm2d.forward unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = batch_norm_stats(x) if self.training else None
        if (
            stats is None
            or x.dim() != 4
            or x.shape[1] != self.num_features
            or x.dtype != torch.float32
            or cpu_autocast_enabled()
        ):
            return super().forward(x)
        count = x.numel() // self.num_features
        if count <= 1:  # nn.BatchNorm2d's error for a single value per channel
            return super().forward(x)
        # A few dozen to a few hundred channels: NumPy's per-call cost is a fraction of
        # PyTorch's here (~150 -> ~50 us per call, a dozen small ops), the math is the same.
        s = stats.numpy()
        with np.errstate(all="ignore"):
            mean = s[:, 0] / count
            var = s[:, 1] / count - mean * mean
            # E[y²] - mean² loses what float sums lose of E[y²] (~1e-6 of it) relative to
            # the variance: beyond mean² > 100 var (a channel far off zero for its spread),
            # compute the statistics as nn.BatchNorm2d does (also for NaN / Inf sums).
            if not (
                np.isfinite(s).all() and (mean * mean <= _MAX_MEAN_SQUARE_OVER_VAR * var).all()
            ):
                return super().forward(x)
            invstd = 1.0 / np.sqrt(var + self.eps)
            unbiased = var * (count / (count - 1))
        mean32 = torch.from_numpy(mean.astype(np.float32))
        # Running statistics as nn.BatchNorm2d updates them (unbiased variance, momentum or
        # a cumulative average when momentum is None).
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.running_mean.mul_(1.0 - factor).add_(mean32, alpha=factor)
                self.running_var.mul_(1.0 - factor).add_(
                    torch.from_numpy(unbiased.astype(np.float32)), alpha=factor
                )
        return _NormalizeWithStats.apply(
            x,
            self.weight,
            self.bias,
            mean32,
            torch.from_numpy(var.astype(np.float32)),
            torch.from_numpy(invstd.astype(np.float32)),
            self.eps,
        )

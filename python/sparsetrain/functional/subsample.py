"""Subsample: the strided input of a 1x1 unpadded strided convolution, as one copy."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .. import _C, _workspace, tuning
from .._runtime import get_num_threads
from .common import numpy_view as _np
from .conv_layouts import is_nhwc


class Subsample(torch.autograd.Function):
    """x[:, :, ::sh, ::sw] as one contiguous copy; backward writes the full-size gradient in
    one pass, zeros included (slicing would zero-fill it and then copy into every sh-th row
    again). Native for contiguous float32 (N, C, H, W); anything else is sliced, and so are
    planes narrower than tuning.NATIVE_SUBSAMPLE_MIN_W in the forward direction (measured, batch 32,
    stride 2: 56 wide 1.87 -> 1.45 ms, 28 wide 0.54 -> 0.49, but 14 wide 0.27 -> 0.41; the
    backward gains at every width: 2.62 -> 1.17, 0.87 -> 0.64, 0.37 -> 0.37)."""

    @staticmethod
    def forward(ctx, x, sh, sw):
        ctx.shape, ctx.sh, ctx.sw = x.shape, sh, sw
        ctx.nhwc = is_nhwc(x)
        if ctx.nhwc:  # sliced, staying channels_last
            return x[:, :, ::sh, ::sw].contiguous(memory_format=torch.channels_last)
        if not (
            x.dtype == torch.float32
            and x.dim() == 4
            and x.is_contiguous()
            and x.shape[3] >= tuning.NATIVE_SUBSAMPLE_MIN_W
        ):
            return x[:, :, ::sh, ::sw].contiguous()
        n, c, h, w = x.shape
        out = _workspace.empty(n, c, -(-h // sh), -(-w // sw))
        _C.subsample(
            src=_np(x.view(-1)),
            dst=_np(out.view(-1)),
            planes=n * c,
            h=h,
            w=w,
            sh=sh,
            sw=sw,
            nthreads=get_num_threads(),
        )
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        shape, sh, sw = ctx.shape, ctx.sh, ctx.sw
        if ctx.nhwc or g.dtype != torch.float32 or len(shape) != 4:
            fmt = torch.channels_last if ctx.nhwc else torch.contiguous_format
            dx = torch.empty(shape, dtype=g.dtype, memory_format=fmt).zero_()
            dx[:, :, ::sh, ::sw] = g
            return dx, None, None
        n, c, h, w = shape
        dx = _workspace.empty(n, c, h, w)
        _C.subsample(
            src=_np(g.contiguous().view(-1)),
            dst=_np(dx.view(-1)),
            planes=n * c,
            h=h,
            w=w,
            sh=sh,
            sw=sw,
            nthreads=get_num_threads(),
            grad=True,
        )
        return dx, None, None

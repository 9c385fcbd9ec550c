"""Autograd for a 2-D convolution with a sparse weight, on the offset kernels.

The layouts the kernels run on are in functional/conv_layouts.py, how one is chosen in
functional/conv_autotune.py, the dense fallback in functional/conv_fallback.py.

Non-finite numbers (NaN, ±Inf) propagate exactly as in ``nn.Conv2d`` (see
functional/conv_fallback.py for why the kernels' products differ). So, after a cheap sound
pre-check (a tensor's sum is finite only if all its elements are; see functional/common.py;
x and dy are checked by the kernels that pack them, as they pack them, or summed by a
packing pass anyway: no pass of their own where the layout packs them), whatever a
non-finite number reaches is computed with the dense weight by PyTorch's own convolution:
the images of x holding one (forward), every image when a weight is non-finite (forward and
input gradient), the images of dy holding one (input gradient), and the values gradient
when x or dy holds one. Finite inputs pay only the pre-checks (~1-2% of a training step).
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .. import tuning
from .._runtime import get_num_threads
from .common import all_finite, check_saved_values, nonfinite_rows
from .conv_fallback import DenseConv
from .conv_layouts import memory_format


class SparseConv2dFunction(torch.autograd.Function):
    """Inputs: x (N, C, H, W) float32, contiguous or channels_last (y and dx then the same),
    values (nnz,), bias or None, the CSR row pointer as NumPy, the layout for this input shape
    (functional/conv_layouts.py), and the column indices (int32 tensor; needed only to build
    the dense weight when a NaN or Inf shows up; without them non-finite numbers go through
    the sparse kernels unchecked)."""

    @staticmethod
    def forward(
        ctx,
        x,
        values,
        bias,
        row_ptr,
        layout,
        col_idx=None,
        stats_out=None,
        pattern=None,
        name="SparseConv2d",
    ):
        nthreads = get_num_threads()
        check = col_idx is not None
        xq, x_finite = layout.pack_x(x, check_finite=check)
        w_finite = not check or all_finite(values)
        dense = stats = None
        if w_finite:
            y, seen, stats = layout.forward(
                row_ptr,
                values,
                xq,
                bias,
                nthreads,
                check_finite=check and x_finite is None,
                stats=stats_out is not None,
            )
            x_finite = seen if x_finite is None else x_finite
        if x_finite is None:
            x_finite = not check or all_finite(x)
        if w_finite:
            if not x_finite:
                # Images holding a NaN or Inf: dense, so pruned weights meet them as in nn.Conv2d.
                imgs = nonfinite_rows(x)
                dense = DenseConv(layout.g, row_ptr, col_idx, values)
                y[imgs] = dense.forward(x[imgs], bias)
        else:
            dense = DenseConv(layout.g, row_ptr, col_idx, values)
            y = dense.forward(x, bias)
        if stats_out is not None and stats is not None and dense is None:
            # y's channel statistics as the kernel wrote it (images recomputed densely are
            # not in them, so then there are none).
            stats_out.append(stats)
        need_v = ctx.needs_input_grad[1]
        # The values gradient needs the packed input: kept, or packed again from x (which
        # stays alive anyway, as nn.Conv2d keeps it too); see tuning.REPACK_IN_BACKWARD.
        repack = need_v and tuning.REPACK_IN_BACKWARD and xq.data_ptr() != x.data_ptr()
        # `pattern` only guards the buffers (the kernels run on the private pattern the
        # layout was derived from).
        ctx.save_for_backward(
            xq if need_v and not repack else None,
            values,
            x if need_v and (repack or not x_finite) else None,
        )
        ctx.name, ctx.pattern = name, pattern
        ctx.repack = repack
        ctx.row_ptr, ctx.layout, ctx.col_idx = row_ptr, layout, col_idx
        ctx.x_shape, ctx.x_finite, ctx.w_finite = tuple(x.shape), x_finite, w_finite
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        if ctx.pattern is not None:
            ctx.pattern.check()
        xq, values, x = ctx.saved_tensors
        layout, row_ptr, col_idx = ctx.layout, ctx.row_ptr, ctx.col_idx
        check_saved_values(ctx.name, values, int(row_ptr[-1]))
        if ctx.repack:
            xq, _ = layout.pack_x(x)
        need_x, need_v, need_b = ctx.needs_input_grad[:3]
        nthreads = get_num_threads()
        dx = dv = db = None
        dy = dy.contiguous(memory_format=memory_format(layout.nhwc))
        if need_x or need_v:
            check = col_idx is not None
            # dy's NaN/Inf check, cheapest first: a finite sum of dy's channels proves it (the
            # bias gradient, or summed by a packing pass at no extra cost); else the input
            # gradient's kernel checks each image as it packs it (fused layouts); else a
            # pass of its own.
            want_sums = need_b or (check and layout.packs_dy)
            dyq, sums = layout.pack_dy(dy, want_bias_grad=want_sums)
            db = sums if need_b else None
            dy_finite = not check or (sums is not None and math.isfinite(sums.sum().item())) or None
            if need_x and ctx.w_finite:
                if need_v and ctx.x_finite and layout.fuses_grads:
                    # Both gradients from one packing of each image of dy (dv is recomputed
                    # below if dy turns out to hold a NaN or Inf).
                    dx, dv, seen = layout.grads(
                        values, row_ptr, dyq, xq, nthreads, check_finite=dy_finite is None
                    )
                else:
                    dx, seen = layout.input_grad(
                        values, dyq, nthreads, check_finite=dy_finite is None
                    )
                dy_finite = seen if dy_finite is None else dy_finite
            if dy_finite is None:
                dy_finite = all_finite(dy)
            dense = None
            if not (dy_finite and ctx.w_finite and ctx.x_finite):
                dense = DenseConv(layout.g, row_ptr, col_idx, values)
            if need_v:
                if dy_finite and ctx.x_finite:
                    if dv is None:
                        dv = layout.values_grad(row_ptr, dyq, xq, values.numel(), nthreads)
                else:
                    # Products of x and dy, over the output positions only, as nn.Conv2d forms them.
                    x = x if x is not None else layout.unpack_x(xq)
                    dv = dense.weight_grad(x, dy, row_ptr, col_idx)
            if need_x:
                if not ctx.w_finite:
                    dx = dense.input_grad(ctx.x_shape, dy)
                elif not dy_finite:
                    # Images of dy holding a NaN or Inf: dense (pruned weights meet them).
                    imgs = nonfinite_rows(dy)
                    dx[imgs] = dense.input_grad((len(imgs),) + ctx.x_shape[1:], dy[imgs])
        elif need_b:
            db = dy.sum((0, 2, 3))
        return dx, dv, db, None, None, None, None, None, None

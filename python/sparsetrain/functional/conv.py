"""Autograd for a 2-D convolution with a sparse weight, on the offset kernels.

Two layouts ("strategies") feed the same kernels (see sparsetrain/formats/conv.py):

- ``plane``: each image's input as zero-padded phase planes (NCHW order); vectorized along
  each image's flattened output grid. A 1x1, stride-1, unpadded convolution reads and writes
  PyTorch's NCHW tensors in place (no layout change at all).
- ``batch``: the whole batch at once with the batch innermost (C, phases, Hq, Wq, N);
  vectorized along (grid position, image). Better when planes are small and batches large.

Which one is faster depends on the layer and the input shape, so ``auto`` times both on the
first call with a new input shape (forward and both gradients, layout changes included) and
keeps the winner for that shape. The layout changes are PyTorch ops (pad, permute, strided
copies), so their cost is part of every timing.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .. import _C
from .._runtime import get_num_threads
from ..formats.conv import ConvGeometry, ConvIndex

STRATEGIES = ("plane", "batch")


def _np(t: torch.Tensor):
    return t.detach().numpy()


class _Layout:
    """How one strategy lays out x, y, dy and dx, and the strides the kernels take."""

    def __init__(self, g: ConvGeometry, index: ConvIndex, batch: int, name: str):
        s = index.shape
        self.g, self.s, self.n, self.name = g, s, batch, name
        if name == "plane":
            self.unit, self.images = 1, batch
        else:
            self.unit, self.images = batch, 1
        u = self.unit
        self.off = (index.off * u).numpy() if u != 1 else index.off.numpy()
        self.t_off = (index.t_off * u).numpy() if u != 1 else index.t_off.numpy()
        self.t_ptr = index.t_ptr.numpy()
        self.t_pos = index.t_pos.numpy()
        planes = g.in_channels * s.phases
        self.x_image = planes * s.plane  # pixels of one image's packed input
        self.y_image = g.out_channels * s.grid_len
        self.dy_image = g.out_channels * s.dy_len
        # A 1x1 / stride 1 / unpadded convolution is a matrix product on NCHW as it is.
        self.direct = (name == "plane" and s.phases == 1 and s.plane == s.H * s.W
                       and s.grid_len == s.plane and s.margin == 0)

    # -- layout changes (PyTorch ops; their cost is in every timing) ----------------------
    def _padded(self, x):
        g, s = self.g, self.s
        pt, pb, pl, pr = g.padding
        (sh, sw) = g.stride
        return F.pad(x, (pl, s.Wq * sw - s.W - pl, pt, s.Hq * sh - s.H - pt))

    def pack_x(self, x):
        if self.direct:
            return x.reshape(-1)
        g, s, n = self.g, self.s, self.n
        (sh, sw) = g.stride
        xp = self._padded(x)
        if self.name == "plane":
            if s.phases == 1:
                return xp.reshape(-1)
            v = xp.view(n, g.in_channels, s.Hq, sh, s.Wq, sw).permute(0, 1, 3, 5, 2, 4)
        else:
            v = xp.view(n, g.in_channels, s.Hq, sh, s.Wq, sw).permute(1, 3, 5, 2, 4, 0)
        return v.contiguous().view(-1)

    def _grid_view(self, flat, per_channel, offset):
        """(N, C_out, Ho, Wo) view of a grid buffer whose channels hold `per_channel` pixels,
        the first output pixel `offset` pixels into each channel."""
        s, n, c = self.s, self.n, self.g.out_channels
        if self.name == "plane":
            return flat.as_strided((n, c, s.Ho, s.Wo), (c * per_channel, per_channel, s.Wq, 1),
                                   offset)
        return flat.as_strided((c, s.Ho, s.Wo, n), (per_channel * n, s.Wq * n, n, 1),
                               offset * n).permute(3, 0, 1, 2)

    def unpack_y(self, grid, bias):
        s = self.s
        if self.direct and bias is None:
            return grid.view(self.n, self.g.out_channels, s.Ho, s.Wo)
        if self.direct:
            return grid.view(self.n, self.g.out_channels, s.Ho, s.Wo).add_(bias.view(1, -1, 1, 1))
        view = self._grid_view(grid, s.grid_len, 0)
        out = torch.empty(self.n, self.g.out_channels, s.Ho, s.Wo)
        if bias is None:
            return out.copy_(view)
        return torch.add(view, bias.view(1, -1, 1, 1), out=out)

    def pack_dy(self, dy):
        if self.direct:
            return dy.reshape(-1)
        s = self.s
        buf = torch.zeros(self.n * self.dy_image)
        self._grid_view(buf, s.dy_len, s.margin).copy_(dy)
        return buf

    def unpack_dx(self, dxq):
        g, s, n = self.g, self.s, self.n
        if self.direct:
            return dxq.view(n, g.in_channels, s.H, s.W)
        (sh, sw) = g.stride
        pt, _, pl, _ = g.padding
        if self.name == "plane":
            v = dxq.view(n, g.in_channels, sh, sw, s.Hq, s.Wq).permute(0, 1, 4, 2, 5, 3)
        else:
            v = dxq.view(g.in_channels, sh, sw, s.Hq, s.Wq, n).permute(5, 0, 3, 1, 4, 2)
        v = v.reshape(n, g.in_channels, s.Hq * sh, s.Wq * sw)
        return v[:, :, pt:pt + s.H, pl:pl + s.W].contiguous()

    # -- the three products ----------------------------------------------------------------
    def forward(self, row_ptr, values, xq, bias, nthreads):
        s, u = self.s, self.unit
        grid = torch.empty(self.n * self.y_image)
        _C.spmm_offsets(row_ptr, self.off, _np(values), None, None, _np(xq), self.x_image * u,
                        _np(grid), s.grid_len * u, self.y_image * u, s.grid_len * u,
                        self.images, nthreads)
        return self.unpack_y(grid, bias)

    def values_grad(self, row_ptr, dyq, xq, nnz, nthreads):
        s, u = self.s, self.unit
        dv = torch.empty(nnz)
        _C.sddmm_offsets(row_ptr, self.off, _np(dyq)[s.margin * u:], s.dy_len * u,
                         self.dy_image * u, _np(xq), self.x_image * u, s.grid_len * u,
                         self.images, _np(dv), nthreads)
        return dv

    def input_grad(self, values, dyq, nthreads):
        s, u = self.s, self.unit
        dxq = torch.empty(self.n * self.x_image)
        _C.spmm_offsets(self.t_ptr, self.t_off, _np(values), self.t_pos,
                        _np(torch.empty_like(values)), _np(dyq), self.dy_image * u, _np(dxq),
                        s.plane * u, self.x_image * u, s.plane * u, self.images, nthreads)
        return self.unpack_dx(dxq)


class SparseConv2dFunction(torch.autograd.Function):
    """Inputs: x (N, C, H, W) contiguous float32, values (nnz,), bias or None, the CSR row
    pointer as NumPy, and the _Layout for this input shape."""

    @staticmethod
    def forward(ctx, x, values, bias, row_ptr, layout):
        nthreads = get_num_threads()
        xq = layout.pack_x(x)
        y = layout.forward(row_ptr, values, xq, bias, nthreads)
        ctx.save_for_backward(xq if ctx.needs_input_grad[1] else None, values)
        ctx.row_ptr, ctx.layout = row_ptr, layout
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        xq, values = ctx.saved_tensors
        layout, row_ptr = ctx.layout, ctx.row_ptr
        need_x, need_v, need_b = ctx.needs_input_grad[:3]
        nthreads = get_num_threads()
        dx = dv = db = None
        dy = dy.contiguous()
        if need_x or need_v:
            dyq = layout.pack_dy(dy)
            if need_v:
                dv = layout.values_grad(row_ptr, dyq, xq, values.numel(), nthreads)
            if need_x:
                dx = layout.input_grad(values, dyq, nthreads)
        if need_b:
            db = dy.sum((0, 2, 3))
        return dx, dv, db, None, None


def time_layouts(layouts, x, values, bias, row_ptr, repeats: int = 2) -> dict:
    """Seconds per forward + both gradients (layout changes included) for each layout."""
    nthreads = get_num_threads()
    out = {}
    with torch.no_grad():
        for layout in layouts:
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                xq = layout.pack_x(x)
                y = layout.forward(row_ptr, values, xq, bias, nthreads)
                dyq = layout.pack_dy(y)
                layout.values_grad(row_ptr, dyq, xq, values.numel(), nthreads)
                layout.input_grad(values, dyq, nthreads)
                best = min(best, time.perf_counter() - t)
            out[layout.name] = best
    return out

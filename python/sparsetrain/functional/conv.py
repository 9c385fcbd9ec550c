"""Autograd for a 2-D convolution with a sparse weight, on the offset kernels.

Two layouts ("strategies") feed the same kernels (see sparsetrain/formats/conv.py):

- ``plane``: each image's input as zero-padded phase planes (NCHW order); vectorized along
  each image's flattened output grid. A 1x1, stride-1, unpadded convolution reads and writes
  PyTorch's NCHW tensors in place (no layout change at all).
- ``batch``: the whole batch at once with the batch innermost (C, phases, Hq, Wq, N);
  vectorized along (grid position, image). Better when planes are small and batches large.

Which one is faster depends on the layer and the input shape, so ``auto`` times both on the
first call with a new input shape (forward and both gradients, layout changes included) and
keeps the winner for that shape. The layout changes are native kernels (sparsetrain/csrc/kernels/
conv_layout.cpp) and their cost is part of every timing.
"""
from __future__ import annotations

import time

import torch
from torch.autograd.function import once_differentiable

from .. import _C
from .._runtime import get_num_threads
from .. import _workspace
from ..formats.conv import ConvGeometry, ConvIndex

STRATEGIES = ("direct", "plane", "batch")
_BATCH_UNIT = 16  # images per vector in the "batch" layout


def _np(t: torch.Tensor):
    return t.detach().numpy()


class _Layout:
    """How one strategy lays out x, y, dy and dx, and the strides the kernels take.

    Every layout is (groups, channels, phases, Hq, Wq, unit): the batch in groups of `unit`
    images, each pixel a vector of `unit` floats (one per image of the group). unit = 1 is
    the per-image NCHW phase-plane layout ("plane"); unit = 16 ("batch") makes every vector
    load aligned (offsets are multiples of 16 floats) at the price of a transposing copy.
    """

    def __init__(self, g: ConvGeometry, index: ConvIndex, batch: int, name: str):
        s = index.shape
        self.g, self.s, self.n, self.name = g, s, batch, name
        self.unit = 1 if name == "plane" else _BATCH_UNIT
        u = self.unit
        self.images = -(-batch // u)  # groups of `unit` images
        self.off = (index.off * u).numpy() if u != 1 else index.off.numpy()
        # The input gradient is computed from dx_start on: its offsets start there too.
        self.t_off = ((index.t_off + index.shape.dx_start) * u).numpy()
        self.t_ptr = index.t_ptr.numpy()
        self.t_pos = index.t_pos.numpy()
        planes = g.in_channels * s.phases
        self.x_image = planes * s.plane  # pixels of one group's packed input
        self.y_image = g.out_channels * s.grid_len
        self.dy_image = g.out_channels * s.dy_len
        # A 1x1 / stride 1 / unpadded convolution is a matrix product on NCHW as it is.
        self.direct = (u == 1 and s.phases == 1 and s.plane == s.H * s.W
                       and s.grid_len == s.plane and s.margin == 0)

    # -- layout changes (native kernels; their cost is in every timing) ------------------
    def _input_args(self):
        g, s = self.g, self.s
        pt, _, pl, _ = g.padding
        return (self.n, g.in_channels, self.unit, s.H, s.W, g.stride[0], g.stride[1], pt, pl,
                s.Hq, s.Wq)

    def pack_x(self, x):
        if self.direct:
            return x.reshape(-1)
        out = _workspace.empty(self.images * self.x_image * self.unit)
        _C.conv_pack_input(_np(x.reshape(-1)), _np(out), *self._input_args(), get_num_threads())
        return out

    def unpack_dx(self, dxq):
        g, s = self.g, self.s
        if self.direct:  # already dx, allocated in its final shape
            return dxq
        dx = _workspace.empty(self.n, g.in_channels, s.H, s.W)
        _C.conv_unpack_grad_input(_np(dx.view(-1)), _np(dxq), *self._input_args(),
                                  get_num_threads())
        return dx

    def unpack_y(self, grid, bias):
        s, c = self.s, self.g.out_channels
        if self.direct:  # already y, allocated in its final shape
            return grid if bias is None else grid.add_(bias.view(1, -1, 1, 1))
        y = _workspace.empty(self.n, c, s.Ho, s.Wo)
        _C.conv_unpack_output(_np(y.view(-1)), _np(grid), None if bias is None else _np(bias),
                              self.n, c, self.unit, s.Ho, s.Wo, s.Wq, s.grid_len, 0,
                              get_num_threads())
        return y

    def pack_dy(self, dy, want_bias_grad=False):
        """The bordered output gradient, and the bias gradient (summed in the same pass) if asked."""
        s, c = self.s, self.g.out_channels
        if self.direct:
            return dy.reshape(-1), (dy.sum((0, 2, 3)) if want_bias_grad else None)
        buf = _workspace.empty(self.images * self.dy_image * self.unit)
        sums = torch.empty(self.images, c, dtype=torch.float64) if want_bias_grad else None
        _C.conv_pack_grad_output(_np(dy.reshape(-1)), _np(buf), None if sums is None else
                                 sums.numpy().reshape(-1), self.n, c, self.unit, s.Ho, s.Wo,
                                 s.Wq, s.dy_len, s.margin, get_num_threads())
        return buf, (sums.sum(0).to(torch.float32) if want_bias_grad else None)

    # -- the three products ----------------------------------------------------------------
    def forward(self, row_ptr, values, xq, bias, nthreads):
        s, u = self.s, self.unit
        if u == 1 and not self.direct:
            # The kernel writes y's NCHW planes itself (bias included): no grid, no unpack.
            c = self.g.out_channels
            y = _workspace.empty(self.n, c, s.Ho, s.Wo)
            _C.spmm_offsets(row_ptr, self.off, _np(values), None, None, _np(xq), self.x_image,
                            _np(y.view(-1)), s.Ho * s.Wo, c * s.Ho * s.Wo, s.grid_len,
                            self.images, nthreads, grid_w=s.Wq, plane_h=s.Ho, plane_w=s.Wo,
                            bias=None if bias is None else _np(bias))
            return y
        if self.direct:
            grid = _workspace.empty(self.n, self.g.out_channels, s.Ho, s.Wo)
        else:
            grid = _workspace.empty(self.images * self.y_image * u)
        _C.spmm_offsets(row_ptr, self.off, _np(values), None, None, _np(xq), self.x_image * u,
                        _np(grid.view(-1)), s.grid_len * u, self.y_image * u, s.grid_len * u,
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
        if u == 1 and not self.direct and s.phases == 1:
            # Stride 1: the padded plane's interior is dx itself; the kernel writes it there.
            g = self.g
            pt, _, pl, _ = g.padding
            dx = _workspace.empty(self.n, g.in_channels, s.H, s.W)
            scratch = _workspace.empty(values.numel())
            _C.spmm_offsets(self.t_ptr, self.t_off, _np(values), self.t_pos, _np(scratch),
                            _np(dyq), self.dy_image, _np(dx.view(-1)), s.H * s.W,
                            g.in_channels * s.H * s.W, s.dx_len, self.images, nthreads,
                            grid_w=s.Wq, t_base=s.dx_start, row0=pt, col0=pl, plane_h=s.H,
                            plane_w=s.W)
            return dx
        if self.direct:
            dxq = _workspace.empty(self.n, self.g.in_channels, s.H, s.W)
        else:
            dxq = _workspace.empty(self.images * self.x_image * u)
        scratch = _workspace.empty(values.numel())
        # Only [dx_start, dx_start + dx_len) of each plane holds real pixels: skip the rest.
        _C.spmm_offsets(self.t_ptr, self.t_off, _np(values), self.t_pos, _np(scratch),
                        _np(dyq), self.dy_image * u, _np(dxq.view(-1))[s.dx_start * u:],
                        s.plane * u, self.x_image * u, s.dx_len * u, self.images, nthreads)
        return self.unpack_dx(dxq)


class _DirectLayout:
    """Stride-1 convolutions straight on NCHW tensors (csrc/kernels/conv_direct.cpp): no
    layout change at all; loads are clipped to the source rows by masks instead of padding."""

    name = "direct"

    def __init__(self, g: ConvGeometry, index, batch: int):
        self.g, self.i, self.n = g, index, batch
        np_ = lambda t: t.numpy()  # noqa: E731
        i = index
        self.fwd = tuple(map(np_, (i.plane, i.dy, i.slot, i.shift_w)))
        self.bwd = tuple(map(np_, (i.t_ptr, i.t_plane, i.t_dy, i.t_slot, i.t_shift_w)))
        self.t_pos = i.t_pos.numpy()

    def pack_x(self, x):
        return x

    def pack_dy(self, dy, want_bias_grad=False):
        return dy, (dy.sum((0, 2, 3)) if want_bias_grad else None)

    def forward(self, row_ptr, values, x, bias, nthreads):
        g, i = self.g, self.i
        y = _workspace.empty(self.n, g.out_channels, i.Ho, i.Wo)
        _C.conv_direct_spmm(row_ptr, *self.fwd, _np(values), None, None, _np(x.view(-1)),
                            g.in_channels * i.H * i.W, i.H, i.W, _np(y.view(-1)), i.Ho, i.Wo,
                            None if bias is None else _np(bias), self.n, nthreads)
        return y

    def values_grad(self, row_ptr, dy, x, nnz, nthreads):
        g, i = self.g, self.i
        dv = torch.empty(nnz)
        _C.conv_direct_sddmm(row_ptr, *self.fwd, _np(dy.view(-1)), i.Ho, i.Wo, _np(x.view(-1)),
                             g.in_channels * i.H * i.W, i.H, i.W, self.n, _np(dv), nthreads)
        return dv

    def input_grad(self, values, dy, nthreads):
        g, i = self.g, self.i
        dx = _workspace.empty(self.n, g.in_channels, i.H, i.W)
        scratch = _workspace.empty(values.numel())
        t_ptr, plane, dyy, slot, shift = self.bwd
        _C.conv_direct_spmm(t_ptr, plane, dyy, slot, shift, _np(values), self.t_pos, _np(scratch),
                            _np(dy.view(-1)), g.out_channels * i.Ho * i.Wo, i.Ho, i.Wo,
                            _np(dx.view(-1)), i.H, i.W, None, self.n, nthreads)
        return dx


class Subsample(torch.autograd.Function):
    """x[:, :, ::sh, ::sw] as one contiguous copy, with a one-pass backward (slicing twice
    would zero-fill and copy the full-size gradient once per sliced dimension)."""

    @staticmethod
    def forward(ctx, x, sh, sw):
        ctx.shape, ctx.sh, ctx.sw = x.shape, sh, sw
        return x[:, :, ::sh, ::sw].contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        dx = torch.zeros(ctx.shape, dtype=g.dtype)
        dx[:, :, ::ctx.sh, ::ctx.sw] = g
        return dx, None, None


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
            dyq, db = layout.pack_dy(dy, want_bias_grad=need_b)
            if need_v:
                dv = layout.values_grad(row_ptr, dyq, xq, values.numel(), nthreads)
            if need_x:
                dx = layout.input_grad(values, dyq, nthreads)
        elif need_b:
            db = dy.sum((0, 2, 3))
        return dx, dv, db, None, None


def time_layouts(layouts, x, values, bias, row_ptr, repeats: int = 2) -> dict:
    """Seconds per forward + both gradients (layout changes included) for each layout: the
    best of `repeats` runs after one warm-up run."""
    nthreads = get_num_threads()
    out = {}
    with torch.no_grad():
        for layout in layouts:
            best = float("inf")
            for rep in range(repeats + 1):  # the first run only warms up (allocations, caches)
                t = time.perf_counter()
                xq = layout.pack_x(x)
                y = layout.forward(row_ptr, values, xq, bias, nthreads)
                dyq, _ = layout.pack_dy(y, want_bias_grad=bias is not None)
                layout.values_grad(row_ptr, dyq, xq, values.numel(), nthreads)
                layout.input_grad(values, dyq, nthreads)
                if rep:
                    best = min(best, time.perf_counter() - t)
            out[layout.name] = best
    return out

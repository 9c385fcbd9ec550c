"""Convolution geometry and the offset indices the convolution kernels run on.

A sparse convolution is computed as a sparse product over *element offsets*: the input is
zero-padded and split into stride phases ("phase planes": for stride s, the s x s planes of
every s-th row and column), so that for every nonzero weight (co, ci, kh, kw) the inputs it
multiplies, for all output positions, form one contiguous run starting at a fixed offset:

    out_grid[co, i] = sum over nonzeros j of row co: w[j] * packed[off[j] + i]

with i running over the output "grid": Ho rows of the phase-plane width Wq (columns
Wo..Wq-1 of each grid row are never used). Stride, dilation, padding, groups and rectangular
kernels all end up in the offsets, so one kernel serves every configuration. The transpose
(the input gradient) is the same product organised by input phase plane, reading a
zero-bordered output gradient at offsets that go the other way.

Offsets are counted in pixels; a layout that stores a vector of `unit` floats per pixel (the
batch-innermost layout) scales them by `unit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .csr import nonzero_rows, validate_csr


@dataclass(frozen=True)
class ConvGeometry:
    in_channels: int
    out_channels: int
    kernel: tuple  # (kh, kw)
    stride: tuple
    dilation: tuple
    padding: tuple  # (top, bottom, left, right), zeros
    groups: int

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def cols(self) -> int:
        """Columns of the weight as a CSR matrix: (in_channels / groups) * kh * kw."""
        return self.in_per_group * self.kernel[0] * self.kernel[1]


def resolve_padding(
    padding: str | int | tuple, kernel: tuple, dilation: tuple, stride: tuple
) -> tuple:
    """(top, bottom, left, right) from nn.Conv2d's padding argument."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out += [total // 2, total - total // 2]  # PyTorch puts the odd one at the end
            return tuple(out)
        raise ValueError(f"padding must be 'valid', 'same', an int or a pair, got {padding!r}")
    ph, pw = padding
    return (ph, ph, pw, pw)


@dataclass(frozen=True)
class ConvShape:
    """Everything that depends on the input's spatial size (not on the pattern)."""

    H: int
    W: int
    Ho: int
    Wo: int
    Hq: int  # rows of a phase plane
    Wq: int  # columns of a phase plane = stride of the output grid rows
    phases: int  # stride_h * stride_w
    plane: int  # Hq * Wq
    grid_len: int  # (Ho - 1) * Wq + Wo: up to the last used grid position
    margin: int  # largest shift of any kernel tap inside a phase plane
    dy_len: int  # per output channel of the bordered output gradient: margin + plane
    dx_start: int  # the range of a phase plane holding real (not padding) input pixels,
    dx_len: int  # in every phase: the input gradient is computed only there


def conv_shape(g: ConvGeometry, H: int, W: int) -> ConvShape:
    (kh, kw), (sh, sw), (dh, dw) = g.kernel, g.stride, g.dilation
    pt, pb, pl, pr = g.padding
    Hp, Wp = H + pt + pb, W + pl + pr
    Ho = (Hp - dh * (kh - 1) - 1) // sh + 1
    Wo = (Wp - dw * (kw - 1) - 1) // sw + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(
            f"input of spatial size ({H}, {W}) is smaller than the kernel {g.kernel} (with "
            f"dilation {g.dilation}, padding (top, bottom, left, right) {g.padding}): no output"
        )
    Hq, Wq = -(-Hp // sh), -(-Wp // sw)
    plane = Hq * Wq
    margin = ((kh - 1) * dh // sh) * Wq + (kw - 1) * dw // sw
    dx_start = (pt // sh) * Wq + pl // sw
    dx_end = ((pt + H - 1) // sh) * Wq + (pl + W - 1) // sw + 1
    return ConvShape(
        H,
        W,
        Ho,
        Wo,
        Hq,
        Wq,
        sh * sw,
        plane,
        (Ho - 1) * Wq + Wo,
        margin,
        margin + plane,
        dx_start,
        dx_end - dx_start,
    )


@dataclass(frozen=True)
class ConvIndex:
    """Offsets (in pixels) of a validated pattern for one input size.

    Forward: CSR rows are output channels, ``off[j]`` where nonzero j's input run starts in
    the packed input of one image. Input gradient: rows are (input channel, phase) planes,
    ``t_off[k]`` where its run starts in the bordered output gradient, ``t_pos[j]`` the
    position of CSR nonzero j in that order.
    """

    shape: ConvShape
    off: torch.Tensor  # int64 (nnz,)
    t_ptr: torch.Tensor  # int64 (in_channels * phases + 1,)
    t_off: torch.Tensor  # int64 (nnz,)
    t_pos: torch.Tensor  # int64 (nnz,)


def conv_index(
    g: ConvGeometry, row_ptr: torch.Tensor, col_idx: torch.Tensor, H: int, W: int
) -> ConvIndex:
    """The offset index of a (validated) CSR pattern over (out_channels, cols) for an
    input of spatial size H x W (the pattern is validated again: O(rows + nnz))."""
    validate_csr(row_ptr, col_idx, g.out_channels, g.cols)
    s = conv_shape(g, H, W)
    (kh, kw), (sh, sw), (dh, dw) = g.kernel, g.stride, g.dilation
    nnz = col_idx.numel()
    co = nonzero_rows(row_ptr, g.out_channels)
    c = col_idx.to(torch.int64)
    ci = (co // g.out_per_group) * g.in_per_group + c // (kh * kw)
    tap_h = (c // kw) % kh * dh
    tap_w = c % kw * dw
    phase = (tap_h % sh) * sw + tap_w % sw
    shift = (tap_h // sh) * s.Wq + tap_w // sw
    row_t = ci * s.phases + phase  # the (input channel, phase) plane
    off = row_t * s.plane + shift

    # Transposed: nonzeros grouped by input plane (stable: CSR order inside a plane).
    order = torch.sort(row_t, stable=True).indices
    t_ptr = torch.zeros(g.in_channels * s.phases + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(row_t, minlength=g.in_channels * s.phases), 0, out=t_ptr[1:])
    t_off = (co * s.dy_len + s.margin - shift)[order]
    t_pos = torch.empty(nnz, dtype=torch.int64)
    t_pos[order] = torch.arange(nnz, dtype=torch.int64)
    return ConvIndex(s, off.contiguous(), t_ptr, t_off.contiguous(), t_pos)


@dataclass(frozen=True)
class DirectIndex:
    """Indices of the stride-1 kernels that work on NCHW planes as they are.

    Forward: rows = output channels; nonzero j reads the input plane starting at ``plane[j]``
    shifted by ``dy[j]`` rows and ``shift_w[slot[j]]`` columns. Input gradient (``t_*``):
    rows = input channels, reading the output gradient with the shifts negated; ``t_pos[j]``
    is the position of CSR nonzero j in that order.
    """

    H: int
    W: int
    Ho: int
    Wo: int
    plane: torch.Tensor  # int64
    dy: torch.Tensor  # int32
    slot: torch.Tensor  # int32 (the kernel column kw)
    shift_w: torch.Tensor  # int64 (kw,)
    t_ptr: torch.Tensor
    t_plane: torch.Tensor
    t_dy: torch.Tensor
    t_slot: torch.Tensor
    t_shift_w: torch.Tensor
    t_pos: torch.Tensor


def direct_index(
    g: ConvGeometry, row_ptr: torch.Tensor, col_idx: torch.Tensor, H: int, W: int
) -> DirectIndex:
    """The NCHW index of a (validated) pattern of a stride-1 convolution for an H x W input."""
    if g.stride != (1, 1):
        raise ValueError("direct NCHW kernels need stride 1")
    validate_csr(row_ptr, col_idx, g.out_channels, g.cols)
    s = conv_shape(g, H, W)
    # Row shifts are int32 in the kernels' index.
    if max(g.dilation[0] * (g.kernel[0] - 1), g.padding[0]) >= 2**31:
        raise ValueError("direct NCHW kernels: row shifts beyond 2^31 are not supported")
    (kh, kw), (dh, dw) = g.kernel, g.dilation
    pt, _, pl, _ = g.padding
    co = nonzero_rows(row_ptr, g.out_channels)
    c = col_idx.to(torch.int64)
    ci = (co // g.out_per_group) * g.in_per_group + c // (kh * kw)
    tap_h = (c // kw) % kh
    tap_w = c % kw
    shift_w = torch.arange(kw, dtype=torch.int64) * dw - pl
    order = torch.sort(ci, stable=True).indices
    t_ptr = torch.zeros(g.in_channels + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(ci, minlength=g.in_channels), 0, out=t_ptr[1:])
    t_pos = torch.empty(c.numel(), dtype=torch.int64)
    t_pos[order] = torch.arange(c.numel(), dtype=torch.int64)
    i32 = torch.int32
    return DirectIndex(
        H,
        W,
        s.Ho,
        s.Wo,
        plane=(ci * H * W).contiguous(),
        dy=(tap_h * dh - pt).to(i32).contiguous(),
        slot=tap_w.to(i32).contiguous(),
        shift_w=shift_w,
        t_ptr=t_ptr,
        t_plane=(co * s.Ho * s.Wo)[order].contiguous(),
        t_dy=(pt - tap_h * dh)[order].to(i32).contiguous(),
        t_slot=tap_w[order].to(i32).contiguous(),
        t_shift_w=-shift_w,
        t_pos=t_pos,
    )

"""The layouts ("strategies") the convolution kernels run on, one class each.

Three layouts feed the kernels (see sparsetrain/formats/conv.py):

- ``plane``: each image's input as zero-padded phase planes (NCHW order); vectorized along
  each image's flattened output grid. The kernels pack each image themselves right before they
  use it (the packed input stays in cache and never exists as a tensor), and the strided input
  gradient is interleaved back into NCHW channel by channel inside its kernel. A 1x1,
  stride-1, unpadded convolution reads and writes PyTorch's NCHW tensors in place (no layout
  change at all).
- ``batch``: the whole batch at once with the batch innermost (C, phases, Hq, Wq, N);
  vectorized along (grid position, image). Better when planes are small and batches large.
- ``direct``: stride-1 convolutions straight on NCHW tensors, loads clipped to the source
  rows by masks instead of padding (csrc/kernels/conv_direct.cpp); no layout change at all.

The layout changes are native kernels (sparsetrain/csrc/kernels/conv_layout.cpp) and their
cost is part of every timing (functional/conv_autotune.py).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .. import _C, _workspace, tuning
from .._runtime import get_num_threads
from ..formats.conv import ConvGeometry, ConvIndex, ConvShape
from .common import numpy_view as _np

STRATEGIES = ("direct", "plane", "batch")
BATCH_UNIT = 16  # images per vector in the "batch" layout


def is_nhwc(t: torch.Tensor) -> bool:
    """Whether a 4-D tensor is channels_last and not also NCHW-contiguous (one channel, or
    1 x 1 planes, are both: those count as NCHW)."""
    return (
        t.dim() == 4
        and not t.is_contiguous()
        and t.is_contiguous(memory_format=torch.channels_last)
    )


def memory_format(nhwc: bool) -> torch.memory_format:
    return torch.channels_last if nhwc else torch.contiguous_format


def flat(t: torch.Tensor, nhwc: bool) -> torch.Tensor:
    """A dense 4-D tensor's elements in memory order, as a 1-D view (NCHW or NHWC)."""
    return t.permute(0, 2, 3, 1).reshape(-1) if nhwc else t.reshape(-1)


def empty_4d(n: int, c: int, h: int, w: int, nhwc: bool) -> torch.Tensor:
    """An (n, c, h, w) float32 workspace tensor, NCHW or channels_last."""
    if nhwc:
        return _workspace.empty(n, h, w, c).permute(0, 3, 1, 2)
    return _workspace.empty(n, c, h, w)


def plane_strides(channels: int, plane: int, nhwc: bool) -> dict:
    """How the plane forms address a tensor's channels: NCHW planes (the plane size apart), or
    channels_last pixels (the channel count apart; with one channel the two are the same)."""
    if nhwc and channels > 1:
        return dict(ldc=1, pixel_stride=channels)
    return dict(ldc=plane)


def in_place(s: ConvShape) -> bool:
    """A 1x1 / stride 1 / unpadded convolution: the plane layout is NCHW as it is."""
    return s.phases == 1 and s.plane == s.H * s.W and s.grid_len == s.plane and s.margin == 0


def _channel_stats(sums, channels: int):
    """(channels, 2) float64 sums over images of the kernel's per-(image, channel) output
    sums and sums of squares, or None."""
    if sums is None:
        return None
    return torch.from_numpy(sums).view(-1, channels, 2).sum(0)


def spmm_offsets(form: str) -> Callable[..., bool | None]:
    """The spmm_offsets kernel of a form: "rows", "planes", "planes16" or "merge"."""
    return getattr(_C, "spmm_offsets_" + form)


def conv_grads_offsets(form: str) -> Callable[..., bool | None]:
    """Both gradients at once, the input gradient in a form: "planes", "planes16", "merge"."""
    return getattr(_C, "conv_grads_offsets_" + form)


# The input gradient's spmm_offsets arguments renamed as conv_grads_offsets_<form> takes
# them (the same dy is the values gradient's A); the others keep their names.
_DX_NAMES = {
    "ptr": "t_ptr",
    "offsets": "t_offsets",
    "b": "dy",
    "b_image_stride": "dy_image_stride",
    "c": "dx",
    "ldc": "ldx",
    "c_image_stride": "dx_image_stride",
    "len": "dx_len",
    "seg_len": "dx_seg_len",
    "seg_stride": "dx_seg_stride",
    "pixel_stride": "dx_pixel_stride",
}
# ... and the values gradient's sddmm_offsets arguments (a, a_image_stride, images, nthreads
# and pack_grid are the input gradient's).
_DV_NAMES = {"b": "x", "b_image_stride": "x_image_stride", "out": "dv"}
_DV_SHARED = ("a", "a_image_stride", "images", "nthreads", "pack_grid")


def grads_args(dx_args: dict, dv_args: dict, dy_offset: int) -> dict:
    """conv_grads_offsets_<form>'s keyword arguments from the input gradient form's (dx_args,
    on the transposed index) and sddmm_offsets' (dv_args), which reads the same dy from
    dy_offset on in each image."""
    out = {_DX_NAMES.get(k, k): v for k, v in dx_args.items()}
    out.update({_DV_NAMES.get(k, k): v for k, v in dv_args.items() if k not in _DV_SHARED})
    out["a_offset"] = dy_offset
    return out


class OffsetLayout:
    """How one strategy lays out x, y, dy and dx, and the strides the kernels take.

    Every layout is (groups, channels, phases, Hq, Wq, unit): the batch in groups of `unit`
    images, each pixel a vector of `unit` floats (one per image of the group). unit = 1 is
    the per-image NCHW phase-plane layout ("plane"); unit = 16 ("batch") makes every vector
    load aligned (offsets are multiples of 16 floats) at the price of a transposing copy.
    """

    def __init__(
        self, g: ConvGeometry, index: ConvIndex, batch: int, name: str, nhwc: bool = False
    ):
        s = index.shape
        self.g, self.s, self.n, self.name, self.nhwc = g, s, batch, name, nhwc
        self.unit = 1 if name == "plane" else BATCH_UNIT
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
        self.direct = u == 1 and in_place(s) and not nhwc
        # With whole vectors per pixel (unit 16) the kernels compute only the real columns of
        # each grid row (Wo of Wq for the output, W of Wq for a stride-1 input gradient)
        # instead of computing the padding columns and dropping them.
        self.out_segments = self.dx_segments = {}
        # The form writing NCHW planes: one image per vector, or (unit 16) from lanes of 16
        # images (see forward).
        self.planes_form = "planes" if u == 1 else "planes16"
        self.lanes = dict(batch=batch) if u != 1 else {}
        # One image per vector and a layout change: the kernels that read the packed input
        # pack each image themselves right before using it (from cache; the packed tensor
        # never exists), so x itself stands for "the packed input" here. Their threads then
        # own whole images: a small batch packs beforehand.
        fuse = tuning.FUSED_PACK
        fuse = batch >= tuning.FUSED_MIN_BATCH if fuse is None else fuse
        self.fused = u == 1 and not self.direct and fuse
        pt, _, pl, _ = g.padding
        # x's phase planes and dy's bordered grid, for the layout changes and (fused) for the
        # products that pack each image themselves.
        self.x_layout = _C.ConvInputLayout(
            n=batch,
            c=g.in_channels,
            unit=u,
            h=s.H,
            w=s.W,
            sh=g.stride[0],
            sw=g.stride[1],
            pt=pt,
            pl=pl,
            hq=s.Hq,
            wq=s.Wq,
            nhwc=nhwc,
        )
        self.dy_layout = _C.ConvOutputLayout(
            n=batch,
            c=g.out_channels,
            unit=u,
            ho=s.Ho,
            wo=s.Wo,
            wq=s.Wq,
            per_channel=s.dy_len,
            offset=s.margin,
            nhwc=nhwc,
        )
        self.pack_args = dict(pack=self.x_layout) if self.fused else {}
        # ... and the output gradient onto its bordered grid the same way (what pack_dy does).
        self.grid_args = dict(pack_grid=self.dy_layout) if self.fused else {}
        if u != 1:
            self.out_segments = dict(seg_len=s.Wo * u, seg_stride=s.Wq * u)
            if s.phases == 1:
                self.dx_segments = dict(seg_len=s.W * u, seg_stride=s.Wq * u)

    # -- layout changes (native kernels; their cost is in every timing) ------------------
    def pack_x(self, x, check_finite=False):
        """The packed input, and (if asked) whether x is all finite, read back while packing;
        None where not asked or where there is no pack (then check x itself). Layouts that
        read x as it is, or pack it inside their kernels (`fused`), return x."""
        if self.direct or self.fused:
            return flat(x, self.nhwc), None
        out = _workspace.empty(self.images * self.x_image * self.unit)
        finite = _C.conv_pack_input(
            x=_np(flat(x, self.nhwc)),
            packed=_np(out),
            layout=self.x_layout,
            nthreads=get_num_threads(),
            check_finite=check_finite,
        )
        return out, finite

    def unpack_dx(self, dxq):
        if self.direct:  # already dx, allocated in its final shape
            return dxq
        dx = self.empty_x()
        _C.conv_unpack_grad_input(
            x=_np(flat(dx, self.nhwc)),
            packed=_np(dxq),
            layout=self.x_layout,
            nthreads=get_num_threads(),
        )
        return dx

    def empty_x(self):
        """A tensor of x's shape and memory format."""
        return empty_4d(self.n, self.g.in_channels, self.s.H, self.s.W, self.nhwc)

    def empty_y(self):
        return empty_4d(self.n, self.g.out_channels, self.s.Ho, self.s.Wo, self.nhwc)

    @property
    def out_strides(self) -> dict:
        """How the plane forms address y's channels (plane_strides)."""
        return plane_strides(self.g.out_channels, self.s.Ho * self.s.Wo, self.nhwc)

    def pack_dy(self, dy, want_bias_grad=False):
        """The bordered output gradient, and the bias gradient (summed in the same pass) if
        asked."""
        _s, c = self.s, self.g.out_channels
        if self.direct:
            return dy.reshape(-1), (dy.sum((0, 2, 3)) if want_bias_grad else None)
        dy_flat = flat(dy, self.nhwc)
        if self.fused and not want_bias_grad:  # the kernels pack dy themselves (grid_args)
            return dy_flat, None
        # The packed gradient (or, fused, none: the channel sums only, the kernel's being
        # faster than a reduction over dims (0, 2, 3)).
        buf = None if self.fused else _workspace.empty(self.images * self.dy_image * self.unit)
        sums = torch.empty(self.images, c, dtype=torch.float64) if want_bias_grad else None
        _C.conv_pack_grad_output(
            y=_np(dy_flat),
            grid=None if buf is None else _np(buf),
            channel_sums=None if sums is None else sums.numpy().reshape(-1),
            layout=self.dy_layout,
            nthreads=get_num_threads(),
        )
        db = sums.sum(0).to(torch.float32) if want_bias_grad else None
        return (dy_flat if buf is None else buf), db

    # -- the three products ----------------------------------------------------------------
    def forward(self, row_ptr, values, xq, bias, nthreads, check_finite=False, stats=False):
        """y; whether x is all finite if asked and the kernel saw x (else None); and, if
        asked and the kernel writes y's planes itself, y's per-channel sum and sum of squares
        (channels x 2, float64) summed as it writes them (else None)."""
        s, u, c = self.s, self.unit, self.g.out_channels
        sums = np.empty(self.images * c * 2) if stats else None
        out_stats = {} if sums is None else dict(stats=sums)
        if self.fused:
            g = self.g
            y = self.empty_y()
            finite = _C.spmm_offsets_planes(
                ptr=row_ptr,
                offsets=self.off,
                values=_np(values),
                pos=None,
                scratch=None,
                b=_np(xq),
                b_image_stride=g.in_channels * s.H * s.W,
                c=_np(flat(y, self.nhwc)),
                c_image_stride=c * s.Ho * s.Wo,
                len=s.grid_len,
                images=self.images,
                nthreads=nthreads,
                grid_w=s.Wq,
                plane_h=s.Ho,
                plane_w=s.Wo,
                bias=None if bias is None else _np(bias),
                check_finite=check_finite,
                **self.out_strides,
                **self.pack_args,
                **out_stats,
            )
            return y, finite, _channel_stats(sums, c)
        if not self.direct:
            # The kernel writes y's NCHW planes itself (bias included; with unit 16 through a
            # register-block transpose): no grid, no unpacking pass.
            y = self.empty_y()
            spmm_offsets(self.planes_form)(
                ptr=row_ptr,
                offsets=self.off,
                values=_np(values),
                pos=None,
                scratch=None,
                b=_np(xq),
                b_image_stride=self.x_image * u,
                c=_np(flat(y, self.nhwc)),
                c_image_stride=c * s.Ho * s.Wo,
                len=s.grid_len * u,
                images=self.images,
                nthreads=nthreads,
                grid_w=s.Wq,
                plane_h=s.Ho,
                plane_w=s.Wo,
                bias=None if bias is None else _np(bias),
                **self.out_strides,
                **self.out_segments,
                **self.lanes,
                **out_stats,
            )
            return y, None, _channel_stats(sums, c)
        # Direct (1x1, stride 1, unpadded): the grid is y itself.
        y = _workspace.empty(self.n, c, s.Ho, s.Wo)
        _C.spmm_offsets_rows(
            ptr=row_ptr,
            offsets=self.off,
            values=_np(values),
            pos=None,
            scratch=None,
            b=_np(xq),
            b_image_stride=self.x_image,
            c=_np(y.view(-1)),
            ldc=s.grid_len,
            c_image_stride=self.y_image,
            len=s.grid_len,
            images=self.images,
            nthreads=nthreads,
            **out_stats,
        )
        stats = _channel_stats(sums, c)
        if bias is None:
            return y, None, stats
        if stats is not None:  # the kernel summed y before the bias: add its share
            b, count = bias.detach().double(), float(self.n * s.grid_len)
            stats = torch.stack(
                [stats[:, 0] + b * count, stats[:, 1] + 2 * b * stats[:, 0] + b * b * count], 1
            )
        return y.add_(bias.view(1, -1, 1, 1)), None, stats

    def _values_grad_args(self, row_ptr, dyq, xq, dv, nthreads):
        s, u, g = self.s, self.unit, self.g
        # x and dy as packed tensors, or (fused) NCHW ones the kernel packs image by image.
        a_image = g.out_channels * s.Ho * s.Wo if self.fused else self.dy_image * u
        a = _np(dyq)[self.dy_offset :]
        x_image = g.in_channels * s.H * s.W if self.fused else self.x_image * u
        return dict(
            ptr=row_ptr,
            offsets=self.off,
            a=a,
            lda=s.dy_len * u,
            a_image_stride=a_image,
            b=_np(xq),
            b_image_stride=x_image,
            len=s.grid_len * u,
            images=self.images,
            out=_np(dv),
            nthreads=nthreads,
            **self.out_segments,
            **self.pack_args,
            **self.grid_args,
        )

    def values_grad(self, row_ptr, dyq, xq, nnz, nthreads):
        dv = torch.empty(nnz)
        _C.sddmm_offsets(**self._values_grad_args(row_ptr, dyq, xq, dv, nthreads))
        return dv

    def unpack_x(self, xq):
        """x (N, C, H, W) back from pack_x's result (for the dense fallbacks)."""
        s = self.s
        if self.direct or self.fused:
            if self.nhwc:
                return xq.view(self.n, s.H, s.W, self.g.in_channels).permute(0, 3, 1, 2)
            return xq.view(self.n, self.g.in_channels, s.H, s.W)
        return self.unpack_dx(xq)

    @property
    def packs_dy(self):
        """Whether pack_dy makes a pass over dy of its own (which sums dy's channels for free)."""
        return not (self.direct or self.fused)

    def _input_grad_args(self, values, dyq, nthreads, check_finite):
        """(out, the input gradient's spmm_offsets form ("rows", "planes", "planes16" or
        "merge"), that form's arguments writing out, whether out is the packed gradient, to
        be unpacked into dx afterwards)."""
        s, u, g = self.s, self.unit, self.g
        scratch = _workspace.empty(values.numel())  # the values in the transposed index's order
        check = dict(check_finite=True) if check_finite and self.fused else {}
        # dy's images: packed ones, or NCHW ones the kernel packs itself (fused).
        dy_image = g.out_channels * s.Ho * s.Wo if self.fused else self.dy_image * u
        common = dict(
            ptr=self.t_ptr,
            offsets=self.t_off,
            values=_np(values),
            pos=self.t_pos,
            scratch=_np(scratch),
            b=_np(dyq),
            b_image_stride=dy_image,
            images=self.images,
            nthreads=nthreads,
        )
        if not self.direct and s.phases == 1:
            # Stride 1: the padded plane's interior is dx itself; the kernel writes it there.
            pt, _, pl, _ = g.padding
            dx = self.empty_x()
            strides = plane_strides(g.in_channels, s.H * s.W, self.nhwc)
            return (
                dx,
                self.planes_form,
                dict(
                    common,
                    c=_np(flat(dx, self.nhwc)),
                    **strides,
                    c_image_stride=g.in_channels * s.H * s.W,
                    len=s.dx_len * u,
                    grid_w=s.Wq,
                    t_base=s.dx_start,
                    row0=pt,
                    col0=pl,
                    plane_h=s.H,
                    plane_w=s.W,
                    **self.dx_segments,
                    **self.lanes,
                    **self.grid_args,
                    **check,
                ),
                False,
            )
        if u == 1 and not self.direct:
            # Strided, one image per vector: each channel's phase planes are interleaved into
            # dx by the kernel while they are still in cache (no packed dx, no unpacking pass).
            dx = self.empty_x()
            return (
                dx,
                "merge",
                dict(
                    common,
                    c=_np(flat(dx, self.nhwc)),
                    c_image_stride=g.in_channels * s.H * s.W,
                    len=s.dx_len,
                    t_base=s.dx_start,
                    merge=self.x_layout,
                    **self.grid_args,
                    **check,
                ),
                False,
            )
        if self.direct:
            dxq = _workspace.empty(self.n, g.in_channels, s.H, s.W)
        else:
            dxq = _workspace.empty(self.images * self.x_image * u)
        # Only [dx_start, dx_start + dx_len) of each plane holds real pixels: skip the rest.
        return (
            dxq,
            "rows",
            dict(
                common,
                c=_np(dxq.view(-1))[s.dx_start * u :],
                ldc=s.plane * u,
                c_image_stride=self.x_image * u,
                len=s.dx_len * u,
                **self.dx_segments,
            ),
            not self.direct,
        )

    def input_grad(self, values, dyq, nthreads, check_finite=False):
        """dx, and whether dy is all finite if asked and the kernel read dy itself (fused: it
        checks each image as it packs it, with no pass of its own), else None."""
        out, form, args, packed = self._input_grad_args(values, dyq, nthreads, check_finite)
        seen = spmm_offsets(form)(**args)
        return (self.unpack_dx(out), None) if packed else (out, seen)

    @property
    def fuses_grads(self):
        """Whether grads() computes both gradients in one kernel call: with one packing of dy
        per image (fused layouts), and for stride 1 (the input gradient then written into
        dx's planes) from one load of each window of dy."""
        return self.fused or (self.s.phases == 1 and not self.direct)

    def grads(self, values, row_ptr, dyq, xq, nthreads, check_finite=False):
        """(dx, dv, whether dy is all finite if asked and the kernel packed dy, else None) in
        one kernel call (layouts whose fuses_grads is True)."""
        dx, form, dx_args, _ = self._input_grad_args(values, dyq, nthreads, check_finite)
        dv = torch.empty(values.numel())
        dv_args = self._values_grad_args(row_ptr, dyq, xq, dv, nthreads)
        seen = conv_grads_offsets(form)(**grads_args(dx_args, dv_args, self.dy_offset))
        return dx, dv, seen

    @property
    def dy_offset(self) -> int:
        """Where the values gradient's rows of dy start in each image of what pack_dy returns:
        after the grid's margin, or (fused) 0, the layout the kernel packs dy by saying it."""
        return 0 if self.fused else self.s.margin * self.unit


class DirectLayout:
    """Stride-1 convolutions straight on NCHW tensors (csrc/kernels/conv_direct.cpp): no
    layout change at all; loads are clipped to the source rows by masks instead of padding."""

    name = "direct"
    nhwc = False  # NCHW tensors only (channels_last inputs run on "plane")

    def __init__(self, g: ConvGeometry, index, batch: int):
        self.g, self.i, self.n = g, index, batch
        np_ = lambda t: t.numpy()  # noqa: E731
        i = index
        self.fwd = dict(plane=np_(i.plane), dy=np_(i.dy), slot=np_(i.slot), shift_w=np_(i.shift_w))
        self.bwd = tuple(map(np_, (i.t_ptr, i.t_plane, i.t_dy, i.t_slot, i.t_shift_w)))
        self.t_pos = i.t_pos.numpy()

    def pack_x(self, x, check_finite=False):
        return x, None

    def unpack_x(self, xq):
        return xq

    packs_dy = False
    fuses_grads = False

    def pack_dy(self, dy, want_bias_grad=False):
        return dy, (dy.sum((0, 2, 3)) if want_bias_grad else None)

    def forward(self, row_ptr, values, x, bias, nthreads, check_finite=False, stats=False):
        g, i = self.g, self.i
        y = _workspace.empty(self.n, g.out_channels, i.Ho, i.Wo)
        _C.conv_direct_spmm(
            ptr=row_ptr,
            **self.fwd,
            values=_np(values),
            pos=None,
            scratch=None,
            src=_np(x.view(-1)),
            src_image_stride=g.in_channels * i.H * i.W,
            sh=i.H,
            sw=i.W,
            out=_np(y.view(-1)),
            oh=i.Ho,
            ow=i.Wo,
            bias=None if bias is None else _np(bias),
            images=self.n,
            nthreads=nthreads,
        )
        return y, None, None

    def values_grad(self, row_ptr, dy, x, nnz, nthreads):
        g, i = self.g, self.i
        dv = torch.empty(nnz)
        _C.conv_direct_sddmm(
            ptr=row_ptr,
            **self.fwd,
            grad=_np(dy.view(-1)),
            oh=i.Ho,
            ow=i.Wo,
            src=_np(x.view(-1)),
            src_image_stride=g.in_channels * i.H * i.W,
            sh=i.H,
            sw=i.W,
            images=self.n,
            out=_np(dv),
            nthreads=nthreads,
        )
        return dv

    def input_grad(self, values, dy, nthreads, check_finite=False):
        g, i = self.g, self.i
        dx = _workspace.empty(self.n, g.in_channels, i.H, i.W)
        scratch = _workspace.empty(values.numel())
        t_ptr, plane, dyy, slot, shift = self.bwd
        _C.conv_direct_spmm(
            ptr=t_ptr,
            plane=plane,
            dy=dyy,
            slot=slot,
            shift_w=shift,
            values=_np(values),
            pos=self.t_pos,
            scratch=_np(scratch),
            src=_np(dy.view(-1)),
            src_image_stride=g.out_channels * i.Ho * i.Wo,
            sh=i.Ho,
            sw=i.Wo,
            out=_np(dx.view(-1)),
            oh=i.H,
            ow=i.W,
            bias=None,
            images=self.n,
            nthreads=nthreads,
        )
        return dx, None

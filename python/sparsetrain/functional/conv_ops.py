"""A sparse convolution as torch.library custom ops (sparsetrain::conv2d and its backward),
for what looks at a call through the dispatcher: torch.compile, torch.export, torch.func and
dispatch modes (plain eager calls run SparseConv2dFunction directly).

The ops take the pattern as its buffers and the geometry as integers; each finds its layer's
plans (functional/pattern_cache.py) and runs SparseConv2dFunction's forward and backward on
them. The backward op packs x again rather than receiving the forward's packed input (whose
shape depends on the layout chosen at run time), and no batch norm statistics are summed on
the way (a following fused batch norm computes its own).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..formats.conv import ConvGeometry, conv_shape
from ..formats.csr import validate_csr
from . import pattern_cache
from .common import check_values, vmap_unsupported
from .conv import SparseConv2dFunction
from .conv_layouts import is_nhwc, memory_format


def geometry_ints(g: ConvGeometry) -> list[int]:
    """A geometry as the ops take it."""
    return [g.in_channels, g.out_channels, *g.kernel, *g.stride, *g.dilation, *g.padding, g.groups]


def _geometry(ints: list[int]) -> ConvGeometry:
    i = [int(v) for v in ints]
    return ConvGeometry(i[0], i[1], (i[2], i[3]), (i[4], i[5]), (i[6], i[7]), tuple(i[8:12]), i[12])


def _kind(ints) -> tuple:
    return ("conv2d", *(int(v) for v in ints))


def seed_conv_plans(row_ptr, col_idx, pattern: tuple, geometry: ConvGeometry, plans) -> None:
    """Hand a layer's plans of its validated private ``pattern`` of these buffers to the ops
    (SparseConv2d does when it takes a pattern): eager calls and compiled ones then share one
    set of indices and layouts."""
    pattern_cache.seed(row_ptr, col_idx, _kind(geometry_ints(geometry)), pattern, plans)


def _plans(row_ptr, col_idx, ints, name: str):
    from ..nn.conv_plans import ConvPlans

    g = _geometry(ints)

    def derive(rp, ci):
        validate_csr(rp, ci, g.out_channels, g.cols)
        return ConvPlans(g, (rp, ci))

    try:
        return pattern_cache.lookup(row_ptr, col_idx, _kind(ints), derive)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


class _Ctx:
    """What SparseConv2dFunction's forward and backward read of their ctx, for the ops."""

    def __init__(self, needs_input_grad, saved=()):
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = saved

    def save_for_backward(self, *tensors):
        pass


def _conv2d(
    x: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    row_ptr: torch.Tensor,
    col_idx: torch.Tensor,
    geometry: list[int],
    strategy: str,
    name: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, [x finite, weight finite], the plans' generation) for x (N, C, H, W) float32,
    contiguous or channels_last (y then too), as the kernels see it (padded and subsampled
    before)."""
    entry = _plans(row_ptr, col_idx, geometry, name)
    plans = entry.derived
    check_values(name, values, entry.pattern[1].numel())
    layout = plans.layout(x, strategy, values, bias)
    ctx = _Ctx((False, False, False))
    y = SparseConv2dFunction.forward(
        ctx, x, values, bias, plans.row_ptr, layout, entry.pattern[1], None, None, name
    )
    finite = torch.tensor([bool(ctx.x_finite), bool(ctx.w_finite)])
    return y, finite, torch.tensor([entry.generation], dtype=torch.int64)


conv2d_op = torch.library.custom_op("sparsetrain::conv2d", mutates_args=())(_conv2d)


@conv2d_op.register_fake
def _(x, values, bias, row_ptr, col_idx, geometry, strategy, name):
    s = conv_shape(_geometry(geometry), x.shape[2], x.shape[3])
    shape = (x.shape[0], int(geometry[1]), s.Ho, s.Wo)
    return (
        torch.empty(shape, dtype=x.dtype, memory_format=memory_format(is_nhwc(x))),
        x.new_empty(2, dtype=torch.bool),
        x.new_empty(1, dtype=torch.int64),
    )


def _conv2d_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    row_ptr: torch.Tensor,
    col_idx: torch.Tensor,
    finite: torch.Tensor,
    generation: torch.Tensor,
    geometry: list[int],
    strategy: str,
    name: str,
    need_x: bool,
    need_v: bool,
    need_b: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dv, db) of conv2d_op, each empty where not asked for."""
    entry = pattern_cache.for_backward(row_ptr, col_idx, int(generation[0]), name)
    plans = entry.derived
    layout = plans.layout(x, strategy, values, bias)
    ctx = _Ctx((need_x, need_v, need_b), (None, values, x))
    ctx.name, ctx.pattern, ctx.repack = name, None, need_v
    ctx.row_ptr, ctx.layout, ctx.col_idx = plans.row_ptr, layout, entry.pattern[1]
    ctx.x_shape = tuple(x.shape)
    ctx.x_finite, ctx.w_finite = bool(finite[0]), bool(finite[1])
    with torch.no_grad():
        dx, dv, db = SparseConv2dFunction.backward(ctx, dy)[:3]
    empty = [values.new_empty(0) for _ in range(3)]
    return tuple(e if g is None else g for g, e in zip((dx, dv, db), empty))


conv2d_backward_op = torch.library.custom_op("sparsetrain::conv2d_backward", mutates_args=())(
    _conv2d_backward
)


@conv2d_backward_op.register_fake
def _(
    dy,
    x,
    values,
    bias,
    row_ptr,
    col_idx,
    finite,
    generation,
    geometry,
    strategy,
    name,
    need_x,
    need_v,
    need_b,
):
    return (
        torch.empty_like(x) if need_x else values.new_empty(0),  # (x's memory format)
        values.new_empty(values.shape) if need_v else values.new_empty(0),
        values.new_empty(int(geometry[1])) if need_b else values.new_empty(0),
    )


class SparseConv2dOpFunction(torch.autograd.Function):
    """The autograd of conv2d_op (setup_context: torch.func takes it; see linear's)."""

    @staticmethod
    def forward(x, values, bias, row_ptr, col_idx, geometry, strategy, name):
        with torch.no_grad():
            return conv2d_op(x, values, bias, row_ptr, col_idx, geometry, strategy, name)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, values, bias, row_ptr, col_idx, geometry, strategy, name = inputs
        _, finite, generation = output
        ctx.mark_non_differentiable(finite, generation)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, values, bias, finite, generation)
        ctx.pattern = (row_ptr, col_idx)
        ctx.layer = (geometry, strategy, name)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _dfinite, _dgeneration):
        if dy is None:
            return (None,) * 8
        x, values, bias, finite, generation = ctx.saved_tensors
        geometry, strategy, name = ctx.layer
        need_x, need_v, need_b = ctx.needs_input_grad[:3]
        dx, dv, db = conv2d_backward_op(
            dy,
            x,
            values,
            bias,
            *ctx.pattern,
            finite,
            generation,
            geometry,
            strategy,
            name,
            need_x,
            need_v,
            need_b and bias is not None,
        )
        grads = (dx if need_x else None, dv if need_v else None, db if need_b else None)
        return (*grads, None, None, None, None, None)

    @staticmethod
    def vmap(info, in_dims, x, values, bias, row_ptr, col_idx, geometry, strategy, name):
        vmap_unsupported(name)

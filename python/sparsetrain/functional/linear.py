"""Autograd for y = x Wᵀ + b with W sparse (CSR of nonzero ``values``).

All three products run in the kernels' batch-major layout: the input is transposed once to
(in_features, padded batch) and kept for the values gradient, so the backward pass reuses it
instead of transposing again.

Non-finite numbers (NaN, ±Inf) propagate exactly as in ``nn.Linear``. The kernels skip the
pruned weights, but dense PyTorch multiplies them too: 0 · Inf = NaN and 0 · NaN = NaN, so a
non-finite input element makes every output of its row NaN where the weight is pruned, and a
non-finite output gradient does the same to the input gradient. A cheap, sound pre-check
(the sum of a tensor is finite only if every element is) runs on the input in the forward pass
and on the output gradient in the backward pass; only when it fails are the affected rows
found exactly and recomputed with the dense weight, as ``nn.Linear`` computes them. Non-finite
weights need nothing: every stored value, NaN and Inf included, is multiplied like in the dense
product, and the values gradient (a sum over the batch of products of input and output
gradient, the same products dense PyTorch forms) propagates them unchanged.

A bfloat16 input (autocast's cast, or a bfloat16 model) runs the bf16 kernels as a dense bf16
``linear`` runs: input, output and input gradient in bfloat16, the products of the values
rounded to bfloat16 (a float32 copy of them, so each product is the one the dense layer forms)
summed in float32, and the values and bias gradients summed in float32 and returned in their
parameters' dtypes.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .. import _C, _workspace, tuning
from .._runtime import get_num_threads
from ..formats.csr import build_index
from . import pattern_cache
from .common import (
    all_finite,
    check_saved_values,
    check_values,
    dense_weight,
    no_autocast,
    nonfinite_rows,
    plain_eager,
    vmap_unsupported,
)
from .common import (
    numpy_view as _np,
)

_ALIGN = _C.BATCH_ALIGN


def input_grad_strategy(
    in_features: int, out_features: int, nnz: int, padded_batch: int, bf16: bool = False
) -> str:
    """The input gradient's kernel, "csc" or "scatter" (see tuning.INPUT_GRAD_STRATEGY): scatter
    wins when dXᵀ is small enough to stay in cache while dYᵀ or the values are not, and at large
    batches when the layer widens by 4x or more (an MLP's up-projection). bf16 runs
    csc only: scatter accumulates into dXᵀ in place, which in bf16 would round every partial
    sum."""
    if bf16:
        return "csc"
    if tuning.INPUT_GRAD_STRATEGY is not None:
        return tuning.INPUT_GRAD_STRATEGY
    if padded_batch >= tuning.SCATTER_MIN_BATCH and out_features >= 4 * in_features:
        # csc gathers from out_features rows of dYᵀ: its batch slice (sized so that those rows
        # stay in L2) is then too narrow to keep its tiles busy, while scatter's is full width.
        return "scatter"
    dx_bytes = 4 * in_features * padded_batch
    streamed_bytes = 4 * max(out_features * padded_batch, nnz)
    return "scatter" if dx_bytes < tuning.LINEAR_CACHE_BYTES < streamed_bytes else "csc"


def _padded(batch: int) -> int:
    """The row length (leading dimension) of a batch-major buffer: the batch rounded up to
    whole vectors, plus one more when the kernels read it in slices (a row longer than
    _C.BATCH_CHUNK) and it would otherwise be an even number of 64-byte lines. Rows an even
    number of lines apart, worst of all a multiple of 4 KiB, put the slice of every gathered
    row in the same few cache sets, and the products then run at about half speed; an odd
    number of lines spreads the rows over every set."""
    padded = (batch + _ALIGN - 1) // _ALIGN * _ALIGN
    if padded > _C.BATCH_CHUNK and (padded // _ALIGN) % 2 == 0:
        padded += _ALIGN
    return padded


def _to_batch_major(x2d: torch.Tensor, nthreads: int, sums=None) -> torch.Tensor:
    """x2d in the kernels' layout; ``sums`` (float32, one per feature), if given, gets the sum
    of each feature over the batch (the bias gradient, while the rows pass through cache)."""
    shape = (x2d.shape[1], _padded(x2d.shape[0]))
    out = _workspace.empty(shape[0] * shape[1], dtype=x2d.dtype).view(shape)
    _C.pack(src=_np(x2d), dst=_np(out), nthreads=nthreads, sums=None if sums is None else _np(sums))
    return out


def _from_batch_major(t: torch.Tensor, batch: int, bias, nthreads: int) -> torch.Tensor:
    out = _workspace.empty(batch, t.shape[0], dtype=t.dtype)
    _C.unpack(src=_np(t), dst=_np(out), bias=None if bias is None else _np(bias), nthreads=nthreads)
    return out


def _kernel_values(values: torch.Tensor, bf16: bool) -> torch.Tensor:
    """The float32 values the kernels multiply: ``values`` itself, or for the bf16 kernels the
    values rounded to bfloat16 (autocast's cast of a weight), kept in float32."""
    if not bf16 or values.dtype == torch.bfloat16:
        return values.detach().float()
    return values.detach().to(torch.bfloat16).float()


def _with_partners(rows: torch.Tensor, batch: int) -> torch.Tensor:
    """``rows`` and their even/odd partners (row ^ 1): the AVX512-BF16 products pair
    neighbouring rows in one instruction, where 0 · Inf = NaN reaches the partner too
    (kernels/bf16_dot_tiles.h), so both are recomputed."""
    both = torch.cat([rows, rows ^ 1])
    return torch.unique(both[both < batch])


def _dense_rows(x_rows: torch.Tensor, w: torch.Tensor, bias, dtype: torch.dtype) -> torch.Tensor:
    """nn.Linear of a few rows with the dense float32 weight ``w``, in ``dtype``."""
    b = None if bias is None else bias.float()
    with no_autocast():
        return torch.nn.functional.linear(x_rows.float(), w, b).to(dtype)


def _linear_kind(out_features: int, in_features: int) -> tuple:
    return ("linear", out_features, in_features)


def _linear_index(row_ptr, col_idx, out_features: int, in_features: int, name: str):
    """The validated kernel index of a layer's pattern buffers (pattern_cache)."""
    try:
        return pattern_cache.lookup(
            row_ptr,
            col_idx,
            _linear_kind(out_features, in_features),
            lambda rp, ci: build_index(rp, ci, out_features, in_features),
        )
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def seed_linear_index(row_ptr, col_idx, pattern: tuple, out_features: int, in_features: int):
    """Derive the kernel index of a layer's validated private ``pattern`` of these buffers and
    hand it to the ops (SparseLinear does when it takes a pattern)."""
    index = build_index(*pattern, out_features, in_features)
    pattern_cache.seed(row_ptr, col_idx, _linear_kind(out_features, in_features), pattern, index)


def _batch_major_size(batch: int, in_features: int) -> int:
    """Elements of the buffer holding the batch-major input the forward op returns for the
    backward pass: room for every feature's row at the longest row length _padded gives (a
    size without branches, so that a compiled graph takes any batch size). Only the rows of
    the features a nonzero reads, _padded(batch) long, are written; the rest is never
    touched."""
    return in_features * ((batch + _ALIGN - 1) // _ALIGN * _ALIGN + _ALIGN)


def _linear(
    x: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    row_ptr: torch.Tensor,
    col_idx: torch.Tensor,
    out_features: int,
    in_features: int,
    name: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, the batch-major input kept for the values gradient, the index's generation) for x
    (batch, in) contiguous float32 or bfloat16 (the bf16 kernels), values (nnz,), bias (out,)
    or None, on the pattern in the buffers row_ptr / col_idx."""
    entry = _linear_index(row_ptr, col_idx, out_features, in_features, name)
    y, xt_all = _forward(x, values, bias, entry.derived, in_features, name)
    return y, xt_all, torch.tensor([entry.generation], dtype=torch.int64)


def _forward(x, values, bias, index, in_features: int, name: str) -> tuple:
    """(y, the batch-major input) on a validated kernel index."""
    check_values(name, values, index.nnz)
    nthreads = get_num_threads()
    batch = x.shape[0]
    bf16 = x.dtype == torch.bfloat16
    kv = _kernel_values(values, bf16)
    kbias = None if bias is None else bias.detach().to(x.dtype)
    # (Only the features a nonzero reads, where the index lists them.)
    xk = x if index.in_cols is None else x.index_select(1, index.in_cols)
    padded = _padded(batch)
    xt_all = _workspace.empty(_batch_major_size(batch, in_features), dtype=x.dtype)
    xt = xt_all[: index.kernel_cols * padded].view(index.kernel_cols, padded)
    _C.pack(src=_np(xk), dst=_np(xt), nthreads=nthreads, sums=None)
    yt = _workspace.empty(index.rows * padded, dtype=x.dtype).view(index.rows, padded)
    _C.spmm(
        ptr=index.row_ptr,
        idx=index.col_idx,
        values=_np(kv),
        pos=None,
        scratch=None,
        b=_np(xt),
        c=_np(yt),
        nthreads=nthreads,
    )
    y = _from_batch_major(yt, batch, kbias, nthreads)
    if not all_finite(x):
        # Rows with a NaN or Inf: dense, so pruned weights meet them as in nn.Linear.
        rows = _with_partners(nonfinite_rows(x), batch)
        y[rows] = _dense_rows(x[rows], _dense_weight_of(index, kv), kbias, y.dtype)
    return y, xt_all


# The ops as the dispatcher sees them (torch.compile, torch.export, torch.func, dispatch
# modes); plain eager calls skip the dispatcher (see common.plain_eager).
linear_op = torch.library.custom_op("sparsetrain::linear", mutates_args=())(_linear)


@linear_op.register_fake
def _(x, values, bias, row_ptr, col_idx, out_features, in_features, name):
    batch = x.shape[0]
    return (
        x.new_empty(batch, out_features),
        x.new_empty(_batch_major_size(batch, in_features)),
        x.new_empty(1, dtype=torch.int64),
    )


def _linear_backward(
    dy: torch.Tensor,
    xt_all: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    row_ptr: torch.Tensor,
    col_idx: torch.Tensor,
    generation: torch.Tensor,
    out_features: int,
    in_features: int,
    name: str,
    need_x: bool,
    need_v: bool,
    need_b: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dv, db) of linear_op, each empty where not asked for."""
    entry = pattern_cache.for_backward(row_ptr, col_idx, int(generation[0]), name)
    return _gradients(dy, xt_all, values, bias, entry.derived, name, need_x, need_v, need_b)


def _gradients(dy, xt_all, values, bias, index, name: str, need_x, need_v, need_b) -> tuple:
    """(dx, dv, db) on the kernel index the forward pass ran on, each empty where not asked
    for."""
    check_saved_values(name, values, index.nnz)
    nthreads = get_num_threads()
    batch = dy.shape[0]
    bf16 = xt_all.dtype == torch.bfloat16
    dy = dy.contiguous().to(xt_all.dtype)
    # (Outputs may not alias each other: an empty tensor each where one is not asked for.)
    dx, dv, db = (values.new_empty(0) for _ in range(3))
    if need_x or need_v:
        # dy's column sums: the bias gradient, and (finite) proof that dy is finite
        sums = torch.empty(index.rows)
        dyt = _to_batch_major(dy, nthreads, sums)
        if need_b:
            db = sums.to(bias.dtype)
        if need_v:
            kcols, padded = index.kernel_cols, dyt.shape[1]
            xt = xt_all[: kcols * padded].view(kcols, padded)
            dv = torch.empty(values.numel(), dtype=torch.float32)
            _C.sddmm(
                ptr=index.row_ptr,
                idx=index.col_idx,
                a=_np(dyt),
                b=_np(xt),
                out=_np(dv),
                nthreads=nthreads,
            )
            dv = dv.to(values.dtype)
        if need_x:
            dx = _input_grad(index, _kernel_values(values, bf16), dy, dyt, sums, batch, bf16)
    elif need_b:
        db = dy.sum(0, dtype=torch.float32).to(bias.dtype)
    return dx, dv, db


linear_backward_op = torch.library.custom_op("sparsetrain::linear_backward", mutates_args=())(
    _linear_backward
)


@linear_backward_op.register_fake
def _(
    dy,
    xt_all,
    values,
    bias,
    row_ptr,
    col_idx,
    generation,
    out_features,
    in_features,
    name,
    need_x,
    need_v,
    need_b,
):
    return (
        dy.new_empty(dy.shape[0], in_features) if need_x else values.new_empty(0),
        values.new_empty(values.shape) if need_v else values.new_empty(0),
        bias.new_empty(out_features) if need_b else values.new_empty(0),
    )


def _input_grad(index, kv, dy, dyt, sums, batch: int, bf16: bool) -> torch.Tensor:
    """dx = dy W, from dy's batch-major copy dyt (and its column sums)."""
    nthreads = get_num_threads()
    kcols = index.kernel_cols
    dxt = _workspace.empty(kcols * dyt.shape[1], dtype=dy.dtype).view(kcols, dyt.shape[1])
    strategy = input_grad_strategy(kcols, index.rows, index.nnz, dyt.shape[1], bf16=bf16)
    if strategy == "scatter":
        _C.spmmt(
            ptr=index.row_ptr,
            idx=index.col_idx,
            values=_np(kv),
            col_ptr=index.t_ptr,
            b=_np(dyt),
            c=_np(dxt),
            nthreads=nthreads,
        )
    else:
        scratch = _workspace.empty(kv.numel())
        _C.spmm(
            ptr=index.t_ptr,
            idx=index.t_idx,
            values=_np(kv),
            pos=index.t_pos,
            scratch=_np(scratch),
            b=_np(dyt),
            c=_np(dxt),
            nthreads=nthreads,
        )
    dx = _from_batch_major(dxt, batch, None, nthreads)
    if index.in_cols is not None:  # the features no nonzero reads get zeros
        dx = dx.new_zeros(batch, index.cols).index_copy_(1, index.in_cols, dx)
    # Finite column sums (together a sum of all of dy) prove dy finite for free.
    if not (math.isfinite(sums.sum().item()) or all_finite(dy)):
        # Rows of dy with a NaN or Inf: dense, as nn.Linear's dx = dy W. (The values
        # gradient needs no fix: it forms exactly the dense products.)
        rows = _with_partners(nonfinite_rows(dy), batch)
        w = _dense_weight_of(index, kv)
        with no_autocast():
            dx[rows] = (dy[rows].float() @ w).to(dx.dtype)
    return dx


class SparseLinearFunction(torch.autograd.Function):
    """The autograd of linear_op. An autograd.Function with setup_context rather than the op's
    register_autograd: torch.func transforms (grad, functional_call) take only the former;
    torch.compile and torch.export trace it, and the ops inside stay opaque."""

    @staticmethod
    def forward(x, values, bias, row_ptr, col_idx, out_features, in_features, name):
        with torch.no_grad():  # (torch.func.grad runs forward with grad mode on)
            return linear_op(x, values, bias, row_ptr, col_idx, out_features, in_features, name)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, values, bias, row_ptr, col_idx, out_features, in_features, name = inputs
        _, xt_all, generation = output
        # The kept input and the generation get no gradients (not zeros of their size either).
        ctx.mark_non_differentiable(xt_all, generation)
        ctx.set_materialize_grads(False)
        # The batch-major input only when the values gradient will need it.
        keep_x = ctx.needs_input_grad[1]
        ctx.save_for_backward(xt_all if keep_x else None, values, bias, generation)
        # The pattern buffers outside autograd's version checks: rewritten in place with the
        # same numbers (DistributedDataParallel) they still serve; pattern_cache.for_backward
        # decides.
        ctx.pattern = (row_ptr, col_idx)
        ctx.layer = (out_features, in_features, name, x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _dxt, _dgeneration):
        xt_all, values, bias, generation = ctx.saved_tensors
        row_ptr, col_idx = ctx.pattern
        out_features, in_features, name, dtype = ctx.layer
        if dy is None:  # y took no part in what was differentiated
            return (None,) * 8
        need_x, need_v, need_b = ctx.needs_input_grad[:3]
        if xt_all is None:  # no values gradient: the kernels then only need its dtype
            xt_all = values.new_empty(0, dtype=dtype)
        dx, dv, db = linear_backward_op(
            dy,
            xt_all,
            values,
            bias,
            row_ptr,
            col_idx,
            generation,
            out_features,
            in_features,
            name,
            need_x,
            need_v,
            need_b and bias is not None,
        )
        grads = (dx if need_x else None, dv if need_v else None, db if need_b else None)
        return (*grads, None, None, None, None, None)

    @staticmethod
    def vmap(info, in_dims, x, values, bias, row_ptr, col_idx, out_features, in_features, name):
        vmap_unsupported(name)


class _EagerSparseLinear(torch.autograd.Function):
    """SparseLinearFunction for plain eager calls: the ops' bodies called directly, in the
    classic autograd.Function form with the index entry kept on ctx, which costs a fraction of
    setup_context's argument binding and of two trips through the dispatcher (most of a small
    layer's step)."""

    @staticmethod
    def forward(ctx, x, values, bias, row_ptr, col_idx, out_features, in_features, name):
        entry = _linear_index(row_ptr, col_idx, out_features, in_features, name)
        y, xt_all = _forward(x, values, bias, entry.derived, in_features, name)
        # The batch-major input only when the values gradient will need it.
        ctx.save_for_backward(xt_all if ctx.needs_input_grad[1] else None, values, bias)
        ctx.entry, ctx.pattern, ctx.name, ctx.dtype = entry, (row_ptr, col_idx), name, x.dtype
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        xt_all, values, bias = ctx.saved_tensors
        pattern_cache.check_backward(ctx.entry, *ctx.pattern, ctx.name)
        need_x, need_v, need_b = ctx.needs_input_grad[:3]
        if xt_all is None:  # no values gradient: the kernels then only need its dtype
            xt_all = values.new_empty(0, dtype=ctx.dtype)
        dx, dv, db = _gradients(
            dy,
            xt_all,
            values,
            bias,
            ctx.entry.derived,
            ctx.name,
            need_x,
            need_v,
            need_b and bias is not None,
        )
        grads = (dx if need_x else None, dv if need_v else None, db if need_b else None)
        return (*grads, None, None, None, None, None)


def _dense_weight_of(index, values: torch.Tensor) -> torch.Tensor:
    return dense_weight(index.row_ptr, index.dense_col_idx(), values, index.rows, index.cols)


def sparse_linear(
    x: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    row_ptr: torch.Tensor,
    col_idx: torch.Tensor,
    out_features: int,
    *,
    name: str = "SparseLinear",
) -> torch.Tensor:
    """y = x Wᵀ + b for x of shape ``(*, in_features)``: W (out_features, in_features) is the
    CSR pattern ``row_ptr`` (int64, out_features + 1) / ``col_idx`` (int32, nnz) with the
    nonzeros ``values`` (nnz,); ``name`` names the layer in errors. The pattern is validated
    the first time these buffers are seen (and again when they change)."""
    in_features = x.shape[-1]
    lead = x.shape[:-1]
    x2d = x.reshape(math.prod(lead), in_features)  # not -1: in_features may be 0
    if not x2d.is_contiguous():
        x2d = x2d.contiguous()
    args = (x2d, values, bias, row_ptr, col_idx, out_features, in_features, name)
    if plain_eager(x2d, values, bias):
        y = _EagerSparseLinear.apply(*args)
    else:
        y, _, _ = SparseLinearFunction.apply(*args)
    # (y itself for a 2-D input: a view would be a view output, which FSDP2 warns about.)
    return y if x.dim() == 2 else y.view(*lead, out_features)

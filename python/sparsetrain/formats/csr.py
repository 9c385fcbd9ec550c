"""CSR sparsity patterns: building them from dense weights, validating, and deriving the
transposed (CSC) index the input-gradient kernel needs.

Every path that sets or changes a pattern (constructors, ``from_dense``, ``load_state_dict``)
goes through :func:`validate_csr` and :func:`csr_transpose` here; kernels only ever see
indices that passed them.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
import torch

from .. import _C
from .._views import numpy_view

INDEX_DTYPE = torch.int32  # column / row indices
PTR_DTYPE = torch.int64  # row / column pointers (64-bit: nnz may exceed 2^31)
_INDEX_MAX = 2**31 - 1  # rows and columns are stored as int32 (columns; rows in the transpose)
# Up to this many positions (or at density >= 1/2) random_csr draws a random permutation of
# all of them; above, it samples positions (memory proportional to the nonzeros).
_PERMUTATION_LIMIT = 1 << 24


class KernelIndex(NamedTuple):
    """A validated pattern in the form the kernels take: NumPy views (zero-copy, they keep
    the tensors alive) of the CSR index and of its transpose. Built only by build_index.

    When most columns are empty (fewer nonzeros than half the columns), the kernels run on
    the columns that hold a nonzero only: ``in_cols`` lists them, ``col_idx`` / ``t_*``
    count in that list, and the caller gathers those input features (and scatters the input
    gradient back), so that memory grows with the nonzeros and rows, not with ``cols``."""

    rows: int
    cols: int
    nnz: int
    row_ptr: object  # np.ndarray int64 (rows + 1)
    col_idx: object  # np.ndarray int32 (nnz): column, or position in in_cols
    t_ptr: object  # np.ndarray int64 (kernel columns + 1): nonzeros per column, cumulative
    t_idx: object  # np.ndarray int32 (nnz)
    t_pos: object  # np.ndarray int64 (nnz): CSC position of each CSR nonzero
    in_cols: torch.Tensor | None = None  # int64, sorted: the columns the kernels see

    @property
    def kernel_cols(self) -> int:
        return self.cols if self.in_cols is None else self.in_cols.numel()

    def dense_col_idx(self) -> torch.Tensor:
        """Column indices of the nonzeros in the full (rows, cols) matrix."""
        idx = torch.from_numpy(self.col_idx)
        return idx if self.in_cols is None else self.in_cols[idx.to(torch.int64)].to(INDEX_DTYPE)


def build_index(row_ptr: torch.Tensor, col_idx: torch.Tensor, rows: int, cols: int) -> KernelIndex:
    """Validate a CSR pattern and derive everything the kernels need from it."""
    validate_csr(row_ptr, col_idx, rows, cols)
    row_ptr, col_idx = row_ptr.contiguous(), col_idx.contiguous()
    in_cols, kernel_cols = None, cols
    if cols > 2 * col_idx.numel():
        cols64 = col_idx.to(torch.int64)
        in_cols = torch.unique(cols64, sorted=True)
        col_idx = torch.searchsorted(in_cols, cols64).to(INDEX_DTYPE)
        kernel_cols = in_cols.numel()
    t = csr_transpose(row_ptr, col_idx, kernel_cols)
    return KernelIndex(
        rows,
        cols,
        col_idx.numel(),
        row_ptr.numpy(),
        col_idx.numpy(),
        t.ptr.numpy(),
        t.idx.numpy(),
        t.pos.numpy(),
        in_cols,
    )


class Transposed(NamedTuple):
    ptr: torch.Tensor  # (cols + 1,) int64
    idx: torch.Tensor  # (nnz,) int32, row numbers
    pos: torch.Tensor  # (nnz,) int64: values_csc[pos] = values_csr


def csr_from_dense(
    weight: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row_ptr, col_idx, values) holding exactly the nonzeros of a 2-D tensor (NaN counts as
    nonzero), or, given a boolean ``mask`` of its shape, exactly the entries where it is True
    (zeros included)."""
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"expected a 2-D weight tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(weight.shape)}")
    if weight.shape[1] > _INDEX_MAX:
        raise ValueError(f"weight has {weight.shape[1]} columns; at most 2^31-1 are supported")
    w = weight.detach()
    if w.device.type == "meta":
        # A layer built on the meta device: which entries are nonzero is unknown, so the
        # placeholder pattern has none (load_state_dict gives it the checkpoint's).
        return (
            torch.empty(w.shape[0] + 1, dtype=PTR_DTYPE, device="meta"),
            torch.empty(0, dtype=INDEX_DTYPE, device="meta"),
            torch.empty(0, dtype=torch.float32, device="meta"),
        )
    if mask is None:
        mask = w != 0
    elif not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != w.shape:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else mask
        raise ValueError(f"mask: expected a bool tensor of shape {tuple(w.shape)}, got {got}")
    counts = mask.sum(dim=1)
    row_ptr = torch.zeros(w.shape[0] + 1, dtype=PTR_DTYPE)
    torch.cumsum(counts, dim=0, out=row_ptr[1:])
    col_idx = mask.nonzero()[:, 1].to(INDEX_DTYPE)
    values = w[mask].to(torch.float32)
    return row_ptr, col_idx.contiguous(), values.contiguous()


def random_csr(
    rows: int, cols: int, density: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row_ptr, col_idx) of a uniformly random pattern with round(density * rows * cols) nonzeros.

    Memory is proportional to the nonzeros (not to rows * cols) for large matrices, so a
    99.99%-sparse 100k x 100k pattern is cheap to make."""
    rows, cols = _size("random_csr: rows", rows), _size("random_csr: cols", cols)
    if rows > _INDEX_MAX or cols > _INDEX_MAX:
        raise ValueError(
            f"random_csr: at most 2^31-1 rows and columns are supported, got {rows} x {cols}"
        )
    if not (0.0 <= float(density) <= 1.0):
        raise ValueError(f"random_csr: density must be in [0, 1], got {density!r}")
    total = rows * cols
    nnz = int(round(float(density) * total))
    if torch.get_default_device().type == "meta":
        # Built under torch.device("meta"): the sizes only (to_empty + load_state_dict or
        # a fresh pattern give the numbers).
        return (
            torch.empty(rows + 1, dtype=PTR_DTYPE, device="meta"),
            torch.empty(nnz, dtype=INDEX_DTYPE, device="meta"),
        )
    if nnz >= total:
        flat = torch.arange(total, dtype=torch.int64)
    elif total <= _PERMUTATION_LIMIT or 2 * nnz >= total:  # (then nnz is most of the memory)
        flat = torch.randperm(total, generator=generator)[:nnz].sort().values
    else:
        flat = _sample_positions(total, nnz, generator)
    r = torch.div(flat, cols, rounding_mode="floor")
    row_ptr = torch.zeros(rows + 1, dtype=PTR_DTYPE)
    torch.cumsum(torch.bincount(r, minlength=rows), dim=0, out=row_ptr[1:])
    return row_ptr, (flat - r * cols).to(INDEX_DTYPE)


def _sample_positions(total: int, nnz: int, generator) -> torch.Tensor:
    """nnz distinct positions of [0, total), uniformly at random, sorted.

    Draws with replacement until at least nnz distinct positions are found: given its size,
    the set of distinct draws is a uniformly random subset (every position is alike), and a
    uniformly random nnz of them is then a uniformly random nnz-subset of [0, total)."""
    found = torch.empty(0, dtype=torch.int64)
    while found.numel() < nnz:
        need = nnz - found.numel()
        draw = torch.randint(
            total, (need + need // 8 + 64,), generator=generator, dtype=torch.int64
        )
        found = torch.unique(torch.cat([found, draw]))
    keep = torch.randperm(found.numel(), generator=generator)[:nnz]
    return found[keep].sort().values


def _check_tensors(row_ptr, col_idx) -> None:
    for name, t, dtype in (("row_ptr", row_ptr, PTR_DTYPE), ("col_idx", col_idx, INDEX_DTYPE)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a tensor, got {type(t).__name__}")
        if t.dtype != dtype or t.dim() != 1 or t.device.type != "cpu":
            raise ValueError(
                f"{name}: expected a 1-D {dtype} CPU tensor, got {t.dim()}-D {t.dtype} on "
                f"{t.device}"
            )


def _size(name: str, v) -> int:
    """v as a non-negative int (NumPy integers welcome), else ValueError."""
    try:
        if isinstance(v, bool):
            raise TypeError
        v = operator.index(v)
    except TypeError:
        raise ValueError(f"{name}: expected a non-negative int, got {v!r}") from None
    if v < 0:
        raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
    return v


def validate_csr(row_ptr: torch.Tensor, col_idx: torch.Tensor, rows: int, cols: int) -> None:
    """Raise ValueError unless (row_ptr, col_idx) is a well-formed CSR index of a rows x cols
    matrix."""
    _check_tensors(row_ptr, col_idx)
    rows, cols = _size("rows", rows), _size("cols", cols)
    if row_ptr.numel() != rows + 1:
        raise ValueError(f"row_ptr has length {row_ptr.numel()}, expected rows + 1 = {rows + 1}")
    try:
        _C.validate_csr(
            ptr=numpy_view(row_ptr.contiguous()),
            idx=numpy_view(col_idx.contiguous()),
            rows=rows,
            cols=cols,
        )
    except ValueError as e:
        raise ValueError(f"malformed sparsity pattern: {e}") from None


def csr_transpose(row_ptr: torch.Tensor, col_idx: torch.Tensor, cols: int) -> Transposed:
    """The CSC index of a valid CSR pattern (validated again here)."""
    _check_tensors(row_ptr, col_idx)
    cols = _size("cols", cols)
    nnz = col_idx.numel()
    t = Transposed(
        torch.empty(cols + 1, dtype=PTR_DTYPE),
        torch.empty(nnz, dtype=INDEX_DTYPE),
        torch.empty(nnz, dtype=torch.int64),
    )
    try:
        _C.csr_transpose(
            ptr=numpy_view(row_ptr.contiguous()),
            idx=numpy_view(col_idx.contiguous()),
            cols=cols,
            tptr=t.ptr.numpy(),
            tidx=t.idx.numpy(),
            pos=t.pos.numpy(),
        )
    except ValueError as e:
        raise ValueError(f"malformed sparsity pattern: {e}") from None
    return t


def nonzero_rows(row_ptr: torch.Tensor | np.ndarray, rows: int) -> torch.Tensor:
    """The row of every nonzero, in CSR order (int64; row_ptr assumed valid)."""
    row_ptr = torch.as_tensor(row_ptr)
    return torch.repeat_interleave(
        torch.arange(int(rows), dtype=torch.int64), row_ptr[1:] - row_ptr[:-1]
    )


def nonzero_positions(
    row_ptr: torch.Tensor | np.ndarray, col_idx: torch.Tensor | np.ndarray, rows: int, cols: int
) -> torch.Tensor:
    """The flat position (row * cols + col) of every nonzero in the dense (rows, cols) matrix,
    in CSR order (int64; the pattern assumed valid)."""
    return nonzero_rows(row_ptr, rows) * int(cols) + torch.as_tensor(col_idx).to(torch.int64)


def csr_to_dense(
    row_ptr: torch.Tensor, col_idx: torch.Tensor, values: torch.Tensor, rows: int, cols: int
) -> torch.Tensor:
    """Dense (rows, cols) tensor; differentiable with respect to ``values``. The pattern is
    validated (O(rows + nnz), next to the O(rows * cols) result)."""
    validate_csr(row_ptr, col_idx, rows, cols)
    rows, cols = int(rows), int(cols)
    if (
        not isinstance(values, torch.Tensor)
        or values.dim() != 1
        or values.numel() != col_idx.numel()
    ):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"values: expected a 1-D tensor of {col_idx.numel()} values, got {got}")
    flat = nonzero_positions(row_ptr, col_idx, rows, cols)
    out = values.new_zeros(rows * cols)
    return out.index_put((flat,), values).view(rows, cols)

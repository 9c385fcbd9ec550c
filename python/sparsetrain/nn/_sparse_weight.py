"""What every sparse layer shares: the weight as a CSR pattern plus trainable nonzeros."""
from __future__ import annotations

import torch
from torch import nn

from .. import formats


class SparseWeightModule(nn.Module):
    """Base of SparseLinear and SparseConv2d.

    The weight is a (rows, cols) CSR matrix: the trainable ``values`` (nonzeros, CSR order)
    on the pattern in the buffers ``row_ptr`` (int64) and ``col_idx`` (int32), which travel
    with ``state_dict``. Subclasses set ``_rows``/``_cols`` and derive what their kernels
    need in ``_derive`` (called by ``_rebuild_index``, the one place a pattern is accepted).
    """

    _rows: int
    _cols: int

    def _set_weight(self, row_ptr, col_idx, values, bias, *, values_grad=True, bias_grad=True):
        self.register_buffer("row_ptr", row_ptr)
        self.register_buffer("col_idx", col_idx)
        self.values = nn.Parameter(values.to(torch.float32).contiguous(), requires_grad=values_grad)
        if bias is not None:
            self.bias = nn.Parameter(bias.detach().to(torch.float32).clone(), requires_grad=bias_grad)
        else:
            self.register_parameter("bias", None)
        self._stamp = None
        self._rebuild_index()

    @classmethod
    def _blank_for(cls, dense: nn.Module, dense_type: type):
        """An uninitialised layer of this class for ``from_dense(dense)``, once ``dense`` is
        checked to be a CPU ``dense_type``."""
        if not isinstance(dense, dense_type):
            raise TypeError(f"{cls.__name__}.from_dense expects nn.{dense_type.__name__}, got "
                            f"{type(dense).__name__}")
        if dense.weight.device.type != "cpu":
            raise ValueError(f"{cls.__name__}.from_dense: weight must be on the CPU, got "
                             f"{dense.weight.device}")
        self = cls.__new__(cls)
        SparseWeightModule.__init__(self)
        return self

    def _set_weight_from(self, dense: nn.Module) -> None:
        """Take exactly the nonzeros of a dense layer's weight (viewed as rows x cols) and its
        bias, with their requires_grad."""
        w, bias = dense.weight, dense.bias
        row_ptr, col_idx, values = formats.csr_from_dense(w.detach().flatten(1))
        self._set_weight(row_ptr, col_idx, values, bias, values_grad=w.requires_grad,
                         bias_grad=bias is not None and bias.requires_grad)

    def _copy_into(self, dense: nn.Module) -> nn.Module:
        """Fill a freshly built dense twin with this layer's weight (zeros included) and bias."""
        with torch.no_grad():
            dense.weight.copy_(self.weight)
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        return dense

    # -- inspection ------------------------------------------------------------------------
    def _dense_matrix(self) -> torch.Tensor:
        return formats.csr_to_dense(self.row_ptr, self.col_idx, self.values, self._rows,
                                    self._cols)

    @property
    def nnz(self) -> int:
        return self.col_idx.numel()

    @property
    def sparsity(self) -> float:
        total = self._rows * self._cols
        return 1.0 - self.nnz / total if total else 0.0

    # -- pattern bookkeeping ---------------------------------------------------------------
    def _index_stamp(self):
        return (self.row_ptr.data_ptr(), self.row_ptr._version, self.col_idx.data_ptr(),
                self.col_idx._version, self.col_idx.numel())

    def _derive(self) -> None:
        """Build what the kernels need from the (validated) pattern."""

    def _rebuild_index(self) -> None:
        """Validate the pattern buffers and derive the kernels' indices (the one place that does)."""
        formats.validate_csr(self.row_ptr, self.col_idx, self._rows, self._cols)
        if self.values.numel() != self.col_idx.numel():
            raise ValueError(f"{type(self).__name__}: {self.values.numel()} values for "
                             f"{self.col_idx.numel()} column indices")
        self._derive()
        self._stamp = self._index_stamp()
        # What the indices were derived from: a buffer rewritten with the same numbers (as
        # DistributedDataParallel's buffer broadcast does before every forward) keeps them.
        self._pattern = (self.row_ptr.clone(), self.col_idx.clone())

    def __setstate__(self, state):
        # Unpickled or deep-copied: derive the kernels' indices afresh from the pattern.
        super().__setstate__(state)
        self._stamp = self._pattern = None

    def _ensure_index(self) -> None:
        stamp = self._index_stamp()
        if self._stamp == stamp:
            return
        # The pattern buffers were replaced or written in place.
        row_ptr, col_idx = self._pattern or (None, None)
        if (self._pattern is not None and self.row_ptr.shape == row_ptr.shape and self.col_idx.shape == col_idx.shape
                and self.row_ptr.dtype == row_ptr.dtype and self.col_idx.dtype == col_idx.dtype
                and torch.equal(self.row_ptr, row_ptr) and torch.equal(self.col_idx, col_idx)
                and self.values.numel() == col_idx.numel()):
            self._stamp = stamp
            return
        self._rebuild_index()

    def prune_values(self, keep: torch.Tensor, optimizer=None) -> None:
        """Remove the nonzeros where ``keep`` is False, for good.

        Values and index are repacked (the same ``values`` Parameter object, resized, so it
        stays registered with any optimizer), its gradient and the optimizer's per-value
        state (SGD momentum, Adam/AdamW moments; ``step`` is kept) follow the survivors.
        """
        keep = torch.as_tensor(keep, dtype=torch.bool).reshape(-1)
        if keep.numel() != self.nnz:
            raise ValueError(f"prune_values: keep has {keep.numel()} entries for {self.nnz} nonzeros")
        rows = formats.nonzero_rows(self.row_ptr, self._rows)
        row_ptr = torch.zeros_like(self.row_ptr)
        torch.cumsum(torch.bincount(rows[keep], minlength=self._rows), 0, out=row_ptr[1:])
        old_nnz = self.nnz
        with torch.no_grad():
            _resize_parameter(self.values, self.values.data[keep].contiguous())
            if self.values.grad is not None:
                self.values.grad = self.values.grad[keep].contiguous()
        if optimizer is not None:
            state = optimizer.state.get(self.values, {})
            for k, v in list(state.items()):
                if isinstance(v, torch.Tensor) and v.dim() == 1 and v.numel() == old_nnz:
                    state[k] = v[keep].contiguous()
        self.row_ptr = row_ptr
        self.col_idx = self.col_idx[keep].contiguous()
        self._rebuild_index()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        keys = [prefix + k for k in ("row_ptr", "col_idx", "values")]
        present = [k in state_dict for k in keys]
        if any(present) and not all(present):
            # Half a pattern would pair new indices with old values: refuse, strict or not.
            missing = [k for k, p in zip(keys, present) if not p]
            raise ValueError(f"{prefix or type(self).__name__}: the checkpoint holds part of a "
                             f"sparse weight; missing {', '.join(missing)}")
        if all(present):
            row_ptr, col_idx, values = (state_dict[k] for k in keys)
            formats.validate_csr(row_ptr, col_idx, self._rows, self._cols)
            if (not isinstance(values, torch.Tensor) or values.dim() != 1
                    or values.numel() != col_idx.numel()):
                got = (f"shape {tuple(values.shape)}" if isinstance(values, torch.Tensor)
                       else type(values).__name__)
                raise ValueError(f"{prefix}values: expected {col_idx.numel()} values, got {got}")
            # A checkpoint may hold a different number of nonzeros: resize in place so the
            # same Parameter object stays registered with any optimizer.
            if col_idx.numel() != self.col_idx.numel():
                self.col_idx = torch.empty_like(col_idx)
                _resize_parameter(self.values, torch.empty(values.numel(), dtype=self.values.dtype))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._rebuild_index()

    def _check_input(self, x: torch.Tensor, what: str) -> None:
        name = f"{type(self).__name__}({self._describe()})"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor input, got {type(x).__name__}")
        if x.dtype != torch.float32:
            raise TypeError(f"{name}: expected float32 input, got {x.dtype}")
        if x.device.type != "cpu":
            raise ValueError(f"{name}: input must be on the CPU, got {x.device}")
        if self.values.dtype != torch.float32 or (self.bias is not None
                                                  and self.bias.dtype != torch.float32):
            raise TypeError(f"{name}: parameters must be float32 (was .double()/.half() called?)")

    def _describe(self) -> str:
        return ""


def _resize_parameter(p: nn.Parameter, data: torch.Tensor) -> None:
    """Give ``p`` new data of another length, keeping the Parameter object.

    Autograd caches a parameter's gradient accumulator, with the shape it had, while any graph
    that used it is alive (a ``loss`` kept from the previous step is enough), and assigning
    ``.data`` drops that cache only when the dtype changes. Passing through another dtype
    makes the next forward create an accumulator with the new shape.
    """
    p.data = torch.empty(0, dtype=torch.float64 if data.dtype != torch.float64 else torch.float32)
    p.data = data

"""SparseLinear: nn.Linear whose weight is stored as its nonzeros only."""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import formats
from ..functional.linear import sparse_linear


class SparseLinear(nn.Module):
    """A linear layer ``y = x Wᵀ + b`` with an unstructured-sparse weight.

    The trainable parameter is ``values`` (the nonzeros, CSR order), so optimizers, weight
    decay and gradient clipping can never fill in the zeros. The pattern lives in the buffers
    ``row_ptr`` and ``col_idx`` and travels with ``state_dict``.

    Build one from a pruned ``nn.Linear`` with :meth:`from_dense`, or for training from scratch
    with ``SparseLinear(in_features, out_features, sparsity=0.9)`` (random pattern, init scaled
    for the density).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 sparsity: float = 0.9, *, generator: torch.Generator | None = None):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"SparseLinear: {name} must be a non-negative int, got {v!r}")
        if not (0.0 <= float(sparsity) <= 1.0):
            raise ValueError(f"SparseLinear: sparsity must be in [0, 1], got {sparsity!r}")
        self.in_features = in_features
        self.out_features = out_features
        row_ptr, col_idx = formats.random_csr(out_features, in_features, 1.0 - float(sparsity),
                                              generator=generator)
        self.register_buffer("row_ptr", row_ptr)
        self.register_buffer("col_idx", col_idx)
        # Like nn.Linear's kaiming-uniform init, but with the fan-in a row really has.
        fan_in = max(1.0, in_features * (1.0 - float(sparsity)))
        bound = 1.0 / math.sqrt(fan_in)
        values = torch.empty(col_idx.numel()).uniform_(-bound, bound, generator=generator)
        self.values = nn.Parameter(values)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound,
                                                                         generator=generator))
        else:
            self.register_parameter("bias", None)
        self._stamp = None
        self._rebuild_index()

    # -- construction from / to dense -------------------------------------------------------
    @classmethod
    def from_dense(cls, linear: nn.Linear) -> "SparseLinear":
        """A SparseLinear holding exactly the nonzeros of ``linear.weight`` (and its bias)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"SparseLinear.from_dense expects nn.Linear, got {type(linear).__name__}")
        if linear.weight.device.type != "cpu":
            raise ValueError(f"SparseLinear.from_dense: weight must be on the CPU, got {linear.weight.device}")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        row_ptr, col_idx, values = formats.csr_from_dense(linear.weight)
        self.register_buffer("row_ptr", row_ptr)
        self.register_buffer("col_idx", col_idx)
        self.values = nn.Parameter(values, requires_grad=linear.weight.requires_grad)
        if linear.bias is not None:
            self.bias = nn.Parameter(linear.bias.detach().to(torch.float32).clone(),
                                     requires_grad=linear.bias.requires_grad)
        else:
            self.register_parameter("bias", None)
        self._stamp = None
        self._rebuild_index()
        return self

    def to_dense(self) -> nn.Linear:
        """An ``nn.Linear`` with the same weight (zeros filled in) and bias."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    # -- inspection ------------------------------------------------------------------------
    @property
    def weight(self) -> torch.Tensor:
        """Dense reconstruction (out_features, in_features); differentiable w.r.t. ``values``."""
        return formats.csr_to_dense(self.row_ptr, self.col_idx, self.values,
                                    self.out_features, self.in_features)

    @property
    def nnz(self) -> int:
        return self.col_idx.numel()

    @property
    def sparsity(self) -> float:
        total = self.in_features * self.out_features
        return 1.0 - self.nnz / total if total else 0.0

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, nnz={self.nnz}, sparsity={self.sparsity:.4f}")

    # -- pattern bookkeeping ---------------------------------------------------------------
    def _index_stamp(self):
        return (self.row_ptr.data_ptr(), self.row_ptr._version, self.col_idx.data_ptr(),
                self.col_idx._version, self.col_idx.numel())

    def _rebuild_index(self) -> None:
        """Validate the pattern buffers and derive the transposed index (the one place that does)."""
        index = formats.build_index(self.row_ptr, self.col_idx, self.out_features,
                                    self.in_features)
        if self.values.numel() != index.nnz:
            raise ValueError(f"SparseLinear: {self.values.numel()} values for "
                             f"{index.nnz} column indices")
        self._index = index  # derived, so not part of the state_dict
        self._stamp = self._index_stamp()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        keys = [prefix + k for k in ("row_ptr", "col_idx", "values")]
        if all(k in state_dict for k in keys):
            row_ptr, col_idx, values = (state_dict[k] for k in keys)
            formats.validate_csr(row_ptr, col_idx, self.out_features, self.in_features)
            if values.dim() != 1 or values.numel() != col_idx.numel():
                raise ValueError(f"{prefix}values: expected {col_idx.numel()} values, got shape "
                                 f"{tuple(values.shape)}")
            # A checkpoint may hold a different number of nonzeros: resize in place so the
            # same Parameter object stays registered with any optimizer.
            if col_idx.numel() != self.col_idx.numel():
                self.col_idx = torch.empty_like(col_idx)
                self.values.data = torch.empty(values.numel(), dtype=self.values.dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._rebuild_index()

    # -- compute ---------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"SparseLinear: expected a tensor input, got {type(x).__name__}")
        if x.dtype != torch.float32:
            raise TypeError(f"SparseLinear({self.in_features}->{self.out_features}): expected "
                            f"float32 input, got {x.dtype}")
        if x.device.type != "cpu":
            raise ValueError(f"SparseLinear: input must be on the CPU, got {x.device}")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear: expected input of shape (*, {self.in_features}), "
                             f"got {tuple(x.shape)}")
        if self.values.dtype != torch.float32 or (self.bias is not None and
                                                  self.bias.dtype != torch.float32):
            raise TypeError("SparseLinear: parameters must be float32 (was .double()/.half() called?)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self._stamp != self._index_stamp():  # pattern buffers replaced or edited in place
            self._rebuild_index()
        return sparse_linear(x, self.values, self.bias, self._index)

"""SparseLinear: nn.Linear whose weight is stored as its nonzeros only."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import formats
from ..functional.common import prepare_input
from ..functional.linear import _linear_index, seed_linear_index, sparse_linear
from . import _args, _dense_types
from ._sparse_weight import SparseWeightModule


class SparseLinear(SparseWeightModule):
    """A linear layer ``y = x Wᵀ + b`` with an unstructured-sparse weight.

    The trainable parameter is ``values`` (the nonzeros, CSR order), so optimizers, weight
    decay and gradient clipping can never fill in the zeros. The pattern lives in the buffers
    ``row_ptr`` and ``col_idx`` and travels with ``state_dict``.

    Build one from a pruned ``nn.Linear`` with :meth:`from_dense`, or for training from scratch
    with ``SparseLinear(in_features, out_features, sparsity=0.9)`` (random pattern, init scaled
    for the density).

    Parameters are float32, or bfloat16 (a bfloat16 model: ``from_dense`` of a bfloat16 layer,
    or ``.to(torch.bfloat16)``); under ``torch.autocast("cpu", dtype=torch.bfloat16)`` the layer
    runs its bf16 kernels either way.
    """

    _param_dtypes = (torch.float32, torch.bfloat16)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        sparsity: float = 0.9,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.in_features = _args.size("SparseLinear", "in_features", in_features)
        self.out_features = _args.size("SparseLinear", "out_features", out_features)
        density = 1.0 - _args.fraction("SparseLinear", "sparsity", sparsity)
        row_ptr, col_idx = formats.random_csr(
            out_features, in_features, density, generator=generator
        )
        # Like nn.Linear's kaiming-uniform init, but with the fan-in a row really has.
        bound = 1.0 / math.sqrt(max(1.0, in_features * density))
        values = torch.empty(col_idx.numel()).uniform_(-bound, bound, generator=generator)
        b = torch.empty(out_features).uniform_(-bound, bound, generator=generator) if bias else None
        self._set_weight(row_ptr, col_idx, values, b)

    @property
    def _rows(self) -> int:
        return self.out_features

    @property
    def _cols(self) -> int:
        return self.in_features

    # -- construction from / to dense -------------------------------------------------------
    @classmethod
    def from_dense(cls, linear: nn.Module, *, mask: torch.Tensor | None = None) -> SparseLinear:
        """A SparseLinear holding exactly the nonzeros of ``linear``'s weight (and its bias);
        given ``mask`` (bool, the weight's shape), exactly the entries where it is True.

        ``linear``: an ``nn.Linear`` (or a subclass that keeps its forward, such as
        ``nn.MultiheadAttention``'s ``NonDynamicallyQuantizableLinear``), or transformers'
        ``Conv1D`` (GPT-2), whose weight is stored transposed ``(in, out)``. The layer
        remembers that type: :meth:`to_dense` gives one back, weight laid out as it was."""
        self = cls._blank_for(linear, ("linear", "conv1d"))
        if _dense_types.hf_conv1d_class(type(linear)) is not None:
            # y = x @ W + b with W (in, out): the same function as x @ (W^T)^T + b.
            self.in_features, self.out_features = linear.weight.shape
            self._transposed = True
            self._set_weight_from(linear, transposed=True, mask=mask)
        else:
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self._set_weight_from(linear, mask=mask)
        return self

    def to_dense(self) -> nn.Module:
        """A dense layer with the same weight (zeros filled in) and bias: of the type
        :meth:`from_dense` was given (a Conv1D with its ``(in, out)`` weight, an ``nn.Linear``
        subclass), an ``nn.Linear`` for a layer built from scratch."""
        if self.__dict__.get("_transposed"):
            return self._conv1d_twin()
        dense = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, dtype=self.values.dtype
        )
        return self._copy_into(dense)

    def _conv1d_twin(self) -> nn.Module:
        conv1d = self._dense_type
        dense = conv1d.__new__(conv1d)
        nn.Module.__init__(dense)
        dense.nf, dense.nx = self.out_features, self.in_features
        with torch.no_grad():
            dense.weight = nn.Parameter(self.weight.t().contiguous())
            bias = self.bias if self.bias is not None else torch.zeros(self.out_features)
            dense.bias = nn.Parameter(bias.detach().clone())
        return dense

    @property
    def weight(self) -> torch.Tensor:
        """Dense reconstruction (out_features, in_features); differentiable w.r.t. ``values``."""
        return self._dense_matrix()

    def _describe(self) -> str:
        return f"{self.in_features}->{self.out_features}"

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, nnz={self.nnz}, sparsity={self.sparsity:.4f}"
        )

    def _derive(self) -> None:
        # The ops find the index by the pattern buffers (functional/pattern_cache.py), so that a
        # compiler sees tensors only; this one they then need not copy and derive again.
        seed_linear_index(
            self.row_ptr, self.col_idx, self._pattern, self.out_features, self.in_features
        )

    @property
    def _index(self):
        """The kernel index the ops run on for the current pattern buffers."""
        return _linear_index(
            self.row_ptr, self.col_idx, self.out_features, self.in_features, self._layer_name()
        ).derived

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = prepare_input(self, x)  # autocast's casts; dense tensors only
        self._check_input(x, "input")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"SparseLinear({self._describe()}): expected input of shape "
                f"(*, {self.in_features}), got {tuple(x.shape)}"
            )
        return sparse_linear(
            x,
            self.values,
            self.bias,
            self.row_ptr,
            self.col_idx,
            self.out_features,
            name=self._call_name(),
        )

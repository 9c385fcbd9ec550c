"""SparseConv1d: nn.Conv1d whose weight is stored as its nonzeros only, run as a 2-D
convolution of height 1."""

from __future__ import annotations

import torch
from torch import nn

from . import _args
from .conv import SparseConv2d


def _single(layer: str, name: str, v, minimum: int) -> int:
    """An int or a 1-tuple of an int, as nn.Conv1d takes them."""
    item = v[0] if isinstance(v, (tuple, list)) and len(v) == 1 else v
    valid = isinstance(item, int) and not isinstance(item, bool)
    if not valid or not minimum <= item <= _args.MAX_INDEX:
        raise ValueError(f"{layer}: {name} must be an int >= {minimum}, got {v!r}")
    return item


class SparseConv1d(SparseConv2d):
    """A 1-D convolution with an unstructured-sparse weight; accepts what ``nn.Conv1d`` does.

    The weight (out_channels, in_channels / groups, kernel_size) is a CSR matrix over
    (out_channels, in_channels / groups * kernel_size): trainable ``values`` on the pattern in
    ``row_ptr`` / ``col_idx``, as in :class:`SparseConv2d`, whose kernels it runs on the input
    viewed as (N, C, 1, L). Build one with :meth:`from_dense` from a pruned ``nn.Conv1d``, or
    with ``sparsity=`` for training from scratch. Attributes read as ``nn.Conv1d``'s
    (``kernel_size == (k,)``).
    """

    _FORM, _DENSE = "nn_conv1d", nn.Conv1d

    @staticmethod
    def _as_2d(kernel_size, stride, padding, dilation) -> tuple:
        """nn.Conv1d's arguments as those of the equivalent 2-D convolution of height 1."""
        layer = "SparseConv1d"
        k = _single(layer, "kernel_size", kernel_size, 1)
        s = _single(layer, "stride", stride, 1)
        d = _single(layer, "dilation", dilation, 1)
        p = padding if isinstance(padding, str) else (0, _single(layer, "padding", padding, 0))
        return (1, k), (1, s), p, (1, d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        sparsity: float = 0.9,
        *,
        strategy: str = "auto",
        generator: torch.Generator | None = None,
    ):
        super().__init__(
            in_channels,
            out_channels,
            *self._as_2d(kernel_size, stride, padding, dilation),
            groups,
            bias,
            padding_mode,
            sparsity,
            strategy=strategy,
            generator=generator,
        )

    def _set_public_args(self, kernel_size, stride, padding, dilation) -> None:
        self.kernel_size, self.stride, self.dilation = (
            (kernel_size[1],),
            (stride[1],),
            (dilation[1],),
        )
        self.padding = padding if isinstance(padding, str) else (padding[1],)

    def _weight_shape(self) -> tuple:
        return (self.out_channels, self.in_channels // self.groups, self._conv2d[0][1])

    def _describe(self) -> str:
        return f"{self.in_channels}->{self.out_channels}, k={self.kernel_size[0]}"

    def strategy_for(self, input_shape) -> str | None:
        """The layout this layer runs an input of ``input_shape`` ((N, C, L) or (C, L)) on (see
        :meth:`SparseConv2d.strategy_for`)."""
        shape = tuple(int(d) for d in input_shape)
        if len(shape) not in (2, 3):
            raise ValueError(
                f"SparseConv1d({self._describe()}): expected an input shape "
                f"(N, {self.in_channels}, L) or ({self.in_channels}, L), got {shape}"
            )
        return super().strategy_for((*shape[:-1], 1, shape[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"SparseConv1d({self._describe()}): expected input of shape "
                f"(N, {self.in_channels}, L) or ({self.in_channels}, L), got {got}"
            )
        return super().forward(x.unsqueeze(-2)).squeeze(-2)

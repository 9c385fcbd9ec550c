"""SparseConv2d: nn.Conv2d whose weight is stored as its nonzeros only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from .. import formats
from ..formats.conv import ConvGeometry, resolve_padding
from ..functional.common import plain_eager, prepare_input
from ..functional.conv import SparseConv2dFunction
from ..functional.conv_layouts import is_nhwc, memory_format
from ..functional.conv_ops import SparseConv2dOpFunction, geometry_ints, seed_conv_plans
from ..functional.subsample import Subsample
from . import _args
from ._sparse_weight import SparseWeightModule
from .batchnorm import attach_batch_norm_stats
from .conv_plans import CHOICES, ConvPlans, LRUMap, strategy_problem

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
IntPair = Union[int, tuple[int, int]]  # a size as nn.Conv2d takes it: one int, or (h, w)
# Whole-module pickles name the plan maps' class by this path: it must keep resolving.
_Plans = LRUMap


class SparseConv2d(SparseWeightModule):
    """A 2-D convolution with an unstructured-sparse weight; accepts what ``nn.Conv2d`` does.

    The weight (out_channels, in_channels / groups, kh, kw) is stored as a CSR matrix over
    (out_channels, in_channels / groups * kh * kw): trainable ``values`` on the pattern in the
    buffers ``row_ptr`` / ``col_idx``. Build one with :meth:`from_dense` from a pruned
    ``nn.Conv2d``, or with ``sparsity=`` for training from scratch.

    ``strategy`` picks the kernel layout: ``"auto"`` (default) by a rule of the shapes
    (the same in every process and for any thread count); ``"timed"`` times the candidates on
    the first call with each new input shape and keeps the fastest; ``"plane"``,
    ``"batch"`` or ``"direct"`` force one (see sparsetrain.functional.conv_layouts).
    ``"direct"`` runs stride-1 convolutions only: asking it of a strided one raises
    ValueError (``strategies`` lists what a layer can run; :meth:`strategy_for` tells which
    layout an input shape runs on).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair | str = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        sparsity: float = 0.9,
        *,
        strategy: str = "auto",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self._configure(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            padding_mode,
            strategy,
        )
        density = 1.0 - _args.fraction(type(self).__name__, "sparsity", sparsity)
        row_ptr, col_idx = formats.random_csr(self._rows, self._cols, density, generator=generator)
        # nn.Conv2d's kaiming-uniform bound with the fan-in a filter really has.
        bound = 1.0 / math.sqrt(max(1.0, self._cols * density))
        values = torch.empty(col_idx.numel()).uniform_(-bound, bound, generator=generator)
        b = torch.empty(out_channels).uniform_(-bound, bound, generator=generator) if bias else None
        self._set_weight(row_ptr, col_idx, values, b)

    def _configure(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        dilation,
        groups,
        padding_mode,
        strategy,
    ):
        layer = type(self).__name__
        in_channels = _args.size(layer, "in_channels", in_channels)
        out_channels = _args.size(layer, "out_channels", out_channels)
        groups = _args.size(layer, "groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{layer}: in_channels and out_channels must be divisible by groups")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        kernel_size = _args.pair(layer, "kernel_size", kernel_size, 1)
        stride = _args.pair(layer, "stride", stride, 1)
        dilation = _args.pair(layer, "dilation", dilation, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{layer}: padding must be 'same', 'valid', an int or a pair "
                    f"of ints, got {padding!r}"
                )
        else:
            padding = _args.pair(layer, "padding", padding, 0)
        # The 2-D convolution the kernels run (SparseConv1d runs one of height 1); the public
        # attributes are those of the dense layer this one stands for.
        self._conv2d = (kernel_size, stride, padding, dilation)
        self._set_public_args(kernel_size, stride, padding, dilation)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"{layer}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        # Set by fuse_batch_norm when a batch norm takes this layer's output: training-mode
        # forwards then also sum the output's channel statistics (see nn/batchnorm.py).
        self.batch_norm_stats = False
        try:
            pads = resolve_padding(padding, kernel_size, dilation, stride)
        except ValueError as e:
            raise ValueError(f"{layer}: {e}") from None
        self._explicit_pad = None
        if padding_mode != "zeros":
            # The input is padded by F.pad in that mode; the kernels then see no padding.
            pt, pb, pl, pr = pads
            self._explicit_pad = (pl, pr, pt, pb)
            pads = (0, 0, 0, 0)
        self._geometry = ConvGeometry(
            in_channels, out_channels, kernel_size, stride, dilation, pads, groups
        )
        if self._geometry.cols > _args.MAX_INDEX:  # column indices are int32
            raise ValueError(
                f"{type(self).__name__}({self._describe()}): a filter holds in_channels / "
                f"groups * kh * kw = {self._geometry.cols} weights; at most 2^31 - 1 are "
                "supported"
            )
        # A 1x1 unpadded strided convolution is a 1x1 stride-1 one on the subsampled input.
        self._subsample = None
        if kernel_size == (1, 1) and pads == (0, 0, 0, 0) and stride != (1, 1):
            self._subsample = stride
            self._geometry = ConvGeometry(
                in_channels, out_channels, (1, 1), (1, 1), dilation, pads, groups
            )
        self.strategy = strategy  # checked against the geometry the kernels see

    @property
    def strategy(self) -> str:
        """How the kernel layout is picked (see the class docstring); read on every forward.
        Setting a strategy the layer cannot run raises ValueError naming the layer."""
        d = self.__dict__
        return d["_strategy"] if "_strategy" in d else d.get("strategy", "auto")

    @strategy.setter
    def strategy(self, value: str) -> None:
        problem = strategy_problem(self._geometry, value)
        if problem:
            raise ValueError(f"{type(self).__name__}({self._describe()}): {problem}")
        self.__dict__["_strategy"] = value

    @property
    def strategies(self) -> tuple[str, ...]:
        """The ``strategy`` values this layer can run: all of ``"auto"``, ``"timed"``,
        ``"direct"``, ``"plane"``, ``"batch"`` but ``"direct"`` on a strided convolution (the
        direct kernels are stride-1 only; a 1x1 unpadded strided one runs on its subsampled
        input and takes it)."""
        return tuple(s for s in CHOICES if not strategy_problem(self._geometry, s))

    @property
    def _rows(self) -> int:
        return self.out_channels

    @property
    def _cols(self) -> int:
        return self._geometry.cols

    def __setstate__(self, state):
        if "_conv2d" not in state:  # pickled before the 2-D arguments were kept apart
            args = ("kernel_size", "stride", "padding", "dilation")
            state["_conv2d"] = tuple(state[k] for k in args)
        super().__setstate__(state)

    def _set_public_args(self, kernel_size, stride, padding, dilation) -> None:
        self.kernel_size, self.stride, self.padding, self.dilation = (
            kernel_size,
            stride,
            padding,
            dilation,
        )

    # -- construction from / to dense -------------------------------------------------------
    # The dense layer this class stands for: its form (nn/_dense_types.py) and class.
    _FORM, _DENSE = "conv2d", nn.Conv2d

    @staticmethod
    def _as_2d(kernel_size, stride, padding, dilation) -> tuple:
        """The dense layer's arguments as those of the 2-D convolution the kernels run."""
        return kernel_size, stride, padding, dilation

    @classmethod
    def from_dense(
        cls, conv: nn.Module, *, strategy: str = "auto", mask: torch.Tensor | None = None
    ):
        """A layer holding exactly the nonzeros of ``conv.weight`` (and its bias); given
        ``mask`` (bool, the weight's shape), exactly the entries where it is True.
        ``conv``: an ``nn.Conv2d`` (``nn.Conv1d`` for SparseConv1d), or a subclass that keeps
        its forward (the layer remembers the type: :meth:`to_dense` gives one back)."""
        self = cls._blank_for(conv, (cls._FORM,))
        self._configure(
            conv.in_channels,
            conv.out_channels,
            *cls._as_2d(conv.kernel_size, conv.stride, conv.padding, conv.dilation),
            conv.groups,
            conv.padding_mode,
            strategy,
        )
        self._set_weight_from(conv, mask=mask)
        return self

    def to_dense(self) -> nn.Module:
        """An ``nn.Conv2d`` (``nn.Conv1d``; of the type :meth:`from_dense` was given) with the
        same configuration, weight (zeros filled in) and bias."""
        return self._copy_into(
            self._DENSE(
                self.in_channels,
                self.out_channels,
                self.kernel_size,
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
                self.bias is not None,
                self.padding_mode,
            )
        )

    @property
    def weight(self) -> torch.Tensor:
        """Dense reconstruction (out, in / groups, *kernel_size); differentiable w.r.t.
        ``values``."""
        return self._dense_matrix().view(self._weight_shape())

    def _describe(self) -> str:
        kh, kw = self.kernel_size
        return f"{self.in_channels}->{self.out_channels}, {kh}x{kw}"

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        dims = len(self.kernel_size)
        if self.padding not in ((0,) * dims, "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * dims:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + f", nnz={self.nnz}, sparsity={self.sparsity:.4f}, strategy={self.strategy!r}"

    # -- per-shape plans ---------------------------------------------------------------------
    def _weight_shape(self) -> tuple:
        return (self.out_channels, self.in_channels // self.groups, *self._conv2d[0])

    def _derive(self) -> None:
        self._row_ptr_np = self._pattern[0].numpy()
        self._plans = ConvPlans(self._geometry, self._pattern)
        seed_conv_plans(self.row_ptr, self.col_idx, self._pattern, self._geometry, self._plans)

    def _kernel_hw(self, h: int, w: int) -> tuple:
        """The plane size the kernels see for an h x w input (after the explicit padding of
        other padding modes and the subsampling of a 1x1 strided convolution)."""
        if self._explicit_pad is not None:
            pl, pr, pt, pb = self._explicit_pad
            h, w = h + pt + pb, w + pl + pr
        if self._subsample is not None:
            sh, sw = self._subsample
            h, w = -(-h // sh), -(-w // sw)
        return h, w

    def strategy_for(self, input_shape: Sequence[int]) -> str | None:
        """The layout (``"direct"``, ``"plane"`` or ``"batch"``) this layer runs an input of
        ``input_shape`` ((N, C, H, W) or (C, H, W)) on under its ``strategy``: that layout
        when it names one, the rule's choice for ``"auto"`` (known before any call), and for
        ``"timed"`` the measured winner once a forward pass has timed that shape's batch-size
        range, None before."""
        shape = tuple(int(d) for d in input_shape)
        if len(shape) == 3:
            shape = (1,) + shape
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}({self._describe()}): expected an input shape "
                f"(N, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                f"got {tuple(input_shape)}"
            )
        self._ensure_index()
        try:
            return self._plans.strategy_for(shape[0], *self._kernel_hw(*shape[2:]), self.strategy)
        except ValueError as e:  # e.g. an input smaller than the kernel: name the layer
            raise ValueError(f"{type(self).__name__}({self._describe()}): {e}") from None

    # -- compute ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = prepare_input(self, x)  # autocast's cast to float32; dense tensors only
        self._check_input(x, "input")
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}({self._describe()}): expected input of shape "
                f"(N, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        eager = plain_eager(x, self.values, self.bias)
        if eager:  # (else the ops find the pattern's plans themselves: conv_ops.py)
            self._ensure_index()
            self._check_values()
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        # channels_last inputs stay so (the kernels read and write them; y in x's format).
        fmt = memory_format(is_nhwc(x))
        if self._explicit_pad is not None:
            x = F.pad(x, self._explicit_pad, mode=self.padding_mode)
        if self._subsample is not None:
            sh, sw = self._subsample
            x = Subsample.apply(x, sh, sw) if eager else x[:, :, ::sh, ::sw]
        x = x.contiguous(memory_format=fmt)
        if not eager:
            y, _, _ = SparseConv2dOpFunction.apply(
                x,
                self.values,
                self.bias,
                self.row_ptr,
                self.col_idx,
                geometry_ints(self._geometry),
                self.strategy,
                self._call_name(),
            )
            return y.squeeze(0) if unbatched else y
        try:
            layout = self._plans.layout(x, self.strategy, self.values, self.bias)
        except ValueError as e:  # e.g. an input smaller than the kernel: name the layer
            raise ValueError(f"{type(self).__name__}({self._describe()}): {e}") from None
        fuse = getattr(self, "batch_norm_stats", False)  # (absent in modules pickled before)
        stats = [] if fuse and self.training and not unbatched else None
        y = SparseConv2dFunction.apply(
            x,
            self.values,
            self.bias,
            self._row_ptr_np,
            layout,
            self._pattern[1],
            stats,
            self._saved_pattern(),
            self._call_name(),
        )
        if stats:
            attach_batch_norm_stats(y, stats[0])
        return y.squeeze(0) if unbatched else y

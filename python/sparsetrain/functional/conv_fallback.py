"""The dense computation the convolution falls back to where a NaN or Inf shows up.

Non-finite numbers (NaN, ±Inf) propagate exactly as in ``nn.Conv2d``, whose products differ
from the kernels' in three ways: it multiplies the pruned (zero) weights too (0 · Inf = NaN),
it skips the zero padding (an Inf weight next to the border gives Inf, not Inf · 0 = NaN),
and it never touches the grid columns past the output width that the offset kernels compute
and drop. So whatever a non-finite number reaches is computed with the dense weight by
PyTorch's own convolution (:class:`DenseConv`); functional/conv.py decides which images.
"""

from __future__ import annotations

import torch

from ..formats.conv import ConvGeometry
from ..formats.csr import nonzero_positions
from .common import dense_weight, no_autocast


class DenseConv:
    """nn.Conv2d's own computation for one geometry, with the weight made dense: what the
    non-finite fallbacks run. Padding is passed to PyTorch as nn.Conv2d passes it (PyTorch
    skips padded positions rather than multiplying zeros); an asymmetric one ('same' with an
    even kernel extent) is split as F.conv2d(padding='same') does: the symmetric part as
    padding, the rest as explicit zeros."""

    def __init__(self, g: ConvGeometry, row_ptr, col_idx, values):
        self.g = g
        pt, pb, pl, pr = g.padding
        self.pad = (min(pt, pb), min(pl, pr))
        self.extra = (pl - self.pad[1], pr - self.pad[1], pt - self.pad[0], pb - self.pad[0])
        self.w = dense_weight(row_ptr, col_idx, values, g.out_channels, g.cols).view(
            g.out_channels, g.in_per_group, *g.kernel
        )

    def _padded(self, x):
        return torch.nn.functional.pad(x, self.extra) if any(self.extra) else x

    def _args(self):
        g = self.g
        return g.stride, self.pad, g.dilation, g.groups

    def forward(self, x, bias):
        with no_autocast():
            return torch.nn.functional.conv2d(self._padded(x), self.w, bias, *self._args())

    def input_grad(self, x_shape, dy):
        n, c, h, w = x_shape
        left, right, top, bottom = self.extra
        with no_autocast():
            dx = torch.nn.grad.conv2d_input(
                (n, c, h + top + bottom, w + left + right), self.w, dy, *self._args()
            )
        return dx[:, :, top : top + h, left : left + w] if any(self.extra) else dx

    def weight_grad(self, x, dy, row_ptr, col_idx):
        """The gradient of the stored values: nn.Conv2d's weight gradient at the pattern."""
        with no_autocast():
            dw = torch.nn.grad.conv2d_weight(self._padded(x), self.w.shape, dy, *self._args())
        flat = nonzero_positions(row_ptr, col_idx, self.g.out_channels, self.g.cols)
        return dw.reshape(-1)[flat]

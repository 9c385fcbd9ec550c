"""Dense weight gradients of sparse layers, for the steps that need them (RigL's growth).

Armed before such a step, a forward hook keeps each layer's input and a hook on its output
receives the output gradient; their product, the gradient of every weight of the dense matrix,
is summed over the step's backward passes (gradient accumulation included). Nothing is kept
or computed while disarmed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..formats.conv import resolve_padding
from ..nn import SparseConv1d, SparseConv2d, SparseLinear


def dense_gradient(layer, x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """The gradient of the (rows, cols) dense weight matrix of ``layer`` for input ``x`` and
    output gradient ``dy``, in float32."""
    x, dy = x.detach().float(), dy.detach().float()
    if isinstance(layer, SparseLinear):
        return dy.reshape(-1, layer._rows).t() @ x.reshape(-1, layer._cols)
    if not isinstance(layer, SparseConv2d):
        raise TypeError(f"dense_gradient: not a sparse layer: {type(layer).__name__}")
    if isinstance(layer, SparseConv1d):  # run as a 2-D convolution of height 1
        x, dy = x.unsqueeze(-2), dy.unsqueeze(-2)
    if x.dim() == 3:  # unbatched
        x, dy = x.unsqueeze(0), dy.unsqueeze(0)
    kernel, stride, padding, dilation = layer._conv2d
    pt, pb, pl, pr = resolve_padding(padding, kernel, dilation, stride)
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    if any((pt, pb, pl, pr)):
        x = F.pad(x, (pl, pr, pt, pb), mode=mode)
    shape = (layer.out_channels, layer.in_channels // layer.groups, *kernel)
    g = torch.nn.grad.conv2d_weight(x, shape, dy, stride, 0, dilation, layer.groups)
    return g.reshape(layer._rows, layer._cols)


class GradientCapture:
    """Dense weight gradients of the layers ``{name: sparse layer}`` over the backward passes
    run while armed."""

    def __init__(self, layers: dict):
        self.layers = layers
        self.sums: dict = {}
        self._handles: list = []

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def arm(self) -> None:
        if self.armed:
            return
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._on_forward(name)))

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def take(self, name: str) -> torch.Tensor | None:
        """The summed dense gradient of layer ``name`` (None if no backward reached it),
        forgotten here."""
        return self.sums.pop(name, None)

    def clear(self) -> None:
        self.sums = {}

    def _on_forward(self, name: str):
        def hook(layer, args, out):
            wants = isinstance(out, torch.Tensor) and out.requires_grad
            if not (wants and torch.is_grad_enabled()):
                return
            x = args[0].detach()

            def on_grad(dy, x=x):
                g = dense_gradient(layer, x, dy)
                total = self.sums.get(name)
                self.sums[name] = g if total is None else total.add_(g)

            out.register_hook(on_grad)

        return hook

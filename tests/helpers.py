import torch
from torch import nn


def pruned_linear(in_f, out_f, sparsity, bias=True, empty_rows=0):
    """nn.Linear whose weight has (about) the given fraction of exact zeros."""
    lin = nn.Linear(in_f, out_f, bias=bias)
    with torch.no_grad():
        keep = torch.rand(out_f, in_f) >= sparsity
        if empty_rows:
            keep[:empty_rows] = False
        lin.weight.mul_(keep)
    return lin


def assert_close(actual, expected, what, rtol=1e-4, atol=1e-5):
    scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=atol * scale, msg=lambda m: f"{what}: {m}"
    )


def forward_backward(module, x, g):
    """module(x) backpropagated with output gradient g from fresh gradients: the output and
    the input gradient."""
    x = x.detach().clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    y = module(x)
    y.backward(g)
    return y.detach(), x.grad


def direct_runs(kernel_size=3, stride=1, padding=0) -> bool:
    """Whether strategy="direct" can run a convolution (SparseConv2d raises otherwise): stride
    1, or a 1x1 unpadded strided one, which runs on its subsampled input."""
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    if pair(stride) == (1, 1):
        return True
    return pair(kernel_size) == (1, 1) and (padding == "valid" or pair(padding) == (0, 0))

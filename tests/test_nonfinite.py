"""NaN and ±Inf propagate exactly as in nn.Linear / nn.Conv2d, forward and backward.

The sparse kernels skip pruned weights, while dense PyTorch multiplies them as well (0 · Inf =
NaN): these tests put the non-finite numbers where only pruned weights (or, for convolutions,
padding and unused grid positions) meet them, and compare the NaN / +Inf / -Inf positions and
the finite values of the output and of every gradient with the dense layer holding the same
weights.
"""

import pytest
import torch
from torch import nn

import sparsetrain as st
from helpers import assert_close, direct_runs, forward_backward

VALUES = [float("inf"), float("-inf"), float("nan")]
WHERE = ["input", "grad_output", "weight"]


def assert_same(actual, expected, what):
    assert actual.shape == expected.shape, what
    for name, f in (("NaN", torch.isnan), ("+Inf", torch.isposinf), ("-Inf", torch.isneginf)):
        a, e = f(actual), f(expected)
        assert torch.equal(a, e), (
            f"{what}: {name} positions differ ({int(a.sum())} sparse vs {int(e.sum())} dense)"
        )
    finite = torch.isfinite(expected)
    assert_close(actual[finite], expected[finite], what)


def compare(sp, dense, x, g, where):
    ys, dxs = forward_backward(sp, x, g)
    yd, dxd = forward_backward(dense, x, g)
    assert_same(ys, yd, f"{where}: output")
    assert_same(dxs, dxd, f"{where}: input gradient")
    mask = sp.weight.detach() != 0  # the stored positions (NaN counts as stored)
    mask |= torch.isnan(sp.weight.detach())
    assert_same(
        sp.values.grad, dense.weight.grad[mask.view_as(dense.weight)], f"{where}: values gradient"
    )
    if sp.bias is not None:
        assert_same(sp.bias.grad, dense.bias.grad, f"{where}: bias gradient")
    return ys, dxs


# -- SparseLinear -----------------------------------------------------------------------------
def linear_pair(bias=True):
    lin = nn.Linear(40, 24, bias=bias)
    with torch.no_grad():
        lin.weight.mul_(torch.rand_like(lin.weight) > 0.8)
        lin.weight[:, 7] = 0  # a fully pruned input column
        lin.weight[5] = 0  # a fully pruned output row
    return st.SparseLinear.from_dense(lin)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("value", VALUES)
def test_linear(isa, input_grad_strategy, where, value, bias):
    sp = linear_pair(bias)
    x, g = torch.randn(37, 40), torch.randn(37, 24)
    if where == "input":
        x[3, 7] = value  # meets only pruned weights: the old kernels returned finite outputs
        x[20, 11] = value
    elif where == "grad_output":
        g[4, 5] = value  # an output row without nonzeros
        g[30, 2] = value
    else:
        with torch.no_grad():
            sp.values[sp.nnz // 2] = value
    ys, dxs = compare(sp, sp.to_dense(), x, g, where)
    assert not torch.isfinite(ys).all() or not torch.isfinite(dxs).all()


def test_linear_leading_dims_and_all_rows_bad(isa):
    sp = linear_pair()
    x, g = torch.randn(2, 3, 40), torch.randn(2, 3, 24)
    x[:, :, 7] = float("nan")
    g[1, 2, 5] = float("inf")
    compare(sp, sp.to_dense(), x, g, "3-D input")


# -- SparseConv2d -----------------------------------------------------------------------------
CONV_CONFIGS = {
    "3x3": dict(kernel_size=3, padding=1),
    "3x3-stride2": dict(kernel_size=3, stride=2, padding=1),
    "1x1": dict(kernel_size=1),
    "1x1-stride2": dict(kernel_size=1, stride=2),
    "groups2": dict(kernel_size=3, padding=1, groups=2),
    "dilated-5x3": dict(kernel_size=(5, 3), padding=(2, 3), dilation=(1, 2)),
    "same-4x4": dict(kernel_size=4, padding="same"),
    "reflect": dict(kernel_size=3, padding=1, padding_mode="reflect"),
}


def conv_pair(cfg, strategy, bias=True):
    conv = nn.Conv2d(4, 6, bias=bias, **CONV_CONFIGS[cfg])
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) > 0.7)
        conv.weight[:, 1] = 0  # input channel 1 meets only pruned weights
        conv.weight[2] = 0  # output channel 2 has no nonzeros
    return st.SparseConv2d.from_dense(conv, strategy=strategy)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
# "direct" only where it runs (a strided convolution refuses it).
@pytest.mark.parametrize(
    "strategy,cfg",
    [
        (s, cfg)
        for s in ("direct", "plane", "batch")
        for cfg, kw in CONV_CONFIGS.items()
        if s != "direct"
        or direct_runs(kw["kernel_size"], kw.get("stride", 1), kw.get("padding", 0))
    ],
)
@pytest.mark.parametrize("where", WHERE)
def test_conv(isa, strategy, cfg, where):
    for value in VALUES:
        sp = conv_pair(cfg, strategy)
        x = torch.randn(17, 4, 9, 8)
        y_shape = sp(x).shape
        g = torch.randn(y_shape)
        if where == "input":
            x[0, 1, 4, 4] = value  # interior, channel with only pruned weights
            x[16, 0, 0, 7] = value  # a corner, next to the padding, in a second batch group
            x[5, 3, 8, 0] = value
        elif where == "grad_output":
            g[1, 2, 0, 0] = value  # output channel without nonzeros, at the border
            g[16, 3, -1, -1] = value
        else:
            with torch.no_grad():
                sp.values[0] = value
                sp.values[-1] = value
        compare(sp, sp.to_dense(), x, g, f"{cfg}/{strategy}/{where}={value}")


@pytest.mark.parametrize("where", WHERE)
def test_conv_without_bias_and_unbatched(where):
    sp = conv_pair("3x3", "plane", bias=False)
    x, g = torch.randn(4, 7, 7), torch.randn(6, 7, 7)
    if where == "input":
        x[1, 3, 3] = float("inf")
    elif where == "grad_output":
        g[2, 6, 0] = float("nan")
    else:
        with torch.no_grad():
            sp.values[3] = float("-inf")
    compare(sp, sp.to_dense(), x, g, where)


@pytest.mark.parametrize("strategy", ["plane", "batch"])
@pytest.mark.parametrize("cfg", ["3x3", "3x3-stride2", "1x1-stride2"])
def test_conv_without_bias_checks_grad_output_as_it_packs(isa, strategy, cfg, monkeypatch):
    """No bias gradient proves dy finite here: the plane layout's input-gradient kernel
    checks dy image by image as it packs it, the batch layout's packing pass sums its
    channels; for a finite dy neither makes a pass over dy of its own (the plane layout
    never does). A NaN or Inf in dy still reaches the dense fallback, and a finite dy whose
    sum overflows stays on the sparse result."""
    from sparsetrain.functional import conv as fconv

    for value in VALUES + [1e36, 1.0]:
        sp = conv_pair(cfg, strategy, bias=False)
        x = torch.randn(9, 4, 9, 8)  # 9 images: the plane layout packs them in its kernels
        g = torch.randn(sp(x).shape)
        g[1, 2, 0, 0] = value  # output channel without nonzeros, at the border
        g[8, 3, -1, -1] = value
        if value == 1e36:
            g[0].fill_(value)  # finite, but the sum of dy overflows
        checked = []
        monkeypatch.setattr(
            fconv,
            "all_finite",
            lambda t, checked=checked: checked.append(t.shape) or bool(torch.isfinite(t).all()),
        )
        compare(sp, sp.to_dense(), x, g, f"{cfg}/{strategy}/grad_output={value}")
        # (A 1x1 stride-1 product reads the subsampled NCHW dy as it is: no packing to check in.)
        direct = cfg == "1x1-stride2" and strategy == "plane"
        if not direct and (strategy == "plane" or value == 1.0):
            assert tuple(g.shape) not in checked, "a pass of its own over dy"


def test_conv_auto_strategy():
    sp = conv_pair("3x3", "auto")
    x, g = torch.randn(16, 4, 8, 8), torch.randn(16, 6, 8, 8)
    x[3, 1, 0, 0] = float("nan")
    g[7, 2, 4, 4] = float("inf")
    compare(sp, sp.to_dense(), x, g, "auto")


# -- the fast path stays sparse ---------------------------------------------------------------
def test_finite_inputs_never_take_the_dense_fallback(monkeypatch):
    from sparsetrain.functional import conv as fconv
    from sparsetrain.functional import linear as flinear

    def boom(*a, **k):
        raise AssertionError("dense fallback used for finite inputs")

    monkeypatch.setattr(flinear, "dense_weight", boom)
    monkeypatch.setattr(fconv, "DenseConv", boom)
    for sp, x in (
        (linear_pair(), torch.randn(9, 40)),
        (conv_pair("3x3", "plane"), torch.randn(3, 4, 8, 8)),
        (conv_pair("3x3", "direct", bias=False), torch.randn(3, 4, 8, 8)),
    ):
        x.requires_grad_()
        sp(x).square().sum().backward()
    with pytest.raises(AssertionError, match="dense fallback"):
        sp(torch.full((3, 4, 8, 8), float("nan")))


def test_precheck_is_exact_when_the_sum_overflows():
    from sparsetrain.functional.common import all_finite

    big = torch.full((1000,), 3e38)
    assert not torch.isfinite(big.sum())
    assert all_finite(big)
    big[500] = float("nan")
    assert not all_finite(big)
    assert all_finite(torch.empty(0))
    # and the layer stays on the sparse result for such rows (finite: no dense recompute)
    sp = linear_pair()
    x = torch.full((2, 40), 1e38)
    compare(sp, sp.to_dense(), x, torch.randn(2, 24), "overflowing sum")

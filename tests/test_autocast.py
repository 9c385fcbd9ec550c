"""torch.autocast("cpu"): SparseLinear under bfloat16 autocast runs its bf16 kernels and
returns bfloat16, as nn.Linear does (tests/test_bf16_linear.py checks the numbers); every other
case (convolutions, float16 autocast) behaves like an op on autocast's float32 list.

There a bfloat16 / float16 input (typically the output of an autocast op such as nn.Linear) is
cast to float32 and the layer computes and returns float32; gradients flow back to the
lower-precision producer. Outside autocast such inputs stay a TypeError naming the layer.
"""

import pytest
import torch
from torch import nn

import sparsetrain as st
from helpers import assert_close, pruned_linear

LOW = [torch.bfloat16, torch.float16]


def sparse_conv():
    conv = nn.Conv2d(6, 8, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) > 0.7)
    return st.SparseConv2d.from_dense(conv, strategy="plane")


@pytest.mark.parametrize("dtype", LOW)
def test_linear_after_an_autocast_op(dtype):
    pre = nn.Linear(16, 32)
    sp = st.SparseLinear.from_dense(pruned_linear(32, 12, 0.8))
    x = torch.randn(10, 16)
    with torch.autocast("cpu", dtype=dtype):
        h = pre(x)
        assert h.dtype == dtype  # what the sparse layer receives
        y = sp(h)
    # bf16: the bf16 kernels, as nn.Linear; float16: autocast's float32 list.
    assert y.dtype == (torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)
    ref = sp.to_dense()(h.detach().float())  # dense float32 on the same (rounded) input
    if dtype == torch.bfloat16:  # and with the weight rounded, the output rounded once more
        assert_close(y.float(), ref, "output", rtol=2e-2, atol=2e-2)
    else:
        assert_close(y, ref, "output")
    y.square().sum().backward()
    assert sp.values.grad is not None and sp.values.grad.dtype == torch.float32
    assert pre.weight.grad is not None and torch.isfinite(pre.weight.grad).all()
    assert pre.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", LOW)
def test_conv_after_an_autocast_op(dtype):
    pre = nn.Conv2d(3, 6, 3, padding=1)
    sp = sparse_conv()
    x = torch.randn(4, 3, 9, 9)
    with torch.autocast("cpu", dtype=dtype):
        h = pre(x)
        assert h.dtype == dtype
        y = sp(h)
        out = nn.functional.relu(y).mean((2, 3))  # more autocast ops after the sparse layer
    assert y.dtype == torch.float32
    assert_close(y, sp.to_dense()(h.detach().float()), "output")
    out.float().sum().backward()
    assert sp.values.grad is not None and sp.bias.grad is not None
    assert pre.weight.grad is not None and pre.weight.grad.abs().sum() > 0


def test_gradients_match_a_dense_reference_under_autocast():
    sp = st.SparseLinear.from_dense(pruned_linear(20, 9, 0.7))
    dense = sp.to_dense()
    x = torch.randn(6, 20).to(torch.bfloat16).requires_grad_()
    xd = x.detach().clone().requires_grad_()
    g = torch.randn(6, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = sp(x)
        y.backward(g)  # backward inside the autocast region as well
        dense(xd).backward(g)
    assert x.grad.dtype == torch.bfloat16
    assert_close(x.grad.float(), xd.grad.float(), "input gradient", rtol=2e-2, atol=2e-2)
    mask = dense.weight.detach() != 0
    # dense rounds its weight gradient to bf16; ours sums in float32
    assert_close(sp.values.grad, dense.weight.grad[mask], "values gradient", rtol=1e-2, atol=1e-2)
    assert_close(sp.bias.grad, dense.bias.grad, "bias gradient", rtol=1e-2, atol=1e-2)


def test_float32_convolution_input_is_unchanged_by_autocast():
    conv = sparse_conv()
    xc = torch.randn(2, 6, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yc = conv(xc)
    assert torch.equal(yc, conv(xc))


def test_float32_linear_input_is_cast_like_nn_linear():
    sp = st.SparseLinear(12, 7, sparsity=0.5)
    x = torch.randn(5, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = sp(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(y, sp(x.to(torch.bfloat16)))  # the same cast autocast makes
    assert y.dtype == torch.bfloat16


def test_nonfinite_fallback_under_autocast():
    sp, conv = st.SparseLinear(12, 7, sparsity=0.5), sparse_conv()
    x, xc = torch.randn(5, 12), torch.randn(2, 6, 8, 8)
    x[1, 3], xc[0, 2, 3, 3] = float("nan"), float("inf")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, yc = sp(x), conv(xc)
        ref = sp.to_dense()(x)
    assert y.dtype == torch.bfloat16 and yc.dtype == torch.float32
    refc = conv.to_dense()(xc)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.equal(torch.isnan(yc), torch.isnan(refc))
    finite = ~torch.isnan(ref)
    assert_close(y[finite].float(), ref[finite].float(), "finite outputs", rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", LOW + [torch.float64])
def test_outside_autocast_wrong_dtypes_still_raise(dtype):
    for layer, x in (
        (st.SparseLinear(12, 7, sparsity=0.5), torch.randn(5, 12)),
        (sparse_conv(), torch.randn(2, 6, 8, 8)),
    ):
        with pytest.raises(TypeError, match=rf"{type(layer).__name__}\(.*float32"):
            layer(x.to(dtype))


def test_float64_is_not_cast_inside_autocast():
    # autocast only lowers precision; float64 is not on its cast lists, so it stays an error.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(TypeError, match="float32"):
            st.SparseLinear(12, 7, sparsity=0.5)(torch.randn(5, 12, dtype=torch.float64))


def test_autocast_disabled_region_inside_autocast_raises():
    sp = st.SparseLinear(12, 7, sparsity=0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.autocast("cpu", enabled=False):
            with pytest.raises(TypeError, match="bfloat16 but the values are torch.float32"):
                sp(torch.randn(5, 12, dtype=torch.bfloat16))

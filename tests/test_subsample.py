"""Subsample (the stride of a strided 1x1 sparse convolution): x[:, :, ::sh, ::sw] and its
gradient, natively, on every ISA, against PyTorch's slicing; and the bad inputs the native
call refuses."""

import numpy as np
import pytest
import torch

import sparsetrain as st
from sparsetrain import _C
from sparsetrain.functional.subsample import Subsample

# Widths below and above Subsample's native minimum (28) for the forward direction.
SHAPES = [(2, 3, 7, 9), (1, 1, 1, 1), (3, 2, 8, 40), (2, 2, 5, 33), (1, 4, 16, 64), (2, 1, 3, 28)]


@pytest.mark.parametrize("isa", st.supported_isas())
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("sh, sw", [(2, 2), (1, 2), (2, 1), (3, 3), (1, 1), (2, 3)])
def test_matches_slicing_forward_and_backward(isa, shape, sh, sw):
    prev = st.get_isa()
    st.set_isa(isa)
    try:
        x = torch.randn(shape, requires_grad=True)
        y = Subsample.apply(x, sh, sw)
        ref_x = x.detach().clone().requires_grad_()
        ref = ref_x[:, :, ::sh, ::sw]
        assert torch.equal(y, ref) and y.is_contiguous()
        g = torch.randn_like(y)
        y.backward(g)
        ref.backward(g)
        assert torch.equal(x.grad, ref_x.grad)
    finally:
        st.set_isa(prev)


def test_nan_and_inf_are_copied_not_mixed_in():
    x = torch.randn(1, 1, 4, 4)
    x[0, 0, 0, 0], x[0, 0, 1, 1] = float("nan"), float("inf")  # sampled / not sampled
    x.requires_grad_()
    y = Subsample.apply(x, 2, 2)
    assert torch.isnan(y[0, 0, 0, 0]) and torch.isfinite(y[0, 0, 1:, 1:]).all()
    g = torch.full_like(y, float("inf"))
    y.backward(g)
    assert torch.isinf(x.grad[0, 0, ::2, ::2]).all() and (x.grad[0, 0, 1::2] == 0).all()


def test_other_layouts_and_dtypes_take_the_sliced_path():
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    Subsample.apply(x, 2, 2).sum().backward()
    assert torch.equal(
        x.grad,
        torch.zeros_like(x).index_fill_(2, torch.tensor([0, 2, 4]), 1)
        * torch.zeros_like(x).index_fill_(3, torch.tensor([0, 2, 4]), 1),
    )
    x = torch.randn(2, 3, 6, 6).to(memory_format=torch.channels_last).requires_grad_()
    assert torch.equal(Subsample.apply(x, 2, 2), x[:, :, ::2, ::2])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sh=0), "strides"),
        (dict(planes=-1), "negative"),
        (dict(h=5), "sizes"),
    ],
)
def test_native_call_refuses_bad_arguments(kwargs, match):
    args = dict(planes=2, h=4, w=4, sh=2, sw=2)
    args.update(kwargs)
    src, dst = np.zeros(2 * 16, np.float32), np.zeros(2 * 4, np.float32)
    with pytest.raises(ValueError, match=match):
        _C.subsample(src=src, dst=dst, nthreads=1, **args)


def test_native_call_refuses_overlapping_buffers():
    buf = np.zeros(2 * 16 + 2 * 4, np.float32)
    with pytest.raises(ValueError, match="overlap"):  # dst starts inside src
        _C.subsample(src=buf[:32], dst=buf[28:36], planes=2, h=4, w=4, sh=2, sw=2, nthreads=1)

"""SparseConv2d against nn.Conv2d holding the same dense weight: outputs and all gradients."""

import itertools
import random
import zlib

import pytest
import torch
from torch import nn

import sparsetrain as st
from helpers import assert_close, direct_runs


def pruned_conv(cin, cout, k, sparsity, **kw):
    conv = nn.Conv2d(cin, cout, k, **kw)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) >= sparsity)
    return conv


def run_both(conv, x, strategy, *, x_grad=True):
    sp = st.SparseConv2d.from_dense(conv, strategy=strategy)
    xd = x.detach().clone().requires_grad_(x_grad)
    xs = x.detach().clone().requires_grad_(x_grad)
    yd, ys = conv(xd), sp(xs)
    assert ys.shape == yd.shape
    assert_close(ys, yd, "output")
    g = torch.randn_like(yd)
    yd.backward(g)
    ys.backward(g)
    if x_grad:
        assert_close(xs.grad, xd.grad, "input grad")
    mask = conv.weight.detach() != 0
    assert_close(sp.values.grad, conv.weight.grad[mask], "values grad", rtol=1e-4, atol=1e-4)
    if conv.bias is not None:
        assert_close(sp.bias.grad, conv.bias.grad, "bias grad", rtol=1e-4, atol=1e-4)
    return sp, ys


def _grid():
    """A spread of nn.Conv2d configurations covering every listed value at least once."""
    rnd = random.Random(0)
    kernels = [(1, 1), (3, 3), (5, 5), (1, 7), (7, 1)]
    strides = [1, 2, 3]
    paddings = [0, 1, 2, "same"]
    dilations = [1, 2]
    groups = ["1", "2", "depthwise"]
    cases = []
    for k, s, p, d, g in itertools.product(kernels, strides, paddings, dilations, groups):
        if p == "same" and s != 1:
            continue  # rejected by nn.Conv2d too
        cases.append((k, s, p, d, g))
    rnd.shuffle(cases)
    return cases[:90]


def _channels(groups):
    if groups == "depthwise":
        return 6, 6, 6
    g = int(groups)
    return 4 * g // 2 + 2, 6, g  # (in, out, groups) divisible


@pytest.fixture
def layout_strategy(request, monkeypatch):
    """The strategy to ask for; "plane" runs with the kernels packing each image themselves,
    "plane-prepacked" with the input packed beforehand (what small batches get)."""
    from sparsetrain import tuning

    name = request.param
    if name.startswith("plane"):
        monkeypatch.setattr(tuning, "FUSED_PACK", name == "plane")
    return name.split("-")[0]


# "direct" only where it runs (a strided convolution refuses it).
@pytest.mark.parametrize(
    "layout_strategy,k,stride,padding,dilation,groups",
    [
        (s, *case)
        for s in ("direct", "plane", "plane-prepacked", "batch")
        for case in _grid()
        if s != "direct" or direct_runs(*case[:3])
    ],
    indirect=["layout_strategy"],
)
def test_matches_nn_conv2d(isa, layout_strategy, k, stride, padding, dilation, groups):
    strategy = layout_strategy
    cin, cout, g = _channels(groups)
    if groups == "2":
        cin, cout = 4, 6
    torch.manual_seed(zlib.crc32(repr((k, stride, padding, dilation, groups)).encode()))
    h, w = 11 + 2 * dilation * k[0] // 2, 13 + 2 * dilation * k[1] // 2  # odd sizes, big enough
    conv = pruned_conv(
        cin, cout, k, 0.6, stride=stride, padding=padding, dilation=dilation, groups=g
    )
    x = torch.randn(3, cin, h, w)
    run_both(conv, x, strategy)


@pytest.mark.parametrize(
    "layout_strategy", ["direct", "plane", "plane-prepacked", "batch"], indirect=True
)
@pytest.mark.parametrize("batch", [1, 5, 17, 33])
def test_batch_sizes(isa, layout_strategy, batch):
    strategy = layout_strategy
    conv = pruned_conv(5, 7, 3, 0.7, stride=1, padding=1)
    run_both(conv, torch.randn(batch, 5, 9, 19), strategy)


@pytest.mark.parametrize("strategy", ["direct", "plane", "batch"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_sparsities(isa, strategy, sparsity):
    stride = 1 if strategy == "direct" else 2  # the direct kernels are stride-1 only
    conv = pruned_conv(8, 8, 3, sparsity, stride=stride, padding=1)
    run_both(conv, torch.randn(4, 8, 15, 15), strategy)


@pytest.mark.parametrize("strategy", ["direct", "plane", "batch"])
def test_wide_rows_and_1x1(isa, strategy):
    # rows longer than the 256-pixel staging segment, and the direct NCHW 1x1 path
    run_both(pruned_conv(3, 4, (1, 3), 0.5, padding=(0, 1)), torch.randn(18, 3, 2, 300), strategy)
    run_both(pruned_conv(6, 5, 1, 0.5), torch.randn(3, 6, 7, 9), strategy)
    run_both(pruned_conv(6, 5, 1, 0.5, stride=2, bias=False), torch.randn(3, 6, 7, 9), strategy)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes(mode):
    conv = pruned_conv(3, 4, 3, 0.5, padding=2, dilation=2, padding_mode=mode)
    run_both(conv, torch.randn(2, 3, 10, 12), "auto")


def test_unbatched_channels_last_and_non_contiguous():
    conv = pruned_conv(4, 6, 3, 0.5, padding=1)
    sp = st.SparseConv2d.from_dense(conv)
    x = torch.randn(4, 9, 10)
    assert_close(sp(x), conv(x), "unbatched")
    xb = torch.randn(2, 4, 9, 10).to(memory_format=torch.channels_last)
    assert_close(sp(xb), conv(xb), "channels_last")
    xn = torch.randn(2, 4, 18, 10)[:, :, ::2]
    assert not xn.is_contiguous()
    assert_close(sp(xn), conv(xn), "strided")


def test_only_needed_gradients():
    conv = pruned_conv(4, 6, 3, 0.5, padding=1)
    sp = st.SparseConv2d.from_dense(conv)
    sp.values.requires_grad_(False)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    sp(x).sum().backward()
    assert sp.values.grad is None and x.grad is not None and sp.bias.grad is not None
    x2 = torch.randn(2, 4, 8, 8)
    sp.values.requires_grad_(True)
    sp(x2).sum().backward()
    assert sp.values.grad is not None


def test_timed_strategy_is_measured_once_per_shape():
    sp = st.SparseConv2d(8, 8, 3, padding=1, sparsity=0.8, strategy="timed")
    x = torch.randn(4, 8, 12, 12)
    y1 = sp(x)
    assert len(sp._plans.chosen) == 1
    chosen = next(iter(sp._plans.chosen.values()))
    assert chosen in ("direct", "plane", "batch")
    y2 = sp(x)
    assert len(sp._plans.chosen) == 1
    assert torch.equal(y1, y2)
    sp(torch.randn(3, 8, 12, 12))  # the same batch-size range (3-4): the same decision
    assert len(sp._plans.chosen) == 1
    sp(torch.randn(2, 8, 12, 12))
    assert len(sp._plans.chosen) == 2


def test_empty_batch():
    sp = st.SparseConv2d(3, 4, 3, padding=1, sparsity=0.5)
    x = torch.randn(0, 3, 5, 5, requires_grad=True)
    y = sp(x)
    assert y.shape == (0, 4, 5, 5)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.all(sp.values.grad == 0)


@pytest.mark.parametrize("repack", [True, False])
def test_repacking_in_backward_or_keeping_the_packed_input_gives_the_same_bits(repack, monkeypatch):
    """tuning.REPACK_IN_BACKWARD, read at each call, trades memory for a pass: never bits."""
    torch.manual_seed(0)
    sp = st.SparseConv2d(8, 8, 3, padding=1, sparsity=0.8, strategy="batch")
    x = torch.randn(16, 8, 7, 7, requires_grad=True)

    def grads():
        sp.values.grad = x.grad = None
        sp(x).square().sum().backward()
        return sp.values.grad.clone(), x.grad.clone()

    monkeypatch.setattr(st.tuning, "REPACK_IN_BACKWARD", not repack)
    expected = grads()
    monkeypatch.setattr(st.tuning, "REPACK_IN_BACKWARD", repack)
    for a, b in zip(expected, grads()):
        assert torch.equal(a, b)

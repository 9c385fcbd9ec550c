"""SparseConv2d as a module: construction, conversion, state_dict, repr, errors."""

import io
import math

import pytest
import torch
from torch import nn

import sparsetrain as st


def test_from_dense_to_dense_round_trip():
    conv = nn.Conv2d(4, 6, (3, 5), stride=2, padding=(1, 2), dilation=(1, 2), groups=2)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) > 0.8)
    sp = st.SparseConv2d.from_dense(conv)
    assert sp.nnz == int((conv.weight != 0).sum())
    assert torch.equal(sp.weight, conv.weight.detach())
    back = sp.to_dense()
    assert isinstance(back, nn.Conv2d)
    for attr in (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "padding_mode",
    ):
        assert getattr(back, attr) == getattr(conv, attr)
    assert torch.equal(back.weight, conv.weight) and torch.equal(back.bias, conv.bias)


def test_constructor_sparsity_and_init():
    sp = st.SparseConv2d(32, 64, 3, padding=1, sparsity=0.9)
    assert abs(sp.sparsity - 0.9) < 1e-3
    fan_in = 32 * 9 * 0.1
    assert sp.values.abs().max() <= 1 / math.sqrt(fan_in) + 1e-6
    x = torch.randn(8, 32, 10, 10)
    ratio = sp(x).std() / nn.Conv2d(32, 64, 3, padding=1)(x).std()
    assert 0.6 < ratio < 1.6


def test_state_dict_round_trip_with_different_nnz():
    a = st.SparseConv2d(4, 5, 3, padding=1, sparsity=0.9)
    b = st.SparseConv2d(4, 5, 3, padding=1, sparsity=0.3)
    param = b.values
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    assert b.values is param and b.nnz == a.nnz
    x = torch.randn(2, 4, 7, 7)
    assert torch.allclose(b(x), a(x))


def test_malformed_state_dict_raises():
    a = st.SparseConv2d(4, 5, 3, sparsity=0.5)
    sd = {k: v.clone() for k, v in a.state_dict().items()}
    sd["col_idx"][0] = 4 * 9  # one past the last column
    with pytest.raises(ValueError, match="out of range"):
        st.SparseConv2d(4, 5, 3, sparsity=0.5).load_state_dict(sd)


def test_repr():
    r = repr(st.SparseConv2d(8, 16, 3, stride=2, padding=1, groups=2, sparsity=0.75))
    for part in ("8, 16", "kernel_size=(3, 3)", "stride=(2, 2)", "groups=2", "sparsity=0.75"):
        assert part in r


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(padding="same", stride=2), "same"),
        (dict(padding_mode="mirror"), "padding_mode"),
        (dict(groups=3), "divisible"),
        (dict(strategy="fast"), "strategy"),
        (dict(sparsity=2.0), "sparsity"),
        (dict(padding=-1), "padding"),
    ],
)
def test_constructor_errors(kwargs, match):
    args = dict(in_channels=4, out_channels=4, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        st.SparseConv2d(**args)


@pytest.mark.parametrize(
    "x,exc,match",
    [
        (torch.randn(2, 4, 8, 8, dtype=torch.float64), TypeError, "float32"),
        (torch.randn(2, 3, 8, 8), ValueError, "4"),
        (torch.randn(4, 8), ValueError, "shape"),
        (torch.randn(2, 4, 2, 2), ValueError, "smaller than the kernel"),
    ],
)
def test_bad_inputs(x, exc, match):
    sp = st.SparseConv2d(4, 4, 3, sparsity=0.5)
    with pytest.raises(exc, match=match):
        sp(x)


def test_in_a_model_with_sgd():
    model = nn.Sequential(
        st.SparseConv2d(3, 8, 3, padding=1, sparsity=0.8),
        nn.ReLU(inplace=True),
        st.SparseConv2d(8, 8, 3, stride=2, padding=1, sparsity=0.8),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        st.SparseLinear(8, 4, sparsity=0.5),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 4, (16,))
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("strategy", ["direct", "plane", "batch"])
def test_deepcopy_and_pickle_after_use(strategy):
    import copy

    sp = st.SparseConv2d(4, 6, 3, padding=1, sparsity=0.7, strategy=strategy)
    x = torch.randn(3, 4, 9, 9)
    y = sp(x)  # caches per-shape plans
    assert torch.equal(copy.deepcopy(sp)(x), y)
    buf = io.BytesIO()
    torch.save(sp, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), y)


@pytest.mark.parametrize("batch", [3, 5, 17])
def test_fresh_layers_agree_for_any_thread_count(batch):
    """A layer first called under 1 thread and an identical one first called under 2 give
    bitwise equal results (the plane layout's choice to pack inside its kernels depends on the
    batch only, and its values gradient sums the batch in fixed slices)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1)
    x = torch.randn(batch, 6, 11, 12, requires_grad=True)
    g = torch.randn(batch, 8, 6, 6)
    out = []
    try:
        for n in (1, 2):
            st.set_num_threads(n)
            sp = st.SparseConv2d.from_dense(conv, strategy="plane")
            x.grad = None
            sp(x).backward(g)
            out.append((sp(x).detach(), x.grad.clone(), sp.values.grad.clone()))
    finally:
        st.set_num_threads(None)
    for a, b in zip(*out):
        assert torch.equal(a, b)


@pytest.mark.parametrize("strategy", ["direct", "plane", "batch"])
def test_threads_do_not_change_results(strategy):
    sp = st.SparseConv2d(8, 8, 3, padding=1, sparsity=0.8, strategy=strategy)
    x = torch.randn(17, 8, 10, 10, requires_grad=True)
    g = torch.randn(17, 8, 10, 10)
    out = []
    try:
        for n in (1, 2):
            st.set_num_threads(n)
            x.grad = None
            sp.zero_grad()
            y = sp(x)
            y.backward(g)
            out.append((y.detach().clone(), x.grad.clone(), sp.values.grad.clone()))
    finally:
        st.set_num_threads(None)
    for a, b in zip(*out):
        assert torch.equal(a, b)

"""SparseLinear against nn.Linear holding the same dense weight: outputs and all gradients."""

import pytest
import torch

import sparsetrain as st
from helpers import assert_close, pruned_linear

SHAPES = [  # (leading shape of x, in_features, out_features)
    ((1,), 1, 1),
    ((1,), 7, 3),
    ((5,), 13, 17),
    ((16,), 16, 16),
    ((17,), 33, 65),
    ((31,), 100, 10),
    ((64,), 128, 96),
    ((129,), 70, 41),
    ((300,), 20, 9),
    ((2, 3), 24, 40),  # 3-D: (batch, tokens, features)
    ((4, 25), 31, 19),
    ((7,), 5, 300),
    ((520,), 70, 130),  # rows padded to an odd number of lines (functional/linear.py)
]
SPARSITIES = [0.0, 0.5, 0.9, 0.99, 1.0]


def run_both(lin, lead, *, x_grad=True, bias_grad=True, weight_grad=True):
    sp = st.SparseLinear.from_dense(lin)
    if lin.bias is not None:
        lin.bias.requires_grad_(bias_grad)
        sp.bias.requires_grad_(bias_grad)
    lin.weight.requires_grad_(weight_grad)
    sp.values.requires_grad_(weight_grad)
    x = torch.randn(*lead, lin.in_features)
    xd = x.clone().requires_grad_(x_grad)
    xs = x.clone().requires_grad_(x_grad)
    yd, ys = lin(xd), sp(xs)
    assert ys.shape == yd.shape
    assert_close(ys, yd, "output")
    if yd.requires_grad:
        g = torch.randn_like(yd)
        yd.backward(g)
        ys.backward(g)
    return sp, xd, xs, yd, ys


@pytest.mark.parametrize("lead,in_f,out_f", SHAPES)
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_matches_nn_linear(isa, input_grad_strategy, lead, in_f, out_f, sparsity):
    lin = pruned_linear(in_f, out_f, sparsity)
    sp, xd, xs, yd, ys = run_both(lin, lead)
    assert_close(xs.grad, xd.grad, "input grad")
    mask = lin.weight.detach() != 0
    assert_close(sp.weight.detach(), lin.weight.detach(), "weight")
    dense_vgrad = lin.weight.grad[mask]
    assert_close(sp.values.grad, dense_vgrad, "values grad")
    assert_close(sp.bias.grad, lin.bias.grad, "bias grad")


@pytest.mark.parametrize("bias", [True, False])
def test_no_bias_and_empty_rows(isa, input_grad_strategy, bias):
    lin = pruned_linear(50, 40, 0.8, bias=bias, empty_rows=11)
    sp, xd, xs, yd, ys = run_both(lin, (23,))
    assert sp.bias is None if not bias else sp.bias is not None
    assert_close(xs.grad, xd.grad, "input grad")
    assert_close(sp.values.grad, lin.weight.grad[lin.weight.detach() != 0], "values grad")


@pytest.mark.parametrize(
    "x_grad,weight_grad,bias_grad",
    [
        (False, True, True),
        (True, False, False),
        (True, False, True),
        (False, False, True),
    ],
)
def test_only_needed_gradients(isa, x_grad, weight_grad, bias_grad):
    lin = pruned_linear(37, 29, 0.9)
    sp, xd, xs, yd, ys = run_both(
        lin, (19,), x_grad=x_grad, weight_grad=weight_grad, bias_grad=bias_grad
    )
    assert (xs.grad is None) == (not x_grad)
    assert (sp.values.grad is None) == (not weight_grad)
    assert (sp.bias.grad is None) == (not bias_grad)
    if x_grad:
        assert_close(xs.grad, xd.grad, "input grad")
    if weight_grad:
        assert_close(sp.values.grad, lin.weight.grad[lin.weight.detach() != 0], "values grad")
    if bias_grad:
        assert_close(sp.bias.grad, lin.bias.grad, "bias grad")


def test_no_grad_anywhere(isa):
    lin = pruned_linear(20, 10, 0.5)
    sp = st.SparseLinear.from_dense(lin)
    x = torch.randn(6, 20)
    with torch.no_grad():
        assert_close(sp(x), lin(x), "output")


def test_non_contiguous_input(isa):
    lin = pruned_linear(24, 18, 0.7)
    sp = st.SparseLinear.from_dense(lin)
    x = torch.randn(24, 40)[:, ::2].t()  # (20, 24), not contiguous
    assert not x.is_contiguous()
    assert_close(sp(x), lin(x), "output")
    x3 = torch.randn(5, 24, 3).transpose(1, 2)  # (5, 3, 24)
    assert_close(sp(x3), lin(x3), "output 3-D")


def test_empty_batch(isa):
    lin = pruned_linear(12, 8, 0.5)
    sp = st.SparseLinear.from_dense(lin)
    x = torch.randn(0, 12, requires_grad=True)
    y = sp(x)
    assert y.shape == (0, 8)
    y.sum().backward()
    assert x.grad.shape == (0, 12)
    assert torch.all(sp.values.grad == 0)


def test_bitwise_deterministic_across_runs_and_threads(isa, input_grad_strategy):
    lin = pruned_linear(300, 500, 0.9)
    sp = st.SparseLinear.from_dense(lin)
    x = torch.randn(70, 300, requires_grad=True)
    g = torch.randn(70, 500)
    results = []
    try:
        for n in (1, 2, 1, 2):
            st.set_num_threads(n)
            x.grad = None
            sp.zero_grad()
            y = sp(x)
            y.backward(g)
            results.append((y.detach().clone(), x.grad.clone(), sp.values.grad.clone()))
    finally:
        st.set_num_threads(None)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert torch.equal(a, b)


def test_isas_agree_with_scalar_reference():
    lin = pruned_linear(90, 77, 0.85)
    sp = st.SparseLinear.from_dense(lin)
    x = torch.randn(45, 90, requires_grad=True)
    g = torch.randn(45, 77)
    before = st.get_isa()
    outs = {}
    try:
        for isa in st.supported_isas():
            st.set_isa(isa)
            x.grad = None
            sp.zero_grad()
            y = sp(x)
            y.backward(g)
            outs[isa] = (y.detach().clone(), x.grad.clone(), sp.values.grad.clone())
    finally:
        st.set_isa(before)
    for isa, o in outs.items():
        for a, b, what in zip(o, outs["scalar"], ("output", "input grad", "values grad")):
            assert_close(a, b, f"{isa} vs scalar {what}", rtol=1e-5, atol=1e-6)


def test_training_steps_keep_pattern_and_match_dense(isa):
    """SGD on values equals SGD on a dense weight whose zeros are re-masked each step."""
    lin = pruned_linear(32, 16, 0.8)
    mask = lin.weight.detach() != 0
    sp = st.SparseLinear.from_dense(lin)
    opt_d = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    opt_s = torch.optim.SGD(sp.parameters(), lr=0.1, momentum=0.9)
    for _ in range(5):
        x = torch.randn(8, 32)
        for m, opt in ((lin, opt_d), (sp, opt_s)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()
        with torch.no_grad():
            lin.weight.mul_(mask)
    assert_close(sp.weight.detach(), lin.weight.detach(), "weights after training")
    assert sp.nnz == int(mask.sum())


def test_strategy_rule_picks_measured_winners():
    from sparsetrain.functional.linear import input_grad_strategy as pick

    assert pick(768, 3072, 117965, 256) == "scatter"
    assert pick(4096, 4096, 1677722, 32) == "scatter"
    assert pick(4096, 4096, 1677722, 64) == "csc"
    assert pick(4096, 4096, 1677722, 128) == "csc"
    assert pick(1024, 1024, 104858, 16) == "csc"


@pytest.mark.parametrize("nonfinite", [None, "x unread column", "x read column", "dy"])
def test_many_empty_columns_run_on_the_read_features_only(isa, input_grad_strategy, nonfinite):
    # 2000 inputs, 30 nonzeros: the kernels see only the columns a nonzero reads, and the
    # results (NaN / Inf included) are nn.Linear's.
    lin = pruned_linear(2000, 6, 0.9975)
    sp = st.SparseLinear.from_dense(lin)
    assert sp._index.in_cols is not None and sp._index.kernel_cols < 2000
    x = torch.randn(9, 2000)
    read = int(sp._index.in_cols[0])
    unread = next(c for c in range(2000) if c not in set(sp._index.in_cols.tolist()))
    if nonfinite == "x unread column":
        x[3, unread] = float("nan")
    elif nonfinite == "x read column":
        x[4, read] = float("inf")
    g = torch.randn(9, 6)
    if nonfinite == "dy":
        g[2, 1] = float("nan")
    xd, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    yd, ys = lin(xd), sp(xs)
    torch.testing.assert_close(ys, yd, equal_nan=True, rtol=1e-4, atol=1e-5)
    yd.backward(g)
    ys.backward(g)
    torch.testing.assert_close(xs.grad, xd.grad, equal_nan=True, rtol=1e-4, atol=1e-5)
    mask = lin.weight.detach() != 0
    torch.testing.assert_close(
        sp.values.grad, lin.weight.grad[mask], equal_nan=True, rtol=1e-4, atol=1e-5
    )


def test_building_a_wide_layer_costs_memory_for_its_nonzeros_not_its_inputs():
    # 2^26 inputs and 7 nonzeros: the pattern and its transpose are tiny, and so is a forward
    # + backward of one sample beyond the input and its gradient (2 x 256 MB).
    import subprocess
    import sys

    code = """
import resource, torch, sparsetrain as st
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
n = 2 ** 26
x = torch.zeros(1, n, requires_grad=True)
torch.zeros(1, n)  # the input gradient's size, touched once
before = peak()
layer = st.SparseLinear(n, 1024, sparsity=1 - 7 / (n * 1024))
built = peak() - before
layer(x).sum().backward()
print(layer.nnz, built, peak() - before)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    nnz, built, trained = (int(v) for v in out)
    assert nnz == 7
    assert built < 32 << 20, f"building took {built >> 20} MB"
    assert trained < (256 << 20) + (64 << 20), f"a step took {trained >> 20} MB"


@pytest.mark.parametrize("batch", [1, 16, 256, 257, 512, 1000, 2048, 4096])
def test_long_batch_major_rows_are_an_odd_number_of_lines(batch):
    """Rows read in slices get an odd number of vectors (no cache-set aliasing), never
    fewer elements than the batch and at most one vector of extra padding."""
    from sparsetrain import _C
    from sparsetrain.functional.linear import _padded

    p = _padded(batch)
    rounded = -(-batch // _C.BATCH_ALIGN) * _C.BATCH_ALIGN
    assert p % _C.BATCH_ALIGN == 0 and rounded <= p <= rounded + _C.BATCH_ALIGN
    if p > _C.BATCH_CHUNK:
        assert (p // _C.BATCH_ALIGN) % 2 == 1
    else:
        assert p == rounded


def test_input_grad_strategy_rule():
    from sparsetrain.functional.linear import input_grad_strategy

    # small batch: scatter while dXᵀ fits in cache and dYᵀ does not
    assert input_grad_strategy(768, 3072, 235_000, 256) == "scatter"
    assert input_grad_strategy(3072, 768, 235_000, 256) == "csc"
    # large batch: scatter for a 4x widening layer, csc otherwise
    assert input_grad_strategy(768, 3072, 118_000, 2064) == "scatter"
    assert input_grad_strategy(1024, 4096, 210_000, 4112) == "scatter"
    assert input_grad_strategy(768, 1536, 59_000, 2064) == "csc"
    assert input_grad_strategy(3072, 768, 118_000, 2064) == "csc"
    assert input_grad_strategy(768, 3072, 118_000, 512) == "csc"
    # bf16 has only csc (scatter would round every partial sum of dXᵀ)
    assert input_grad_strategy(768, 3072, 118_000, 2064, bf16=True) == "csc"

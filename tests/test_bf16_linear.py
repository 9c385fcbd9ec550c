"""SparseLinear in bfloat16: under torch.autocast("cpu", dtype=torch.bfloat16) and as a
bfloat16 model, on every ISA this machine has.

Tolerances, from bf16 rounding (8 significant bits: one rounding moves a value by at most
2^-8 of it) and float32 accumulation, with ``mag`` the sum of the absolute products (and bias)
behind each element, which bounds every partial and final sum:
- output: the kernel rounds the product sum to bf16 and rounds again after adding the bias,
  so |y - exact| <= 2 * 2^-8 * mag (+ float32 summation error, far smaller).
- input gradient: one bf16 rounding, |dx - exact| <= 2^-8 * mag.
- values and bias gradients: float32 sums of exact bf16 products, |err| <= 1e-5 * mag.
"exact" is the float64 product of the same bf16-rounded operands. Against dense PyTorch under
autocast, which rounds its results (gradients included) to bf16 once, the differences add up:
2^-7 * mag for the output and input gradient, 2^-8 * mag (+ ours) for the values gradient.
"""

import pytest
import torch
from torch import nn

import sparsetrain as st
from helpers import pruned_linear

BF16 = torch.bfloat16
ULP = 2.0**-8  # the most one bf16 rounding changes a value, relative to it

SHAPES = [
    # (tokens, in, out, sparsity): one token; odd sizes; rows longer than a kernel slice with
    # the odd-line padding; whole 16-vectors; very sparse with empty rows.
    (1, 5, 3, 0.5),
    (7, 33, 17, 0.7),
    (520, 70, 130, 0.9),
    (64, 48, 64, 0.8),
    (40, 200, 9, 0.97),
]


def within(actual, exact, mag, tol, what):
    err = (actual.double() - exact).abs()
    bound = tol * mag + 1e-30
    worst = (err / bound).max().item() if err.numel() else 0.0
    assert worst <= 1.0, f"{what}: error {worst:.2f}x the bound {tol:g} * mag"


def exact_reference(lin, x, g):
    """float64 forward and gradients of the bf16-rounded operands, with their magnitudes."""
    w = lin.weight.detach().to(BF16).double()
    b = lin.bias.detach().to(BF16).double()
    xb, gb = x.detach().to(BF16).double(), g.to(BF16).double()
    return {
        "y": xb @ w.t() + b,
        "y_mag": xb.abs() @ w.abs().t() + b.abs(),
        "dx": gb @ w,
        "dx_mag": gb.abs() @ w.abs(),
        "dw": gb.t() @ xb,
        "dw_mag": gb.abs().t() @ xb.abs(),
        "db": gb.sum(0),
        "db_mag": gb.abs().sum(0),
    }


@pytest.mark.parametrize("tokens,fin,fout,sparsity", SHAPES)
def test_autocast_matches_exact_and_dense(isa, tokens, fin, fout, sparsity):
    lin = pruned_linear(fin, fout, sparsity)
    sp = st.SparseLinear.from_dense(lin)
    x = torch.randn(tokens, fin, requires_grad=True)
    xd = x.detach().clone().requires_grad_()
    g = torch.randn(tokens, fout)
    with torch.autocast("cpu", dtype=BF16):
        y, yd = sp(x), lin(xd)
    assert y.dtype == yd.dtype == BF16
    y.backward(g)
    yd.backward(g)
    ref = exact_reference(lin, x, g)
    mask = lin.weight.detach() != 0
    within(y, ref["y"], ref["y_mag"], 2 * ULP, "output vs exact")
    within(y, yd.double(), ref["y_mag"], 4 * ULP, "output vs dense autocast")
    # x is a float32 leaf: autocast's cast hands its gradient back in float32.
    assert x.grad.dtype == torch.float32
    within(x.grad, ref["dx"], ref["dx_mag"], ULP, "input gradient vs exact")
    within(x.grad, xd.grad.double(), ref["dx_mag"], 2 * ULP, "input gradient vs dense")
    assert sp.values.grad.dtype == sp.bias.grad.dtype == torch.float32
    within(sp.values.grad, ref["dw"][mask], ref["dw_mag"][mask], 1e-5, "values gradient")
    within(sp.values.grad, lin.weight.grad[mask].double(), ref["dw_mag"][mask], ULP, "vs dense")
    within(sp.bias.grad, ref["db"], ref["db_mag"], 1e-5, "bias gradient")


def test_bf16_input_gradient_stays_bf16_and_3d_input(isa):
    lin = pruned_linear(24, 10, 0.8)
    sp = st.SparseLinear.from_dense(lin)
    x = torch.randn(3, 5, 24).to(BF16).requires_grad_()
    with torch.autocast("cpu", dtype=BF16):
        y = sp(x)
    assert y.shape == (3, 5, 10) and y.dtype == BF16
    g = torch.randn(3, 5, 10)
    y.backward(g)
    assert x.grad.dtype == BF16
    ref = exact_reference(lin, x.reshape(15, 24), g.reshape(15, 10))
    within(x.grad.reshape(15, 24), ref["dx"], ref["dx_mag"], ULP, "input gradient")


def test_pattern_reading_few_input_features(isa):
    # Most input features unread: the kernels run on the features the nonzeros read.
    lin = pruned_linear(300, 20, 0.5)
    with torch.no_grad():
        lin.weight[:, 10:290] = 0
    sp = st.SparseLinear.from_dense(lin)
    x = torch.randn(33, 300, requires_grad=True)
    g = torch.randn(33, 20)
    with torch.autocast("cpu", dtype=BF16):
        y = sp(x)
    y.backward(g)
    ref = exact_reference(lin, x, g)
    within(y, ref["y"], ref["y_mag"], 2 * ULP, "output")
    within(x.grad, ref["dx"], ref["dx_mag"], ULP, "input gradient")
    assert (x.grad[:, 10:290] == 0).all()


def test_bfloat16_model(isa):
    lin = pruned_linear(40, 24, 0.85)
    sp = st.SparseLinear.from_dense(lin).to(BF16)
    dense = lin.to(BF16)
    assert sp.values.dtype == sp.bias.dtype == BF16
    x = torch.randn(50, 40, dtype=BF16, requires_grad=True)
    xd = x.detach().clone().requires_grad_()
    g = torch.randn(50, 24, dtype=BF16)
    y, yd = sp(x), dense(xd)
    assert y.dtype == BF16
    y.backward(g)
    yd.backward(g)
    ref = exact_reference(lin, x, g)
    mask = dense.weight.detach() != 0
    within(y, ref["y"], ref["y_mag"], 2 * ULP, "output")
    within(y, yd.double(), ref["y_mag"], 4 * ULP, "output vs dense bf16")
    assert x.grad.dtype == sp.values.grad.dtype == sp.bias.grad.dtype == BF16
    within(x.grad, ref["dx"], ref["dx_mag"], ULP, "input gradient")
    # float32 sums, then one rounding into the bf16 parameters' gradients
    within(sp.values.grad, ref["dw"][mask], ref["dw_mag"][mask], ULP, "values gradient")
    within(sp.bias.grad, ref["db"], ref["db_mag"], ULP, "bias gradient")
    opt = torch.optim.SGD(sp.parameters(), lr=0.1)
    opt.step()  # trains in bf16
    assert sp.values.dtype == BF16 and torch.isfinite(sp(x)).all()


def test_dtype_mismatch_outside_autocast_names_the_layer():
    sp = st.SparseLinear.from_dense(pruned_linear(12, 7, 0.5)).to(BF16)
    with pytest.raises(TypeError, match=r"SparseLinear\(12->7\).*float32.*bfloat16"):
        sp(torch.randn(5, 12))
    fp32 = st.SparseLinear(12, 7, sparsity=0.5)
    with pytest.raises(TypeError, match=r"SparseLinear\(12->7\).*bfloat16.*float32"):
        fp32(torch.randn(5, 12, dtype=BF16))


def test_nonfinite_inputs_and_gradients_as_dense_bf16(isa):
    lin = pruned_linear(16, 9, 0.7)
    sp = st.SparseLinear.from_dense(lin)
    x = torch.randn(6, 16)
    x[1, 3], x[4, 0] = float("nan"), float("inf")
    with torch.autocast("cpu", dtype=BF16):
        y, yd = sp(x), lin(x)
    assert y.dtype == BF16
    assert torch.equal(torch.isnan(y), torch.isnan(yd))
    finite = ~torch.isnan(yd)
    assert torch.allclose(y[finite].float(), yd[finite].float(), rtol=4 * ULP, atol=1e-2)
    # A non-finite output gradient reaches the input gradient as in the dense layer.
    xg = torch.randn(6, 16, requires_grad=True)
    xgd = xg.detach().clone().requires_grad_()
    g = torch.randn(6, 9)
    g[2, 1] = float("inf")
    with torch.autocast("cpu", dtype=BF16):
        sp(xg).backward(g)
        lin(xgd).backward(g)
    assert torch.equal(torch.isnan(xg.grad), torch.isnan(xgd.grad))
    assert torch.equal(torch.isinf(xg.grad), torch.isinf(xgd.grad))


def test_autocast_float16_keeps_the_float32_path():
    sp = st.SparseLinear.from_dense(pruned_linear(12, 7, 0.5))
    with torch.autocast("cpu", dtype=torch.float16):
        y = sp(torch.randn(5, 12, dtype=torch.float16))
    assert y.dtype == torch.float32


def test_training_under_autocast_tracks_float32():
    # A small regression trained sparse under bf16 autocast and in float32 ends close.
    torch.manual_seed(1)
    teacher = torch.randn(32, 8)
    x = torch.randn(256, 32)
    target = x @ teacher
    losses = {}
    for mode in ("fp32", "bf16"):
        torch.manual_seed(2)
        model = st.SparseLinear.from_dense(pruned_linear(32, 8, 0.5))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(200):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=BF16, enabled=mode == "bf16"):
                loss = nn.functional.mse_loss(model(x).float(), target)
            loss.backward()
            opt.step()
        losses[mode] = loss.item()
    assert losses["bf16"] < 1.5 * losses["fp32"] + 1e-2, losses


def test_runtime_info_names_the_bf16_path():
    info = st.runtime_info()
    assert info["isa"] in info["bf16"]


def test_from_dense_and_to_dense_keep_bfloat16():
    lin = pruned_linear(20, 12, 0.8).to(BF16)
    sp = st.SparseLinear.from_dense(lin)
    assert sp.values.dtype == sp.bias.dtype == BF16
    back = sp.to_dense()
    assert back.weight.dtype == BF16 and torch.equal(back.weight, lin.weight)
    assert torch.equal(back.bias, lin.bias)
    # convolutions keep float32 parameters (they have no bf16 kernels)
    conv = nn.Conv2d(4, 4, 3).to(BF16)
    assert st.SparseConv2d.from_dense(conv).values.dtype == torch.float32


def test_sparsify_a_bfloat16_model():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16), nn.Conv2d(1, 2, 3)).to(
        BF16
    )
    st.magnitude_prune(model, 0.9, scope="layer")
    x = torch.randn(40, 32, dtype=BF16)
    ref = model[:3](x)
    report = st.sparsify(model, example_inputs=None, min_sparsity=0.5)
    assert isinstance(model[0], st.SparseLinear) and isinstance(model[2], st.SparseLinear)
    assert model[0].values.dtype == BF16
    rows = {r.name: r for r in report.layers}
    assert not rows["3"].swapped and "bfloat16" in rows["3"].reason  # said, not skipped
    y = model[:3](x)
    assert y.dtype == BF16
    assert torch.allclose(y.float(), ref.float(), rtol=2e-2, atol=2e-2)
    y.float().square().sum().backward()
    assert model[0].values.grad.dtype == BF16


def test_kernels_refuse_mixed_storage_types():
    # The activation buffers' dtype picks the kernel; every other buffer must match it.
    from sparsetrain import _C

    u16 = lambda t: t.view(torch.uint16).numpy()  # noqa: E731 (a bfloat16 tensor's bits)
    x16 = torch.zeros(4, 16, dtype=BF16)
    x32 = torch.zeros(4, 16)
    ptr = torch.tensor([0, 1], dtype=torch.int64).numpy()
    idx = torch.tensor([0], dtype=torch.int32).numpy()
    val = torch.ones(1).numpy()
    with pytest.raises(ValueError, match="c: expected dtype uint16"):
        _C.spmm(ptr=ptr, idx=idx, values=val, pos=None, scratch=None, b=u16(x16),
                c=torch.zeros(1, 16).numpy(), nthreads=1)  # fmt: skip
    with pytest.raises(ValueError, match="b: expected dtype uint16"):
        _C.sddmm(ptr=ptr, idx=idx, a=u16(x16[:1]), b=x32.numpy(), out=val.copy(), nthreads=1)
    with pytest.raises(ValueError, match="dst: expected dtype uint16"):
        _C.pack(src=u16(x16), dst=torch.zeros(16, 16).numpy(), nthreads=1)
    with pytest.raises(ValueError, match="bias: expected dtype uint16"):
        _C.unpack(src=u16(x16), dst=u16(torch.zeros(16, 4, dtype=BF16)),
                  bias=torch.zeros(4).numpy(), nthreads=1)  # fmt: skip
    with pytest.raises(ValueError, match="sums: expected dtype float32"):
        _C.pack(src=u16(x16), dst=u16(torch.zeros(16, 16, dtype=BF16)), nthreads=1,
                sums=u16(torch.zeros(16, dtype=BF16)))  # fmt: skip


def test_sparsify_times_layers_in_the_callers_autocast(monkeypatch):
    # Called inside bf16 autocast, sparsify's dense-vs-sparse timing runs both in bf16 (so it
    # decides for bf16 training); outside, in float32.
    from sparsetrain import surgery

    seen = []

    def record(module, x, repeats=5):
        seen.append((type(module).__name__, module(x).dtype))
        return 1.0 if isinstance(module, st.SparseLinear) else 2.0

    monkeypatch.setattr(surgery, "_time_step", record)
    for autocast, dtype in ((True, BF16), (False, torch.float32)):
        seen.clear()
        model = nn.Sequential(pruned_linear(32, 16, 0.9))
        with torch.autocast("cpu", dtype=BF16, enabled=autocast):
            report = st.sparsify(model, example_inputs=torch.randn(8, 32), min_sparsity=0.5)
        assert report.swapped == ["0"]
        assert seen == [("Linear", dtype), ("SparseLinear", dtype)]

"""Property tests (hypothesis): random layers against dense PyTorch, and random corruptions of
sparsity patterns, which must raise a clear ValueError and never crash or load.

Examples are derandomized (the same every run, so CI is reproducible); set
SPARSETRAIN_FUZZ_RANDOM=1 to explore new ones and SPARSETRAIN_FUZZ_SCALE=<k> for k times as many.
"""

import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as hst
from torch import nn

import sparsetrain as st
from sparsetrain import formats
from sparsetrain.formats.conv import ConvGeometry, conv_index, direct_index
from sparsetrain.functional.conv_layouts import conv_grads_offsets, grads_args, spmm_offsets

SCALE = float(os.environ.get("SPARSETRAIN_FUZZ_SCALE", "1"))


def fuzz(n):
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        database=None,
        derandomize=not os.environ.get("SPARSETRAIN_FUZZ_RANDOM"),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def close(actual, expected, what):
    actual, expected = actual.detach(), expected.detach()
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(
        actual, expected, rtol=1e-4, atol=2e-5 * scale, msg=lambda m: f"{what}: {m}"
    )


def prune_(dense, sparsity, gen):
    with torch.no_grad():
        dense.weight.mul_(torch.rand(dense.weight.shape, generator=gen) >= sparsity)
    return dense


def check_against_dense(sp, dense, x, gen):
    x = x.requires_grad_()
    xd = x.detach().clone().requires_grad_()
    y, yd = sp(x), dense(xd)
    close(y, yd, "output")
    g = torch.randn(yd.shape, generator=gen)
    y.backward(g)
    yd.backward(g)
    close(x.grad, xd.grad, "input gradient")
    mask = dense.weight.detach() != 0
    close(sp.values.grad, dense.weight.grad[mask], "values gradient")
    if dense.bias is not None:
        close(sp.bias.grad, dense.bias.grad, "bias gradient")


class Runtime:
    """Run with an ISA and a kernel thread count, restoring both."""

    def __init__(self, isa, threads):
        self.isa, self.threads = isa, threads

    def __enter__(self):
        self.before = st.get_isa()
        st.set_isa(self.isa)
        st.set_num_threads(self.threads)

    def __exit__(self, *exc):
        st.set_isa(self.before)
        st.set_num_threads(None)


ISAS = hst.sampled_from(st.supported_isas())
SPARSITY = hst.sampled_from([0.0, 0.3, 0.7, 0.9, 0.97, 1.0])


# -- random layers versus dense PyTorch -------------------------------------------------------
@fuzz(150)
@given(
    in_f=hst.integers(0, 40),
    out_f=hst.integers(0, 40),
    lead=hst.lists(hst.integers(0, 21), max_size=2),
    sparsity=SPARSITY,
    bias=hst.booleans(),
    isa=ISAS,
    threads=hst.integers(1, 3),
    input_grad=hst.sampled_from([None, "csc", "scatter"]),
    seed=hst.integers(0, 2**31),
)
def test_linear_matches_dense(in_f, out_f, lead, sparsity, bias, isa, threads, input_grad, seed):
    from sparsetrain import tuning

    gen = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nn.Linear warns about zero-element init
        dense = prune_(nn.Linear(in_f, out_f, bias=bias), sparsity, gen)
    sp = st.SparseLinear.from_dense(dense)
    tuning.INPUT_GRAD_STRATEGY = input_grad
    try:
        with Runtime(isa, threads):
            check_against_dense(sp, dense, torch.randn(*lead, in_f, generator=gen), gen)
    finally:
        tuning.INPUT_GRAD_STRATEGY = None


@fuzz(120)
@given(
    in_f=hst.integers(0, 40),
    out_f=hst.integers(0, 40),
    lead=hst.lists(hst.integers(0, 40), max_size=2),
    sparsity=SPARSITY,
    bias=hst.booleans(),
    isa=ISAS,
    threads=hst.integers(1, 3),
    seed=hst.integers(0, 2**31),
)
def test_linear_under_bf16_autocast_matches_exact(
    in_f, out_f, lead, sparsity, bias, isa, threads, seed
):
    # Against float64 on the same bf16-rounded operands, with the bounds of
    # tests/test_bf16_linear.py: output 2 bf16 roundings, input gradient 1, values and bias
    # gradients float32 sums (mag: the sum of the absolute products behind each element).
    bf16 = torch.bfloat16
    gen = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense = prune_(nn.Linear(in_f, out_f, bias=bias), sparsity, gen)
    sp = st.SparseLinear.from_dense(dense)
    x = torch.randn(*lead, in_f, generator=gen, requires_grad=True)
    with Runtime(isa, threads):
        with torch.autocast("cpu", dtype=bf16):
            y = sp(x)
        assert y.dtype == bf16 and y.shape == (*lead, out_f)
        g = torch.randn(y.shape, generator=gen)
        y.backward(g)
    w = dense.weight.detach().to(bf16).double()
    tokens = math.prod(lead)
    xb = x.detach().reshape(tokens, in_f).to(bf16).double()
    gb = g.reshape(tokens, out_f).to(bf16).double()
    b = dense.bias.detach().to(bf16).double() if bias else torch.zeros(out_f, dtype=torch.float64)

    def within(actual, exact, mag, tol, what):
        err = (actual.double().reshape(exact.shape) - exact).abs()
        assert bool((err <= tol * mag + 1e-30).all()), f"{what}: max error {err.max().item()}"

    ulp = 2.0**-8
    within(y, xb @ w.t() + b, xb.abs() @ w.abs().t() + b.abs(), 2 * ulp, "output")
    within(x.grad, gb @ w, gb.abs() @ w.abs(), ulp, "input gradient")
    mask = dense.weight.detach() != 0
    within(sp.values.grad, (gb.t() @ xb)[mask], (gb.abs().t() @ xb.abs())[mask], 1e-5, "values")
    if bias:
        within(sp.bias.grad, gb.sum(0), gb.abs().sum(0), 1e-5, "bias gradient")


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_from_dense_with_zero_outputs():
    dense = nn.Linear(3, 0)
    sp = st.SparseLinear.from_dense(dense)
    assert torch.equal(sp(torch.randn(2, 3)), dense(torch.randn(2, 3)))


@hst.composite
def conv_configs(draw):
    groups = draw(hst.sampled_from([1, 1, 2, 3]))
    cfg = dict(
        in_channels=groups * draw(hst.integers(1, 3)),
        out_channels=groups * draw(hst.integers(1, 3)),
        groups=groups,
        kernel_size=(draw(hst.integers(1, 4)), draw(hst.integers(1, 4))),
        stride=(draw(hst.integers(1, 3)), draw(hst.integers(1, 3))),
        dilation=(draw(hst.integers(1, 2)), draw(hst.integers(1, 2))),
        bias=draw(hst.booleans()),
        padding_mode=draw(hst.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"])),
    )
    choices = ["pair", "valid"] + (["same"] if cfg["stride"] == (1, 1) else [])
    kind = draw(hst.sampled_from(choices))
    cfg["padding"] = (
        (draw(hst.integers(0, 2)), draw(hst.integers(0, 2))) if kind == "pair" else kind
    )
    return cfg


@fuzz(250)
@given(
    cfg=conv_configs(),
    batch=hst.sampled_from([None, 0, 1, 2, 5, 16, 17]),
    hw=hst.tuples(hst.integers(1, 11), hst.integers(1, 11)),
    sparsity=SPARSITY,
    strategy=hst.sampled_from(["direct", "plane", "batch"]),
    isa=ISAS,
    threads=hst.integers(1, 2),
    channels_last=hst.booleans(),
    seed=hst.integers(0, 2**31),
)
def test_conv_matches_dense(cfg, batch, hw, sparsity, strategy, isa, threads, channels_last, seed):
    gen = torch.Generator().manual_seed(seed)
    dense = prune_(nn.Conv2d(**cfg), sparsity, gen)
    shape = ((batch,) if batch is not None else ()) + (cfg["in_channels"],) + hw
    x = torch.randn(shape, generator=gen)
    try:
        expected = dense(x)
    except RuntimeError:
        assume(False)  # a shape nn.Conv2d itself rejects (too small for kernel or padding)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    sp = st.SparseConv2d.from_dense(dense)
    assume(strategy in sp.strategies)  # "direct" only where it runs (strided layers refuse it)
    sp.strategy = strategy
    with Runtime(isa, threads):
        assert sp(x).shape == expected.shape
        check_against_dense(sp, dense, x, gen)


# -- corrupted patterns -----------------------------------------------------------------------
def rows_with(ptr, min_len):
    counts = ptr[1:] - ptr[:-1]
    return [r for r in range(len(counts)) if counts[r] >= min_len]


def corrupt(kind, sd, cols, draw):
    """Returns the corrupted copy of the state_dict, or None if `kind` does not apply."""
    sd = {k: v.clone() for k, v in sd.items()}
    ptr, idx = sd["row_ptr"], sd["col_idx"]
    nnz, rows = idx.numel(), ptr.numel() - 1
    pick = lambda n: draw(hst.integers(0, n - 1))  # noqa: E731
    if kind == "ptr_short":
        sd["row_ptr"] = ptr[:-1]
    elif kind == "ptr_long":
        sd["row_ptr"] = torch.cat([ptr, ptr[-1:]])
    elif kind == "ptr_empty":
        sd["row_ptr"] = ptr[:0]
    elif kind == "ptr_rank0":
        sd["row_ptr"] = ptr[0].clone()
    elif kind == "ptr_rank2":
        sd["row_ptr"] = ptr.view(1, -1)
    elif kind == "ptr_dtype":
        sd["row_ptr"] = ptr.to(
            draw(hst.sampled_from([torch.int32, torch.float32, torch.float64, torch.int16]))
        )
    elif kind == "ptr_start":
        sd["row_ptr"] = ptr + draw(hst.sampled_from([1, -1, 2**40]))
    elif kind == "ptr_end":
        ptr[-1] += draw(hst.sampled_from([1, -1, 2**40, -(2**40)]))
    elif kind == "ptr_decreasing":
        if rows < 2:
            return None
        r = pick(rows - 1) + 1  # an inner entry
        ptr[r] = draw(hst.sampled_from([-1, int(ptr[-1]) + 1, int(ptr[r - 1]) - 1, 2**62]))
        if bool((ptr[1:] >= ptr[:-1]).all()) and ptr[0] == 0 and 0 <= ptr[r] <= nnz:
            return None  # still monotone by chance
    elif kind == "idx_short":
        if nnz == 0:
            return None
        sd["col_idx"] = idx[:-1]
    elif kind == "idx_long":
        sd["col_idx"] = torch.cat([idx, idx.new_zeros(1)])
    elif kind == "idx_rank2":
        sd["col_idx"] = idx.view(1, -1)
    elif kind == "idx_rank0":
        sd["col_idx"] = idx.new_tensor(0).squeeze()
    elif kind == "idx_dtype":
        sd["col_idx"] = idx.to(
            draw(
                hst.sampled_from([torch.int64, torch.int16, torch.uint8, torch.float32, torch.bool])
            )
        )
    elif kind in ("idx_high", "idx_negative"):
        if nnz == 0:
            return None
        bad = (
            draw(hst.sampled_from([cols, cols + 1, 2**31 - 1]))
            if kind == "idx_high"
            else draw(hst.sampled_from([-1, -cols, -(2**31)]))
        )
        idx[pick(nnz)] = bad
    elif kind in ("idx_unsorted", "idx_duplicate"):
        candidates = rows_with(ptr, 2)
        if not candidates:
            return None
        r = draw(hst.sampled_from(candidates))
        j = int(ptr[r]) + pick(int(ptr[r + 1] - ptr[r]) - 1)
        if kind == "idx_unsorted":
            idx[j], idx[j + 1] = idx[j + 1].clone(), idx[j].clone()
        else:
            idx[j + 1] = idx[j]
    elif kind == "values_short":
        if nnz == 0:
            return None
        sd["values"] = sd["values"][:-1]
    elif kind == "values_long":
        sd["values"] = torch.cat([sd["values"], sd["values"].new_zeros(1)])
    elif kind == "values_rank2":
        sd["values"] = sd["values"].view(1, -1)
    elif kind == "values_rank0":
        sd["values"] = sd["values"].new_tensor(1.0)
    else:
        raise AssertionError(kind)
    return sd


KINDS = [
    "ptr_short",
    "ptr_long",
    "ptr_empty",
    "ptr_rank0",
    "ptr_rank2",
    "ptr_dtype",
    "ptr_start",
    "ptr_end",
    "ptr_decreasing",
    "idx_short",
    "idx_long",
    "idx_rank2",
    "idx_rank0",
    "idx_dtype",
    "idx_high",
    "idx_negative",
    "idx_unsorted",
    "idx_duplicate",
    "values_short",
    "values_long",
    "values_rank2",
    "values_rank0",
]


@hst.composite
def small_layers(draw):
    sparsity = draw(hst.sampled_from([0.0, 0.5, 0.8, 1.0]))
    gen = torch.Generator().manual_seed(draw(hst.integers(0, 2**31)))  # patterns replayable
    if draw(hst.booleans()):
        layer = st.SparseLinear(
            draw(hst.integers(1, 12)), draw(hst.integers(1, 12)), sparsity=sparsity, generator=gen
        )
    else:
        g = draw(hst.sampled_from([1, 2]))
        layer = st.SparseConv2d(
            2 * g,
            g * draw(hst.integers(1, 3)),
            draw(hst.integers(1, 3)),
            groups=g,
            padding=1,
            sparsity=sparsity,
            generator=gen,
            strategy=draw(hst.sampled_from(["direct", "plane", "batch"])),
        )
    return layer


def probe(layer):
    x = (
        torch.randn(3, layer.in_features)
        if isinstance(layer, st.SparseLinear)
        else torch.randn(2, layer.in_channels, 5, 5)
    )
    return x, layer(x)


@fuzz(300)
@given(source=small_layers(), kind=hst.sampled_from(KINDS), data=hst.data())
def test_corrupted_state_dict_is_rejected_and_leaves_the_layer_intact(source, kind, data):
    bad = corrupt(kind, source.state_dict(), source._cols, data.draw)
    assume(bad is not None)
    target = (
        st.SparseLinear(source.in_features, source.out_features, sparsity=0.5)
        if isinstance(source, st.SparseLinear)
        else st.SparseConv2d(
            source.in_channels,
            source.out_channels,
            source.kernel_size,
            groups=source.groups,
            padding=1,
            sparsity=0.5,
            strategy=source.strategy,
        )
    )
    x, y = probe(target)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=r"row_ptr|col_idx|values|row pointer|column|pattern"):
        target.load_state_dict(bad)
    after = target.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), f"{k} changed by a rejected load"
    assert torch.equal(target(x), y)  # still works, same numbers
    target.load_state_dict(source.state_dict())  # and a good checkpoint still loads
    assert torch.equal(target.weight, source.weight)


def test_state_dict_values_that_are_not_a_tensor():
    sd = st.SparseLinear(6, 4, sparsity=0.5).state_dict()
    sd["values"] = sd["values"].tolist()
    with pytest.raises(ValueError, match="values"):
        st.SparseLinear(6, 4, sparsity=0.5).load_state_dict(sd)


@pytest.mark.parametrize("missing", ["col_idx", "values"])
def test_partial_pattern_is_rejected_even_when_not_strict(missing):
    a, b = st.SparseLinear(6, 4, sparsity=0.5), st.SparseLinear(6, 4, sparsity=0.5)
    sd = {k: v for k, v in a.state_dict().items() if k != missing}
    before = {k: v.clone() for k, v in b.state_dict().items()}
    with pytest.raises(ValueError):
        b.load_state_dict(sd, strict=False)
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())


# -- sparsetrain.formats on arbitrary input ---------------------------------------------------
def reference_valid(ptr, idx, rows, cols):
    """Plain-Python statement of a well-formed CSR index."""
    if len(ptr) != rows + 1 or ptr[0] != 0 or ptr[-1] != len(idx):
        return False
    for r in range(rows):
        if ptr[r + 1] < ptr[r]:
            return False
        row = idx[ptr[r] : ptr[r + 1]]
        if any(c < 0 or c >= cols for c in row) or any(b <= a for a, b in zip(row, row[1:])):
            return False
    return True


@hst.composite
def patterns(draw, valid_only=False):
    """A CSR index over (rows, cols): mostly well-formed, often with one random defect."""
    rows, cols = draw(hst.integers(0, 6)), draw(hst.integers(0, 6))
    dense = draw(
        hst.lists(
            hst.lists(hst.booleans(), min_size=cols, max_size=cols), min_size=rows, max_size=rows
        )
    )
    ptr, idx = [0], []
    for row in dense:
        idx += [c for c, on in enumerate(row) if on]
        ptr.append(len(idx))
    if not valid_only and draw(hst.booleans()):
        target = draw(hst.sampled_from(["ptr", "idx"]))
        seq = ptr if target == "ptr" else idx
        op = draw(hst.sampled_from(["set", "drop", "add"]))
        if op == "set" and seq:
            seq[draw(hst.integers(0, len(seq) - 1))] = draw(hst.integers(-3, 9))
        elif op == "drop" and seq:
            seq.pop(draw(hst.integers(0, len(seq) - 1)))
        else:
            seq.insert(draw(hst.integers(0, len(seq))), draw(hst.integers(-3, 9)))
    return (torch.tensor(ptr, dtype=torch.int64), torch.tensor(idx, dtype=torch.int32), rows, cols)


@fuzz(400)
@given(p=patterns())
def test_validate_csr_agrees_with_a_reference(p):
    ptr, idx, rows, cols = p
    ok = reference_valid(ptr.tolist(), idx.tolist(), rows, cols)
    values = torch.randn(idx.numel())
    functions = [
        lambda: formats.validate_csr(ptr, idx, rows, cols),
        lambda: formats.build_index(ptr, idx, rows, cols),
        lambda: formats.csr_to_dense(ptr, idx, values, rows, cols),
    ]
    if rows >= 0 and len(ptr) == rows + 1:  # csr_transpose takes the row count from ptr
        functions.append(lambda: formats.csr_transpose(ptr, idx, cols))
    for f in functions:
        if ok:
            f()
        else:
            with pytest.raises(ValueError):
                f()


@fuzz(150)
@given(p=patterns(valid_only=True))
def test_transpose_and_dense_round_trip(p):
    ptr, idx, rows, cols = p
    values = torch.randn(idx.numel())
    dense = formats.csr_to_dense(ptr, idx, values, rows, cols)
    t = formats.csr_transpose(ptr, idx, cols)
    # the transpose read as CSR of the (cols, rows) matrix is dense.T, values via pos
    csc_values = torch.empty_like(values)
    csc_values[t.pos] = values
    assert torch.equal(formats.csr_to_dense(t.ptr, t.idx, csc_values, cols, rows), dense.T)
    r_ptr, r_idx, r_val = formats.csr_from_dense(dense)
    if bool((values != 0).all()):
        assert torch.equal(r_ptr, ptr) and torch.equal(r_idx, idx) and torch.equal(r_val, values)


@fuzz(150)
@given(
    p=patterns(),
    kernel=hst.tuples(hst.integers(1, 3), hst.integers(1, 3)),
    hw=hst.tuples(hst.integers(3, 8), hst.integers(3, 8)),
)
def test_conv_indices_reject_malformed_patterns(p, kernel, hw):
    ptr, idx, rows, cols = p
    # A geometry whose weight is rows x (cin * kh * kw); cols from the pattern when it fits.
    kh, kw = kernel
    cin = max(1, cols // (kh * kw)) if cols else 1
    g = ConvGeometry(cin, max(rows, 1), kernel, (1, 1), (1, 1), (1, 1, 1, 1), 1)
    ok = reference_valid(ptr.tolist(), idx.tolist(), g.out_channels, g.cols)
    for f in (conv_index, direct_index):
        if ok:
            f(g, ptr, idx, *hw)
        else:
            with pytest.raises(ValueError):
                f(g, ptr, idx, *hw)


BAD_ARGS = [
    None,
    "3",
    2.5,
    -1,
    0,
    True,
    [3],
    (1, 2, 3),
    (0, 1),
    (1, -1),
    float("nan"),
    2**70,
    "same",
    "reflect",
]
CONV_ARGS = [
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "sparsity",
    "padding_mode",
    "strategy",
]


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize(
    "arg,value", [pytest.param(a, v, id=f"{a}={v!r}") for a in CONV_ARGS for v in BAD_ARGS]
)
def test_conv_constructor_rejects_bad_arguments_clearly(arg, value):
    """A bad argument is a ValueError / TypeError naming SparseConv2d, at construction or at
    the first call; what is accepted is what nn.Conv2d accepts, and computes the same."""
    kwargs = dict(
        in_channels=4,
        out_channels=4,
        kernel_size=3,
        stride=1,
        padding=1,
        dilation=1,
        groups=1,
        sparsity=0.5,
        padding_mode="zeros",
        strategy="plane",
    )
    kwargs[arg] = value
    try:
        sp = st.SparseConv2d(**kwargs)
    except (ValueError, TypeError) as e:
        assert "SparseConv2d" in str(e), f"unclear error: {e!r}"
        return
    assert 0.0 <= float(kwargs["sparsity"]) <= 1.0
    dense = nn.Conv2d(**{k: v for k, v in kwargs.items() if k not in ("sparsity", "strategy")})
    with torch.no_grad():
        dense.weight.copy_(sp.weight)
        if dense.bias is not None:
            dense.bias.copy_(sp.bias)
    x = torch.randn(2, kwargs["in_channels"] if isinstance(kwargs["in_channels"], int) else 4, 9, 9)
    try:
        expected = dense(x)
    except Exception:  # noqa: BLE001 (whatever nn.Conv2d raises, the sparse layer must say why)
        expected = None
    if kwargs["in_channels"] == 0:  # nn.Conv2d returns a 0-channel tensor here; the sum is bias
        assert torch.equal(sp(x), sp.bias.view(1, -1, 1, 1).expand(2, 4, 9, 9))
    elif kwargs["out_channels"] == 0:  # nn.Conv2d raises; an empty output is the right answer
        assert sp(x).shape == (2, 0, 9, 9)
    elif expected is None:
        with pytest.raises((ValueError, TypeError), match="SparseConv2d"):
            sp(x)
    else:
        close(sp(x), expected, f"{arg}={value!r}")


@pytest.mark.parametrize(
    "arg,value",
    [
        pytest.param(a, v, id=f"{a}={v!r}")
        for a in ("in_features", "out_features", "sparsity")
        for v in BAD_ARGS + [1.5, -0.1]
        if not (a == "sparsity" and v in (0, True)) and not (a != "sparsity" and v == 0)
    ],
)
def test_linear_constructor_rejects_bad_arguments_clearly(arg, value):
    kwargs = dict(in_features=5, out_features=4, sparsity=0.5)
    kwargs[arg] = value
    with pytest.raises((ValueError, TypeError), match=r"SparseLinear"):
        st.SparseLinear(**kwargs)


@fuzz(40)
@given(
    rows=hst.integers(-2, 30),
    cols=hst.integers(-2, 30),
    density=hst.sampled_from([0.0, 0.1, 0.5, 1.0, -0.1, 1.1, float("nan")]),
    seed=hst.integers(0, 2**31),
)
def test_random_csr(rows, cols, density, seed):
    gen = torch.Generator().manual_seed(seed)
    if rows < 0 or cols < 0 or not (0.0 <= density <= 1.0):
        with pytest.raises(ValueError):
            formats.random_csr(rows, cols, density, generator=gen)
        return
    ptr, idx = formats.random_csr(rows, cols, density, generator=gen)
    formats.validate_csr(ptr, idx, rows, cols)
    assert idx.numel() == round(density * (rows * cols))


# -- prune_values --------------------------------------------------------------------------
@fuzz(80)
@given(layer=small_layers(), data=hst.data())
def test_prune_values_with_random_masks(layer, data):
    nnz = layer.nnz
    keep = torch.tensor(
        data.draw(hst.lists(hst.booleans(), min_size=nnz, max_size=nnz)), dtype=torch.bool
    )
    expected = layer.weight.detach().clone()
    mask = expected != 0
    flat = expected[mask]
    flat[~keep] = 0
    expected[mask] = flat
    x, _ = probe(layer)
    layer.prune_values(keep if data.draw(hst.booleans()) else keep.tolist())
    assert layer.nnz == int(keep.sum())
    assert torch.equal(layer.weight.detach(), expected)
    close(layer(x), layer.to_dense()(x), "after pruning")
    wrong = data.draw(hst.sampled_from([nnz + 1, max(nnz - 1, 0) if nnz else 1]))
    if wrong != layer.nnz:
        with pytest.raises(ValueError, match="keep"):
            layer.prune_values(torch.ones(wrong, dtype=torch.bool))


# -- big patterns without big memory --------------------------------------------------------
def test_random_csr_of_a_huge_sparse_matrix_needs_memory_for_the_nonzeros_only():
    rows, cols = 200_000, 100_000  # 2e10 positions: a dense permutation would need 160 GB
    ptr, idx = formats.random_csr(rows, cols, 2.5e-5, generator=torch.Generator().manual_seed(1))
    assert idx.numel() == 500_000
    formats.validate_csr(ptr, idx, rows, cols)
    # roughly uniform: every tenth of the rows and of the columns gets its share
    r = torch.repeat_interleave(torch.arange(rows), ptr[1:] - ptr[:-1])
    for v, n in ((r, rows), (idx.to(torch.int64), cols)):
        share = torch.bincount(v * 10 // n, minlength=10).double() / idx.numel()
        assert torch.all((share - 0.1).abs() < 0.01), share


def test_numpy_and_lists_are_rejected_with_value_error():
    ptr, idx = np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int32)
    with pytest.raises(ValueError, match="tensor"):
        formats.validate_csr(ptr, idx, 1, 1)
    with pytest.raises(ValueError, match="tensor"):
        formats.csr_transpose([0, 1], [0], 1)


# -- 64-bit offsets in the index building, and bounds checks that cannot overflow -------------
def test_conv_index_offsets_beyond_2_to_31():
    """Offsets of a few nonzeros of a layer whose packed input has ~2^33 pixels per image: only
    the index is built (no activations), and checked against plain Python integers."""
    g = ConvGeometry(64, 512, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 1)
    H = W = 8190
    rows = g.out_channels
    ptr = torch.zeros(rows + 1, dtype=torch.int64)
    ptr[-2], ptr[-1] = 0, 2  # the last output channel holds the only two nonzeros
    idx = torch.tensor([5, g.cols - 1], dtype=torch.int32)  # (ci 0, tap 1,2), (ci 63, tap 2,2)
    ci = conv_index(g, ptr, idx, H, W)
    s = ci.shape
    assert s.phases * s.plane * g.in_channels > 2**31
    expected = []
    for c in (5, g.cols - 1):
        cin, tap = divmod(c, 9)
        th, tw = divmod(tap, 3)
        phase = (th % 2) * 2 + tw % 2
        expected.append((cin * 4 + phase) * s.plane + (th // 2) * s.Wq + tw // 2)
    assert ci.off.tolist() == expected and max(expected) > 2**31
    # transposed offsets: output channel 511 of the bordered gradient
    shifts = [e - (e // s.plane) * s.plane for e in expected]
    t_expected = sorted(
        (expected[k] // s.plane, 511 * s.dy_len + s.margin - shifts[k]) for k in range(2)
    )
    assert ci.t_off.tolist() == [t for _, t in t_expected] and t_expected[0][1] > 2**31

    d = direct_index(ConvGeometry(64, 512, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1), ptr, idx, H, W)
    assert d.plane.tolist() == [0, 63 * H * W] and 63 * H * W > 2**31
    assert d.t_plane.tolist() == [511 * H * W] * 2 and 511 * H * W > 2**32


def test_layout_strides_beyond_2_to_31_are_exact():
    """The kernels' strides for a batch of 64 such images: Python integers, passed as int64."""
    from sparsetrain.functional.conv_layouts import OffsetLayout

    g = ConvGeometry(64, 512, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1)
    ptr = torch.zeros(513, dtype=torch.int64)
    ptr[-1] = 1
    idx = torch.tensor([4], dtype=torch.int32)
    index = conv_index(g, ptr, idx, 4096, 4096)
    for name in ("plane", "batch"):
        lay = OffsetLayout(g, index, 64, name)
        assert lay.x_image * lay.unit * lay.images > 2**36
        assert lay.x_image == 64 * 4098 * 4098 and lay.y_image == 512 * index.shape.grid_len


HUGE = [2**31 - 1, 2**31, 2**32 + 7, 2**40, 2**62, 2**62 + 2**40, 2**63 - 1]


@fuzz(200)
@given(
    b_stride=hst.sampled_from(HUGE + [0, 8, 64]),
    c_stride=hst.sampled_from(HUGE + [8, 16]),
    ldc=hst.sampled_from(HUGE + [8]),
    length=hst.sampled_from(HUGE + [0, 8]),
    images=hst.sampled_from(HUGE + [0, 1, 3]),
    off=hst.sampled_from(HUGE + [0, 4]),
    grid_w=hst.sampled_from([0, 0, 4]),
    t_base=hst.sampled_from(HUGE + [0]),
)
def test_offset_bindings_reject_what_does_not_fit(
    b_stride, c_stride, ldc, length, images, off, grid_w, t_base
):
    """Random huge strides and counts with small buffers: the bindings either raise ValueError
    or every element the kernel will touch is inside the buffers (a wrapped 64-bit product in
    a bounds check used to let such a call through, and it crashed)."""
    from sparsetrain import _C

    ptr = np.array([0, 1], dtype=np.int64)
    offs = np.array([off], dtype=np.int64)
    val = np.ones(1, dtype=np.float32)
    b, c, a = (
        np.ones(64, dtype=np.float32),
        np.zeros(64, dtype=np.float32),
        np.ones(64, dtype=np.float32),
    )
    plane = dict(grid_w=grid_w, t_base=t_base, plane_h=2, plane_w=2) if grid_w else {}
    spmm = _C.spmm_offsets_planes if grid_w else _C.spmm_offsets_rows
    try:
        spmm(
            ptr=ptr,
            offsets=offs,
            values=val,
            pos=None,
            scratch=None,
            b=b,
            b_image_stride=b_stride,
            c=c,
            ldc=ldc,
            c_image_stride=c_stride,
            len=length,
            images=images,
            nthreads=1,
            **plane,
        )
    except (ValueError, TypeError):
        pass
    else:  # accepted: then it was in bounds (exact integer arithmetic)
        if images > 0 and length > 0:
            assert (images - 1) * b_stride + off + length <= b.size
            assert (images - 1) * c_stride + (length if not grid_w else 4) <= c.size
    out = np.zeros(1, dtype=np.float32)
    try:
        _C.sddmm_offsets(
            ptr=ptr,
            offsets=offs,
            a=a,
            lda=ldc,
            a_image_stride=c_stride,
            b=b,
            b_image_stride=b_stride,
            len=length,
            images=images,
            out=out,
            nthreads=1,
        )
    except (ValueError, TypeError):
        pass
    else:
        if images > 0 and length > 0:
            assert (images - 1) * b_stride + off + length <= b.size
            assert (images - 1) * c_stride + length <= a.size


@pytest.mark.parametrize("seg_len, seg_stride", [(-1, 4), (4, -1), (5, 4), (1, 0)])
def test_offset_bindings_reject_bad_segments(seg_len, seg_stride):
    from sparsetrain import _C

    ptr = np.array([0, 1], dtype=np.int64)
    offs = np.zeros(1, dtype=np.int64)
    val, b, c = (
        np.ones(1, dtype=np.float32),
        np.ones(64, dtype=np.float32),
        np.zeros(64, dtype=np.float32),
    )
    seg = dict(seg_len=seg_len, seg_stride=seg_stride)
    with pytest.raises(ValueError, match="segment"):
        _C.spmm_offsets_rows(
            ptr=ptr,
            offsets=offs,
            values=val,
            pos=None,
            scratch=None,
            b=b,
            b_image_stride=0,
            c=c,
            ldc=8,
            c_image_stride=8,
            len=8,
            images=1,
            nthreads=1,
            **seg,
        )
    with pytest.raises(ValueError, match="segment"):
        _C.sddmm_offsets(
            ptr=ptr,
            offsets=offs,
            a=b,
            lda=8,
            a_image_stride=8,
            b=b,
            b_image_stride=0,
            len=8,
            images=1,
            out=np.zeros(1, dtype=np.float32),
            nthreads=1,
            **seg,
        )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(grid_w=0), "grid_w must be set"),
        (dict(length=24), "multiples of 16"),
        (dict(seg_len=8, seg_stride=32), "multiples of 16"),
        (dict(batch=17), "fill the last group"),
        (dict(batch=0), "fill the last group"),
        (dict(c_size=5), "buffer too small"),
        (dict(c_stride=1), "images overlap"),
    ],
)
def test_offset_bindings_reject_bad_lanes(change, message):
    """The 16-image plane form: whole grid points, a batch that fits its groups, and every
    image's planes inside c (checked against a call that is accepted as given)."""
    from sparsetrain import _C

    ptr = np.array([0, 1], dtype=np.int64)
    offs = np.zeros(1, dtype=np.int64)
    val, b = np.ones(1, dtype=np.float32), np.ones(64, dtype=np.float32)

    def call(grid_w=2, length=32, seg_len=0, seg_stride=0, batch=3, c_size=6, c_stride=2):
        c = np.zeros(c_size, dtype=np.float32)
        _C.spmm_offsets_planes16(
            ptr=ptr,
            offsets=offs,
            values=val,
            pos=None,
            scratch=None,
            b=b,
            b_image_stride=0,
            c=c,
            ldc=2,
            c_image_stride=c_stride,
            len=length,
            images=1,
            nthreads=1,
            grid_w=grid_w,
            plane_h=1,
            plane_w=2,
            seg_len=seg_len,
            seg_stride=seg_stride,
            batch=batch,
        )
        return c

    np.testing.assert_array_equal(call(), np.ones(6, dtype=np.float32))  # 3 images x 2 points
    with pytest.raises(ValueError, match=message):
        call(**change)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(merge=dict(n=2)), "n = images"),
        (dict(merge=dict(unit=16)), "unit 1"),
        (dict(rows=3), "channels x stride phases"),
        (dict(merge=dict(hq=0)), "phase planes smaller"),
        (dict(merge=dict(pt=1)), "phase planes smaller"),
        (dict(t_base=1), "past the end"),
        (dict(c_size=3), "buffer too small"),
        (dict(images=2, c_stride=3, c_size=8), "images overlap"),
    ],
)
def test_offset_bindings_reject_bad_merge(change, message):
    """The merge form (phase planes straight into NCHW): a layout of unit 1 and the call's
    images, rows that are the layout's channels x phases, positions inside a phase plane, and
    every image's planes inside c (checked against a call that is accepted as given; `merge`
    changes fields of the layout)."""
    from sparsetrain import _C

    val, b = np.ones(1, dtype=np.float32), np.full(64, 2.0, dtype=np.float32)
    offs = np.zeros(1, dtype=np.int64)

    def call(merge=None, rows=4, t_base=0, c_size=4, c_stride=4, images=1):
        if merge is None:
            merge = {}
        ptr = np.array([0] + [1] * rows, dtype=np.int64)
        c = np.full(c_size, 7.0, dtype=np.float32)
        layout = _C.ConvInputLayout(
            **dict(
                dict(n=images, c=1, unit=1, h=2, w=2, sh=2, sw=2, pt=0, pl=0, hq=1, wq=1), **merge
            )
        )
        _C.spmm_offsets_merge(
            ptr=ptr,
            offsets=offs,
            values=val,
            pos=None,
            scratch=None,
            b=b,
            b_image_stride=1,
            c=c,
            c_image_stride=c_stride,
            len=1,
            images=images,
            nthreads=1,
            t_base=t_base,
            merge=layout,
        )
        return c

    # One channel, 2x2 phases of one pixel each: phase (0, 0) (row 0) is pixel (0, 0).
    np.testing.assert_array_equal(call(), np.array([2, 0, 0, 0], dtype=np.float32))
    with pytest.raises(ValueError, match=message):
        call(**change)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(pack=dict(n=1)), "n = images"),
        (dict(pack=dict(hq=1)), "phase planes smaller"),
        (dict(b_stride=3), "one NCHW image of b"),
        (dict(b_size=7), "buffer too small"),
        (dict(length=4), "past a packed image"),
        (dict(pack=False, check_finite=True), "check_finite needs pack"),
    ],
)
def test_offset_bindings_reject_bad_pack(change, message):
    """The fused-pack form (b is NCHW x, packed image by image): a layout of unit 1 and the
    call's images, b's image stride one NCHW image, every image inside b, offsets inside a
    packed image (checked against calls that are accepted as given, forward and values
    gradient; `pack` changes fields of the layout, False passes no layout)."""
    from sparsetrain import _C

    ptr = np.array([0, 1], dtype=np.int64)
    offs = np.array([1], dtype=np.int64)
    val = np.full(1, 2.0, dtype=np.float32)

    def call(pack=None, b_stride=4, b_size=8, length=3, check_finite=False):
        if pack is None:
            pack = {}
        b = np.arange(b_size, dtype=np.float32)  # 2 images of 1 x 2 x 2, packed as they are
        c = np.zeros(2 * length, dtype=np.float32)
        dv = np.zeros(1, dtype=np.float32)
        layout = (
            None
            if pack is False
            else _C.ConvInputLayout(
                **dict(dict(n=2, c=1, unit=1, h=2, w=2, sh=1, sw=1, pt=0, pl=0, hq=2, wq=2), **pack)
            )
        )
        res = _C.spmm_offsets_rows(
            ptr=ptr,
            offsets=offs,
            values=val,
            pos=None,
            scratch=None,
            b=b,
            b_image_stride=b_stride,
            c=c,
            ldc=length,
            c_image_stride=length,
            len=length,
            images=2,
            nthreads=1,
            pack=layout,
            check_finite=check_finite,
        )
        _C.sddmm_offsets(
            ptr=ptr,
            offsets=offs,
            a=np.ones(2 * length, dtype=np.float32),
            lda=length,
            a_image_stride=length,
            b=b,
            b_image_stride=b_stride,
            len=length,
            images=2,
            out=dv,
            nthreads=1,
            pack=layout,
        )
        return c, dv, res

    c, dv, res = call(check_finite=True)
    np.testing.assert_array_equal(c, [2, 4, 6, 10, 12, 14])  # 2 * b[n * 4 + 1 + t]
    np.testing.assert_array_equal(dv, [1 + 2 + 3 + 5 + 6 + 7])
    assert res is True
    with pytest.raises(ValueError, match=message):
        call(**change)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(grid=dict(n=1)), "n = images"),
        (dict(grid=dict(wo=4)), "bad convolution output layout"),
        (dict(grid=dict(per_channel=2)), "per_channel too small"),
        (dict(b_stride=3), "image stride of b must be one NCHW image"),
        (dict(b_size=3), "buffer too small"),
        (dict(length=4), "past a packed image"),
        (dict(both=True), "one of them at most"),
        (dict(sddmm_length=4), "rows of a reach past"),
    ],
)
def test_offset_bindings_reject_bad_pack_grid(change, message):
    """The fused output-gradient form (NCHW dy packed onto its bordered grid by the kernel):
    a layout of unit 1 and the call's images, dy's image stride one NCHW image, every image
    inside dy, offsets (spmm) and rows (sddmm) inside a packed image (checked against calls
    accepted as given; `grid` changes fields of the layout)."""
    from sparsetrain import _C

    ptr = np.array([0, 1], dtype=np.int64)
    val = np.full(1, 2.0, dtype=np.float32)

    def call(grid=None, b_stride=2, b_size=4, length=2, both=False, sddmm_length=2):
        if grid is None:
            grid = {}
        y = np.arange(b_size, dtype=np.float32)  # 2 images of 1 x 1 x 2: grids [0, y0, y1, 0]
        c = np.zeros(2 * length, dtype=np.float32)
        layout = _C.ConvOutputLayout(
            **dict(dict(n=2, c=1, unit=1, ho=1, wo=2, wq=3, per_channel=4, offset=1), **grid)
        )
        pack = (
            dict(
                pack=_C.ConvInputLayout(
                    n=2, c=1, unit=1, h=1, w=2, sh=1, sw=1, pt=0, pl=0, hq=1, wq=4
                )
            )
            if both
            else {}
        )
        _C.spmm_offsets_rows(
            ptr=ptr,
            offsets=np.array([1], dtype=np.int64),
            values=val,
            pos=None,
            scratch=None,
            b=y,
            b_image_stride=b_stride,
            c=c,
            ldc=length,
            c_image_stride=length,
            len=length,
            images=2,
            nthreads=1,
            pack_grid=layout,
            **pack,
        )
        dv = np.zeros(1, dtype=np.float32)
        _C.sddmm_offsets(
            ptr=ptr,
            offsets=np.zeros(1, dtype=np.int64),
            a=y,
            lda=4,
            a_image_stride=b_stride,
            b=np.ones(8, dtype=np.float32),
            b_image_stride=4,
            len=sddmm_length,
            images=2,
            out=dv,
            nthreads=1,
            pack_grid=layout,
        )
        return c, dv

    c, dv = call()
    np.testing.assert_array_equal(c, [0, 2, 4, 6])  # 2 * grid[1 + t]
    np.testing.assert_array_equal(dv, [0 + 1 + 2 + 3])
    with pytest.raises(ValueError, match=message):
        call(**change)


def test_conv_layouts_are_checked_values():
    """The layouts the conv bindings take: keyword-only, checked, read-only, compared and
    pickled by their fields; a tuple in their place is refused."""
    import pickle

    from sparsetrain import _C

    fields = dict(n=3, c=2, unit=16, h=5, w=7, sh=2, sw=1, pt=1, pl=0, hq=3, wq=7)
    layout = _C.ConvInputLayout(**fields)
    assert layout.groups == 1 and {k: getattr(layout, k) for k in fields} == fields
    assert repr(layout) == f"ConvInputLayout({', '.join(f'{k}={v}' for k, v in fields.items())})"
    assert pickle.loads(pickle.dumps(layout)) == layout != _C.ConvInputLayout(**dict(fields, n=2))
    with pytest.raises(AttributeError):
        layout.n = 4
    with pytest.raises(TypeError):
        _C.ConvInputLayout(*fields.values())
    with pytest.raises(ValueError, match="unit must be 1 or 16"):
        _C.ConvInputLayout(**dict(fields, unit=4))
    grid = _C.ConvOutputLayout(n=17, c=2, unit=16, ho=1, wo=2, wq=3, per_channel=4, offset=1)
    assert grid.groups == 2 and pickle.loads(pickle.dumps(grid)) == grid
    with pytest.raises(ValueError, match="bad convolution output layout"):
        _C.ConvOutputLayout(n=1, c=1, unit=1, ho=1, wo=2, wq=3, per_channel=4, offset=-1)
    ptr, offs = np.array([0, 1], dtype=np.int64), np.zeros(1, dtype=np.int64)
    buf = np.zeros(8, dtype=np.float32)
    with pytest.raises(TypeError):
        _C.spmm_offsets_rows(
            ptr=ptr,
            offsets=offs,
            values=buf[:1],
            pos=None,
            scratch=None,
            b=buf,
            b_image_stride=4,
            c=buf,
            ldc=2,
            c_image_stride=2,
            len=2,
            images=2,
            nthreads=1,
            pack_grid=(1, 1, 2, 3, 4, 1),
        )
    with pytest.raises(TypeError):  # keyword arguments only
        _C.sddmm_offsets(ptr, offs, buf, 2, 2, buf, 4, 2, 2, buf[:1], 1)


# The toy convolution's layouts: dy (1 x 1 x 2 per image) on grids of 4, x (1 x 2 x 2).
_GRADS_GRID = st._C.ConvOutputLayout(n=2, c=1, unit=1, ho=1, wo=2, wq=3, per_channel=4, offset=1)
_GRADS_PACK = st._C.ConvInputLayout(n=2, c=1, unit=1, h=2, w=2, sh=1, sw=1, pt=0, pl=0, hq=2, wq=2)


def _grads_call(**change):
    """conv_grads_offsets_planes' keyword arguments for 2 images of a 1-channel 2 x 2 x (1 x 2)
    toy convolution (dy: 1 x 1 x 2 per image, grids [0, y0, y1, 0]; x: 1 x 2 x 2; the input
    gradient into planes of one grid row), built from the two kernels' (dx, dv) by
    grads_args, with `change` applied to the result: a name set (or, with None, dropped)."""
    y = np.arange(1, 5, dtype=np.float32)
    dx = dict(
        ptr=np.array([0, 1], dtype=np.int64),
        offsets=np.array([1], dtype=np.int64),
        values=np.full(1, 2.0, dtype=np.float32),
        pos=None,
        scratch=None,
        b=y,
        b_image_stride=2,
        c=np.zeros(4, dtype=np.float32),
        ldc=2,
        c_image_stride=2,
        len=2,
        grid_w=2,
        plane_h=1,
        plane_w=2,
        images=2,
        nthreads=1,
        pack_grid=_GRADS_GRID,
        check_finite=True,
    )
    dv = dict(
        ptr=np.array([0, 1], dtype=np.int64),
        offsets=np.array([1], dtype=np.int64),
        a=y,
        lda=4,
        a_image_stride=2,
        b=np.arange(8, dtype=np.float32),
        b_image_stride=4,
        len=2,
        images=2,
        out=np.zeros(1, dtype=np.float32),
        nthreads=1,
        pack=_GRADS_PACK,
        pack_grid=_GRADS_GRID,
    )
    args = grads_args(dx, dv, 0)
    for name, value in change.items():
        if value is None:
            args.pop(name)
        else:
            args[name] = value
    return args, dx, dv


def test_conv_grads_offsets_matches_the_two_kernels():
    """Both gradients from one packing of dy: the same numbers as spmm_offsets_planes and
    sddmm_offsets called with the same arguments, and dy's finite check."""
    from sparsetrain import _C

    args, dx, dv = _grads_call()
    assert _C.conv_grads_offsets_planes(**args) is True
    c, out = dx["c"].copy(), dv["out"].copy()
    np.testing.assert_array_equal(c, [2, 4, 6, 8])  # 2 * grid[1 + t]
    # sum over images of <grid row from offset 1, packed x from offset 1>: 1*1 + 2*2 + 3*5 + 4*6
    np.testing.assert_array_equal(out, [44])
    dx["c"][:] = 0
    dv["out"][:] = 0
    assert _C.spmm_offsets_planes(**dx) is True
    _C.sddmm_offsets(**dv)
    np.testing.assert_array_equal(dx["c"], c)
    np.testing.assert_array_equal(dv["out"], out)
    args, _, _ = _grads_call(dy=np.array([1, 2, np.nan, 4], dtype=np.float32))
    assert _C.conv_grads_offsets_planes(**args) is False


@pytest.mark.parametrize(
    "change",
    [
        {"colour": 1},
        {"dv": None},
        {"x": [0.0] * 8},
        {"dx_len": 2.0},
        {"nthreads": 2**40},
        {"pack_grid": (1, 1, 2, 3, 4, 1)},
        {"pack": (1, 2, 2, 1, 1, 0, 0, 2, 2)},
        {"pos": [0]},
    ],
)
@pytest.mark.parametrize("binding", ["conv_grads_offsets_planes", "conv_grads_one_pass_planes"])
def test_conv_grads_offsets_rejects_arguments_of_the_wrong_kind(change, binding):
    """Keyword arguments only, each of its type: an unknown or missing one, or a value of
    another type, is a TypeError before anything is checked or run."""
    from sparsetrain import _C

    with pytest.raises(TypeError):
        getattr(_C, binding)(**_grads_call(**change)[0])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pack": None}, "go together"),
        ({"pack_grid": None}, "go together"),
        ({"a_offset": -1}, "negative a_offset"),
        ({"dx_len": 4}, "past a packed image"),
        ({"len": 4}, "past a packed image|rows of a reach past"),
    ],
)
@pytest.mark.parametrize("binding", ["conv_grads_offsets_planes", "conv_grads_one_pass_planes"])
def test_conv_grads_offsets_rejects_bad_arguments(change, message, binding):
    from sparsetrain import _C

    with pytest.raises(ValueError, match=message):
        getattr(_C, binding)(**_grads_call(**change)[0])


@pytest.mark.parametrize("binding", ["conv_grads_offsets_planes", "conv_grads_one_pass_planes"])
def test_conv_grads_offsets_rejects_overlapping_outputs(binding):
    from sparsetrain import _C

    args, _, _ = _grads_call()
    args["dv"] = args["dx"][3:]
    with pytest.raises(ValueError, match="overlap"):
        getattr(_C, binding)(**args)


# Stride-1 convolutions (both gradients from one load of each window of dy) and strided ones
# (the two kernels' products): in_channels, out_channels, kernel, dilation, padding, groups,
# (H, W), batch.
ONE_PASS_CASES = [
    (8, 6, (3, 3), (1, 1), (1, 1), 1, (13, 21), 16),
    (5, 7, (5, 3), (2, 1), (2, 0), 1, (11, 9), 5),
    (6, 4, (2, 2), (1, 1), (0, 1), 2, (7, 35), 17),
    (3, 5, (1, 1), (1, 1), (1, 1), 1, (9, 9), 4),
]
# Layouts: the plane layout packing x and dy inside the kernel (a batch of 4 or more), the
# plane layout packed beforehand (2 images), the batch layout (16 images per vector).
ONE_PASS_LAYOUTS = [("plane", None), ("plane", 2), ("batch", None)]


def _grads_args(case, stride, layout_kind, threads, seed=0):
    """The layout, the input gradient's form, dx, dv, the two kernels' arguments
    SparseConv2dFunction.backward builds for one case (conv_grads_offsets_<form> takes them
    through grads_args) and the dense layer, x and dy."""
    strategy, batch = layout_kind
    cin, cout, k, d, p, groups, hw, n = case
    n = batch or n
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the same weights on every call
        torch.manual_seed(seed)
        conv = nn.Conv2d(
            cin, cout, k, stride=stride, padding=p, dilation=d, groups=groups, bias=False
        )
    dense = prune_(conv, 0.6, gen)
    sp = st.SparseConv2d.from_dense(dense, strategy=strategy)
    x = torch.randn(n, cin, *hw, generator=gen)
    layout = sp._plans.layout(x, sp.strategy, sp.values, sp.bias)
    assert layout.name == strategy
    dy = torch.randn(dense(x).shape, generator=gen)
    values = sp.values.detach()
    xq, _ = layout.pack_x(x)
    dyq, _ = layout.pack_dy(dy)
    dx, form, dx_args, packed = layout._input_grad_args(values, dyq, threads, layout.fused)
    dv = torch.empty(values.numel())
    dv_args = layout._values_grad_args(sp._row_ptr_np, dyq, xq, dv, threads)
    return layout, form, (dx, packed), dv, dx_args, dv_args, (dense, x, dy)


def _one_pass(layout, form, dx_args, dv_args) -> bool:
    """Whether conv_grads_offsets_<form> takes its one-pass form on these arguments."""
    from sparsetrain import _C

    if form not in ("planes", "planes16"):
        return False
    one_pass = getattr(_C, "conv_grads_one_pass_" + form)
    return one_pass(**grads_args(dx_args, dv_args, layout.dy_offset))


def _both_grads(layout, form, dx_args, dv_args):
    """Both gradients in one call where the layout has a form for it, else the two kernels."""
    from sparsetrain import _C

    if form == "rows":
        spmm_offsets(form)(**dx_args)
        _C.sddmm_offsets(**dv_args)
    else:
        conv_grads_offsets(form)(**grads_args(dx_args, dv_args, layout.dy_offset))


@pytest.mark.parametrize("case", ONE_PASS_CASES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout_kind", ONE_PASS_LAYOUTS)
@pytest.mark.parametrize("isa", st.supported_isas())
def test_conv_grads_one_pass_matches_the_two_kernels(case, stride, layout_kind, isa):
    """Stride 1 loads each window of dy once for both gradients (checked with
    conv_grads_one_pass_<form>): the same products as the input gradient's spmm_offsets form
    and sddmm_offsets summed in another order, the same for any thread count, and nn.Conv2d's
    gradients."""
    from sparsetrain import _C

    with Runtime(isa, 1):
        results = []
        for threads in (1, 3):
            layout, form, (dx, packed), dv, dx_args, dv_args, (dense, x, dy) = _grads_args(
                case, stride, layout_kind, threads
            )
            assert _one_pass(layout, form, dx_args, dv_args) is (stride == 1)
            assert layout.fuses_grads is (stride == 1 or layout.fused)
            _both_grads(layout, form, dx_args, dv_args)
            # (A packed dx is defined only where the kernels write: compare it unpacked.)
            results.append((layout.unpack_dx(dx.view(-1)) if packed else dx.clone(), dv.clone()))
        (dx_got, dv), (dx3, dv3) = results
        assert torch.equal(dx_got, dx3) and torch.equal(dv, dv3)
        # The two kernels on the same arguments (the last call's, writing its dx and dv).
        ref_dv = dv.clone()
        dv_args["out"] = ref_dv.numpy()
        spmm_offsets(form)(**dx_args)
        _C.sddmm_offsets(**dv_args)
        ref_dx = layout.unpack_dx(dx.view(-1)) if packed else dx
        dx = dx_got
        torch.testing.assert_close(dx, ref_dx, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dv, ref_dv, rtol=1e-4, atol=1e-3)
        xg = x.clone().requires_grad_(True)
        dense(xg).backward(dy)
        torch.testing.assert_close(dx, xg.grad, rtol=1e-5, atol=1e-4)
        mask = dense.weight.detach() != 0
        w_grad = torch.zeros_like(dense.weight)
        w_grad[mask] = dv  # CSR order is row-major order of the nonzeros
        torch.testing.assert_close(w_grad, dense.weight.grad * mask, rtol=1e-4, atol=1e-3)


def test_conv_grads_one_pass_needs_a_matching_transposed_index():
    """dx's transposed index must list dv's nonzeros (where each window of dy starts): one
    entry off and the kernel takes the two kernels' path, bitwise as before."""
    from sparsetrain import _C

    for kind in ONE_PASS_LAYOUTS:
        layout, form, (dx, _), dv, dx_args, dv_args, _ = _grads_args(ONE_PASS_CASES[0], 1, kind, 2)
        assert _one_pass(layout, form, dx_args, dv_args)
        dx_args["offsets"] = dx_args["offsets"].copy()
        dx_args["offsets"][3] += 1
        assert not _one_pass(layout, form, dx_args, dv_args)
        _both_grads(layout, form, dx_args, dv_args)
        got_dx, got_dv = dx.clone(), dv.clone()
        spmm_offsets(form)(**dx_args)
        _C.sddmm_offsets(**dv_args)
        assert torch.equal(got_dx, dx) and torch.equal(got_dv, dv)


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), float("-inf")])
def test_offsets_kernel_checks_the_grid_it_packs(bad):
    """spmm_offsets_rows(pack_grid=..., check_finite=True): whether dy (NCHW) was all finite,
    read while the kernel packs it; None when not asked."""
    from sparsetrain import _C

    y = np.arange(4, dtype=np.float32)  # 2 images of 1 x 1 x 2
    if bad is not None:
        y[3] = bad
    args = dict(
        ptr=np.array([0, 1], dtype=np.int64),
        offsets=np.array([1], dtype=np.int64),
        values=np.full(1, 2.0, dtype=np.float32),
        pos=None,
        scratch=None,
        b=y,
        b_image_stride=2,
        c=np.zeros(4, dtype=np.float32),
        ldc=2,
        c_image_stride=2,
        len=2,
        images=2,
        nthreads=1,
    )
    grid = _C.ConvOutputLayout(n=2, c=1, unit=1, ho=1, wo=2, wq=3, per_channel=4, offset=1)
    assert _C.spmm_offsets_rows(**args, pack_grid=grid, check_finite=True) is (bad is None)
    assert _C.spmm_offsets_rows(**args, pack_grid=grid) is None


def test_channel_sums_without_a_grid():
    """conv_pack_grad_output with grid=None: the channel sums only (unit 1), as with a grid."""
    from sparsetrain import _C

    rng = np.random.default_rng(1)
    y = rng.standard_normal(3 * 4 * 5 * 7).astype(np.float32)
    sums = np.zeros(12)
    layout = _C.ConvOutputLayout(n=3, c=4, unit=1, ho=5, wo=7, wq=9, per_channel=60, offset=2)
    _C.conv_pack_grad_output(y=y, grid=None, channel_sums=sums, layout=layout, nthreads=1)
    planes = y.astype(np.float64).reshape(12, -1)
    assert (np.abs(sums - planes.sum(1)) <= 2e-6 * np.abs(planes).sum(1)).all()
    with pytest.raises(ValueError, match="only channel sums"):
        _C.conv_pack_grad_output(y=y, grid=None, channel_sums=None, layout=layout, nthreads=1)


def test_offset_segments_skip_the_columns_between():
    """seg_len of every seg_stride positions: the rest of C keeps what it held."""
    from sparsetrain import _C

    rng = np.random.default_rng(0)
    ptr = np.array([0, 2], dtype=np.int64)
    offs = np.array([0, 3], dtype=np.int64)
    val = np.array([0.5, -2.0], dtype=np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    c = np.full(40, 7.0, dtype=np.float32)
    _C.spmm_offsets_rows(
        ptr=ptr,
        offsets=offs,
        values=val,
        pos=None,
        scratch=None,
        b=b,
        b_image_stride=0,
        c=c,
        ldc=40,
        c_image_stride=40,
        len=40,
        images=1,
        nthreads=1,
        seg_len=6,
        seg_stride=10,
    )
    full = 0.5 * b[0:40] - 2.0 * b[3:43]
    t = np.arange(40)
    np.testing.assert_allclose(c[t % 10 < 6], full[t % 10 < 6], rtol=1e-6)
    assert (c[t % 10 >= 6] == 7.0).all()


@pytest.mark.parametrize("one_pass", [False, True])
def test_conv_grads_packed_beforehand_rejects_bad_arguments(one_pass):
    """Packed beforehand: x must hold every plane of every image (the one-pass form reads them
    all), and the values gradient packs x only where both gradients pack dy."""
    from sparsetrain import _C

    layout, form, _, _, dx_args, dv_args, _ = _grads_args(ONE_PASS_CASES[0], 1, ("batch", None), 2)
    call = getattr(_C, ("conv_grads_one_pass_" if one_pass else "conv_grads_offsets_") + form)
    # Images 16 floats further apart, the buffer long enough for every shifted run
    # sddmm_offsets reads but not for the last image's whole stride.
    images, stride = dv_args["images"], dv_args["b_image_stride"] + 16
    reach = (images - 1) * stride + int(dv_args["offsets"].max()) + dv_args["len"]
    assert reach < images * stride
    short = dict(dv_args, b=np.zeros(reach, dtype=np.float32), b_image_stride=stride)
    with pytest.raises(ValueError, match="must hold images x x_image_stride"):
        call(**grads_args(dx_args, short, layout.dy_offset))
    layout, form, _, _, dx_args, dv_args, _ = _grads_args(ONE_PASS_CASES[0], 1, ("plane", 2), 2)
    call = getattr(_C, ("conv_grads_one_pass_" if one_pass else "conv_grads_offsets_") + form)
    with pytest.raises(ValueError, match="or none of them"):
        call(**grads_args(dx_args, dict(dv_args, pack=_GRADS_PACK), layout.dy_offset))

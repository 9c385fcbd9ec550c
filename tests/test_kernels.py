"""The native kernels (sparsetrain._C) directly, per ISA, against plain torch references."""

import pytest
import torch

from sparsetrain import _C, formats

ALIGN = _C.BATCH_ALIGN


def np(t):
    return t.detach().numpy()


def random_pattern(rows, cols, density):
    row_ptr, col_idx = formats.random_csr(rows, cols, density)
    return row_ptr, col_idx, torch.randn(col_idx.numel())


def dense_of(row_ptr, col_idx, values, rows, cols):
    return formats.csr_to_dense(row_ptr, col_idx, values, rows, cols)


@pytest.mark.parametrize(
    "rows,cols,nb,density",
    [
        (1, 1, 16, 1.0),
        (7, 5, 16, 0.5),
        (33, 70, 48, 0.2),
        (64, 64, 256, 0.05),
        (100, 17, 272, 0.9),
        (5, 300, 528, 0.1),
        (40, 40, 32, 0.0),
    ],
)
def test_spmm(isa, rows, cols, nb, density):
    ptr, idx, val = random_pattern(rows, cols, density)
    b = torch.randn(cols, nb)
    c = torch.full((rows, nb), float("nan"))
    _C.spmm(
        ptr=np(ptr),
        idx=np(idx),
        values=np(val),
        pos=None,
        scratch=None,
        b=np(b),
        c=np(c),
        nthreads=2,
    )
    ref = dense_of(ptr, idx, val, rows, cols) @ b
    torch.testing.assert_close(c, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "rows,cols,nb,density",
    [
        (1, 1, 16, 1.0),
        (7, 5, 16, 0.5),
        (33, 70, 48, 0.2),
        (100, 17, 272, 0.9),
        (5, 300, 528, 0.1),
    ],
)
def test_spmm_transposed_through_pos(isa, rows, cols, nb, density):
    ptr, idx, val = random_pattern(rows, cols, density)
    t = formats.csr_transpose(ptr, idx, cols)
    b = torch.randn(rows, nb)
    c = torch.full((cols, nb), float("nan"))
    _C.spmm(
        ptr=np(t.ptr),
        idx=np(t.idx),
        values=np(val),
        pos=np(t.pos),
        scratch=np(torch.empty(val.numel())),
        b=np(b),
        c=np(c),
        nthreads=2,
    )
    ref = dense_of(ptr, idx, val, rows, cols).t() @ b
    torch.testing.assert_close(c, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "rows,cols,nb,density",
    [
        (1, 1, 16, 1.0),
        (7, 5, 16, 0.5),
        (33, 70, 48, 0.2),
        (100, 17, 272, 0.9),
        (5, 300, 528, 0.1),
        (40, 40, 32, 0.0),
        (3, 9, 0, 0.5),
    ],
)
def test_spmmt(isa, rows, cols, nb, density):
    ptr, idx, val = random_pattern(rows, cols, density)
    t = formats.csr_transpose(ptr, idx, cols)
    b = torch.randn(rows, nb)
    c = torch.full((cols, nb), float("nan"))
    _C.spmmt(
        ptr=np(ptr), idx=np(idx), values=np(val), col_ptr=np(t.ptr), b=np(b), c=np(c), nthreads=2
    )
    ref = dense_of(ptr, idx, val, rows, cols).t() @ b
    torch.testing.assert_close(c, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "rows,cols,nb,density",
    [
        (1, 1, 16, 1.0),
        (7, 5, 16, 0.5),
        (33, 70, 48, 0.2),
        (64, 64, 256, 0.05),
        (100, 17, 272, 0.9),
        (5, 300, 528, 0.1),
        (40, 40, 32, 0.0),
        (3, 9, 0, 0.5),
    ],
)
def test_sddmm(isa, rows, cols, nb, density):
    ptr, idx, _ = random_pattern(rows, cols, density)
    a = torch.randn(rows, nb)
    b = torch.randn(cols, nb)
    out = torch.full((idx.numel(),), float("nan"))
    _C.sddmm(ptr=np(ptr), idx=np(idx), a=np(a), b=np(b), out=np(out), nthreads=2)
    mask = dense_of(ptr, idx, torch.ones(idx.numel()), rows, cols) != 0
    ref = (a @ b.t())[mask]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)


# Shapes around the 64 x 64 blocks the layout changes work in: whole blocks, a partial
# block of whole vectors, a partial vector, and rows padded beyond the batch (extra_pad).
@pytest.mark.parametrize(
    "batch,features,extra_pad",
    [
        (0, 3, 0),
        (1, 1, 0),
        (5, 7, 0),
        (16, 16, 0),
        (17, 33, 0),
        (300, 20, 0),
        (64, 64, 0),
        (130, 150, 0),
        (517, 70, 16),
        (200, 129, 32),
    ],
)
def test_pack_unpack_round_trip(isa, batch, features, extra_pad):
    x = torch.randn(batch, features)
    nb = (batch + ALIGN - 1) // ALIGN * ALIGN + extra_pad
    xt = torch.full((features, nb), float("nan"))
    _C.pack(src=np(x), dst=np(xt), nthreads=2)
    assert torch.equal(xt[:, :batch], x.t())
    assert torch.all(xt[:, batch:] == 0)  # pad lanes are zeros, not garbage
    bias = torch.randn(features)
    y = torch.empty(batch, features)
    _C.unpack(src=np(xt), dst=np(y), bias=np(bias), nthreads=2)
    assert torch.equal(y, x + bias)
    _C.unpack(src=np(xt), dst=np(y), bias=None, nthreads=2)
    assert torch.equal(y, x)


def test_bindings_reject_wrong_buffers():
    ptr, idx, val = random_pattern(4, 4, 0.5)
    b, c = torch.randn(4, 16), torch.empty(4, 16)

    def spmm(ptr, idx, val, b, c):
        _C.spmm(
            ptr=np(ptr),
            idx=np(idx),
            values=np(val),
            pos=None,
            scratch=None,
            b=np(b),
            c=np(c),
            nthreads=1,
        )

    with pytest.raises(ValueError, match="dtype"):
        spmm(ptr, idx, val.double(), b, c)
    with pytest.raises(ValueError, match="multiple of"):
        spmm(ptr, idx, val, torch.randn(4, 15), torch.empty(4, 15))
    with pytest.raises(ValueError, match="row pointer"):
        spmm(ptr[:-1], idx, val, b, c)
    with pytest.raises(ValueError, match="shorter"):
        spmm(ptr, idx[:-1], val, b, c)
    with pytest.raises(ValueError, match="contiguous"):
        spmm(ptr, idx, val, torch.randn(16, 4).t(), c)
    with pytest.raises(ValueError, match="narrower"):
        _C.pack(src=np(torch.randn(20, 4)), dst=np(torch.empty(4, 16)), nthreads=1)


def test_transpose_index():
    ptr, idx, val = random_pattern(23, 31, 0.3)
    t = formats.csr_transpose(ptr, idx, 31)
    dense = dense_of(ptr, idx, val, 23, 31)
    csc_values = torch.empty_like(val)
    csc_values[t.pos] = val
    assert torch.equal(dense_of(t.ptr, t.idx, csc_values, 31, 23), dense.t())


@pytest.mark.parametrize(
    "ptr,idx,match",
    [
        ([0, 1, 2], [0, 5], "out of range"),
        ([0, 2, 1, 2], [0, 1], "decreases"),
        ([0, 3, 2], [0, 1], "exceeds"),
        ([1, 1, 2], [0, 1], "starts at"),
        ([0, 1, 3], [0, 1], "ends at"),
        ([0, 2, 2], [1, 1], "strictly increasing"),
    ],
)
def test_validate_csr_names_the_defect(ptr, idx, match):
    with pytest.raises(ValueError, match=match):
        formats.validate_csr(
            torch.tensor(ptr, dtype=torch.int64),
            torch.tensor(idx, dtype=torch.int32),
            len(ptr) - 1,
            3,
        )


def test_validate_csr_checks_row_pointer_length():
    with pytest.raises(ValueError, match="length"):
        formats.validate_csr(
            torch.tensor([0, 2], dtype=torch.int64), torch.tensor([0, 1], dtype=torch.int32), 2, 3
        )


@pytest.mark.parametrize("unit", [1, 16])
@pytest.mark.parametrize("stride", [1, 2])
def test_pack_input_reports_nonfinite_x(isa, unit, stride):
    """conv_pack_input(check_finite=True) says whether x held a NaN or ±Inf (None unasked),
    and packs the same values either way."""
    n, c, h, w = 18, 3, 7, 37
    hq, wq = -(-(h + 2) // stride), -(-(w + 2) // stride)
    groups = -(-n // unit)

    def pack(x, **kw):
        out = torch.full((groups * c * stride * stride * hq * wq * unit,), float("nan"))
        layout = _C.ConvInputLayout(
            n=n, c=c, unit=unit, h=h, w=w, sh=stride, sw=stride, pt=1, pl=1, hq=hq, wq=wq
        )
        res = _C.conv_pack_input(x=np(x.view(-1)), packed=np(out), layout=layout, nthreads=2, **kw)
        return out, res

    x = torch.randn(n, c, h, w)
    plain, res = pack(x)
    assert res is None
    checked, res = pack(x, check_finite=True)
    assert res is True
    torch.testing.assert_close(checked, plain, rtol=0, atol=0)
    for bad in (float("nan"), float("inf"), float("-inf")):
        for at in [(0, 0, 0, 0), (n - 1, c - 1, h - 1, w - 1), (n // 2, 1, 3, 17)]:
            xb = x.clone()
            xb[at] = bad
            assert pack(xb, check_finite=True)[1] is False, (bad, at)

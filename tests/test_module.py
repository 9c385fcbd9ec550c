"""SparseLinear as a module: construction, conversion, state_dict, repr, errors."""

import io
import math

import pytest
import torch
from torch import nn

import sparsetrain as st
from helpers import pruned_linear


def test_from_dense_keeps_exactly_the_nonzeros():
    lin = pruned_linear(40, 30, 0.9)
    sp = st.SparseLinear.from_dense(lin)
    assert sp.nnz == int((lin.weight != 0).sum())
    assert torch.equal(sp.weight, lin.weight.detach())
    assert [n for n, _ in sp.named_parameters()] == ["values", "bias"]
    assert sp.values.shape == (sp.nnz,)
    back = sp.to_dense()
    assert isinstance(back, nn.Linear)
    assert torch.equal(back.weight, lin.weight) and torch.equal(back.bias, lin.bias)


def test_constructor_sparsity_and_init():
    sp = st.SparseLinear(400, 300, sparsity=0.9)
    assert sp.nnz == round(0.1 * 400 * 300)
    assert abs(sp.sparsity - 0.9) < 1e-6
    bound = 1 / math.sqrt(400 * 0.1)
    assert sp.values.abs().max() <= bound
    assert sp.values.std() > bound / 3  # not collapsed to zero
    # output scale close to a dense nn.Linear's, thanks to the density-scaled init
    x = torch.randn(512, 400)
    ratio = st.SparseLinear(400, 300, sparsity=0.9)(x).std() / nn.Linear(400, 300)(x).std()
    assert 0.7 < ratio < 1.4
    assert st.SparseLinear(10, 20, bias=False, sparsity=1.0).nnz == 0
    assert st.SparseLinear(10, 20, sparsity=0.0).nnz == 200


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_constructor_rejects_bad_sparsity(bad):
    with pytest.raises(ValueError, match="sparsity"):
        st.SparseLinear(4, 4, sparsity=bad)


def test_repr_says_shape_and_sparsity():
    sp = st.SparseLinear(64, 32, sparsity=0.75)
    r = repr(sp)
    assert "in_features=64" in r and "out_features=32" in r and "nnz=512" in r
    assert "sparsity=0.7500" in r


def test_state_dict_round_trip_including_different_nnz():
    a = st.SparseLinear(50, 20, sparsity=0.9)
    b = st.SparseLinear(50, 20, sparsity=0.5)  # different pattern and nnz
    values_param = b.values
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    assert b.values is values_param  # same Parameter object, resized
    assert b.nnz == a.nnz
    assert torch.equal(b.weight, a.weight)
    x = torch.randn(3, 50)
    assert torch.equal(b(x), a(x))
    assert set(a.state_dict()) == {"values", "bias", "row_ptr", "col_idx", "weight_shape"}


@pytest.mark.parametrize(
    "corrupt,match",
    [
        (lambda sd: sd["col_idx"].__setitem__(0, 50), "out of range"),
        (lambda sd: sd["col_idx"].__setitem__(0, -1), "out of range"),
        (lambda sd: sd.__setitem__("row_ptr", sd["row_ptr"].flip(0)), "row pointer"),
        (lambda sd: sd.__setitem__("row_ptr", sd["row_ptr"][:-1]), "length"),
        (lambda sd: sd.__setitem__("values", sd["values"][:-1]), "values"),
        (lambda sd: sd.__setitem__("col_idx", sd["col_idx"].to(torch.int64)), "col_idx"),
    ],
)
def test_malformed_state_dict_raises_value_error(corrupt, match):
    lin = pruned_linear(50, 20, 0.0)
    a = st.SparseLinear.from_dense(lin)
    sd = {k: v.clone() for k, v in a.state_dict().items()}
    corrupt(sd)
    b = st.SparseLinear(50, 20, sparsity=0.0)
    with pytest.raises(ValueError, match=match):
        b.load_state_dict(sd)


def test_unsorted_columns_rejected():
    a = st.SparseLinear(10, 2, sparsity=0.0)
    sd = {k: v.clone() for k, v in a.state_dict().items()}
    sd["col_idx"][:2] = torch.tensor([1, 0], dtype=torch.int32)
    with pytest.raises(ValueError, match="strictly increasing"):
        st.SparseLinear(10, 2, sparsity=0.0).load_state_dict(sd)


def test_in_place_edit_of_pattern_is_revalidated():
    sp = st.SparseLinear(10, 4, sparsity=0.5)
    with torch.no_grad():
        sp.col_idx[0] = 99
    with pytest.raises(ValueError, match="out of range"):
        sp(torch.randn(2, 10))


@pytest.mark.parametrize(
    "x,exc,match",
    [
        (torch.randn(3, 10, dtype=torch.float64), TypeError, "float32"),
        (torch.randn(3, 10).half(), TypeError, "float32"),
        (torch.ones(3, 10, dtype=torch.int64), TypeError, "float32"),
        (torch.randn(3, 11), ValueError, r"\(\*, 10\)"),
        (torch.randn(3, 10, device="meta"), ValueError, "CPU"),
    ],
)
def test_bad_inputs_raise_clear_errors(x, exc, match):
    sp = st.SparseLinear(10, 4, sparsity=0.5)
    with pytest.raises(exc, match=match):
        sp(x)


def test_from_dense_rejects_other_modules():
    with pytest.raises(TypeError, match="nn.Linear"):
        st.SparseLinear.from_dense(nn.Conv2d(3, 3, 3))


def test_deepcopy_and_whole_module_pickle():
    import copy

    sp = st.SparseLinear(30, 20, sparsity=0.8)
    x = torch.randn(4, 30)
    assert torch.equal(copy.deepcopy(sp)(x), sp(x))
    buf = io.BytesIO()
    torch.save(sp, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), sp(x))


def test_sparse_layer_inside_a_model_with_adamw():
    model = nn.Sequential(
        st.SparseLinear(20, 30, sparsity=0.9), nn.ReLU(), st.SparseLinear(30, 5, sparsity=0.9)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(64, 20), torch.randn(64, 5)
    nnz = [m.nnz for m in model if isinstance(m, st.SparseLinear)]
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first
    assert [m.nnz for m in model if isinstance(m, st.SparseLinear)] == nnz

"""Which dense layer types sparsify / densify / the pruning functions take, and the report row
of every module that owns a weight and is left dense."""

import warnings

import pytest
import torch
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear
from torch.nn.utils import parametrize

import sparsetrain as st
from sparsetrain.module_swap import is_dense_layer, sparse_type_for


def pruned(module, sparsity=0.9, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            w = getattr(m, "weight", None)
            lazy = isinstance(w, nn.parameter.UninitializedParameter)
            if isinstance(w, nn.Parameter) and not lazy and w.dim() >= 2:
                w.mul_(torch.rand(w.shape, generator=g) >= sparsity)
    return module


def rows(report):
    return {r.name: r for r in report.layers}


def conv1d_class():
    return pytest.importorskip("transformers.pytorch_utils").Conv1D


# -- transformers' Conv1D (GPT-2): weight (in, out), y = x @ W + b -----------------------------


def test_conv1d_swaps_with_the_same_outputs_and_gradients():
    conv1d = conv1d_class()
    torch.manual_seed(0)
    dense = pruned(conv1d(24, 16))  # nf=24 outputs, nx=16 inputs: weight (16, 24)
    with torch.no_grad():
        dense.bias.normal_()
    sparse = st.SparseLinear.from_dense(dense)
    assert (sparse.in_features, sparse.out_features) == (16, 24)
    assert sparse.nnz == int((dense.weight != 0).sum())
    x = torch.randn(3, 5, 16, requires_grad=True)
    xs = x.detach().clone().requires_grad_(True)
    y = dense(x)
    ys = sparse(xs)
    torch.testing.assert_close(ys, y, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(y)
    y.backward(g)
    ys.backward(g)
    torch.testing.assert_close(xs.grad, x.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse.bias.grad, dense.bias.grad, rtol=1e-5, atol=1e-6)
    # values are the nonzeros of W^T (out, in) in row order: their gradients are W's, there.
    w_t, g_t = dense.weight.detach().t(), dense.weight.grad.t()
    torch.testing.assert_close(sparse.values.grad, g_t[w_t != 0], rtol=1e-5, atol=1e-6)


def test_conv1d_densifies_back_to_a_conv1d_with_its_layout():
    conv1d = conv1d_class()
    torch.manual_seed(0)
    model = nn.Sequential(pruned(conv1d(24, 16)), nn.ReLU(), pruned(conv1d(8, 24)))
    x = torch.randn(4, 16)
    before = model(x)
    report = st.sparsify(model, only_if_faster=False)
    assert report.swapped == ["0", "2"]
    assert [rows(report)[n].type for n in ("0", "2")] == ["Conv1D", "Conv1D"]
    assert all(isinstance(model[i], st.SparseLinear) for i in (0, 2))
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)
    st.densify(model)
    assert type(model[0]) is conv1d and type(model[2]) is conv1d
    assert model[0].weight.shape == (16, 24) and (model[0].nf, model[0].nx) == (24, 16)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)


def test_conv1d_pruning_and_sparsify_like():
    conv1d = conv1d_class()
    torch.manual_seed(0)
    model = nn.Sequential(conv1d(32, 16), nn.ReLU(), conv1d(4, 32))
    sparsities = st.magnitude_prune(model, 0.9, scope="layer")
    assert sparsities == {"0": pytest.approx(0.9, abs=1e-3), "2": pytest.approx(0.9, abs=0.01)}
    st.sparsify(model, include=["0"], only_if_faster=False)
    state = model.state_dict()
    fresh = st.sparsify_like(nn.Sequential(conv1d(32, 16), nn.ReLU(), conv1d(4, 32)), state)
    assert isinstance(fresh[0], st.SparseLinear) and type(fresh[2]) is conv1d
    x = torch.randn(5, 16)
    torch.testing.assert_close(fresh(x), model(x))
    # A Conv1D of another shape is refused before anything is swapped.
    other = nn.Sequential(conv1d(16, 32), nn.ReLU(), conv1d(4, 16))
    with pytest.raises(RuntimeError, match="size mismatch"):
        st.sparsify_like(other, state)
    assert type(other[0]) is conv1d


def test_the_pruner_carries_a_conv1d_optimizer_state_in_its_layout():
    conv1d = conv1d_class()
    torch.manual_seed(0)
    model = nn.Sequential(conv1d(32, 16), nn.ReLU(), conv1d(4, 32))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 16)).square().mean().backward()
        opt.step()
    weight = model[0].weight
    moments = {k: opt.state[weight][k].clone() for k in ("exp_avg", "exp_avg_sq")}
    pruner = st.GradualMagnitudePruner(model, opt, 0.9, 0, 0, min_sparsity=0.5)
    assert pruner.step()
    sparse = model[0]
    assert isinstance(sparse, st.SparseLinear)
    kept = sparse.weight.detach() != 0  # (out, in); the Conv1D's state is (in, out)
    for k, v in moments.items():
        torch.testing.assert_close(opt.state[sparse.values][k], v.t()[kept], rtol=0, atol=0)


def test_follow_pattern_reads_a_conv1d_copy_in_its_layout():
    conv1d = conv1d_class()
    torch.manual_seed(0)
    model = nn.Sequential(conv1d(32, 16))
    averaged = torch.optim.swa_utils.AveragedModel(model)
    with torch.no_grad():
        averaged.module[0].weight.mul_(2.0)
    twice = averaged.module[0].weight.detach().clone()
    st.magnitude_prune(model, 0.9)
    st.sparsify(model, only_if_faster=False)
    st.pruning.follow_pattern(averaged, model)
    copy = averaged.module[0]
    assert isinstance(copy, st.SparseLinear)
    kept = model[0].weight.detach() != 0
    torch.testing.assert_close(copy.values.detach(), twice.t()[kept], rtol=0, atol=0)


# -- nn.Linear subclasses and nn.MultiheadAttention ------------------------------------------


def test_a_standalone_non_dynamically_quantizable_linear_swaps_and_comes_back():
    torch.manual_seed(0)
    model = nn.Sequential(pruned(NonDynamicallyQuantizableLinear(16, 8)), nn.Tanh())
    x = torch.randn(3, 16)
    before = model(x)
    report = st.sparsify(model, only_if_faster=False)
    assert report.swapped == ["0"] and isinstance(model[0], st.SparseLinear)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)
    st.densify(model)
    assert type(model[0]) is NonDynamicallyQuantizableLinear
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.attn(x, x, x)[0])


def test_multihead_attention_out_proj_is_reported_not_swapped():
    """MHA hands out_proj.weight to F.multi_head_attention_forward and never calls out_proj:
    a sparse out_proj would never run its kernels, so it stays dense and says why."""
    torch.manual_seed(0)
    model = pruned(Attention())
    x = torch.randn(2, 5, 16)
    before = model(x)
    report = st.sparsify(model, example_inputs=x, only_if_faster=False)
    table = rows(report)
    assert type(model.attn.out_proj) is NonDynamicallyQuantizableLinear
    assert "reads out_proj.weight directly" in table["attn.out_proj"].reason
    assert not table["attn.out_proj"].swapped
    assert table["attn"].reason == "type not supported (MultiheadAttention)"
    assert table["attn"].shape == (48, 16)  # in_proj_weight
    assert report.swapped == ["head"]
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)


def test_the_pruner_keeps_multihead_attention_out_proj_dense():
    torch.manual_seed(0)
    model = Attention()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    pruner = st.GradualMagnitudePruner(model, opt, 0.9, 0, 0, min_sparsity=0.5)
    with pytest.warns(UserWarning, match="attn.out_proj is read directly by its parent"):
        pruner.step()
    assert type(model.attn.out_proj) is NonDynamicallyQuantizableLinear
    assert float((model.attn.out_proj.weight == 0).float().mean()) == pytest.approx(0.9, abs=0.01)
    assert isinstance(model.head, st.SparseLinear)


class OwnForward(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2


class ExtraParameter(nn.Linear):
    def __init__(self, *args):
        super().__init__(*args)
        self.scale = nn.Parameter(torch.ones(()))


class PlainSubclass(nn.Conv2d):
    pass


def test_one_predicate_for_what_the_functions_take():
    assert sparse_type_for(nn.Linear(2, 2)) is st.SparseLinear
    assert sparse_type_for(NonDynamicallyQuantizableLinear(2, 2)) is st.SparseLinear
    assert sparse_type_for(PlainSubclass(2, 2, 1)) is st.SparseConv2d
    assert sparse_type_for(nn.Conv1d(2, 2, 1)) is st.SparseConv1d
    for other in (OwnForward(2, 2), ExtraParameter(2, 2), nn.Embedding(4, 2), nn.Conv3d(2, 2, 1)):
        assert sparse_type_for(other) is None and not is_dense_layer(other)
        with pytest.raises(TypeError, match="from_dense expects"):
            st.SparseLinear.from_dense(other)
    model = pruned(nn.Sequential(OwnForward(8, 8), ExtraParameter(8, 8), PlainSubclass(1, 2, 1)))
    # magnitude_prune takes exactly what sparsify takes.
    assert set(st.magnitude_prune(model, 0.5)) == {"2"}
    table = rows(st.sparsify(model, only_if_faster=False, min_sparsity=0.0))
    assert "overrides forward" in table["0"].reason
    assert "adds scale" in table["1"].reason
    assert table["2"].swapped and type(st.densify(model)[2]) is PlainSubclass


# -- a row for every module with a weight, whole names ---------------------------------------


class Everything(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 8)
        self.norm = nn.LayerNorm(8)  # 1-D weight: not a weight matrix, no row
        self.a_rather_long_attention_block_name = nn.ModuleDict(
            {n: nn.Linear(8, 8) for n in ("query", "key", "value")}
        )
        self.param = nn.Linear(8, 8)
        parametrize.register_parametrization(self.param, "weight", nn.Identity())
        self.normed = torch.nn.utils.weight_norm(nn.Linear(8, 8))
        self.double = nn.Linear(8, 8).double()
        self.lazy = nn.LazyLinear(8)
        self.dense = nn.Linear(8, 8)  # below min_sparsity
        self.left_out = nn.Linear(8, 8)
        self.sparse = st.SparseLinear(8, 8)

    def forward(self, tokens):
        return self.embedding(tokens)


def test_every_weight_bearing_module_gets_a_row_saying_why():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm's deprecation
        model = Everything()
    pruned(model)
    with torch.no_grad():
        model.dense.weight.fill_(1.0)
    report = st.sparsify(model, only_if_faster=False, exclude="left_out")
    table = rows(report)
    block = "a_rather_long_attention_block_name"
    assert {f"{block}.{n}" for n in ("query", "key", "value")} <= set(report.swapped)
    assert table["embedding"].reason == "type not supported (Embedding)"
    assert "norm" not in table and not any(".parametrizations" in n for n in table)
    assert table["param"].reason.startswith("parametrized")
    assert table["normed"].reason.startswith("weight derived by a hook")
    assert table["double"].reason == "not float32 (torch.float64)"
    assert table["lazy"].reason.startswith("weight not initialized")
    assert table["dense"].reason == "sparsity below 0.8"
    assert table["left_out"].reason == "excluded"
    assert table["sparse"].reason == "already sparse"
    text = str(report)
    for n in ("query", "key", "value"):  # whole names: q, k and v read apart
        assert f"{block}.{n} " in text
    assert "sparse (already sparse)" in text and "(1 were already)" in text
    assert table["sparse"].sparsity == pytest.approx(model.sparse.sparsity)
    assert table["sparse"].shape == (8, 8)
    assert len(report.layers) == 11


def test_a_tied_head_is_a_row_saying_tied_and_is_not_pruned():
    emb = nn.Embedding(20, 8)
    head = nn.Linear(8, 20, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, nn.Linear(8, 8), head)
    before = emb.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"2 shares its weight with 0\.weight \(tied\)"):
        result = st.magnitude_prune(model, 0.9, scope="layer")
    assert torch.equal(emb.weight, before)  # no zeros reach the embedding
    assert result["2"] == 0.0 and result["1"] == pytest.approx(0.9, abs=0.02)
    with pytest.warns(UserWarning, match="shares its weight"):
        report = st.sparsify(model, only_if_faster=False)
    assert rows(report)["2"].reason == "tied: weight shared with 0.weight"
    assert report.swapped == ["1"]
    # Asked for: the tie is pruned, in both modules.
    st.magnitude_prune(model, 0.5, scope="layer", tied=True)
    assert emb.weight is head.weight
    assert float((emb.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)


def test_mapping_example_inputs_are_keyword_arguments():
    class Keywords(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

        def forward(self, *, features, scale=1.0):
            return self.b(torch.relu(self.a(features))) * scale

    model = pruned(Keywords())
    x = torch.randn(6, 8)
    before = model(features=x)
    report = st.sparsify(model, example_inputs={"features": x, "scale": 2.0})
    for row in report.layers:  # every layer was reached, so timed
        assert row.dense_ms is not None and row.sparse_ms is not None
        assert row.reason != "not reached by example_inputs"
    torch.testing.assert_close(model(features=x), before, rtol=1e-5, atol=1e-6)


def test_a_layer_called_with_a_keyword_input_is_reached():
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)

        def forward(self, x):
            return self.a(input=x)

    model = nn.Sequential(pruned(Keyword()))
    report = st.sparsify(model, example_inputs=torch.randn(4, 8))
    assert rows(report)["0.a"].dense_ms is not None

"""SparseConv1d against nn.Conv1d: every option, forward and every gradient, batched and
unbatched; construction, checkpoints, the model-level functions, bad input."""

import pytest
import torch
from torch import nn

import sparsetrain as st
from sparsetrain.dynamic.dense_grad import dense_gradient

OPTIONS = [
    dict(kernel_size=5, padding=2),
    dict(kernel_size=25, dilation=2, padding="same"),
    dict(kernel_size=3, stride=2),
    dict(kernel_size=(4,), padding=(3,), padding_mode="reflect", groups=2),
    dict(kernel_size=1, stride=3),
    dict(kernel_size=7, padding="same", padding_mode="circular", bias=False),
    dict(kernel_size=6, padding=2, padding_mode="replicate", stride=3, dilation=2),
    dict(kernel_size=3, padding="valid", groups=8, out_channels=8),  # depthwise
]


def pruned_conv1d(seed=0, in_channels=8, out_channels=6, density=0.3, **kw):
    torch.manual_seed(seed)
    conv = nn.Conv1d(in_channels, out_channels, **kw)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) < density)
    return conv


@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("batched", [True, False])
def test_equals_nn_conv1d_forward_and_gradients(kw, batched):
    dense = pruned_conv1d(**kw)
    sparse = st.SparseConv1d.from_dense(dense)
    shape = (4, 8, 50) if batched else (8, 50)
    x = torch.randn(shape, requires_grad=True)
    xs = x.detach().clone().requires_grad_()
    y, ys = dense(x), sparse(xs)
    assert ys.shape == y.shape
    torch.testing.assert_close(ys, y, rtol=1e-5, atol=1e-5)
    dy = torch.randn_like(y)
    y.backward(dy)
    ys.backward(dy)
    torch.testing.assert_close(xs.grad, x.grad, rtol=1e-5, atol=1e-5)
    kept = dense.weight.detach() != 0
    torch.testing.assert_close(sparse.values.grad, dense.weight.grad[kept], rtol=1e-4, atol=1e-5)
    if dense.bias is not None:
        torch.testing.assert_close(sparse.bias.grad, dense.bias.grad, rtol=1e-5, atol=1e-5)
    # RigL's dense weight gradient of the layer: every position, as autograd's.
    g = dense_gradient(sparse, x.detach(), dy)
    torch.testing.assert_close(g, dense.weight.grad.reshape(g.shape), rtol=1e-4, atol=1e-5)


def test_attributes_round_trip_and_construction_from_scratch():
    dense = pruned_conv1d(kernel_size=(9,), stride=2, padding=4, dilation=1)
    sparse = st.SparseConv1d.from_dense(dense)
    for a in ("kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"):
        assert getattr(sparse, a) == getattr(dense, a), a
    assert sparse.weight.shape == dense.weight.shape
    assert tuple(sparse.weight_shape.tolist()) == (6, 8, 9)
    back = sparse.to_dense()
    assert type(back) is nn.Conv1d and torch.equal(back.weight, dense.weight)
    assert "SparseConv1d(8, 6, kernel_size=(9,), stride=(2,), padding=(4,)" in repr(sparse)
    scratch = st.SparseConv1d(64, 64, 51, padding=25, sparsity=0.97)
    assert scratch.sparsity == pytest.approx(0.97, abs=0.001)
    assert scratch(torch.randn(2, 64, 100)).shape == (2, 64, 100)


def test_state_dict_round_trips_and_refuses_another_kernel():
    a = st.SparseConv1d.from_dense(pruned_conv1d(kernel_size=5, density=0.2))
    b = st.SparseConv1d.from_dense(pruned_conv1d(seed=1, kernel_size=5, density=0.6))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 8, 30)
    torch.testing.assert_close(b(x), a(x))
    c = st.SparseConv1d.from_dense(pruned_conv1d(kernel_size=3))
    with pytest.raises(RuntimeError, match="size mismatch"):
        c.load_state_dict(a.state_dict())


class Temporal(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(4, 16, 5, padding=2)
        self.conv2 = nn.Conv1d(16, 16, 25, padding=12, dilation=1)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(h.mean(-1))


def test_sparsify_prune_densify_and_sparsify_like_take_conv1d():
    torch.manual_seed(0)
    model = Temporal()
    st.magnitude_prune(model, 0.9, scope="layer")
    x = torch.randn(2, 4, 40)
    before = model(x)
    report = st.sparsify(model, example_inputs=(x,), only_if_faster=False)
    assert {"conv1", "conv2", "head"} == set(report.swapped)
    assert isinstance(model.conv2, st.SparseConv1d)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    again = st.sparsify_like(Temporal(), model.state_dict())
    assert isinstance(again.conv2, st.SparseConv1d)
    torch.testing.assert_close(again(x), before, rtol=1e-5, atol=1e-5)
    st.densify(model)
    assert type(model.conv2) is nn.Conv1d
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_dynamic_sparsity_moves_conv1d_connections():
    torch.manual_seed(0)
    model = Temporal()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dst = st.DynamicSparsity(model, opt, 0.9, "rigl", update_every=1, end_step=5)
    assert isinstance(model.conv2, st.SparseConv1d)
    before = model.conv2.positions().clone()
    x, y = torch.randn(4, 4, 40), torch.randint(0, 3, (4,))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert dst.step() and not torch.equal(model.conv2.positions(), before)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel_size=(3, 3)), "kernel_size must be an int"),
        (dict(kernel_size=3, stride=0), "stride must be an int >= 1"),
        (dict(kernel_size=3, padding="full"), "SparseConv1d: padding must be 'same', 'valid'"),
        (dict(kernel_size=3, padding_mode="mirror"), "SparseConv1d: padding_mode must be one"),
        (dict(kernel_size=3, groups=4), "SparseConv1d: in_channels and out_channels must be"),
        (dict(kernel_size=3, stride=2, padding="same"), "SparseConv1d: padding='same' is not"),
    ],
)
def test_bad_arguments_name_the_layer(kwargs, match):
    with pytest.raises(ValueError, match=match):
        st.SparseConv1d(8, 6, **kwargs)


def test_bad_input_names_the_layer():
    layer = st.SparseConv1d(8, 6, 5)
    with pytest.raises(ValueError, match=r"SparseConv1d\(8->6, k=5\): expected input of shape"):
        layer(torch.randn(2, 8, 1, 30))
    with pytest.raises(ValueError, match=r"SparseConv1d\(8->6, k=5\)"):
        layer(torch.randn(2, 7, 30))
    with pytest.raises(ValueError, match=r"SparseConv1d\(8->6, k=5\)"):
        layer(torch.randn(2, 8, 3))  # shorter than the kernel
    assert layer.strategy_for((2, 8, 30)) in ("plane", "batch", "direct")
    with pytest.raises(ValueError, match=r"SparseConv1d\(8->6, k=5\): expected an input shape"):
        layer.strategy_for((2, 8, 1, 30))
    with pytest.raises(TypeError, match="SparseConv1d.from_dense expects nn.Conv1d"):
        st.SparseConv1d.from_dense(nn.Conv2d(2, 2, 3))


def test_compiles_into_one_graph_and_equals_eager():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 8, 9, padding=4))
    st.magnitude_prune(model, 0.9, scope="layer")
    st.sparsify(model, only_if_faster=False)
    x = torch.randn(2, 4, 30, requires_grad=True)
    ref = model(x)
    ref.sum().backward()
    grad, x.grad = x.grad.clone(), None
    y = torch.compile(model, fullgraph=True)(x)
    y.sum().backward()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, grad, rtol=1e-5, atol=1e-5)

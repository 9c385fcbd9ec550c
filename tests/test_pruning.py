"""magnitude_prune and the repacking of sparse layers with optimizer state."""

import pytest
import torch
from torch import nn

import sparsetrain as st


def zeros(m):
    w = m.weight.detach()
    return float((w == 0).sum()) / w.numel()


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_dense_layers_get_zeros(scope):
    model = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Conv2d(3, 8, 3))
    out = st.magnitude_prune(model, 0.75, scope=scope)
    assert set(out) == {"0", "2"}
    if scope == "layer":
        assert abs(zeros(model[0]) - 0.75) < 0.01 and abs(zeros(model[2]) - 0.75) < 0.01
    total = model[0].weight.numel() + model[2].weight.numel()
    nz = int((model[0].weight == 0).sum() + (model[2].weight == 0).sum())
    assert abs(nz / total - 0.75) < 0.01


def test_global_threshold_keeps_the_largest_everywhere():
    a, b = nn.Linear(10, 10, bias=False), nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.arange(100.0).view(10, 10))
        b.weight.copy_(torch.arange(100.0).view(10, 10) + 100)
    model = nn.Sequential(a, b)
    st.magnitude_prune(model, 0.5, scope="global")
    assert torch.all(a.weight == 0) and torch.all(b.weight != 0)


def test_sparse_layers_lose_nonzeros_and_stay_correct():
    sp = st.SparseLinear(50, 40, sparsity=0.5)
    param = sp.values
    x = torch.randn(7, 50)
    st.magnitude_prune(sp, 0.9, scope="layer")
    assert sp.values is param and abs(sp.sparsity - 0.9) < 0.01
    dense = sp.to_dense()
    torch.testing.assert_close(sp(x), dense(x), rtol=1e-5, atol=1e-5)
    # never adds back: pruning to a lower sparsity changes nothing
    nnz = sp.nnz
    st.magnitude_prune(sp, 0.5, scope="layer")
    assert sp.nnz == nnz


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
def test_optimizer_state_follows_the_surviving_weights(opt_name):
    """Train, prune, step again: the sparse model equals a dense one with the same mask."""
    torch.manual_seed(0)
    dense = nn.Linear(30, 20)
    with torch.no_grad():
        dense.weight.mul_(torch.rand_like(dense.weight) > 0.5)
    sparse = st.SparseLinear.from_dense(dense)
    make = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p, lr=0.01),
        "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    }[opt_name]
    opt_d, opt_s = make(dense.parameters()), make(sparse.parameters())

    def step(mask):
        x = torch.randn(16, 30)
        for m, opt in ((dense, opt_d), (sparse, opt_s)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            if m is dense:
                dense.weight.grad.mul_(mask)
            opt.step()
        with torch.no_grad():
            dense.weight.mul_(mask)

    mask = (dense.weight != 0).float()
    for _ in range(3):
        step(mask)
    # prune both the same way: 80% of the weights by magnitude
    st.magnitude_prune(sparse, 0.8, scope="layer", optimizer=opt_s)
    new_mask = sparse.weight.detach() != 0
    with torch.no_grad():
        dense.weight.mul_(new_mask)
        for v in opt_d.state[dense.weight].values():
            if isinstance(v, torch.Tensor) and v.shape == dense.weight.shape:
                v.mul_(new_mask)
    step(new_mask.float())
    torch.testing.assert_close(sparse.weight.detach(), dense.weight.detach(), rtol=1e-5, atol=1e-6)
    assert opt_s.param_groups[0]["params"][0] is sparse.values


def test_conv_and_bad_arguments():
    conv = st.SparseConv2d(4, 6, 3, padding=1, sparsity=0.5)
    st.magnitude_prune(conv, 0.8)
    assert abs(conv.sparsity - 0.8) < 0.01
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(conv(x), conv.to_dense()(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="sparsity"):
        st.magnitude_prune(conv, 1.5)
    with pytest.raises(ValueError, match="scope"):
        st.magnitude_prune(conv, 0.5, scope="channel")


def test_hold_masks_keeps_zeros_of_dense_layers_through_training():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4), st.SparseLinear(4, 3, sparsity=0.5)
    )
    st.magnitude_prune(model, 0.7, scope="layer", include=["0", "2"])
    zeros = [model[i].weight.detach() == 0 for i in (0, 2)]
    reapply = st.hold_masks(model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        model(torch.randn(8, 12)).square().mean().backward()
        assert torch.all(model[0].weight.grad[zeros[0]] == 0)  # gradients masked
        opt.step()
        reapply()
    for i, z in zip((0, 2), zeros):
        assert torch.all(model[i].weight.detach()[z] == 0)
        assert torch.any(model[i].weight.detach()[~z] != 0)


# -- layers pruned with torch.nn.utils.prune ---------------------------------------------------


def torch_pruned_model():
    from torch.nn.utils import prune

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    for i in (0, 3):
        prune.l1_unstructured(model[i], "weight", amount=0.3)
    return model


def effective_zeros(m):
    return float((m.weight_orig * m.weight_mask == 0).float().mean())


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_prune_goes_through_torch_prune_masks(scope):
    torch.manual_seed(0)
    model = torch_pruned_model()
    x = torch.randn(2, 3, 6, 6)
    out = st.magnitude_prune(model, 0.8, scope=scope)
    model(x)  # torch's pre-hook recomputes weight = weight_orig * weight_mask
    total = sum(model[i].weight.numel() for i in (0, 3))
    nz = sum(int((model[i].weight == 0).sum()) for i in (0, 3))
    assert nz / total == pytest.approx(0.8, abs=0.01)  # was about 0.3 before: the hook undid it
    for i in (0, 3):
        assert out[str(i)] == pytest.approx(effective_zeros(model[i]))
        assert out[str(i)] == pytest.approx(float((model[i].weight == 0).float().mean()))
        if scope == "layer":
            assert out[str(i)] == pytest.approx(0.8, abs=0.01)


def test_gradual_pruner_and_hold_masks_with_torch_prune_masks():
    torch.manual_seed(0)
    model = torch_pruned_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = st.GradualMagnitudePruner(
        model, opt, 0.9, start_step=0, end_step=2, every=1, min_sparsity=0.5
    )
    x = torch.randn(4, 3, 6, 6)
    with pytest.warns(UserWarning, match="torch.nn.utils.prune") as caught:
        for _ in range(6):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            pruner.step()
    assert len([w for w in caught if "torch.nn.utils.prune" in str(w.message)]) == 2  # once each
    for i in (0, 3):
        assert type(model[i]) in (nn.Conv2d, nn.Linear)  # kept dense, torch's mask holds zeros
        assert effective_zeros(model[i]) == pytest.approx(0.9, abs=0.01)
    # hold_masks: zeros of weight_orig inside torch's mask join the mask
    with torch.no_grad():  # five weights torch's mask keeps become zero
        keep = model[3].weight_mask.bool().clone()
        keep.view(-1)[keep.view(-1).nonzero()[:5]] = False
        model[3].weight_orig.mul_(keep)
    before = effective_zeros(model[3])
    reapply = st.hold_masks(model)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        reapply()
    model(x)
    assert effective_zeros(model[3]) == pytest.approx(before)
    assert float((model[3].weight == 0).float().mean()) == pytest.approx(before)


def test_weights_derived_otherwise_are_refused_naming_the_layer():
    from torch.nn.utils import parametrize

    class Scale(nn.Module):
        def forward(self, w):
            return 2 * w

    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
    parametrize.register_parametrization(model[2], "weight", Scale())
    first = model[0].weight.detach().clone()
    with pytest.raises(ValueError, match="'2'.*parametrization"):
        st.magnitude_prune(model, 0.5)
    assert torch.equal(model[0].weight, first)  # refused before pruning anything
    with pytest.raises(ValueError, match="'2'"):
        st.GradualMagnitudePruner(model, None, 0.9, 0, 10)
    with pytest.raises(ValueError, match="'2'"):
        st.hold_masks(model)


# -- hold_masks on frozen weights --------------------------------------------------------------


@pytest.mark.parametrize("frozen", ["weight", "module"])
@pytest.mark.parametrize(
    "make", [lambda: nn.Linear(12, 10), lambda: nn.Conv2d(3, 4, 3)], ids=["linear", "conv"]
)
def test_hold_masks_on_frozen_weights(make, frozen):
    torch.manual_seed(0)
    layer = make()
    st.magnitude_prune(layer, 0.6)
    if frozen == "weight":
        layer.weight.requires_grad_(False)
    else:
        layer.requires_grad_(False)
    zeros = layer.weight.detach() == 0
    reapply = st.hold_masks([layer])  # raised PyTorch's "cannot register a hook" before
    with torch.no_grad():
        layer.weight.add_(1.0)  # something moves the zeros
    reapply()
    assert torch.all(layer.weight[zeros] == 0) and torch.all(layer.weight[~zeros] != 0)


# -- optimizer state that is not per value -----------------------------------------------------


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adagrad", "rmsprop", "adafactor"])
def test_prune_values_restarts_state_it_cannot_index(opt_name):
    torch.manual_seed(0)
    sp = st.SparseLinear(20, 10, sparsity=0.5)
    make = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p, lr=0.01),
        "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05),
        "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01),
        "adafactor": lambda p: torch.optim.Adafactor(p, lr=0.01),
    }[opt_name]
    opt = make(sp.parameters())
    sp(torch.randn(3, 20)).sum().backward()
    opt.step()
    state = opt.state[sp.values]
    carried = {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor) and v.dim()}
    keep = sp.values.detach().abs() > sp.values.detach().abs().median()
    sp.prune_values(keep, optimizer=opt)  # element-wise entries follow the survivors
    for k, v in carried.items():
        torch.testing.assert_close(opt.state[sp.values][k], v[keep])
    opt.state[sp.values]["factored"] = torch.zeros(3, 1)  # as a factored optimizer might hold
    sp.prune_values(torch.rand(sp.nnz) > 0.5, optimizer=opt)
    assert not opt.state.get(sp.values)  # cannot follow the survivors: restarts
    sp(torch.randn(3, 20)).sum().backward()
    opt.step()

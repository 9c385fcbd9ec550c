"""Optimizer state and averaged copies when a sparse layer's number of nonzeros changes under
them: load_state_dict with another nnz, prune_values without the optimizer, AveragedModel/EMA."""

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import sparsetrain as st
from sparsetrain.pruning import follow_pattern

OPTIMIZERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5),
    "adafactor": lambda p: torch.optim.Adafactor(p, lr=0.01),
}

LAYERS = {
    "linear": (lambda s: st.SparseLinear(30, 20, sparsity=s), lambda: torch.randn(5, 30)),
    "conv": (
        lambda s: st.SparseConv2d(3, 8, 3, padding=1, sparsity=s),
        lambda: torch.randn(2, 3, 6, 6),
    ),
}


def step(layer, opt, x):
    opt.zero_grad()
    layer(x).square().mean().backward()
    opt.step()


def resize_by_loading(layer, opt, make):
    other = make(0.5)
    assert other.nnz != layer.nnz
    layer.load_state_dict(other.state_dict())


def resize_by_pruning_without_optimizer(layer, opt, make):
    keep = torch.rand(layer.nnz) > 0.4
    layer.prune_values(keep)  # the optimizer is not told


@pytest.mark.parametrize("resize", [resize_by_loading, resize_by_pruning_without_optimizer])
@pytest.mark.parametrize("layer_name", sorted(LAYERS))
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_an_optimizer_not_told_of_a_resize_restarts_that_state(opt_name, layer_name, resize):
    make, data = LAYERS[layer_name]
    torch.manual_seed(0)
    layer = make(0.8)
    opt = OPTIMIZERS[opt_name](layer.parameters())
    x = data()
    for _ in range(2):
        step(layer, opt, x)
    assert opt.state[layer.values]  # momentum / moments held for the old length
    resize(layer, opt, make)
    # The reference: a fresh optimizer starting from the resized layer.
    twin = copy.deepcopy(layer)
    twin_opt = OPTIMIZERS[opt_name](twin.parameters())
    step(layer, opt, x)  # failed with "The size of tensor a ... must match"
    step(twin, twin_opt, x)
    assert opt.param_groups[0]["params"][0] is layer.values
    for k, v in opt.state[layer.values].items():
        if isinstance(v, torch.Tensor) and v.dim():
            assert v.shape == layer.values.shape, k
    # The values' state restarted: the step equals a fresh optimizer's first step.
    torch.testing.assert_close(layer.values, twin.values, rtol=1e-6, atol=1e-7)
    step(layer, opt, x)


def test_a_fitting_state_is_kept_and_a_stale_gradient_dropped():
    torch.manual_seed(0)
    layer = st.SparseLinear(30, 20, sparsity=0.8)
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    x = torch.randn(5, 30)
    step(layer, opt, x)
    st.magnitude_prune(layer, 0.9, optimizer=opt)  # told: the moments follow the survivors
    assert opt.state[layer.values]["exp_avg"].shape == layer.values.shape
    step(layer, opt, x)
    assert opt.state[layer.values]["step"] == 2  # a state that fits is kept
    layer(x).sum().backward()  # a gradient of the current length ...
    layer.load_state_dict(st.SparseLinear(30, 20, sparsity=0.5).state_dict())
    assert layer.values.grad is None  # ... does not survive a resize
    # Pruning with the optimizer while its state is of an older length: it restarts.
    st.magnitude_prune(layer, 0.9, optimizer=opt)
    assert not opt.state.get(layer.values)
    step(layer, opt, x)
    assert opt.state[layer.values]["step"] == 1


# -- averaged copies (SWA, EMA) ---------------------------------------------------------------


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 24),
        nn.ReLU(),
        nn.Linear(24, 5),
    )


def dense_weights(model):
    return {
        n: m.weight.detach().clone()
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d, st.SparseLinear, st.SparseConv2d))
    }


@pytest.mark.parametrize("min_sparsity", [0.5, None])
@pytest.mark.parametrize("average", ["swa", "ema"])
def test_averaged_model_follows_pruning(average, min_sparsity):
    """AveragedModel.update_parameters after pruning steps that swap layers and change nnz:
    follow_pattern gives the copy the model's patterns, with the averages of the survivors
    (checked against averages kept by hand on dense weights, zero where pruned)."""
    torch.manual_seed(0)
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = st.GradualMagnitudePruner(
        model, opt, 0.85, start_step=1, end_step=10, every=3, min_sparsity=min_sparsity
    )
    decay = 0.8
    averaged = (
        AveragedModel(model)
        if average == "swa"
        else AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    )
    ref, n = None, 0
    g = torch.Generator().manual_seed(1)
    for _ in range(14):
        x, y = torch.randn(6, 2, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if pruner.step():
            follow_pattern(averaged, model)
        averaged.update_parameters(model)
        now = dense_weights(model)
        if ref is None:
            ref = now
        else:
            for k, w in now.items():
                ref[k] = ref[k] * (w != 0)  # the averages of pruned weights are dropped
                ref[k] = (
                    ref[k] + (w - ref[k]) / (n + 1)
                    if average == "swa"
                    else decay * ref[k] + (1 - decay) * w
                )
        n += 1
    assert any(isinstance(m, st.SparseConv2d) for m in model) == (min_sparsity is not None)
    assert [type(m) for m in averaged.module] == [type(m) for m in model]
    for i, m in enumerate(model):
        if isinstance(m, (st.SparseLinear, st.SparseConv2d)):
            assert torch.equal(averaged.module[i].col_idx, m.col_idx)
    for k, w in dense_weights(averaged.module).items():
        torch.testing.assert_close(w, ref[k], rtol=1e-5, atol=1e-6)
        assert torch.equal(w == 0, ref[k] == 0)


def test_follow_pattern_on_a_plain_copy_of_a_sparse_layer():
    torch.manual_seed(0)
    layer = st.SparseLinear(30, 20, sparsity=0.5)
    ema = copy.deepcopy(layer)
    with torch.no_grad():
        ema.values.mul_(2)
    st.magnitude_prune(layer, 0.8)
    follow_pattern(ema, layer)
    assert torch.equal(ema.col_idx, layer.col_idx) and torch.equal(ema.row_ptr, layer.row_ptr)
    torch.testing.assert_close(ema.weight, 2 * layer.weight)
    with pytest.raises(ValueError, match="no layer"):
        follow_pattern(nn.Sequential(), nn.Sequential(layer))

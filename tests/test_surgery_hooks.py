"""Hooks registered on a layer follow it through a swap (sparsify, densify, sparsify_like, the
pruner's swap) where their meaning survives, and a warning says which cannot."""

import warnings

import pytest
import torch
from torch import nn

import sparsetrain as st
from helpers import pruned_linear


def _conv():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) > 0.9)
    return conv, torch.randn(2, 3, 6, 6)


def _linear():
    return pruned_linear(12, 5, 0.9), torch.randn(3, 12)


def _sparsify(model, x):
    st.sparsify(model, min_sparsity=0.5)


def _pruner(model, x):
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    pruner = st.GradualMagnitudePruner(model, opt, 0.95, start_step=0, end_step=0, min_sparsity=0.5)
    pruner.step()


def _sparsify_like(model, x):
    sparse = (
        st.SparseLinear.from_dense(model[0])
        if isinstance(model[0], nn.Linear)
        else st.SparseConv2d.from_dense(model[0])
    )
    st.sparsify_like(model, nn.Sequential(sparse).state_dict())


SWAPS = {"sparsify": _sparsify, "pruner": _pruner, "sparsify_like": _sparsify_like}
LAYERS = {"linear": _linear, "conv": _conv}


@pytest.mark.parametrize("swap", list(SWAPS))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_module_hooks_follow_the_swap_and_their_handles_still_remove_them(swap, layer):
    dense, x = LAYERS[layer]()
    model = nn.Sequential(dense)
    calls = []
    handles = [
        dense.register_forward_pre_hook(lambda m, a: calls.append("pre")),
        dense.register_forward_pre_hook(lambda m, a, k: calls.append("pre-kw"), with_kwargs=True),
        dense.register_forward_hook(lambda m, a, out: calls.append("fwd")),
        dense.register_forward_hook(lambda m, a, k, out: calls.append("fwd-kw"), with_kwargs=True),
        dense.register_full_backward_pre_hook(lambda m, g: calls.append("bwd-pre")),
        dense.register_full_backward_hook(lambda m, gi, go: calls.append("bwd")),
    ]
    doubled = dense.register_forward_hook(lambda m, a, out: out * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here needs a warning
        SWAPS[swap](model, x)
    assert not isinstance(model[0], (nn.Linear, nn.Conv2d))
    calls.clear()
    xs = x.clone().requires_grad_()
    y = model(xs)
    with torch.no_grad():
        ref = 2 * model[0].to_dense()(x)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)  # the doubling hook ran
    y.sum().backward()
    assert sorted(calls) == sorted(["pre", "pre-kw", "fwd", "fwd-kw", "bwd-pre", "bwd"])
    for h in handles + [doubled]:
        h.remove()
    calls.clear()
    model(x).sum().backward()
    assert calls == []


@pytest.mark.parametrize("layer", list(LAYERS))
def test_hooks_follow_densify_too(layer):
    dense, x = LAYERS[layer]()
    model = nn.Sequential(dense)
    st.sparsify(model, min_sparsity=0.5)
    calls = []
    handle = model[0].register_forward_hook(lambda m, a, out: calls.append(type(m).__name__))
    st.densify(model)
    model(x)
    assert calls == [type(dense).__name__]
    handle.remove()
    model(x)
    assert len(calls) == 1


@pytest.mark.parametrize("swap", ["sparsify", "pruner"])
def test_bias_hooks_survive_and_weight_hooks_warn(swap):
    dense, x = _linear()
    model = nn.Sequential(dense)
    seen = []
    dense.bias.register_hook(lambda g: seen.append("bias"))
    dense.weight.register_hook(lambda g: seen.append("weight"))
    with pytest.warns(UserWarning, match="gradient hooks on its weight cannot follow"):
        SWAPS[swap](model, x)
    assert model[0].bias is dense.bias  # the same Parameter
    model(x).sum().backward()
    assert seen == ["bias"]


def test_old_style_backward_hooks_warn():
    dense, x = _linear()
    model = nn.Sequential(dense)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense.register_backward_hook(lambda m, gi, go: None)
    with pytest.warns(UserWarning, match="register_backward_hook"):
        st.sparsify(model, min_sparsity=0.5)


def test_torch_prune_hooks_are_not_carried():
    dense, x = _linear()
    torch.nn.utils.prune.l1_unstructured(dense, "weight", amount=0.95)
    model = nn.Sequential(dense)
    ref = model(x)
    st.sparsify(model, min_sparsity=0.5)
    assert isinstance(model[0], st.SparseLinear)
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)

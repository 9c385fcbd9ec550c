"""SparseConv2d vs nn.Conv2d, forward + backward (input, values and bias gradients), batch 32,
2 threads, on the convolutions of ResNet-18 at 224x224 input.

Run: python -m pytest bench/test_conv.py --benchmark-only
"""
import pytest
import torch
from torch import nn

import sparsetrain as st

BATCH = 32
# (in, out, spatial size of the input, kernel, stride)
LAYERS = [
    (64, 64, 56, 3, 1),
    (128, 128, 28, 3, 1),
    (256, 256, 14, 3, 1),
    (512, 512, 7, 3, 1),
    (64, 128, 56, 3, 2),
    (256, 512, 14, 1, 2),
]
SPARSITIES = [0.9, 0.95, 0.98]


def _name(layer):
    cin, cout, hw, k, s = layer
    return f"{k}x{k}s{s} {cin}->{cout} @{hw}"


def _case(layer, sparsity):
    return f"conv {_name(layer)} @{sparsity:.2f}"


def _conv(layer, sparsity):
    cin, cout, hw, k, s = layer
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) >= sparsity)
    return conv


def _step(module, x, grad):
    x.grad = None
    module.zero_grad(set_to_none=True)
    module(x).backward(grad)


def _run(benchmark, module, layer, rounds):
    cin, _, hw, _, _ = layer
    x = torch.randn(BATCH, cin, hw, hw, requires_grad=True)
    with torch.no_grad():
        grad = torch.randn_like(module(x))
    benchmark.pedantic(_step, args=(module, x, grad), rounds=rounds, iterations=1,
                       warmup_rounds=2)


@pytest.mark.parametrize("layer", LAYERS, ids=_name)
def test_dense(benchmark, layer):
    torch.manual_seed(0)
    benchmark.extra_info.update(kind="dense", cases=[_case(layer, s) for s in SPARSITIES])
    _run(benchmark, _conv(layer, 0.0), layer, rounds=7)


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("layer", LAYERS, ids=_name)
def test_sparse(benchmark, layer, sparsity):
    torch.manual_seed(0)
    sp = st.SparseConv2d.from_dense(_conv(layer, sparsity))
    cin, cout, hw, k, s = layer
    out_hw = (hw + 2 * (k // 2) - k) // s + 1
    benchmark.extra_info.update(kind="sparse", case=_case(layer, sparsity),
                                nnz_flops=6 * BATCH * sp.nnz * out_hw * out_hw, isa=st.get_isa())
    _run(benchmark, sp, layer, rounds=11)
    benchmark.extra_info["strategy"] = next(iter(sp._chosen.values()), sp.strategy)

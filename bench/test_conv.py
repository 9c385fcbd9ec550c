"""SparseConv2d vs nn.Conv2d, forward + backward (input, values and bias gradients), batch 32,
2 threads, on the convolutions of ResNet-18 at 224x224 input.

Run: python -m pytest bench/test_conv.py --benchmark-only
"""

import pytest

import sparsetrain as st
from sparsetrain import benchmarks as B


def _name(layer):
    return B.conv_name(layer)[len("conv ") :]


def _case(layer, sparsity):
    return f"{B.conv_name(layer)} @{sparsity:.2f}"


def _run(benchmark, module, layer, rounds):
    x = B.conv_input(layer)
    grad = B.output_grad(module, x)
    benchmark.pedantic(
        B.layer_step, args=(module, x, grad), rounds=rounds, iterations=1, warmup_rounds=2
    )
    return x


@pytest.mark.parametrize("layer", B.CONV_LAYERS, ids=_name)
def test_dense(benchmark, layer):
    benchmark.extra_info.update(kind="dense", cases=[_case(layer, s) for s in B.SPARSITIES])
    _run(benchmark, B.pruned_conv(layer, 0.0), layer, rounds=7)


@pytest.mark.parametrize("sparsity", B.SPARSITIES)
@pytest.mark.parametrize("layer", B.CONV_LAYERS, ids=_name)
def test_sparse(benchmark, layer, sparsity):
    sp = st.SparseConv2d.from_dense(B.pruned_conv(layer, sparsity))
    x = _run(benchmark, sp, layer, rounds=11)
    benchmark.extra_info.update(
        kind="sparse",
        case=_case(layer, sparsity),
        nnz_flops=B.nnz_flops(sp, x),
        isa=st.get_isa(),
        strategy=sp.strategy_for(x.shape),
    )

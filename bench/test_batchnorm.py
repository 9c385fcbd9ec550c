"""A convolution followed by a training-mode batch norm, forward + backward, batch 32, 2
threads: nn.Conv2d + nn.BatchNorm2d against SparseConv2d + nn.BatchNorm2d and against
SparseConv2d + FusedBatchNorm2d (the statistics summed by the convolution's kernel).

Run: python -m pytest bench/test_batchnorm.py --benchmark-only
"""

import pytest
from torch import nn

import sparsetrain as st
from sparsetrain import benchmarks as B

LAYERS = [(64, 64, 56, 3, 1), (256, 256, 14, 3, 1)]
SPARSITY = 0.95


def _name(layer):
    return B.conv_name(layer)[len("conv ") :]


def _case(layer, fused):
    return f"conv+BN {_name(layer)} @{SPARSITY:.2f} {'fused' if fused else 'unfused'}"


def _pair(layer, sparse, fused):
    conv = B.pruned_conv(layer, SPARSITY if sparse else 0.0)
    conv.bias = None  # a batch norm follows
    if sparse:
        conv = st.SparseConv2d.from_dense(conv)
    model = nn.Sequential(conv, nn.BatchNorm2d(layer[1]))
    if fused:
        assert st.fuse_batch_norm(model, B.conv_input(layer)) == [("0", "1")]
    return model


def _run(benchmark, model, layer):
    x = B.conv_input(layer)
    grad = B.output_grad(model, x)
    benchmark.pedantic(B.layer_step, args=(model, x, grad), rounds=9, iterations=1, warmup_rounds=2)
    return x


@pytest.mark.parametrize("layer", LAYERS, ids=_name)
def test_dense(benchmark, layer):
    benchmark.extra_info.update(kind="dense", cases=[_case(layer, f) for f in (False, True)])
    _run(benchmark, _pair(layer, sparse=False, fused=False), layer)


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("layer", LAYERS, ids=_name)
def test_sparse(benchmark, layer, fused):
    model = _pair(layer, sparse=True, fused=fused)
    x = _run(benchmark, model, layer)
    benchmark.extra_info.update(
        kind="sparse",
        case=_case(layer, fused),
        isa=st.get_isa(),
        nnz_flops=B.nnz_flops(model[0], x),
    )

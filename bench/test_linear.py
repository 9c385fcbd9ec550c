"""SparseLinear vs nn.Linear, forward + backward (all gradients), 2 threads.

Run: python -m pytest bench/test_linear.py --benchmark-only
"""
import pytest
import torch
from torch import nn

import sparsetrain as st

SHAPES = [(256, 768, 3072), (64, 4096, 4096), (128, 512, 1000)]  # (batch, in, out)
SPARSITIES = [0.8, 0.9, 0.95, 0.98]


def _pruned(in_f, out_f, sparsity):
    lin = nn.Linear(in_f, out_f)
    with torch.no_grad():
        lin.weight.mul_(torch.rand(out_f, in_f) >= sparsity)
    return lin


def _step(module, x, grad):
    x.grad = None
    module.zero_grad(set_to_none=True)
    module(x).backward(grad)


def _run(benchmark, module, shape):
    batch, in_f, out_f = shape
    x = torch.randn(batch, in_f, requires_grad=True)
    grad = torch.randn(batch, out_f)
    benchmark.pedantic(_step, args=(module, x, grad), rounds=15, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-{s[2]}")
def test_dense(benchmark, shape):
    torch.manual_seed(0)
    lin = _pruned(shape[1], shape[2], 0.0)
    # one dense measurement serves every sparsity of this shape
    benchmark.extra_info.update(kind="dense", cases=[_case(shape, s) for s in SPARSITIES])
    _run(benchmark, lin, shape)


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-{s[2]}")
def test_sparse(benchmark, shape, sparsity):
    torch.manual_seed(0)
    sp = st.SparseLinear.from_dense(_pruned(shape[1], shape[2], sparsity))
    benchmark.extra_info.update(kind="sparse", case=_case(shape, sparsity),
                                nnz_flops=6 * shape[0] * sp.nnz, isa=st.get_isa())
    _run(benchmark, sp, shape)


def test_peak_dense_matmul(benchmark):
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    benchmark.extra_info.update(kind="peak", flops=2 * n ** 3)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=10, iterations=1, warmup_rounds=2)


def _case(shape, sparsity):
    return f"linear {shape[0]}x{shape[1]}->{shape[2]} @{sparsity:.2f}"

"""SparseLinear vs nn.Linear, forward + backward (all gradients), 2 threads.

Run: python -m pytest bench/test_linear.py --benchmark-only
"""

import pytest
import torch

import sparsetrain as st
from sparsetrain import benchmarks as B


def _run(benchmark, module, shape, rounds=15):
    x = B.linear_input(shape)
    grad = B.output_grad(module, x)
    benchmark.pedantic(
        B.layer_step, args=(module, x, grad), rounds=rounds, iterations=1, warmup_rounds=2
    )
    return x


def _case(shape, sparsity):
    return f"{B.linear_name(shape)} @{sparsity:.2f}"


@pytest.mark.parametrize("shape", B.LINEAR_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-{s[2]}")
def test_dense(benchmark, shape):
    # one dense measurement serves every sparsity of this shape
    benchmark.extra_info.update(kind="dense", cases=[_case(shape, s) for s in B.SPARSITIES])
    _run(benchmark, B.pruned_linear(shape, 0.0), shape)


@pytest.mark.parametrize("sparsity", B.SPARSITIES)
@pytest.mark.parametrize("shape", B.LINEAR_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-{s[2]}")
def test_sparse(benchmark, shape, sparsity):
    sp = st.SparseLinear.from_dense(B.pruned_linear(shape, sparsity))
    x = _run(benchmark, sp, shape)
    benchmark.extra_info.update(
        kind="sparse", case=_case(shape, sparsity), nnz_flops=B.nnz_flops(sp, x), isa=st.get_isa()
    )


def test_peak_dense_matmul(benchmark):
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    benchmark.extra_info.update(kind="peak", flops=2 * n**3)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=10, iterations=1, warmup_rounds=2)

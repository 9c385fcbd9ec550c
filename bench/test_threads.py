"""Does a sparse layer right after a dense PyTorch op lose time to PyTorch's worker threads?

Our kernels run on the OpenMP runtime torch loaded (one pool of workers), so a sparse step
timed right after a dense matmul should take as long as one timed alone. Compare the medians
of the two benchmarks (the summary prints the ratio).
"""
import torch

import sparsetrain as st

BATCH, IN, OUT, SPARSITY = 256, 768, 3072, 0.95


def _setup():
    torch.manual_seed(0)
    sp = st.SparseLinear(IN, OUT, sparsity=SPARSITY)
    x = torch.randn(BATCH, IN, requires_grad=True)
    return sp, x, torch.randn(BATCH, OUT)


def _step(sp, x, g):
    sp(x).backward(g)


def test_sparse_alone(benchmark):
    sp, x, g = _setup()
    benchmark.extra_info.update(kind="threads", when="alone")
    benchmark.pedantic(_step, args=(sp, x, g), rounds=30, warmup_rounds=3)


def test_sparse_right_after_dense_matmul(benchmark):
    sp, x, g = _setup()
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)

    def dense_first():  # untimed: leaves torch's OpenMP workers hot (spinning) when we start
        torch.mm(a, b)
        return (sp, x, g), {}

    benchmark.extra_info.update(kind="threads", when="after dense")
    benchmark.pedantic(_step, setup=dense_first, rounds=30, warmup_rounds=3)

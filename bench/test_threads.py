"""Does a sparse layer right after a dense PyTorch op lose time to PyTorch's worker threads?

Our kernels run on the OpenMP runtime torch loaded (one pool of workers). A dense matmul
before the sparse step also evicts the step's data from cache, so the fair baseline is a
step after a single-threaded pass over as much memory (NumPy, no OpenMP): if threads
fought, "after dense matmul" would be slower than "after cache flush". The summary prints
the ratios.
"""

import numpy as np
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


def test_sparse_after_single_threaded_cache_flush(benchmark):
    sp, x, g = _setup()
    junk = np.zeros(3 * 1024 * 1024, dtype=np.float32)  # 12 MB, what the 1024² matmul touches

    def flush_first():
        np.add(junk, 1.0, out=junk)
        return (sp, x, g), {}

    benchmark.extra_info.update(kind="threads", when="after cache flush")
    benchmark.pedantic(_step, setup=flush_first, rounds=30, warmup_rounds=3)

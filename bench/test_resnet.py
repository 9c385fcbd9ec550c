"""End to end: one SGD training step of ResNet-18, 224x224, batch 32, 2 threads; the sparse
model has its convolutions (all but the first) 95% sparse and swapped in by `sparsify`
(per-layer timing), the dense model holds the same zeros. Also the peak resident memory of a
step of each, each measured in a fresh process.

Also the two models' steps taking turns in one loop (the steadiest ratio on a noisy machine).

Run: python -m pytest bench/test_resnet.py --benchmark-only
"""
import copy
import time

import pytest
import torch

import sparsetrain as st
from sparsetrain import benchmarks as B

BATCH, SIZE, SPARSITY = 32, 224, 0.95
CASE = f"resnet18 train step, {SIZE}px, batch {BATCH}, convs @{SPARSITY:.2f}"


@pytest.fixture(scope="module")
def setup():
    model = B.pruned_resnet("resnet18", SPARSITY)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, 1000, (BATCH,), generator=g)
    return model, x, y


def _run(benchmark, model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    benchmark.pedantic(B.train_step, args=(model, opt, x, y), rounds=5, iterations=1,
                       warmup_rounds=2)


def test_dense_step(benchmark, setup):
    model, x, y = setup
    benchmark.extra_info.update(kind="dense", cases=[CASE])
    _run(benchmark, copy.deepcopy(model), x, y)


def test_sparse_step(benchmark, setup):
    model, x, y = setup
    model = copy.deepcopy(model)
    report = st.sparsify(model, example_inputs=x, min_sparsity=0.5)
    nnz = sum(m.nnz for m in model.modules() if isinstance(m, st.SparseConv2d))
    benchmark.extra_info.update(kind="sparse", case=CASE, nnz_flops=0.0, isa=st.get_isa(),
                                swapped=len(report.swapped), nnz=nnz)
    _run(benchmark, model, x, y)


def test_alternating_steps(benchmark, setup):
    """Dense and sparse steps taking turns in one loop (7 pairs, after warm-up): both see the
    same machine noise and the same allocator state, which separate tests in one process do
    not (the one measured second inherits the other's heap). The summary prints both medians;
    the timing pytest-benchmark keeps is of whole pairs."""
    import statistics

    model, x, y = setup
    dense = copy.deepcopy(model)
    sparse = copy.deepcopy(model)
    st.sparsify(sparse, example_inputs=x, min_sparsity=0.5)
    opts = {m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (dense, sparse)}
    times = {dense: [], sparse: []}

    def pair():
        for m in (dense, sparse):
            t = time.perf_counter()
            B.train_step(m, opts[m], x, y)
            times[m].append(time.perf_counter() - t)

    benchmark.pedantic(pair, rounds=7, iterations=1, warmup_rounds=2)
    td, ts = (statistics.median(times[m][2:]) for m in (dense, sparse))
    ratios = sorted(a / b for a, b in zip(times[dense][2:], times[sparse][2:]))
    benchmark.extra_info.update(kind="pairs", dense_ms=td * 1e3, sparse_ms=ts * 1e3,
                                ratios=[round(r, 2) for r in ratios])


def test_peak_memory(benchmark):
    """Not a timing: the summary prints the peak RSS of a dense and a sparse step."""
    mem = {}

    def measure():
        mem["dense"] = B.step_memory_in_subprocess(False)
        mem["sparse"] = B.step_memory_in_subprocess(True)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(kind="memory", **{f"{k}_{m}": v for k, d in mem.items()
                                                   for m, v in d.items()})

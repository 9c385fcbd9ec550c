"""End to end: one SGD training step of ResNet-18, 224x224, batch 32, 2 threads; the sparse
model has its convolutions (all but the first) 95% sparse and swapped in by `sparsify`
(per-layer timing), the dense model holds the same zeros. Also the peak resident memory of a
step of each, each measured in a fresh process.

Also the two models' steps taking turns in one loop (the steadiest ratio on a noisy machine),
in a fresh process, with glibc malloc as it is and under `sparsetrain.keep_freed_memory()`.

Run: python -m pytest bench/test_resnet.py --benchmark-only
"""

import copy

import pytest
import torch

import sparsetrain as st
from sparsetrain import benchmarks as B

BATCH, SIZE, SPARSITY = 32, 224, 0.95
CASE = f"resnet18 train step, {SIZE}px, batch {BATCH}, convs @{SPARSITY:.2f}"


@pytest.fixture(scope="module")
def setup():
    return (B.pruned_resnet("resnet18", SPARSITY), *B.synthetic_batch(BATCH, SIZE))


def _run(benchmark, model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    benchmark.pedantic(
        B.train_step, args=(model, opt, x, y), rounds=5, iterations=1, warmup_rounds=2
    )


def test_dense_step(benchmark, setup):
    model, x, y = setup
    benchmark.extra_info.update(kind="dense", cases=[CASE])
    _run(benchmark, copy.deepcopy(model), x, y)


def test_sparse_step(benchmark, setup):
    model, x, y = setup
    model = copy.deepcopy(model)
    report = st.sparsify(model, example_inputs=x, min_sparsity=0.5)
    nnz = sum(m.nnz for m in model.modules() if isinstance(m, st.SparseConv2d))
    benchmark.extra_info.update(
        kind="sparse",
        case=CASE,
        nnz_flops=0.0,
        isa=st.get_isa(),
        swapped=len(report.swapped),
        nnz=nnz,
    )
    _run(benchmark, model, x, y)


@pytest.mark.parametrize("malloc", ["system", "keep"])
def test_alternating_steps(benchmark, malloc):
    """Dense and sparse steps taking turns in one loop (7 pairs, after warm-up: at least 2
    rounds, then until the process stops growing), in a fresh process: both see the same
    machine noise and the same allocator state, which separate tests in one process do not
    (the one measured second inherits the other's heap). Once
    with glibc malloc as it is, once under keep_freed_memory() (freed memory kept for the
    next step, as a caching allocator does; both models alike). The summary prints both
    medians; the timing pytest-benchmark keeps is of the whole subprocess."""
    result = {}

    def run():
        result.update(
            B.run_in_subprocess(
                "alternating_steps",
                malloc == "keep",
                rounds=7,
                warmup=2,
                batch=BATCH,
                image_size=SIZE,
                sparsity=SPARSITY,
            )
        )

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(kind="pairs", **result)


def test_peak_memory(benchmark):
    """Not a timing: the summary prints the peak RSS of a dense and a sparse step, with glibc
    malloc returning freed memory at once and with keep_freed_memory()."""
    mem = {}

    def measure():
        for keep in (False, True):
            for sparse in (False, True):
                key = ("sparse" if sparse else "dense") + ("_kept" if keep else "")
                mem[key] = B.step_memory_in_subprocess(sparse, keep_freed_memory=keep)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(
        kind="memory",
        **{f"{k}_{m}": v for k, d in mem.items() for m, v in d.items() if m != "malloc"},
    )

"""Temporal convolutions whose kernels hold a few nonzero taps over long sequences (learned
synaptic delays, dilated kernels): SparseConv1d vs nn.Conv1d in fp32 and under bf16 autocast,
64 -> 64 channels, kernel 25 / 100 / 250 taps ('same' padding), sequence 1000, batch 32,
forward + backward (input, weight and bias gradients), the three taking turns, 2 threads,
medians; nonzero GFLOP/s of the sparse layer.

Run: python -m pytest bench/test_conv1d.py --benchmark-only -s
"""

import pytest
import torch
from torch import nn

import sparsetrain as st
from sparsetrain import benchmarks as B


def conv1d_times(taps: int, sparsity: float, repeats: int = 7) -> dict:
    torch.manual_seed(0)
    dense = nn.Conv1d(64, 64, taps, padding="same")
    with torch.no_grad():
        dense.weight.mul_(torch.rand_like(dense.weight) >= sparsity)
    sparse = st.SparseConv1d.from_dense(dense)
    x = torch.randn(32, 64, 1000, requires_grad=True)
    grad = torch.randn(32, 64, 1000)
    steps = {
        "dense fp32": lambda: B.autocast_step(dense, x, grad, "fp32"),
        "dense bf16": lambda: B.autocast_step(dense, x, grad.bfloat16(), "bf16"),
        "sparse fp32": lambda: B.autocast_step(sparse, x, grad, "fp32"),
    }
    times = B.alternating_medians(steps, repeats, warmup=2)
    best = min(times["dense fp32"], times["dense bf16"])
    return {
        "times": times,
        "speedup": best / times["sparse fp32"],
        "nnz_gflops": B.nnz_flops(sparse, x.detach()) / times["sparse fp32"] / 1e9,
    }


@pytest.mark.parametrize("sparsity", [0.95, 0.99])
@pytest.mark.parametrize("taps", [25, 100, 250])
def test_temporal_conv1d(benchmark, taps, sparsity):
    out = benchmark.pedantic(conv1d_times, args=(taps, sparsity), rounds=1, iterations=1)
    benchmark.extra_info.update(kind="conv1d", taps=taps, sparsity=sparsity, **out)
    t = out["times"]
    print(
        f"\nconv1d 64->64 k={taps} {sparsity:.0%}: "
        + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items())
        + f"; {out['speedup']:.2f}x vs the best dense; nnz {out['nnz_gflops']:.1f} GFLOP/s"
    )

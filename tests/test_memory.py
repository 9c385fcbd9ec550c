"""Training steps do not leak: resident memory stays flat over 1,000 SGD steps."""

import gc
import os

import torch
from torch import nn

import sparsetrain as st

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def test_rss_stays_flat_over_1000_training_steps():
    torch.manual_seed(0)
    model = nn.Sequential(
        st.SparseConv2d(3, 8, 3, padding=1, sparsity=0.8, strategy="plane"),
        nn.ReLU(),
        st.SparseConv2d(8, 8, 3, stride=2, padding=1, sparsity=0.8, strategy="batch"),
        nn.ReLU(),
        st.SparseConv2d(8, 8, 3, padding=1, sparsity=0.8, strategy="direct"),
        nn.ReLU(),
        nn.Flatten(),
        st.SparseLinear(8 * 6 * 6, 32, sparsity=0.9),
        nn.ReLU(),
        st.SparseLinear(32, 10, sparsity=0.5),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 10, (16,))

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    # One kernel thread: the kernels never allocate, so the thread count cannot matter for
    # leaks, and tiny layers on a shared 2-core machine run far faster without barriers.
    st.set_num_threads(1)
    try:
        for _ in range(200):  # warm-up: pools, per-shape plans, allocator arenas
            step()
        gc.collect()
        before = rss_bytes()
        samples = []
        for i in range(800):
            step()
            if i % 100 == 99:
                samples.append(rss_bytes() - before)
        gc.collect()
        growth = rss_bytes() - before
    finally:
        st.set_num_threads(None)
    assert growth < 5 << 20, f"RSS grew by {growth / 2**20:.1f} MiB over 800 steps ({samples})"
    # a leak of even one small tensor per step would show as steady growth between samples
    assert samples[-1] - samples[0] < 2 << 20, samples

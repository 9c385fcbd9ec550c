"""Sparse training under DistributedDataParallel (gloo, 2 processes on localhost).

The flow: a dense model, gradual pruning (dense layers masked, then swapped for sparse modules,
then sparse nonzeros removed), SGD with momentum. Two ranks on half the global batch each must
end with the weights of one process on the whole batch, and identical masks on both ranks.
"""

import gc
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import sparsetrain as st

WORLD = 2
STEPS = 9
BATCH = 8


def build():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def batch(step):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(BATCH, 3, 8, 8, generator=g), torch.randint(0, 10, (BATCH,), generator=g)


def train(rank=None):
    """Single process on the global batch (rank None) or one DDP rank on its half."""
    torch.set_num_threads(1)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = st.GradualMagnitudePruner(
        model, opt, 0.9, start_step=2, end_step=8, every=2, min_sparsity=0.6
    )
    wrapped = model if rank is None else nn.parallel.DistributedDataParallel(model)
    for step in range(STEPS):
        x, y = batch(step)
        if rank is not None:
            half = BATCH // WORLD
            x, y = x[rank * half : (rank + 1) * half], y[rank * half : (rank + 1) * half]
        opt.zero_grad()
        nn.functional.cross_entropy(wrapped(x), y).backward()
        opt.step()
        if pruner.step() and rank is not None:
            # New parameters or new sizes: DDP registers parameters once, so wrap again
            # (dropping the old wrapper first, so its gradient hooks go with it).
            wrapped = None
            gc.collect()
            wrapped = nn.parallel.DistributedDataParallel(model)
    return model


def _worker(rank, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = train(rank)
        torch.save(
            {k: v.clone() for k, v in model.state_dict().items()},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)
def test_ddp_two_processes_equal_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    single = train().state_dict()
    sparse_layers = [k[: -len(".col_idx")] for k in single if k.endswith(".col_idx")]
    assert sparse_layers == ["0", "2", "5", "7"]  # masked dense first, sparse modules later
    for key, ref in single.items():
        # the ranks agree bitwise (same all-reduced gradients), masks included
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        if ref.dtype.is_floating_point:
            torch.testing.assert_close(ranks[0][key], ref, rtol=1e-4, atol=1e-5, msg=key)
        else:
            assert torch.equal(ranks[0][key], ref), key

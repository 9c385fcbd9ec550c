"""Sparse training under DistributedDataParallel (gloo, 2 processes on localhost).

The flow: a dense model, gradual pruning (dense layers masked, then swapped for sparse modules,
then sparse nonzeros removed), SGD with momentum. Two ranks on half the global batch each must
end with the weights of one process on the whole batch, and identical masks on both ranks.
"""

import gc

import torch
from torch import nn

import sparsetrain as st
from rank_runner import assert_ranks_equal_single, rank_share, rank_states, requires_gloo

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
        x, y = rank_share(rank, x, y)
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


@requires_gloo
def test_ddp_two_processes_equal_single_process(tmp_path):
    ranks = rank_states(train, tmp_path)
    single = train().state_dict()
    sparse_layers = [k[: -len(".col_idx")] for k in single if k.endswith(".col_idx")]
    assert sparse_layers == ["0", "2", "5", "7"]  # masked dense first, sparse modules later
    assert_ranks_equal_single(ranks, single)  # masks included

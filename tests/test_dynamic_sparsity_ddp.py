"""DynamicSparsity under DistributedDataParallel (gloo, 2 processes): every rank makes the same
moves (RigL's dense gradient all-reduced, SET's draws from rank 0's seed), so masks and values
stay identical, and the one DDP wrapper built after the constructor stays valid."""

import functools

import torch
from torch import nn

import sparsetrain as st
from rank_runner import rank_share, rank_states, requires_gloo

STEPS = 7


def train(method, rank=None):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    torch.manual_seed(1 + (rank or 0))  # seed=None: each rank would draw its own seed
    dst = st.DynamicSparsity(model, opt, 0.9, method, update_every=2, end_step=STEPS)
    wrapped = model if rank is None else nn.parallel.DistributedDataParallel(model)
    start = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("col_idx")}
    for step in range(STEPS):
        g = torch.Generator().manual_seed(100 + step)
        x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)
        x, y = rank_share(rank, x, y)
        nn.functional.cross_entropy(wrapped(x), y).backward()
        opt.step()
        opt.zero_grad()
        dst.step()
    moved = [k for k, v in start.items() if not torch.equal(model.state_dict()[k], v)]
    return model.state_dict() | {"moved": torch.tensor(len(moved)), "seed": torch.tensor(dst.seed)}


def check(method, tmp_path):
    ranks = rank_states(functools.partial(train, method), tmp_path)
    assert int(ranks[0]["moved"]) == 3  # every layer's pattern moved
    for key, v in ranks[0].items():
        assert torch.equal(ranks[1][key], v), key  # masks, values, the seed: identical


@requires_gloo
def test_rigl_ranks_make_identical_moves(tmp_path):
    check("rigl", tmp_path)


@requires_gloo
def test_set_ranks_make_identical_moves(tmp_path):
    check("set", tmp_path)

"""Sparse layers (a convolution and linear layers) under FSDP2 (fully_shard, gloo, 2
processes on localhost): their values and biases sharded across the ranks, all-gathered for
each forward and backward and freed between them. Two ranks on half the global batch each must
end with the parameters of one process on the whole batch."""

import pytest
import torch
from torch import nn

import sparsetrain as st
from rank_runner import assert_ranks_equal_single, rank_share, rank_states, requires_gloo, state_of

STEPS = 4
BATCH = 8

fsdp = pytest.importorskip("torch.distributed.fsdp")


def build():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 32),
        nn.ReLU(),
        nn.Linear(32, 5),
    )
    st.magnitude_prune(model, 0.85, scope="layer")
    st.sparsify(model, only_if_faster=False)
    assert isinstance(model[0], st.SparseConv2d)
    assert all(isinstance(model[i], st.SparseLinear) for i in (3, 5))
    return model


def batch(step):
    g = torch.Generator().manual_seed(200 + step)
    return torch.randn(BATCH, 3, 6, 6, generator=g), torch.randint(0, 5, (BATCH,), generator=g)


def train(rank=None):
    """Single process on the global batch (rank None) or one FSDP2 rank on its half."""
    torch.set_num_threads(1)
    model = build()
    if rank is not None:
        for layer in (model[0], model[3], model[5]):
            fsdp.fully_shard(layer)
        fsdp.fully_shard(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(STEPS):
        x, y = batch(step)
        x, y = rank_share(rank, x, y)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()  # FSDP averages over the ranks
        opt.step()
    return {
        k: v.full_tensor() if hasattr(v, "full_tensor") else v
        for k, v in model.state_dict().items()
    }


@requires_gloo
def test_fsdp2_two_processes_equal_single_process(tmp_path):
    assert_ranks_equal_single(rank_states(train, tmp_path), state_of(train()))

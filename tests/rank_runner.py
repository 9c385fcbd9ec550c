"""Runs a training function on WORLD gloo processes on localhost (the DDP and FSDP2 tests):
each rank's final state dict comes back through a file."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

WORLD = 2

requires_gloo = __import__("pytest").mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)


def rank_share(rank, *tensors):
    """The rank's equal share (along dim 0) of each tensor of a global batch; all of it for
    rank None (one process)."""
    if rank is None:
        return tensors
    return tuple(t.chunk(WORLD)[rank] for t in tensors)


def state_of(result) -> dict:
    state = result.state_dict() if isinstance(result, nn.Module) else result
    return {k: v.detach().clone() for k, v in state.items()}


def _worker(rank, train, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.save(state_of(train(rank)), os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # every rank's collectives done before any rank tears gloo down
    finally:
        dist.destroy_process_group()


def rank_states(train, tmp_path) -> list:
    """``train(rank)`` (a model or a state dict) on every rank; their state dicts."""
    mp.spawn(_worker, args=(train, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


def assert_ranks_equal_single(ranks: list, single: dict) -> None:
    """Every rank holds bitwise the same state (the same all-reduced gradients), and that of
    the one process on the global batch up to float rounding (integers exactly)."""
    assert set(ranks[0]) == set(single)
    for key, ref in single.items():
        for other in ranks[1:]:
            assert torch.equal(ranks[0][key], other[key]), key
        if ref.dtype.is_floating_point:
            torch.testing.assert_close(ranks[0][key], ref, rtol=1e-4, atol=1e-5, msg=key)
        else:
            assert torch.equal(ranks[0][key], ref), key

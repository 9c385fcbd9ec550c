"""Reuse of large internal buffers between calls.

A training step allocates the same large temporaries every time (the layout-changed copies
of activations and gradients). Fresh allocations of that size come from mmap and pay a page
fault per 4 KiB on first touch: measured 7-9 ms for a 27 MB buffer here, as much as the
sparse product itself.

Large buffers (internal ones and the layers' outputs) therefore come from a pool. A pooled
buffer is handed out as a new tensor on a storage the pool keeps (not an autograd view, so
in-place ops on it behave as on any tensor); it is free again once nothing but the pool
references that storage, which torch's storage use count tells exactly, including
references held inside autograd (tensors saved for backward). So a buffer is never reused
while anything can still read it, whatever the caller does with it. Buffers are matched by
best fit (a free buffer up to a third larger than asked). `empty_cache()` releases the free ones.
"""
from __future__ import annotations

import threading

import torch

_MIN_NUMEL = 1 << 16  # below 256 KB malloc reuses memory well on its own
_MAX_BYTES = 4 << 30
_use_count = getattr(torch._C, "_storage_Use_Count", None)
_lock = threading.Lock()
_pool: dict = {}  # numel -> list of (base tensor, its storage)
_bytes = 0
_OWNED = 2  # references the pool itself holds: the base tensor and the storage object


def empty(*shape: int) -> torch.Tensor:
    """A contiguous float32 tensor of the given shape, contents undefined, pooled if large."""
    global _bytes
    numel = 1
    for d in shape:
        numel *= d
    if _use_count is None or numel < _MIN_NUMEL:
        return torch.empty(shape, dtype=torch.float32)
    with _lock:
        # The smallest free buffer that fits without wasting more than a quarter of it:
        # layers of one network stage ask for similar sizes, and sharing buffers between
        # them keeps the free-but-held memory (which counts at the step's peak) small.
        best = None
        for size, entries in _pool.items():
            if numel <= size <= numel + numel // 3 and (best is None or size < best[0]):
                for base, storage in entries:
                    if _use_count(storage._cdata) == _OWNED:
                        best = (size, storage)
                        break
        if best is not None:
            return torch.empty(0, dtype=torch.float32).set_(best[1], 0, shape)
        entries = _pool.setdefault(numel, [])
        if _bytes + 4 * numel > _MAX_BYTES:
            return torch.empty(shape, dtype=torch.float32)
        base = torch.empty(numel, dtype=torch.float32)
        storage = base.untyped_storage()
        entries.append((base, storage))
        _bytes += 4 * numel
        return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)


def empty_cache() -> None:
    """Release the pooled buffers nothing uses any more."""
    global _bytes
    with _lock:
        for numel, entries in list(_pool.items()):
            keep = [(b, s) for b, s in entries if _use_count(s._cdata) != _OWNED]
            _bytes -= 4 * numel * (len(entries) - len(keep))
            _pool[numel] = keep


def pooled_bytes() -> int:
    """Bytes held by the pool (in use or free)."""
    return _bytes

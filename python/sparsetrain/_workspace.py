"""Large internal buffers and outputs of the sparse layers.

A training step allocates the same large temporaries and outputs every time. Fresh
allocations of that size come from mmap and pay a page fault per 4 KiB page on first touch:
~7 ms for a 27 MB buffer here, as much as a sparse convolution. Keeping freed buffers in a
pool avoided that, but the free-but-held buffers counted at the step's peak memory (ResNet-18,
batch 32: +134 MB, above the dense step's peak). Instead every large buffer is allocated
afresh, as PyTorch does, and advised to be backed by transparent huge pages
(csrc/memory/hugepages.cpp): first touch then costs ~1.5 ms per 27 MB, and freed memory goes
back at once. Where the system has no transparent huge pages the advice does nothing.
"""

from __future__ import annotations

import torch

from . import _C

_HUGE_MIN_BYTES = 4 << 20  # the advice covers whole 2 MiB pages: pointless for less


def empty(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A contiguous tensor (float32 unless ``dtype`` says) of the given shape, contents
    undefined."""
    t = torch.empty(shape, dtype=dtype)
    nbytes = t.element_size() * t.numel()
    if nbytes >= _HUGE_MIN_BYTES:
        _C.advise_hugepages(address=t.data_ptr(), nbytes=nbytes)
    return t

"""The validated patterns the kernels run on, found from the pattern buffers an op is given.

The sparse ops take a layer's pattern as its buffers (``row_ptr``, ``col_idx``), so a compiler
sees tensors only. The kernels never read those buffers: each op looks up a private, validated
copy here, with the indices derived from it, by the buffers' identity. Whatever Python does
to the buffers can therefore not send a kernel out of bounds. Writes PyTorch's version counter
sees are taken up at the next forward (the same numbers, as DistributedDataParallel's buffer
broadcast writes, keep the derived indices; others are validated and derived afresh); writes
it does not see (``.data``, NumPy) reach the op only once the buffers are assigned anew.

Each derivation gets a generation number, which the forward op returns and the backward op
checks, so a backward pass runs on the index its forward pass used or raises.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Callable

import torch

_generations = itertools.count(1)
_lock = threading.RLock()


class Entry:
    """A validated private pattern, what was derived from it, and the buffers' stamp then."""

    __slots__ = ("buffers", "stamp", "pattern", "derived", "generation", "__weakref__")

    def __init__(self, row_ptr, col_idx, pattern, derived):
        self.buffers = (weakref.ref(row_ptr), weakref.ref(col_idx))
        self.stamp = stamp(row_ptr, col_idx)
        self.pattern, self.derived = pattern, derived
        self.generation = next(_generations)

    def holds(self, row_ptr, col_idx) -> bool:
        """Whether this entry was made from these very buffers (not others at their address)."""
        return self.buffers[0]() is row_ptr and self.buffers[1]() is col_idx


_by_buffers: dict[tuple, Entry] = {}
_by_generation: weakref.WeakValueDictionary[int, Entry] = weakref.WeakValueDictionary()


def stamp(row_ptr: torch.Tensor, col_idx: torch.Tensor) -> tuple:
    """What changes when a buffer is written through PyTorch or replaced (inference tensors
    track no version: their address and length still tell a swap)."""
    if row_ptr.is_inference() or col_idx.is_inference():
        return (row_ptr.data_ptr(), None, col_idx.data_ptr(), None, col_idx.numel())
    return (
        row_ptr.data_ptr(),
        row_ptr._version,
        col_idx.data_ptr(),
        col_idx._version,
        col_idx.numel(),
    )


def same(t: torch.Tensor, ref: torch.Tensor) -> bool:
    """Whether buffer ``t`` holds exactly the private pattern ``ref``."""
    return (
        isinstance(t, torch.Tensor)
        and t.shape == ref.shape
        and t.dtype == ref.dtype
        and t.device == ref.device
        and torch.equal(t, ref)
    )


def _forget(key: tuple) -> None:
    _by_buffers.pop(key, None)


def _cached(key: tuple, row_ptr, col_idx) -> Entry | None:
    """The entry under ``key`` if it still describes these buffers (its stamp, or the same
    numbers: then the stamp is brought up to date)."""
    e = _by_buffers.get(key)
    if e is None or not e.holds(row_ptr, col_idx):
        return None
    now = stamp(row_ptr, col_idx)
    if e.stamp != now:
        if not (same(row_ptr, e.pattern[0]) and same(col_idx, e.pattern[1])):
            return None
        e.stamp = now
    return e


def _insert(key: tuple, row_ptr, col_idx, pattern, derived) -> Entry:
    if key not in _by_buffers:  # dropped with either buffer
        weakref.finalize(row_ptr, _forget, key)
        weakref.finalize(col_idx, _forget, key)
    e = _by_buffers[key] = Entry(row_ptr, col_idx, pattern, derived)
    _by_generation[e.generation] = e
    return e


def lookup(
    row_ptr: torch.Tensor,
    col_idx: torch.Tensor,
    kind: tuple,
    derive: Callable[[torch.Tensor, torch.Tensor], object],
) -> Entry:
    """The entry of these buffers for ops of ``kind`` (a hashable: the op and the shapes the
    derivation depends on): the cached one while the buffers hold its pattern, else a new one
    from ``derive(row_ptr, col_idx)`` on private copies (which validates them: its ValueError
    propagates)."""
    key = (id(row_ptr), id(col_idx), kind)
    e = _cached(key, row_ptr, col_idx)
    if e is not None:
        return e
    # One derivation at a time: two threads' first calls of a layer must not each make an
    # entry (the first one's backward would then find its generation gone).
    with _lock:
        e = _cached(key, row_ptr, col_idx)
        if e is not None:
            return e
        # Ordinary (not inference) tensors, so the layer also trains after being built or
        # loaded inside torch.inference_mode().
        with torch.inference_mode(False):
            pattern = (
                row_ptr.detach().clone(memory_format=torch.contiguous_format),
                col_idx.detach().clone(memory_format=torch.contiguous_format),
            )
            derived = derive(*pattern)
        return _insert(key, row_ptr, col_idx, pattern, derived)


def seed(
    row_ptr: torch.Tensor, col_idx: torch.Tensor, kind: tuple, pattern: tuple, derived
) -> None:
    """Enter what a layer derived itself from ``pattern``, its validated private copy of these
    buffers (taken just now), so that the ops' first call neither copies nor derives again."""
    with _lock:
        _insert((id(row_ptr), id(col_idx), kind), row_ptr, col_idx, pattern, derived)


def for_backward(row_ptr: torch.Tensor, col_idx: torch.Tensor, generation: int, name: str) -> Entry:
    """The entry a forward pass ran with (by its generation), for its backward pass, checked
    as check_backward does; gone (the buffers were rewritten and taken up since) raises."""
    e = _by_generation.get(generation)
    if e is None:
        _raise_changed(name)
    check_backward(e, row_ptr, col_idx, name)
    return e


def check_backward(e: Entry, row_ptr: torch.Tensor, col_idx: torch.Tensor, name: str) -> None:
    """The pattern buffers written in place since a forward pass on ``e`` with other numbers
    raise PyTorch's version error, as a dense layer's weight does (rewritten with the same
    numbers, as DistributedDataParallel's broadcast does, or copies of them, they pass)."""
    if e.holds(row_ptr, col_idx) and e.stamp == stamp(row_ptr, col_idx):
        return
    if not (same(row_ptr, e.pattern[0]) and same(col_idx, e.pattern[1])):
        _raise_changed(name)


def _raise_changed(name: str):
    raise RuntimeError(
        f"{name}: one of the variables needed for gradient computation has been modified "
        "by an inplace operation: the pattern (row_ptr, col_idx) changed between forward "
        "and backward"
    )

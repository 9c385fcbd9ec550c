"""Tensors as the NumPy arrays the kernels take, without touching their storage.

``Tensor.numpy()`` marks the tensor's storage as not resizable for as long as the storage
lives, and FSDP2 frees and re-gathers its parameters by resizing their storage: one forward
through a layer that handed its values to the kernels with ``.numpy()`` made the next
all-gather fail. These views describe the memory through NumPy's array interface instead;
the array keeps the tensor alive.
"""

from __future__ import annotations

import numpy as np
import torch

_TYPESTR = {
    torch.float32: "<f4",
    torch.float64: "<f8",
    torch.bfloat16: "<u2",  # NumPy has no bfloat16: its bits, which the kernels read as bf16
    torch.uint16: "<u2",
    torch.int64: "<i8",
    torch.int32: "<i4",
    torch.uint8: "|u1",
    torch.bool: "|b1",
}


class _Interface:
    __slots__ = ("tensor", "__array_interface__")


def numpy_view(t: torch.Tensor) -> np.ndarray:
    """``t``'s data as a NumPy array (no copy; a bfloat16 tensor as its uint16 bits)."""
    if t.device.type != "cpu":
        raise TypeError(f"expected a CPU tensor, got one on {t.device}")
    view = _Interface()
    view.tensor = t  # the array keeps it alive
    interface = {"data": (t.data_ptr(), False), "shape": t.shape, "typestr": _TYPESTR[t.dtype]}
    if not t.is_contiguous():
        size = t.element_size()
        interface["strides"] = tuple(s * size for s in t.stride())
    interface["version"] = 3
    view.__array_interface__ = interface
    return np.asarray(view)

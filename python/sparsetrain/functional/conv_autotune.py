"""Which layout a convolution runs on: a rule of the shapes, or a measurement.

Which one is faster depends on the layer and the input shape. ``auto`` decides by a rule of
the shapes alone (:func:`auto_strategy`), so it gives the same layout, and so the same bits,
in every process and for any thread count; ``timed`` measures the candidates on the first
call with a new input shape (forward and both gradients, layout changes included; see
:func:`time_layouts`) and keeps the winner.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from .. import tuning
from .._runtime import get_num_threads
from ..formats.conv import ConvGeometry, ConvShape
from .conv_layouts import BATCH_UNIT, DirectLayout, OffsetLayout, in_place


def auto_strategy(g: ConvGeometry, s: ConvShape, batch: int, isa: str) -> str:
    """The layout ``strategy="auto"`` takes for an input of shape ``s`` (a ConvShape) and
    ``batch`` images on kernel path ``isa``: a function of the shapes only, never of the
    thread count or of a timing, so results are reproducible. (``"timed"`` measures.)"""
    if in_place(s):
        return "plane"  # a matrix product on the NCHW tensors themselves: no layout change
    # Interleaving 16 images per pixel pays where an image's output plane is too small to
    # fill the vectors of long row runs (tuning.BATCH_MAX_PLANE).
    most = tuning.BATCH_MAX_PLANE.get(isa, tuning.BATCH_MAX_PLANE_DEFAULT)
    if batch >= BATCH_UNIT and s.Ho * s.Wo <= most:
        return "batch"
    return "plane"


def time_layouts(
    layouts: Sequence[OffsetLayout | DirectLayout],
    x: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    row_ptr: np.ndarray,
    repeats: int = 5,
) -> dict:
    """Seconds per forward + both gradients (layout changes included) for each layout: the
    best of `repeats` runs after one warm-up run. The layouts take turns, so a burst of noise
    from the rest of the machine (a shared VM's neighbours) hits all of them alike."""
    nthreads = get_num_threads()
    out = {layout.name: float("inf") for layout in layouts}
    with torch.no_grad():
        for rep in range(repeats + 1):  # the first round only warms up (allocations, caches)
            for layout in layouts:
                t = time.perf_counter()
                xq, _ = layout.pack_x(x)
                y, _, _ = layout.forward(row_ptr, values, xq, bias, nthreads)
                dyq, _ = layout.pack_dy(y, want_bias_grad=bias is not None)
                if layout.fuses_grads:  # as backward runs it
                    layout.grads(values, row_ptr, dyq, xq, nthreads)
                else:
                    layout.values_grad(row_ptr, dyq, xq, values.numel(), nthreads)
                    layout.input_grad(values, dyq, nthreads)
                if rep:
                    out[layout.name] = min(out[layout.name], time.perf_counter() - t)
    return out

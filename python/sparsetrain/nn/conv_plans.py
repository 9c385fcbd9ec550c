"""A SparseConv2d's per-shape plans: the kernels' index for each plane size, the layout for
each input shape, and the strategy each input shape runs on (what "auto" or "timed" chose).

Every map is a bounded least-recently-used one (sizes in tuning.py), so a layer fed ever new
shapes does not grow without bound. Plans belong to one pattern: the layer builds new ones
when it changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import torch

from .. import tuning
from .._runtime import get_isa
from ..formats.conv import ConvGeometry, ConvIndex, conv_index, conv_shape, direct_index
from ..functional.conv_autotune import auto_strategy, time_layouts
from ..functional.conv_layouts import STRATEGIES, DirectLayout, OffsetLayout, is_nhwc

# "auto": a rule of the shapes (reproducible); "timed": measure on the first call per shape.
CHOICES = ("auto", "timed") + STRATEGIES
# One timing at a time: concurrent first calls then agree on the layout (the second waits and
# reuses the first's choice), and two timings never share the cores.
_TIMING_LOCK = threading.Lock()


class LRUMap(OrderedDict):
    """A bounded least-recently-used map (per-shape plans of one layer)."""

    def __init__(self, limit: int | None = None):
        super().__init__()
        self.limit = tuning.PLAN_CACHE_SIZE if limit is None else limit

    def __reduce__(self):  # copies and pickles keep the bound (and drop the plans)
        return (type(self), (self.limit,))

    def get(self, key: Hashable, default: object = None) -> object:
        try:
            self.move_to_end(key)
            return self[key]
        except KeyError:
            return default

    def put(self, key: Hashable, value: object) -> object:
        """Store ``value`` under ``key`` (the least recently used beyond the limit go); returns
        ``value``."""
        self[key] = value
        while len(self) > self.limit:
            try:
                self.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                break
        return value


def strategy_problem(geometry: ConvGeometry, strategy: str) -> str:
    """Why a convolution of ``geometry`` (as the kernels see it) cannot run on ``strategy``
    ('' if it can): the direct kernels are stride-1 only."""
    if strategy not in CHOICES:
        return f"strategy must be one of {CHOICES}, got {strategy!r}"
    if strategy == "direct" and geometry.stride != (1, 1):
        return (
            f"strategy 'direct' runs stride-1 convolutions only (and 1x1 unpadded strided "
            f"ones, on the subsampled input), got stride {geometry.stride}"
        )
    return ""


def batch_bucket(n: int) -> int:
    """Batch sizes that share a timed decision: the same power-of-two range."""
    return 1 << max(0, n - 1).bit_length()


class ConvPlans:
    """The per-shape plans of one layer's geometry and (private, validated) pattern."""

    def __init__(self, geometry: ConvGeometry, pattern: tuple):
        self.geometry, self.pattern = geometry, pattern
        self.row_ptr = pattern[0].numpy()
        self.indices = LRUMap()  # (H, W) -> ConvIndex
        # (N, H, W, strategy, channels_last) -> OffsetLayout | DirectLayout
        self.layouts = LRUMap()
        # (N, H, W, isa) -> strategy; "timed" keys by (batch-size range, H, W, isa).
        self.chosen = LRUMap(tuning.CHOICE_CACHE_SIZE)

    def __reduce__(self):  # copies and pickles get fresh plans of the same pattern
        return (type(self), (self.geometry, self.pattern))

    @property
    def direct_ok(self) -> bool:
        """Whether the direct kernels can run this geometry (they are stride-1 only)."""
        return self.geometry.stride == (1, 1)

    def _index(self, h: int, w: int) -> ConvIndex:
        index = self.indices.get((h, w))
        if index is None:
            index = self.indices.put((h, w), conv_index(self.geometry, *self.pattern, h, w))
        return index

    def _auto(self, n: int, h: int, w: int, shape) -> str:
        isa = get_isa()
        return self.chosen.get((n, h, w, isa)) or self.chosen.put(
            (n, h, w, isa), auto_strategy(self.geometry, shape, n, isa)
        )

    def layout(
        self, x: torch.Tensor, strategy: str, values: torch.Tensor, bias: torch.Tensor | None
    ) -> OffsetLayout | DirectLayout:
        """The layout x (N, C, H, W, as the kernels see it; NCHW or channels_last) runs on
        under ``strategy``. The direct kernels read NCHW only: a channels_last x runs on
        "plane" where the strategy says "direct"."""
        n, _, h, w = x.shape
        nhwc = is_nhwc(x)
        index = self._index(h, w)
        name = strategy
        direct_ok = self.direct_ok
        if name == "direct" and not direct_ok:
            raise ValueError(strategy_problem(self.geometry, name))
        if name == "auto":
            name = self._auto(n, h, w, index.shape)
        elif name == "timed":
            name = self._timed(index, x, direct_ok and not nhwc, values, bias, nhwc)
        if nhwc and name == "direct":
            name = "plane"
        return self._layout_for(index, n, h, w, name, nhwc)

    def strategy_for(self, n: int, h: int, w: int, strategy: str) -> str | None:
        """The strategy an input of n images of h x w (as the kernels see them) runs on under
        ``strategy``; None for "timed" before that shape's timing."""
        if strategy == "auto":
            index = self.indices.get((h, w))
            return self._auto(
                n, h, w, index.shape if index is not None else conv_shape(self.geometry, h, w)
            )
        if strategy == "timed":
            return self.chosen.get((batch_bucket(n), h, w, get_isa()))
        if strategy == "direct" and not self.direct_ok:
            raise ValueError(strategy_problem(self.geometry, strategy))
        return strategy

    def _timed(self, index, x, direct_ok: bool, values, bias, nhwc: bool = False) -> str:
        """The measured layout for x's shape, decided once per batch-size range, plane size
        and memory format (not per thread count: a layer keeps one layout, and so its bits,
        while threads vary)."""
        n, _, h, w = x.shape
        key = (batch_bucket(n), h, w, get_isa()) + (("channels_last",) if nhwc else ())
        name = self.chosen.get(key)
        if name is not None:
            return name
        with _TIMING_LOCK:
            name = self.chosen.get(key)  # decided by a concurrent first call meanwhile
            if name is None:
                # The batch layout works in groups of 16 images: never worth it for fewer.
                names = [
                    s
                    for s in STRATEGIES
                    if (direct_ok or s != "direct") and (n >= 16 or s != "batch")
                ]
                candidates = [self._layout_for(index, n, h, w, s, nhwc) for s in names]
                times = time_layouts(candidates, x, values, bias, self.row_ptr)
                name = self.chosen.put(key, min(times, key=times.get))
                for other in names:  # keep only the winner's plan
                    if other != name:
                        self.layouts.pop((n, h, w, other, nhwc), None)
        return name

    def _layout_for(self, index, n, h, w, name, nhwc=False):
        key = (n, h, w, name, nhwc)
        layout = self.layouts.get(key)
        if layout is None:
            if name == "direct":
                di = direct_index(self.geometry, *self.pattern, h, w)
                layout = DirectLayout(self.geometry, di, n)
            else:
                layout = OffsetLayout(self.geometry, index, n, name, nhwc)
            self.layouts.put(key, layout)
        return layout

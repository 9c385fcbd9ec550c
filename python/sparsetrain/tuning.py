"""The switches that choose between equivalent computations: speed and memory, never results.

Every one is read when a layer runs (or builds a plan), so setting it, e.g.
``sparsetrain.tuning.REPACK_IN_BACKWARD = False``, takes effect at the next call; tests force
each side of a choice this way. No rule depends on the thread count, so a layer computes the
same bits for any number of threads.
"""

from __future__ import annotations

# -- SparseLinear ------------------------------------------------------------------------------
# The input gradient's kernel. "csc" gathers rows of dYᵀ through the transposed index (the
# values scattered into CSC order first, a random write per nonzero); "scatter" streams dYᵀ
# in W's CSR order and accumulates into each thread's own slice of dXᵀ. None picks by the
# rule: scatter where dXᵀ fits in LINEAR_CACHE_BYTES while dYᵀ or the values do not.
INPUT_GRAD_STRATEGY: str | None = None
LINEAR_CACHE_BYTES = 1 << 20
# ... and scatter from this padded batch up where out_features >= 4 in_features.
SCATTER_MIN_BATCH = 2048

# -- SparseConv2d: the layout strategy="auto" takes (functional/conv_autotune.py) --------------
# The batch layout (16 images interleaved per pixel) where an image's output plane has at most
# this many pixels, on kernel path (ISA) name; BATCH_MAX_PLANE_DEFAULT on the others. With
# 16-float vectors (AVX-512) a pixel of 16 images is one aligned vector, so the batch layout
# pays up to larger planes than with 8-float ones.
BATCH_MAX_PLANE = {"avx512": 14 * 14, "avx512_bf16": 14 * 14}
BATCH_MAX_PLANE_DEFAULT = 7 * 7

# -- SparseConv2d: the plane layout (functional/conv_layouts.py) -------------------------------
# Whether the plane layout's kernels pack each image themselves right before they use it
# (the packed input never exists as a tensor). None: for batches of at least FUSED_MIN_BATCH
# images (the kernels' threads then own whole images, so a smaller batch would leave threads
# idle and is packed beforehand); True / False: always / never.
FUSED_PACK: bool | None = None
FUSED_MIN_BATCH = 4

# -- SparseConv2d: memory of the backward pass (functional/conv.py) ----------------------------
# True: the values gradient packs the input again in backward (one more pass over x) instead
# of keeping forward's packed copy, a second copy of each layer's input, alive until backward.
# Only layouts with a packed copy are affected (the batch layout; the plane layout's kernels
# pack as they go). False trades that memory for the pass.
REPACK_IN_BACKWARD = True

# -- SparseConv2d: the subsampled input of a 1x1 strided convolution (functional/subsample.py) -
# The native subsampling kernel for planes at least this wide; narrower ones are sliced by
# PyTorch in the forward direction (the backward is native at every width).
NATIVE_SUBSAMPLE_MIN_W = 28

# -- SparseConv2d: per-shape plans (nn/conv_plans.py) -----------------------------------------
# Input shapes a layer keeps its heavy plans for (indices, layouts), least recently used
# dropped first; and the layout choices, a few bytes each, kept for far more shapes so that
# shapes that come back are not timed again (strategy="timed").
PLAN_CACHE_SIZE = 8
CHOICE_CACHE_SIZE = 4096

"""sparsetrain: fast training of unstructured-sparse networks on CPUs."""

import torch  # noqa: F401  (must load first: our kernels share torch's OpenMP runtime)

from . import _C, dynamic, formats, hf, models, tuning
from ._runtime import (
    get_isa,
    get_num_threads,
    keep_freed_memory,
    runtime_info,
    set_isa,
    set_num_threads,
    supported_isas,
)
from .dynamic import DynamicSparsity
from .functional import sparse_linear
from .hf import from_pretrained
from .nn import FusedBatchNorm2d, SparseConv1d, SparseConv2d, SparseLinear
from .pruning import (
    GradualMagnitudePruner,
    cubic_sparsity,
    follow_pattern,
    hold_masks,
    magnitude_prune,
)
from .surgery import SparsifyReport, densify, fuse_batch_norm, sparsify, sparsify_like

# A plain transformers load of a checkpoint with sparse layers raises, naming from_pretrained
# (a filter on transformers' logger; transformers itself is not imported).
hf.install_load_guard()

__version__ = _C.__version__

__all__ = [
    "SparseLinear",
    "SparseConv2d",
    "SparseConv1d",
    "sparsify",
    "densify",
    "sparsify_like",
    "from_pretrained",
    "fuse_batch_norm",
    "FusedBatchNorm2d",
    "SparsifyReport",
    "magnitude_prune",
    "GradualMagnitudePruner",
    "DynamicSparsity",
    "cubic_sparsity",
    "hold_masks",
    "follow_pattern",
    "sparse_linear",
    "dynamic",
    "formats",
    "hf",
    "models",
    "tuning",
    "get_isa",
    "set_isa",
    "supported_isas",
    "get_num_threads",
    "set_num_threads",
    "runtime_info",
    "keep_freed_memory",
    "__version__",
]

from .batchnorm import FusedBatchNorm2d
from .conv import SparseConv2d
from .linear import SparseLinear

__all__ = ["FusedBatchNorm2d", "SparseConv2d", "SparseLinear"]

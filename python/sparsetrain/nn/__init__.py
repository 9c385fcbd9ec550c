from .batchnorm import FusedBatchNorm2d
from .conv import SparseConv2d
from .conv1d import SparseConv1d
from .linear import SparseLinear

__all__ = ["FusedBatchNorm2d", "SparseConv1d", "SparseConv2d", "SparseLinear"]

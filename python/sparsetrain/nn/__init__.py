from .conv import SparseConv2d
from .linear import SparseLinear

__all__ = ["SparseConv2d", "SparseLinear"]

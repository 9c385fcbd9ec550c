from .linear import SparseLinear

__all__ = ["SparseLinear"]

"""Dynamic sparse training: layers sparse from the first step whose connections move while
training (SET, RigL)."""

from .distribution import erk_densities, uniform_densities
from .sparsity import DynamicSparsity

__all__ = ["DynamicSparsity", "erk_densities", "uniform_densities"]

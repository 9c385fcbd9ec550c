"""Sparsity patterns: CSR indices (csr) and the offset indices convolutions run on (conv)."""

from .csr import (
    INDEX_DTYPE,
    PTR_DTYPE,
    KernelIndex,
    Transposed,
    build_index,
    csr_from_dense,
    csr_to_dense,
    csr_transpose,
    nonzero_positions,
    nonzero_rows,
    random_csr,
    validate_csr,
)

__all__ = [
    "INDEX_DTYPE",
    "PTR_DTYPE",
    "KernelIndex",
    "Transposed",
    "build_index",
    "csr_from_dense",
    "csr_to_dense",
    "csr_transpose",
    "nonzero_positions",
    "nonzero_rows",
    "random_csr",
    "validate_csr",
]

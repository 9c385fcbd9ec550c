"""Run-time settings of the native kernels: threads and instruction set."""
from __future__ import annotations

import torch

from . import _C

_num_threads: int | None = None


def set_num_threads(n: int | None) -> None:
    """Threads for sparsetrain's kernels. ``None`` (the default) follows ``torch.get_num_threads()``.

    The kernels run on the same OpenMP runtime as PyTorch's CPU ops (the one torch ships and
    loads first), so sparse and dense layers share one pool of worker threads.
    """
    global _num_threads
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"set_num_threads: expected a positive int or None, got {n!r}")
    _num_threads = n


def get_num_threads() -> int:
    """Threads the next kernel call will use."""
    return _num_threads if _num_threads is not None else torch.get_num_threads()


def get_isa() -> str:
    """The instruction set the kernels run with: 'scalar', 'avx2' or 'avx512'."""
    return _C.get_isa()


def supported_isas() -> list[str]:
    """Instruction sets this CPU and build support, best last."""
    return list(_C.supported_isas())


def set_isa(name: str) -> None:
    """Force a kernel instruction set (as the SPARSETRAIN_ISA environment variable does at import).

    Raises ValueError for an unknown name or one this CPU does not support.
    """
    if name not in ("scalar", "avx2", "avx512"):
        raise ValueError(f"set_isa: unknown ISA {name!r}; expected 'scalar', 'avx2' or 'avx512'")
    if name not in _C.supported_isas():
        raise ValueError(
            f"set_isa: ISA {name!r} is not supported on this machine "
            f"(supported: {', '.join(_C.supported_isas())})"
        )
    _C.set_isa(name)


def runtime_info() -> dict:
    """Version, instruction set in use and supported, and thread count of the kernels."""
    return {
        "version": _C.__version__,
        "isa": get_isa(),
        "isas": supported_isas(),
        "threads": get_num_threads(),
        "torch": torch.__version__,
        "openmp_max_threads": _C.openmp_max_threads(),
    }

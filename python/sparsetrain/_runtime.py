"""Run-time settings: the native kernels' threads and instruction set, and the C allocator."""

from __future__ import annotations

import torch

from . import _C

_num_threads: int | None = None
_malloc_kept = False


def set_num_threads(n: int | None) -> None:
    """Threads for sparsetrain's kernels. ``None`` (the default) follows
    ``torch.get_num_threads()``.

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


ISAS = ("scalar", "avx2", "avx512", "avx512_bf16")


def get_isa() -> str:
    """The instruction set the kernels run with: 'scalar', 'avx2', 'avx512' or 'avx512_bf16'
    (avx512 plus AVX512-BF16 dot products for the bf16 kernels)."""
    return _C.get_isa()


def supported_isas() -> list[str]:
    """Instruction sets this CPU and build support, best last."""
    return list(_C.supported_isas())


def set_isa(name: str) -> None:
    """Force a kernel instruction set (as the SPARSETRAIN_ISA environment variable does at import).

    Raises ValueError for an unknown name or one this CPU does not support.
    """
    if name not in ISAS:
        raise ValueError(
            f"set_isa: unknown ISA {name!r}; expected one of {', '.join(map(repr, ISAS))}"
        )
    if name not in _C.supported_isas():
        raise ValueError(
            f"set_isa: ISA {name!r} is not supported on this machine "
            f"(supported: {', '.join(_C.supported_isas())})"
        )
    _C.set_isa(name=name)


def keep_freed_memory(enable: bool = True) -> bool:
    """Have the C allocator (glibc malloc) keep the memory that tensors free for the next
    tensors, instead of returning it to the system. Returns whether the setting took effect
    (False, and nothing changed, where the C library is not glibc).

    A training step allocates its activations and gradients afresh and frees them by its
    end. By default glibc unmaps large freed blocks, and the next step page-faults the same
    memory in again, 4 KiB at a time (an add into a fresh 26 MB tensor: 7.5 ms here, into an
    existing one: 2 ms). A sparse step spends most of its time in memory-bound work, so the
    faults weigh on it most: ResNet-18 (batch 32, 95% sparse) steps ~15% faster with this,
    the dense model's ~5% (README, Results). It is what a caching allocator (jemalloc,
    tcmalloc; PyTorch's CPU performance guide suggests one) does, with the same price: the
    process stays at its peak resident memory between steps.

    Process-wide: it covers every allocation, PyTorch's own included, so dense and sparse
    models alike. The ``sparsetrain`` command turns it on unless given ``--system-malloc``.
    ``keep_freed_memory(False)`` sets glibc's defaults again (fixed 128 KiB mmap and trim
    thresholds; glibc's adaptive threshold is not restored) and trims the free heap.
    """
    global _malloc_kept
    if not isinstance(enable, bool):
        raise ValueError(f"keep_freed_memory: expected True or False, got {enable!r}")
    done = bool(_C.set_malloc_reuse(keep=enable))
    if done:
        _malloc_kept = enable
    return done


def release_kept_memory() -> None:
    """Under keep_freed_memory, give the heap's free memory back to the system now: for the
    one-off temporaries of a setup step (sparsify's timing) that the kept heap would
    otherwise hold for the rest of the run. Does nothing when freed memory is not kept."""
    if _malloc_kept:
        _C.release_free_memory()


def bf16_path() -> str:
    """How the kernels in use run bfloat16 data."""
    isa = get_isa()
    if isa == "avx512_bf16":
        products = "AVX512-BF16 dot products (vdpbf16ps) into float32"
    else:
        products = "bf16 loads widened to float32, float32 multiply-adds"
    return (
        f"linear: {isa} kernels, {products}, bf16 stores rounded to nearest even; "
        "convolutions: float32"
    )


def runtime_info() -> dict:
    """Version, instruction set in use and supported, the bf16 path (what runs a bfloat16
    input: autocast's, or a bfloat16 model's), thread count of the kernels, and whether freed
    memory is kept (``keep_freed_memory``)."""
    return {
        "version": _C.__version__,
        "isa": get_isa(),
        "bf16": bf16_path(),
        "isas": supported_isas(),
        "threads": get_num_threads(),
        "torch": torch.__version__,
        "openmp_max_threads": _C.openmp_max_threads(),
        "malloc": "keep freed memory" if _malloc_kept else "system default",
    }

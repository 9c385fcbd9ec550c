"""What every sparse layer's autograd shares: the non-finite checks, the dense weight the
fallbacks compute with, the autocast rules, and the values checks.

Non-finite numbers are found by a cheap sound pre-check first: a tensor's sum is finite only
if all its elements are; only a non-finite sum needs the exact element-wise check.
"""

from __future__ import annotations

import math
from typing import NoReturn

import numpy as np
import torch
from torch import nn

from .._views import numpy_view  # noqa: F401 (what the kernels take)
from ..formats.csr import csr_to_dense


def all_finite(t: torch.Tensor) -> bool:
    """True iff every element of ``t`` is finite. A finite sum proves it (any NaN or ±Inf makes
    the sum NaN or ±Inf) at the cost of one streaming reduction; only a non-finite sum (a
    non-finite element, or finite ones overflowing) needs the exact element-wise check."""
    return math.isfinite(t.sum().item()) or bool(torch.isfinite(t).all())


def nonfinite_rows(t: torch.Tensor) -> torch.Tensor:
    """Indices (int64) of the entries along dim 0 of ``t`` holding a NaN or ±Inf."""
    return (~torch.isfinite(t.reshape(t.shape[0], -1))).any(dim=1).nonzero().view(-1)


def dense_weight(
    row_ptr: torch.Tensor | np.ndarray,
    col_idx: torch.Tensor | np.ndarray,
    values: torch.Tensor,
    rows: int,
    cols: int,
) -> torch.Tensor:
    """The (rows, cols) dense weight of a CSR pattern (NumPy or tensor indices), zeros filled in."""
    return csr_to_dense(
        torch.as_tensor(row_ptr), torch.as_tensor(col_idx), values.detach(), rows, cols
    )


try:
    torch.is_autocast_enabled("cpu")

    def cpu_autocast_enabled() -> bool:
        """Whether ``torch.autocast("cpu")`` is active."""
        return torch.is_autocast_enabled("cpu")
except TypeError:  # torch < 2.4
    cpu_autocast_enabled = torch.is_autocast_cpu_enabled


def autocast_bf16() -> bool:
    """Whether ``torch.autocast("cpu", dtype=torch.bfloat16)`` is active."""
    return cpu_autocast_enabled() and torch.get_autocast_dtype("cpu") == torch.bfloat16


def prepare_input(layer: nn.Module, x: object) -> object:
    """What a sparse layer's forward does before its input checks (SparseWeightModule._check_input).

    Inside ``torch.autocast("cpu")`` a layer with bf16 kernels (bfloat16 in its
    ``_param_dtypes``) behaves like
    autocast's lower-precision ops when autocast's dtype is bfloat16: a float32 input is cast to
    bfloat16 (and the output is bfloat16). Otherwise the layer behaves like an op on autocast's
    float32 list: a bfloat16 / float16 input is cast to float32 (and the output is float32).
    Outside autocast nothing is cast and the input check decides. Tensors that are not plain
    dense (strided) ones are rejected here with the layer's name, before anything reshapes them.
    """
    if not isinstance(x, torch.Tensor):
        return x  # the input check names the type
    if x.layout != torch.strided or x.is_nested:
        kind = "nested" if x.is_nested else str(x.layout)
        raise TypeError(
            f"{type(layer).__name__}({layer._describe()}): expected a dense (strided) "
            f"tensor, got a {kind} tensor"
        )
    if not cpu_autocast_enabled():
        return x
    if torch.bfloat16 in layer._param_dtypes and autocast_bf16():
        return x.to(torch.bfloat16) if x.dtype in (torch.float32, torch.float16) else x
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def no_autocast() -> torch.autocast:
    """The dense fallbacks compute in float32 like the sparse kernels, also inside autocast."""
    return torch.autocast("cpu", enabled=False)


def values_mismatch(values: torch.Tensor, nnz: int) -> str:
    """Why ``values`` cannot go to kernels of a pattern with ``nnz`` nonzeros ('' if it can):
    they take exactly one contiguous float per nonzero."""
    if values.dim() == 1 and values.numel() == nnz and values.is_contiguous():
        return ""
    return (
        f"values has shape {tuple(values.shape)}"
        f"{'' if values.is_contiguous() else ' (not contiguous)'}, expected a contiguous "
        f"({nnz},) for the pattern's {nnz} nonzeros"
    )


def check_values(name: str, values: torch.Tensor, nnz: int) -> None:
    """``values`` must fit the pattern the kernels run on (ValueError naming the layer)."""
    mismatch = values_mismatch(values, nnz)
    if mismatch:
        raise ValueError(f"{name}: {mismatch}")


def vmap_unsupported(name: str) -> NoReturn:
    """What the sparse layers' autograd.Functions answer to torch.func.vmap."""
    raise RuntimeError(
        f"{name}: torch.func.vmap is not supported by sparse layers (per-sample gradients "
        "included); torch.func.grad and functional_call are"
    )


def check_saved_values(name: str, values: torch.Tensor, nnz: int) -> None:
    """Backward's guard: a Parameter's data replaced (``values.data = ...``) between forward and
    backward, which autograd's version counter does not see, must not reach the kernels."""
    mismatch = values_mismatch(values, nnz)
    if mismatch:
        raise RuntimeError(
            f"{name}: values was replaced between forward and backward "
            f"({mismatch}); run the forward pass again"
        )


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def plain_eager(*tensors) -> bool:
    """Whether nothing but eager PyTorch looks at this call: no compiler or exporter tracing,
    no torch.func transform, no dispatch mode (FakeTensor, FlopCounterMode, ...), and plain
    tensors (no subclasses). Then the ops' bodies may run without the dispatcher."""
    return (
        not torch.compiler.is_compiling()
        and not torch._C._are_functorch_transforms_active()
        and torch._C._len_torch_dispatch_stack() == 0
        and all(t is None or type(t) in _PLAIN for t in tensors)
    )

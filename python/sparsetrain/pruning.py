"""Magnitude pruning of dense and sparse layers.

Dense ``nn.Linear`` / ``nn.Conv2d`` weights get their smallest entries zeroed; sparse layers
lose their smallest nonzeros for good (values and index repacked through the layers' single
pattern-setting path, optimizer state remapped to the surviving weights).
"""
from __future__ import annotations

import torch
from torch import nn

from .nn import SparseConv2d, SparseLinear
from .surgery import _matches

_DENSE = (nn.Linear, nn.Conv2d)
_SPARSE = (SparseLinear, SparseConv2d)


def prunable_layers(model: nn.Module, include=None, exclude=None) -> list:
    """(name, module) of every dense or sparse linear/conv layer, each module once."""
    out, seen = [], set()
    for name, module in model.named_modules():
        if not isinstance(module, _DENSE + _SPARSE) or module in seen:
            continue
        if include is not None and not _matches(name, module, include):
            continue
        if _matches(name, module, exclude):
            continue
        seen.add(module)
        out.append((name, module))
    return out


def _magnitudes(module) -> torch.Tensor:
    """|weight| of the entries that are still alive (nonzero positions of sparse layers)."""
    if isinstance(module, _SPARSE):
        return module.values.detach().abs()
    return module.weight.detach().abs().reshape(-1)


def _total(module) -> int:
    return module._rows * module._cols if isinstance(module, _SPARSE) else module.weight.numel()


def _keep_top(magnitudes: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask keeping the `keep` largest (ties broken by position, deterministically)."""
    mask = torch.zeros(magnitudes.numel(), dtype=torch.bool)
    if keep > 0:
        idx = torch.sort(magnitudes, descending=True, stable=True).indices[:keep]
        mask[idx] = True
    return mask


def _apply(module, keep_mask: torch.Tensor, optimizer) -> None:
    if isinstance(module, _SPARSE):
        if not bool(keep_mask.all()):
            module.prune_values(keep_mask, optimizer=optimizer)
        return
    with torch.no_grad():
        module.weight.mul_(keep_mask.view_as(module.weight))
        if optimizer is not None:  # pruned entries restart with empty optimizer state
            state = optimizer.state.get(module.weight, {})
            for v in state.values():
                if isinstance(v, torch.Tensor) and v.shape == module.weight.shape:
                    v.mul_(keep_mask.view_as(v))


def magnitude_prune(model: nn.Module, sparsity: float, scope: str = "global", include=None,
                    exclude=None, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Prune the smallest-magnitude weights until the chosen layers are `sparsity` zeros.

    scope="layer": every layer on its own; scope="global": one magnitude threshold across all
    chosen layers (their overall sparsity is `sparsity`). Dense layers get zeros, sparse layers
    lose nonzeros (repacked; `optimizer` state, if given, follows the surviving weights).
    Weights are only ever removed: a layer already sparser than asked is left alone.
    Returns {layer name: sparsity after pruning}.
    """
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f"magnitude_prune: sparsity must be in [0, 1], got {sparsity!r}")
    if scope not in ("global", "layer"):
        raise ValueError(f"magnitude_prune: scope must be 'global' or 'layer', got {scope!r}")
    layers = prunable_layers(model, include, exclude)
    if not layers:
        return {}
    if scope == "layer":
        for _, module in layers:
            mags = _magnitudes(module)
            keep = min(int((mags != 0).sum()), int(round((1.0 - sparsity) * _total(module))))
            _apply(module, _keep_top(mags, keep), optimizer)
    else:
        mags = [_magnitudes(m) for _, m in layers]
        flat = torch.cat(mags)
        total = sum(_total(m) for _, m in layers)
        keep = min(int((flat != 0).sum()), int(round((1.0 - sparsity) * total)))
        mask = _keep_top(flat, keep)
        start = 0
        for (_, module), m in zip(layers, mags):
            _apply(module, mask[start:start + m.numel()], optimizer)
            start += m.numel()
    return {name: _sparsity(module) for name, module in layers}


def _sparsity(module) -> float:
    if isinstance(module, _SPARSE):
        return module.sparsity
    w = module.weight.detach()
    return float((w == 0).sum()) / max(1, w.numel())

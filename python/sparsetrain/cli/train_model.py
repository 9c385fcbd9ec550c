"""The model side of ``sparsetrain train``: layer sizes and sparsity, the end layers that stay
dense, the optimizer and pruner a run uses, and the masks of pruned layers that stay dense."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from . import CLIError


def prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from ..pruning import prunable_layers

    return prunable_layers(model)


def layer_size(module: nn.Module) -> int:
    """The weights of a layer's dense weight, zeros included."""
    rows = getattr(module, "_rows", None)
    return (
        rows * module._cols
        if rows is not None and hasattr(module, "col_idx")
        else module.weight.numel()
    )


def model_sparsity(model: nn.Module) -> float:
    """The share of zero weights over all prunable layers."""
    zeros = total = 0
    for _, m in prunable(model):
        size = layer_size(m)
        total += size
        zeros += size - m.nnz if hasattr(m, "col_idx") else int((m.weight == 0).sum())
    return zeros / total if total else 0.0


def end_layers(model: nn.Module) -> tuple[str | None, str | None]:
    """Names of the first convolution and of the last linear layer (the classifier)."""
    first = classifier = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and first is None:
            first = name
        if isinstance(m, nn.Linear):
            classifier = name
    return first, classifier


def make_optimizer(cfg: dict, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = cfg["lr"], cfg["weight_decay"]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise CLIError(f"unknown optimizer {cfg['optimizer']!r}")


def make_pruner(
    cls: type, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: dict, pc: dict
) -> object:
    """A ``cls`` (GradualMagnitudePruner) on the schedule ``pc`` to the run's sparsity."""
    return cls(
        model,
        optimizer,
        cfg["sparsity"],
        start_step=int(pc["start_step"]),
        end_step=int(pc["end_step"]),
        every=int(pc["every"]),
        scope="layer",
        exclude=list(pc["exclude"]) or None,
        min_sparsity=pc["min_sparsity"],
    )


def hold_dense_masks(model: nn.Module, names: list[str], where: str = "") -> Callable[[], None]:
    """Keep the zeros of these dense layers (sparsetrain.hold_masks); returns the function
    that re-applies the masks after every optimizer step. ``where`` starts an error message
    (the checkpoint that named the layers)."""
    from ..pruning import hold_masks

    modules = []
    for name in names:
        try:
            modules.append(model.get_submodule(name))
        except AttributeError:
            raise CLIError(f"{where}masked layer {name!r} is not in the model") from None
    return hold_masks(m for m in modules if type(m) in (nn.Linear, nn.Conv2d))

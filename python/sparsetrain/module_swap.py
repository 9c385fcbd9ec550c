"""Finding layers in a model and swapping them for others: what sparsify, densify and the
pruner share.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterable
from typing import Callable, Union

from torch import nn

from .nn import SparseConv2d, SparseLinear

# Which layers a call takes (include= / exclude=): a module name, a glob pattern, a list of
# them, or a predicate f(name, module) -> bool; None takes none.
LayerSpec = Union[str, Iterable[str], Callable[[str, nn.Module], bool], None]
# The sparse layer each dense layer type becomes.
SPARSE_OF = {nn.Linear: SparseLinear, nn.Conv2d: SparseConv2d}


def matches(name: str, module: nn.Module, spec: LayerSpec) -> bool:
    """Whether a module of that name is picked by ``spec``: a module name, a glob pattern, a
    list of them, or a predicate ``f(name, module) -> bool``; None picks none."""
    if spec is None:
        return False
    if callable(spec) and not isinstance(spec, str):
        return bool(spec(name, module))
    patterns = [spec] if isinstance(spec, str) else list(spec)
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def shared_weights(model: nn.Module) -> set:
    """ids of weight Parameters that more than one module registers (tied weights)."""
    owners = {}
    for module in model.modules():
        for _name, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), set()).add(id(module))
    return {pid for pid, mods in owners.items() if len(mods) > 1}


def replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Point every parent slot that holds `old` at `new` (modules used twice move together),
    and hand `old`'s hooks to `new` (carry_hooks)."""
    carry_hooks(old, new)
    for parent in model.modules():
        for child_name, child in list(parent._modules.items()):
            if child is old:
                setattr(parent, child_name, new)


# A module's hook tables, as nn.Module keeps them. Forward (pre-)hooks and full backward hooks
# see the module's inputs and outputs, which a swap keeps: they move to the new module. The
# tables themselves move (not copies), so the handles their registration returned still
# remove them. State-dict hooks move too; they see the new module's keys.
_HOOK_TABLES = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def carry_hooks(old: nn.Module, new: nn.Module) -> None:
    """Move `old`'s module hooks to `new`; warn about the hooks whose meaning a swap ends."""
    from torch.nn.utils.prune import BasePruningMethod

    what = type(old).__name__
    # torch.nn.utils.prune's mask is in the copied weight already; its hook would look for
    # weight_orig on the new module.
    pruning = [k for k, h in old._forward_pre_hooks.items() if isinstance(h, BasePruningMethod)]
    for k in pruning:
        del old._forward_pre_hooks[k]
        old._forward_pre_hooks_with_kwargs.pop(k, None)
    for table in _HOOK_TABLES:
        if getattr(old, table, None):
            setattr(new, table, getattr(old, table))
    if old._backward_hooks:
        if old._is_full_backward_hook:
            new._backward_hooks, new._is_full_backward_hook = old._backward_hooks, True
        else:
            # register_backward_hook (not _full_) sees the last autograd node's gradients,
            # which are another layer's after the swap.
            warnings.warn(
                f"{what} replaced by {type(new).__name__}: its register_backward_hook "
                f"hooks cannot follow (use register_full_backward_hook); dropped",
                stacklevel=2,
            )
    for pname, other in (("weight", "values"), ("weight_orig", "values"), ("values", "weight")):
        p = old._parameters.get(pname)
        if p is not None and (p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None)):
            warnings.warn(
                f"{what} replaced by {type(new).__name__}: the gradient hooks on its "
                f"{pname} cannot follow (the new layer trains {other}, of another "
                f"shape); register them on the new layer's {other}",
                stacklevel=2,
            )

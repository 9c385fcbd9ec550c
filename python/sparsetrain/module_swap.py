"""Finding layers in a model and swapping them for others: what sparsify, densify and the
pruner share.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterable
from typing import Callable, Union

from torch import nn

from .nn import SparseConv1d, SparseConv2d, SparseLinear
from .nn._dense_types import dense_form, unsupported_reason

# Which layers a call takes (include= / exclude=): a module name, a glob pattern, a list of
# them, or a predicate f(name, module) -> bool; None takes none.
LayerSpec = Union[str, Iterable[str], Callable[[str, nn.Module], bool], None]
# The sparse layer each form of dense layer becomes (nn/_dense_types.py says which types are
# which form).
_SPARSE_OF_FORM = {
    "linear": SparseLinear,
    "conv1d": SparseLinear,
    "conv2d": SparseConv2d,
    "nn_conv1d": SparseConv1d,
}
SPARSE_TYPES = (SparseLinear, SparseConv2d)

__all__ = [
    "LayerSpec",
    "SPARSE_TYPES",
    "sparse_type_for",
    "is_dense_layer",
    "unsupported_reason",
    "torch_pruned",
    "trained_weight",
    "read_directly",
    "matches",
    "shared_weights",
    "tied_to",
    "replace_module",
    "carry_hooks",
]


def sparse_type_for(module: nn.Module) -> type | None:
    """The sparse layer type that ``module`` can become (``SparseLinear`` for ``nn.Linear``
    and transformers' ``Conv1D``, ``SparseConv2d`` / ``SparseConv1d`` for ``nn.Conv2d`` /
    ``nn.Conv1d``, subclasses that keep their forward included), or None. The one predicate
    that sparsify, sparsify_like, the pruning functions and from_dense share: what one of them
    takes, all take."""
    form = dense_form(module)
    return None if form is None else _SPARSE_OF_FORM[form]


def is_dense_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a dense layer a sparse one can stand in for (sparse_type_for)."""
    return dense_form(module) is not None


def torch_pruned(module: nn.Module) -> bool:
    """Whether ``torch.nn.utils.prune`` manages the weight: then ``weight`` is only
    ``weight_orig * weight_mask``, recomputed by a forward pre-hook before every forward."""
    from torch.nn.utils.prune import BasePruningMethod

    return any(
        isinstance(h, BasePruningMethod) and h._tensor_name == "weight"
        for h in module._forward_pre_hooks.values()
    )


def trained_weight(module: nn.Module) -> nn.Parameter | None:
    """The Parameter an optimizer trains for a layer's weight (``values`` of a sparse layer,
    ``weight_orig`` under torch.nn.utils.prune), or None when the weight is derived some other
    way (a parametrization, weight_norm)."""
    if isinstance(module, SPARSE_TYPES):
        return module._parameters.get("values")
    if torch_pruned(module):
        return module._parameters.get("weight_orig")
    return module._parameters.get("weight")


def read_directly(model: nn.Module) -> dict:
    """{id of a layer: why a sparse layer in its place would not run} for layers whose parent
    uses their weight itself instead of calling them: ``nn.MultiheadAttention`` passes
    ``out_proj.weight`` to ``F.multi_head_attention_forward`` and never calls ``out_proj``,
    so a sparse ``out_proj`` would be a dense product of its rebuilt weight (slower, and
    timed wrongly by sparsify)."""
    found = {}
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention) and isinstance(
            getattr(module, "out_proj", None), nn.Module
        ):
            found[id(module.out_proj)] = (
                "nn.MultiheadAttention reads out_proj.weight directly (its forward never "
                "calls out_proj)"
            )
    return found


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
    return set(tied_to(model))


def tied_to(model: nn.Module) -> dict:
    """{id of a Parameter that more than one module registers (a tied weight): the
    "module.parameter" names of every place that registers it, in model order}."""
    places: dict = {}
    owners: dict = {}
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(module) not in owners.setdefault(id(p), set()):
                owners[id(p)].add(id(module))
                places.setdefault(id(p), []).append(f"{name}.{pname}" if name else pname)
    return {pid: where for pid, where in places.items() if len(owners[pid]) > 1}


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

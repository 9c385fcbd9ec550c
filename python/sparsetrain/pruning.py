"""Magnitude pruning of dense and sparse layers.

Dense layers (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``, transformers' ``Conv1D``: the
types ``sparsify`` takes, ``module_swap.sparse_type_for``) get their smallest entries zeroed;
sparse layers lose their smallest nonzeros for good (values and index repacked through the
layers' single pattern-setting path, optimizer state remapped to the surviving weights).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn

from . import _optim_state
from .formats import nonzero_positions
from .module_swap import (
    LayerSpec,
    is_dense_layer,
    matches,
    read_directly,
    replace_module,
    shared_weights,
    sparse_type_for,
    tied_to,
    torch_pruned,
)
from .nn import SparseConv2d, SparseLinear
from .nn._dense_types import dense_form
from .nn._sparse_weight import resize_parameter

_SPARSE = (SparseLinear, SparseConv2d)
_torch_pruned = torch_pruned


def prunable_layers(model: nn.Module, include: LayerSpec = None, exclude: LayerSpec = None) -> list:
    """(name, module) of every sparse layer and every dense layer of a type sparsify takes
    (``module_swap.is_dense_layer``), each module once."""
    out, seen = [], set()
    for name, module in model.named_modules():
        if not (is_dense_layer(module) or isinstance(module, _SPARSE)) or module in seen:
            continue
        if include is not None and not matches(name, module, include):
            continue
        if matches(name, module, exclude):
            continue
        seen.add(module)
        out.append((name, module))
    return out


def _check_prunable(name: str, module, who: str) -> None:
    """Refuse layers whose weight is derived from another tensor some other way (a
    parametrization, weight_norm): zeros written into it would be undone at the next forward."""
    attr = "values" if isinstance(module, _SPARSE) else "weight"
    if attr in module._parameters or (attr == "weight" and _torch_pruned(module)):
        return
    raise ValueError(
        f"{who}: the {attr} of layer {name or type(module).__name__!r} is not a "
        f"Parameter of the layer but derived (a parametrization or a hook such as "
        f"weight_norm's), so pruning it would be undone at the next forward; remove "
        f"that first (layers pruned with torch.nn.utils.prune are supported)"
    )


def _weight(module) -> torch.Tensor:
    """A dense layer's weight as its next forward will see it (detached)."""
    if _torch_pruned(module):  # module.weight is stale once weight_orig has trained
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def _trained(module) -> nn.Parameter:
    """The Parameter an optimizer trains for this layer's weight."""
    if isinstance(module, _SPARSE):
        return module.values
    return module.weight_orig if _torch_pruned(module) else module.weight


def _magnitudes(module) -> torch.Tensor:
    """|weight| of the entries that are still alive (nonzero positions of sparse layers)."""
    if isinstance(module, _SPARSE):
        return module.values.detach().abs()
    return _weight(module).abs().reshape(-1)


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
    param = _trained(module)
    with torch.no_grad():
        if _torch_pruned(module):
            # `weight` is recomputed from the mask before every forward: prune the mask.
            module.weight_mask.mul_(keep_mask.view_as(module.weight_mask))
        else:
            param.mul_(keep_mask.view_as(param))
        if optimizer is not None:  # pruned entries restart with empty optimizer state
            state = optimizer.state.get(param, {})
            for v in state.values():
                if isinstance(v, torch.Tensor) and v.shape == param.shape:
                    v.mul_(keep_mask.view_as(v))
    if _torch_pruned(module):  # what its pre-hook computes, so `weight` is right before then
        module.weight = module.weight_orig * module.weight_mask


def hold_masks(modules: nn.Module | Iterable[nn.Module]) -> Callable[[], None]:
    """Keep the present zeros of dense ``nn.Linear`` / ``nn.Conv2d`` weights at zero while they
    train (dense layers fine-tuned with fixed masks). ``modules``: a model or an iterable of
    modules; sparse layers and weights without zeros are left alone. Their gradients are
    masked, so optimizer state stays zero there too; the returned function re-applies the
    masks (call it after ``optimizer.step()``, against anything else that could move a zero).
    A weight frozen at this call (``requires_grad`` False) gets no gradient hook; its mask is
    still re-applied. Layers pruned with ``torch.nn.utils.prune`` get their zeros added to
    ``weight_mask``, which then holds them; a weight derived otherwise (parametrization,
    weight_norm) raises ValueError."""
    held, seen = [], set()
    named = (
        modules.named_modules() if isinstance(modules, nn.Module) else (("", m) for m in modules)
    )
    for name, m in named:
        if not is_dense_layer(m) or m in seen:
            continue
        seen.add(m)
        _check_prunable(name, m, "hold_masks")
        mask = _weight(m) != 0
        if bool(mask.all()):
            continue
        if _torch_pruned(m):
            _apply(m, mask.reshape(-1), None)
            continue
        if m.weight.requires_grad:  # a frozen leaf takes no hook (and gets no gradient)
            m.weight.register_hook(lambda g, mask=mask: g * mask)
        held.append((m.weight, mask))

    def reapply() -> None:
        with torch.no_grad():
            for w, mask in held:
                w.mul_(mask)

    return reapply


def magnitude_prune(
    model: nn.Module,
    sparsity: float,
    scope: str = "global",
    include: LayerSpec = None,
    exclude: LayerSpec = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    tied: bool = False,
) -> dict:
    """Prune the smallest-magnitude weights until the chosen layers are `sparsity` zeros.

    scope="layer": every layer on its own; scope="global": one magnitude threshold across all
    chosen layers (their overall sparsity is `sparsity`). Dense layers get zeros, sparse layers
    lose nonzeros (repacked; `optimizer` state, if given, follows the surviving weights).
    Weights are only ever removed: a layer already sparser than asked is left alone.
    Layers pruned with ``torch.nn.utils.prune`` are pruned through their ``weight_mask``; a
    weight derived otherwise (parametrization, weight_norm) raises ValueError.

    A tied weight (a Parameter another module registers too, such as a language model's
    output head tied to its input embedding) is left unpruned, with a warning: its zeros
    would reach every module that uses it (the embedding too), and :func:`sparsify` leaves
    such a layer dense, so they would buy no speed. ``tied=True`` prunes it all the same
    (once, however many layers use it). Returns {layer name: sparsity after pruning}.
    """
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f"magnitude_prune: sparsity must be in [0, 1], got {sparsity!r}")
    if scope not in ("global", "layer"):
        raise ValueError(f"magnitude_prune: scope must be 'global' or 'layer', got {scope!r}")
    named = prunable_layers(model, include, exclude)
    for name, module in named:
        _check_prunable(name, module, "magnitude_prune")
    left = {} if tied else tied_layers(model, named)
    for name, others in left.items():
        warnings.warn(
            f"magnitude_prune: {name} shares its weight with {others} (tied); left unpruned "
            f"(tied=True prunes it, in every module that uses it)",
            stacklevel=2,
        )
    layers, weights = [], set()
    for name, module in named:
        if name not in left and id(_trained(module)) not in weights:
            weights.add(id(_trained(module)))  # a tied weight once, not once per user
            layers.append((name, module))
    if scope == "layer":
        for _, module in layers:
            mags = _magnitudes(module)
            keep = min(int((mags != 0).sum()), int(round((1.0 - sparsity) * _total(module))))
            _apply(module, _keep_top(mags, keep), optimizer)
    elif layers:
        mags = [_magnitudes(m) for _, m in layers]
        flat = torch.cat(mags)
        total = sum(_total(m) for _, m in layers)
        keep = min(int((flat != 0).sum()), int(round((1.0 - sparsity) * total)))
        mask = _keep_top(flat, keep)
        start = 0
        for (_, module), m in zip(layers, mags):
            _apply(module, mask[start : start + m.numel()], optimizer)
            start += m.numel()
    return {name: _sparsity(module) for name, module in named}


def tied_layers(model: nn.Module, named: list) -> dict:
    """{name: the other places of its weight} for the (name, layer) pairs of ``named`` whose
    weight is tied (registered by another module of ``model`` too)."""
    shared = tied_to(model)
    out = {}
    for name, module in named:
        weight = _trained(module)
        if id(weight) in shared:
            others = [p for p in shared[id(weight)] if p.rsplit(".", 1)[0] != name]
            out[name] = ", ".join(others)
    return out


def _sparsity(module) -> float:
    if isinstance(module, _SPARSE):
        return module.sparsity
    w = _weight(module)
    return float((w == 0).sum()) / max(1, w.numel())


def cubic_sparsity(
    step: int, final_sparsity: float, start_step: int, end_step: int, initial_sparsity: float = 0.0
) -> float:
    """Zhu & Gupta's schedule: s_f + (s_i - s_f) * (1 - progress)^3, where progress goes from 0
    at ``start_step`` to 1 at ``end_step`` (0 before start, final sparsity after end)."""
    if step < start_step:
        return 0.0
    if step >= end_step:
        return float(final_sparsity)
    progress = (step - start_step) / (end_step - start_step)
    return float(final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3)


class GradualMagnitudePruner:
    """Prune a model from dense to ``final_sparsity`` while it trains (Zhu & Gupta, 2017).

    Call :meth:`step` once per training step, after ``optimizer.step()``::

        pruner = GradualMagnitudePruner(model, optimizer, final_sparsity=0.9,
                                        start_step=200, end_step=2000, every=100)
        for x, y in data:
            loss_fn(model(x), y).backward()
            optimizer.step(); optimizer.zero_grad()
            pruner.step()

    Steps count from 0, like training steps: the first call is step 0, the k-th call is
    step k - 1 (``step_count`` is the number of calls made). At ``start_step`` and every
    ``every`` steps after it, and at ``end_step``, the chosen layers are magnitude-pruned to
    the cubic schedule's sparsity (see :func:`cubic_sparsity`: ``initial_sparsity`` at
    ``start_step``, ``final_sparsity`` from ``end_step`` on; ``scope`` as in
    :func:`magnitude_prune`, per layer by default like the paper). So
    ``start_step=end_step=0`` prunes to ``final_sparsity`` at the first call, and
    ``start_step=200, end_step=2000, every=100`` at steps 200, 300, ..., 2000 (the 201st,
    301st, ..., 2001st call); ``every`` past ``end_step - start_step`` prunes at the two ends.
    Pruned weights of dense layers stay zero: their gradients are masked
    and the mask is re-applied at every step. A dense layer whose sparsity reaches
    ``min_sparsity`` is swapped for a :class:`SparseLinear` / :class:`SparseConv2d` in the
    model (pass ``min_sparsity=None`` to keep layers dense); the optimizer then holds the
    sparse layer's ``values`` in the dense weight's place, with its state (momentum, Adam
    moments and step) carried over, and keeps the same bias Parameter. State that is not
    element-wise (Adafactor's factored second moment) cannot be carried over: that layer's
    state restarts. From then on pruning removes nonzeros for good.

    A tied weight (shared with another module, such as tied embeddings) is left unpruned, with
    a warning once, as :func:`magnitude_prune` leaves it; with ``tied=True`` it is pruned, but
    as a dense layer under a mask, never swapped (swapping would take the shared weight away
    from the other module and the optimizer; warned once). Layers whose weight
    ``torch.nn.utils.prune`` manages (its ``weight_mask`` then holds the zeros) and
    ``nn.MultiheadAttention``'s ``out_proj`` (read directly by its parent, see
    :func:`sparsify`) are pruned but never swapped either (warned once).

    Swapped layers need the optimizer that trains the model: with ``optimizer=None`` (or
    another optimizer) nothing can put the new ``values`` into the optimizer that trains the
    dense weight, so that optimizer's next ``step()`` raises RuntimeError instead of silently
    training a weight that is no longer in the model.

    :meth:`step` returns True when it changed a pattern or swapped a module. Wrappers that
    register parameters once, such as ``DistributedDataParallel``, must then be built anew
    around the model (pass the unwrapped model here).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        final_sparsity: float,
        start_step: int,
        end_step: int,
        every: int = 100,
        *,
        initial_sparsity: float = 0.0,
        scope: str = "layer",
        include: LayerSpec = None,
        exclude: LayerSpec = None,
        min_sparsity: float | None = 0.8,
        tied: bool = False,
    ):
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise TypeError(
                "GradualMagnitudePruner: pass the model inside "
                "DistributedDataParallel (ddp.module), then wrap it again after "
                "step() returns True"
            )
        for name, v in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"GradualMagnitudePruner: {name} must be in [0, 1], got {v!r}")
        if min_sparsity is not None and not 0.0 <= float(min_sparsity) <= 1.0:
            raise ValueError(
                f"GradualMagnitudePruner: min_sparsity must be in [0, 1] or None, "
                f"got {min_sparsity!r}"
            )
        for name, v in (("start_step", start_step), ("end_step", end_step), ("every", every)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"GradualMagnitudePruner: {name} must be an int, got {v!r}")
        if start_step < 0 or end_step < start_step or every < 1:
            raise ValueError(
                "GradualMagnitudePruner: need 0 <= start_step <= end_step and "
                f"every >= 1, got start_step={start_step}, end_step={end_step}, "
                f"every={every}"
            )
        if scope not in ("global", "layer"):
            raise ValueError(
                f"GradualMagnitudePruner: scope must be 'global' or 'layer', got {scope!r}"
            )
        for name, module in prunable_layers(model, include, exclude):
            _check_prunable(name, module, "GradualMagnitudePruner")
        self.model, self.optimizer = model, optimizer
        self.final_sparsity, self.initial_sparsity = float(final_sparsity), float(initial_sparsity)
        self.start_step, self.end_step, self.every = start_step, end_step, every
        self.scope, self.include, self.exclude = scope, include, exclude
        self.min_sparsity = None if min_sparsity is None else float(min_sparsity)
        self.tied = bool(tied)
        self.step_count = 0  # calls made so far: the next call is step `step_count`
        self.sparsity = 0.0  # the schedule's value at the last pruning
        self._masks = {}  # id(dense weight) -> (weight, keep mask, gradient hook handle)
        self._warned = set()  # layers told once why they stay dense

    def is_pruning_step(self, step: int) -> bool:
        """Whether step ``step`` (counted from 0: the ``step + 1``-th call) prunes."""
        if step < self.start_step or step > self.end_step:
            return False
        return (step - self.start_step) % self.every == 0 or step == self.end_step

    def step(self) -> bool:
        """Advance one training step; prune if the schedule says so. True if a pattern changed."""
        step = self.step_count
        self.step_count += 1
        changed = False
        if self.is_pruning_step(step):
            self.sparsity = cubic_sparsity(
                step, self.final_sparsity, self.start_step, self.end_step, self.initial_sparsity
            )
            before = {
                m: _alive(m) for _, m in prunable_layers(self.model, self.include, self.exclude)
            }
            exclude = self.exclude
            if not self.tied:
                named = prunable_layers(self.model, self.include, self.exclude)
                left = tied_layers(self.model, named)
                for name, others in left.items():
                    self._warn_once(
                        name,
                        f"shares its weight with {others} (tied); left unpruned (tied=True "
                        f"prunes it, as a dense layer under a mask)",
                        dense=False,
                    )
                if left:  # magnitude_prune would warn at every pruning step
                    exclude = _and_not(self.exclude, left)
            magnitude_prune(
                self.model,
                self.sparsity,
                self.scope,
                self.include,
                exclude,
                self.optimizer,
                tied=self.tied,
            )
            changed = any(_alive(m) != n for m, n in before.items())
            self._update_masks()
            changed |= self._swap_sparse()
        self._apply_masks()
        return changed

    # -- dense layers: keep their pruned weights at zero ------------------------------------
    def _update_masks(self) -> None:
        for _, module in prunable_layers(self.model, self.include, self.exclude):
            if isinstance(module, _SPARSE) or _torch_pruned(module):
                continue  # sparse: no zeros to hold; torch-pruned: weight_mask holds them
            w = module.weight
            mask = w.detach() != 0
            if id(w) in self._masks:
                self._masks[id(w)][1].copy_(mask)  # the hook reads the same tensor
            elif not bool(mask.all()):
                handle = w.register_hook(lambda g, m=mask: g * m) if w.requires_grad else None
                self._masks[id(w)] = (w, mask, handle)

    def _apply_masks(self) -> None:
        with torch.no_grad():
            for w, mask, _ in self._masks.values():
                w.mul_(mask)

    # -- dense layers past min_sparsity become sparse modules --------------------------------
    def _swap_sparse(self) -> bool:
        if self.min_sparsity is None:
            return False
        shared, direct = shared_weights(self.model), read_directly(self.model)
        swapped = False
        for name, module in prunable_layers(self.model, self.include, self.exclude):
            if isinstance(module, _SPARSE) or sparse_type_for(module) is None:
                continue
            if _sparsity(module) < self.min_sparsity:
                continue
            why = unswappable(module, shared, direct)
            if why:
                self._warn_once(name, why)
                continue
            mask = self._masks.pop(id(module.weight), None)
            if mask is not None and mask[2] is not None:
                mask[2].remove()  # the gradient hook of the dense weight
            sparse = sparse_type_for(module).from_dense(module)
            swap_in(
                self.model,
                name,
                module,
                sparse,
                self.optimizer,
                "GradualMagnitudePruner",
                ", or min_sparsity=None to keep layers dense",
            )
            swapped = True
        return swapped

    def _warn_once(self, name: str, why: str, dense: bool = True) -> None:
        if name not in self._warned:
            self._warned.add(name)
            rest = "; left dense (pruned under a mask)" if dense else ""
            warnings.warn(f"GradualMagnitudePruner: {name} {why}{rest}", stacklevel=2)

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "sparsity": self.sparsity}

    def load_state_dict(self, state: dict) -> None:
        """Resume the schedule (load the model's own state_dict first: the masks of dense
        layers are taken from their zeros)."""
        self.step_count = int(state["step_count"])
        self.sparsity = float(state["sparsity"])
        if self.step_count > self.start_step:  # step start_step has run: pruning began
            self._update_masks()


def unswappable(module: nn.Module, shared: set, direct: dict) -> str:
    """Why a dense layer of a type sparsify takes cannot become a sparse module in place ('' if
    it can): ``shared`` and ``direct`` are ``shared_weights`` / ``read_directly`` of the
    model."""
    if _torch_pruned(module):
        return (
            "is pruned with torch.nn.utils.prune (call torch.nn.utils.prune.remove on it to let "
            "it become sparse)"
        )
    if id(module.weight) in shared:
        return "shares its weight with another module"
    if id(module) in direct:
        return f"is read directly by its parent: {direct[id(module)]}"
    return ""


def swap_in(
    model: nn.Module, name: str, dense: nn.Module, sparse, optimizer, who: str, hint: str = ""
) -> None:
    """Replace the dense layer ``name`` of ``model`` by ``sparse`` (made from it), keeping the
    bias Parameter and putting ``values`` in ``optimizer`` where the dense weight was, with the
    optimizer state of the surviving entries."""
    sparse.train(dense.training)
    if dense.bias is not None:
        sparse.bias = dense.bias  # the same Parameter stays with the optimizer
    weight = dense.weight
    groups = optimizer.param_groups if optimizer is not None else []
    if not any(p is weight for group in groups for p in group["params"]):
        # Whatever optimizer trains this weight (if one does) cannot be told: make its next
        # step fail rather than train a weight the model no longer has.
        _optim_state.note_replaced(
            weight,
            f"{who} swapped layer {name!r} for a {type(sparse).__name__}, but this optimizer "
            f"still holds the old dense weight (the new `values` would never train): pass "
            f"this optimizer to {who}{hint}",
        )
    else:
        for group in groups:
            group["params"] = [sparse.values if p is weight else p for p in group["params"]]
        state = optimizer.state.pop(weight, None)
        if state:
            flat = nonzero_positions(sparse.row_ptr, sparse.col_idx, sparse._rows, sparse._cols)
            if sparse.__dict__.get("_transposed"):
                # A Conv1D's weight (and its state) is (in, out): the sparse layer's (r, c)
                # is its (c, r).
                flat = (flat % sparse._cols) * sparse._rows + flat // sparse._cols
            state = _optim_state.carried(state, weight.shape, flat)
            if state is not None:  # else not element-wise: restarts as for a new parameter
                optimizer.state[sparse.values] = state
    replace_module(model, dense, sparse)


def _and_not(exclude: LayerSpec, names) -> LayerSpec:
    """``exclude``, and the layers called ``names`` too."""
    return lambda name, module: name in names or matches(name, module, exclude)


def _alive(module) -> int:
    if isinstance(module, _SPARSE):
        return module.nnz
    return int((_weight(module) != 0).sum())


def follow_pattern(copy: nn.Module, model: nn.Module) -> None:
    """Give ``copy`` the layer types and sparsity patterns ``model`` has now, keeping the
    copy's numbers for the weights that survive: for averaged copies after a pruning step.

    ``copy``: a ``torch.optim.swa_utils.AveragedModel`` of ``model`` (SWA, or EMA with
    ``get_ema_multi_avg_fn``), its ``.module``, or another copy of the same architecture.
    Its ``update_parameters(model)`` fails once pruning changed a layer's number of nonzeros
    or swapped a layer; call this first whenever ``pruner.step()`` returned True (or after
    :func:`magnitude_prune` / ``prune_values`` on the model)::

        if pruner.step():
            sparsetrain.pruning.follow_pattern(averaged, model)
        averaged.update_parameters(model)

    Sparse layers of ``model`` get the same layer in the copy on the same pattern, holding the
    copy's (averaged) weight at each surviving position (a position new to the pattern starts
    at the model's value); dense layers keep the copy's weight with zeros where the model's
    weight is zero, so averages of pruned weights are dropped, not decayed.
    """
    from torch.optim.swa_utils import AveragedModel

    holder = copy if isinstance(copy, AveragedModel) else None
    root = copy.module if holder is not None else copy
    for name, layer in prunable_layers(model):
        try:
            twin = root.get_submodule(name)
        except AttributeError:
            raise ValueError(f"follow_pattern: the copy has no layer {name!r}") from None
        if isinstance(layer, _SPARSE):
            if isinstance(twin, _SPARSE):
                if (
                    twin.nnz == layer.nnz
                    and torch.equal(twin.row_ptr, layer.row_ptr)
                    and torch.equal(twin.col_idx, layer.col_idx)
                ):
                    continue
                averaged = twin._dense_matrix().detach().reshape(-1)
                present = torch.zeros(averaged.numel(), dtype=torch.bool)
                present[nonzero_positions(twin.row_ptr, twin.col_idx, twin._rows, twin._cols)] = (
                    True
                )
                new = twin
            elif sparse_type_for(twin) is type(layer):
                averaged = _weight(twin)
                if dense_form(twin) == "conv1d":  # (in, out): the sparse layer holds W^T
                    averaged = averaged.t()
                averaged = averaged.reshape(-1)
                present = torch.ones(averaged.numel(), dtype=torch.bool)
                new = type(layer).from_dense(twin).train(twin.training)
            else:
                raise ValueError(
                    f"follow_pattern: layer {name!r} is a "
                    f"{type(twin).__name__} in the copy but a "
                    f"{type(layer).__name__} in the model"
                )
            flat = nonzero_positions(layer.row_ptr, layer.col_idx, layer._rows, layer._cols)
            values = torch.where(present[flat], averaged[flat], layer.values.detach())
            with torch.no_grad():
                resize_parameter(new.values, values.contiguous())
            new.row_ptr, new.col_idx = layer.row_ptr.clone(), layer.col_idx.clone()
            new._rebuild_index()
        else:
            # The model was densified: so is the copy.
            new = twin.to_dense().train(twin.training) if isinstance(twin, _SPARSE) else twin
            if not is_dense_layer(new):
                raise ValueError(
                    f"follow_pattern: layer {name!r} is a {type(twin).__name__} "
                    f"in the copy but a {type(layer).__name__} in the model"
                )
            keep = _weight(layer) != 0
            if not bool(keep.all()):
                _check_prunable(name, new, "follow_pattern")
                _apply(new, keep.reshape(-1), None)
        if new is twin:
            continue
        if twin is root:
            if holder is None:
                raise ValueError(
                    "follow_pattern: the copy is itself the layer that changed "
                    "type; pass the AveragedModel, or a model holding the layer"
                )
            holder.module = root = new
        else:
            replace_module(root, twin, new)

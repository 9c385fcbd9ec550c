"""Magnitude pruning of dense and sparse layers.

Dense ``nn.Linear`` / ``nn.Conv2d`` weights get their smallest entries zeroed; sparse layers
lose their smallest nonzeros for good (values and index repacked through the layers' single
pattern-setting path, optimizer state remapped to the surviving weights).
"""
from __future__ import annotations

import torch
from torch import nn

from .formats import nonzero_positions
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


def hold_masks(modules):
    """Keep the present zeros of dense ``nn.Linear`` / ``nn.Conv2d`` weights at zero while they
    train (dense layers fine-tuned with fixed masks). ``modules``: a model or an iterable of
    modules; sparse layers and weights without zeros are left alone. Their gradients are
    masked, so optimizer state stays zero there too; the returned function re-applies the
    masks (call it after ``optimizer.step()``, against anything else that could move a zero)."""
    held, seen = [], set()
    for m in (modules.modules() if isinstance(modules, nn.Module) else modules):
        if not isinstance(m, _DENSE) or m in seen:
            continue
        seen.add(m)
        mask = m.weight.detach() != 0
        if not bool(mask.all()):
            m.weight.register_hook(lambda g, mask=mask: g * mask)
            held.append((m.weight, mask))

    def reapply() -> None:
        with torch.no_grad():
            for w, mask in held:
                w.mul_(mask)
    return reapply


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


def cubic_sparsity(step: int, final_sparsity: float, start_step: int, end_step: int,
                   initial_sparsity: float = 0.0) -> float:
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

    The k-th call is step k. At ``start_step`` and every ``every`` steps up to ``end_step``
    the chosen layers are magnitude-pruned to the cubic schedule's sparsity (see
    :func:`cubic_sparsity`; ``scope`` as in :func:`magnitude_prune`, per layer by default
    like the paper). Pruned weights of dense layers stay zero: their gradients are masked
    and the mask is re-applied at every step. A dense layer whose sparsity reaches
    ``min_sparsity`` is swapped for a :class:`SparseLinear` / :class:`SparseConv2d` in the
    model (pass ``min_sparsity=None`` to keep layers dense); the optimizer then holds the
    sparse layer's ``values`` in the dense weight's place, with its state (momentum, Adam
    moments and step) carried over, and keeps the same bias Parameter. From then on pruning
    removes nonzeros for good.

    :meth:`step` returns True when it changed a pattern or swapped a module. Wrappers that
    register parameters once, such as ``DistributedDataParallel``, must then be built anew
    around the model (pass the unwrapped model here).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                 final_sparsity: float, start_step: int, end_step: int, every: int = 100, *,
                 initial_sparsity: float = 0.0, scope: str = "layer", include=None,
                 exclude=None, min_sparsity: float | None = 0.8):
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise TypeError("GradualMagnitudePruner: pass the model inside "
                            "DistributedDataParallel (ddp.module), then wrap it again after "
                            "step() returns True")
        for name, v in (("final_sparsity", final_sparsity),
                        ("initial_sparsity", initial_sparsity)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"GradualMagnitudePruner: {name} must be in [0, 1], got {v!r}")
        if min_sparsity is not None and not 0.0 <= float(min_sparsity) <= 1.0:
            raise ValueError(f"GradualMagnitudePruner: min_sparsity must be in [0, 1] or None, "
                             f"got {min_sparsity!r}")
        for name, v in (("start_step", start_step), ("end_step", end_step), ("every", every)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"GradualMagnitudePruner: {name} must be an int, got {v!r}")
        if start_step < 0 or end_step < start_step or every < 1:
            raise ValueError("GradualMagnitudePruner: need 0 <= start_step <= end_step and "
                             f"every >= 1, got start_step={start_step}, end_step={end_step}, "
                             f"every={every}")
        if scope not in ("global", "layer"):
            raise ValueError(f"GradualMagnitudePruner: scope must be 'global' or 'layer', "
                             f"got {scope!r}")
        self.model, self.optimizer = model, optimizer
        self.final_sparsity, self.initial_sparsity = float(final_sparsity), float(initial_sparsity)
        self.start_step, self.end_step, self.every = start_step, end_step, every
        self.scope, self.include, self.exclude = scope, include, exclude
        self.min_sparsity = None if min_sparsity is None else float(min_sparsity)
        self.step_count = 0
        self.sparsity = 0.0  # the schedule's value at the last pruning
        self._masks = {}  # id(dense weight) -> (weight, keep mask, gradient hook handle)

    def is_pruning_step(self, step: int) -> bool:
        if step < self.start_step or step > self.end_step:
            return False
        return (step - self.start_step) % self.every == 0 or step == self.end_step

    def step(self) -> bool:
        """Advance one training step; prune if the schedule says so. True if a pattern changed."""
        self.step_count += 1
        changed = False
        if self.is_pruning_step(self.step_count):
            self.sparsity = cubic_sparsity(self.step_count, self.final_sparsity, self.start_step,
                                           self.end_step, self.initial_sparsity)
            before = {m: _alive(m) for _, m in prunable_layers(self.model, self.include,
                                                                self.exclude)}
            magnitude_prune(self.model, self.sparsity, self.scope, self.include, self.exclude,
                            self.optimizer)
            changed = any(_alive(m) != n for m, n in before.items())
            self._update_masks()
            changed |= self._swap_sparse()
        self._apply_masks()
        return changed

    # -- dense layers: keep their pruned weights at zero ------------------------------------
    def _update_masks(self) -> None:
        for _, module in prunable_layers(self.model, self.include, self.exclude):
            if isinstance(module, _SPARSE):
                continue
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
        from .surgery import _SPARSE_OF, _replace
        swapped = False
        for _, module in prunable_layers(self.model, self.include, self.exclude):
            if isinstance(module, _SPARSE) or type(module) not in _SPARSE_OF:
                continue
            if _sparsity(module) < self.min_sparsity:
                continue
            sparse = _SPARSE_OF[type(module)].from_dense(module).train(module.training)
            if module.bias is not None:
                sparse.bias = module.bias  # the same Parameter stays with the optimizer
            self._hand_over(module.weight, sparse)
            _replace(self.model, module, sparse)
            swapped = True
        return swapped

    def _hand_over(self, weight: nn.Parameter, sparse) -> None:
        """Put the sparse ``values`` in the optimizer where the dense weight was, with the
        optimizer state of the surviving entries."""
        _, _, handle = self._masks.pop(id(weight), (None, None, None))
        if handle is not None:
            handle.remove()
        if self.optimizer is None:
            return
        flat = nonzero_positions(sparse.row_ptr, sparse.col_idx, sparse._rows, sparse._cols)
        for group in self.optimizer.param_groups:
            group["params"] = [sparse.values if p is weight else p for p in group["params"]]
        state = self.optimizer.state.pop(weight, None)
        if state:
            self.optimizer.state[sparse.values] = {
                k: (v.reshape(-1)[flat].clone() if isinstance(v, torch.Tensor)
                    and v.shape == weight.shape else v)
                for k, v in state.items()}

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "sparsity": self.sparsity}

    def load_state_dict(self, state: dict) -> None:
        """Resume the schedule (load the model's own state_dict first: the masks of dense
        layers are taken from their zeros)."""
        self.step_count = int(state["step_count"])
        self.sparsity = float(state["sparsity"])
        if self.step_count >= self.start_step:
            self._update_masks()


def _alive(module) -> int:
    if isinstance(module, _SPARSE):
        return module.nnz
    return int((module.weight.detach() != 0).sum())

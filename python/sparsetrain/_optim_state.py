"""Optimizer state of parameters that pruning resizes or replaces.

A sparse layer's ``values`` change length when pruning removes nonzeros or a checkpoint with
another number of nonzeros is loaded, and GradualMagnitudePruner replaces a dense weight by
``values``. An optimizer only learns about that if it is handed to the code that does it; for
every other optimizer one global step pre-hook (installed on first use, a no-op while nothing
was resized or replaced) restarts the state that no longer fits, and refuses to train a
replaced weight.
"""

from __future__ import annotations

import weakref

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook


class _WeakIdMap:
    """Tensor -> value by identity, holding the tensors weakly. (weakref.WeakSet and
    WeakKeyDictionary compare keys with ==, which tensors answer element-wise.)"""

    def __init__(self):
        self._items = {}  # id(tensor) -> (weak reference, value)

    def set(self, t: torch.Tensor, value) -> None:
        key = id(t)

        def forget(ref, key=key):
            if self._items.get(key, (None,))[0] is ref:
                del self._items[key]

        self._items[key] = (weakref.ref(t, forget), value)

    def get(self, t: torch.Tensor, default=None):
        ref, value = self._items.get(id(t), (None, default))
        return value if ref is not None and ref() is t else default

    def alive(self):
        for ref, _ in list(self._items.values()):
            t = ref()
            if t is not None:
                yield t

    def __bool__(self) -> bool:
        return bool(self._items)


_resized = _WeakIdMap()  # Parameters whose shape changed: their optimizer state may not fit
# dense weights the pruner replaced -> the message for an optimizer holding one
_replaced = _WeakIdMap()
_hook = None


def _install() -> None:
    global _hook
    if _hook is None:
        _hook = register_optimizer_step_pre_hook(_before_step)


def note_resized(p: torch.Tensor) -> None:
    """``p`` changed shape: any optimizer whose state for it no longer fits restarts that state
    at its next step."""
    _resized.set(p, True)
    _install()


def note_replaced(p: torch.Tensor, message: str) -> None:
    """``p`` is no longer in the model: an optimizer that still trains it raises ``message``."""
    _replaced.set(p, message)
    _install()


def fits(state: dict, shape) -> bool:
    """Whether every tensor in one parameter's optimizer state is a scalar (a step count) or has
    the parameter's shape."""
    return all(
        not isinstance(v, torch.Tensor) or v.dim() == 0 or v.shape == shape for v in state.values()
    )


def carried(state: dict, shape, index) -> dict | None:
    """The optimizer state of a parameter of ``shape`` for a parameter that keeps the elements
    ``index`` (a boolean mask or positions) of its flattened entries: element-wise entries
    (momentum, Adam moments, ...) are indexed, scalars (``step``) kept. None when some entry is
    not element-wise (Adafactor's factored second moment of a matrix): it cannot be carried
    over, and the state restarts as for a new parameter (step included, so bias corrections
    and decay schedules start with it)."""
    if not fits(state, shape):
        return None
    return {
        k: (v.reshape(-1)[index].clone() if isinstance(v, torch.Tensor) and v.dim() > 0 else v)
        for k, v in state.items()
    }


def _before_step(optimizer, args, kwargs):
    if _replaced:
        for group in optimizer.param_groups:
            for p in group["params"]:
                message = _replaced.get(p)
                if message is not None:
                    raise RuntimeError(message)
    if _resized:
        for p in _resized.alive():
            state = optimizer.state.get(p)
            if state and not fits(state, p.shape):
                # The state belongs to a pattern that is gone: restart it (the optimizer
                # initialises it again, as for a new parameter).
                del optimizer.state[p]

"""Which dense layer types a sparse layer stands in for, and how their weights are laid out.

The one place that decides it: ``sparsify``, ``densify``, ``sparsify_like``, the pruning
functions and the sparse layers' ``from_dense`` all ask here, so they agree on what they take.

- ``"linear"``: ``nn.Linear``, and subclasses that keep its forward and add no parameters or
  buffers (``nn.MultiheadAttention``'s ``NonDynamicallyQuantizableLinear``).
- ``"conv1d"``: the ``Conv1D`` of Hugging Face transformers (GPT-2, GPT), a linear layer whose
  weight is stored transposed, ``(in_features, out_features)``, computing ``x @ W + b``. It is
  recognised by its class's name and module, so transformers is never imported here.
- ``"conv2d"``: ``nn.Conv2d``, and subclasses that keep its forward and add no parameters or
  buffers.
- ``"nn_conv1d"``: ``nn.Conv1d``, and subclasses that keep its forward and add no parameters
  or buffers.
"""

from __future__ import annotations

from torch import nn

# The class that HF's GPT-2 Conv1D is, by where it is defined.
_HF_CONV1D = ("transformers.pytorch_utils", "Conv1D")
# Besides weight / bias, what torch.nn.utils.prune puts on a layer (supported: its mask is in
# the weight it computes).
_PARAMETERS = {"weight", "bias", "weight_orig"}
_BUFFERS = {"weight_mask"}


def hf_conv1d_class(cls: type) -> type | None:
    """transformers' ``Conv1D`` if ``cls`` is it or a subclass of it, else None."""
    for base in cls.__mro__:
        if (base.__module__, base.__name__) == _HF_CONV1D:
            return base
    return None


def _base(module: nn.Module) -> tuple[str | None, type | None]:
    """(form, the plain class the module's type derives from) or (None, None)."""
    conv1d = hf_conv1d_class(type(module))
    if conv1d is not None:
        return "conv1d", conv1d
    if isinstance(module, nn.Linear):
        return "linear", nn.Linear
    if isinstance(module, nn.Conv2d):
        return "conv2d", nn.Conv2d
    if isinstance(module, nn.Conv1d):
        return "nn_conv1d", nn.Conv1d
    return None, None


def _subclass_problem(module: nn.Module, base: type) -> str:
    """Why a subclass of a supported type cannot be swapped ('' when it can)."""
    cls = type(module)
    if cls is base:
        return ""
    methods = ("forward", "_conv_forward") if base in (nn.Conv2d, nn.Conv1d) else ("forward",)
    changed = [m for m in methods if getattr(cls, m) is not getattr(base, m)]
    if changed:
        return (
            f"type not supported: {cls.__name__} subclasses {base.__name__} but overrides "
            f"{changed[0]}"
        )
    extra = sorted(set(module._parameters) - _PARAMETERS) + sorted(set(module._buffers) - _BUFFERS)
    if extra:
        return (
            f"type not supported: {cls.__name__} subclasses {base.__name__} and adds "
            f"{', '.join(extra)}"
        )
    return ""


def dense_form(module: nn.Module) -> str | None:
    """``"linear"``, ``"conv1d"``, ``"conv2d"`` or ``"nn_conv1d"`` for a dense layer a sparse
    layer can stand in for, else None (see the module docstring)."""
    form, base = _base(module)
    if form is None or _subclass_problem(module, base):
        return None
    return form


def unsupported_reason(module: nn.Module) -> str:
    """Why ``dense_form(module)`` is None, in a few words for a report row."""
    form, base = _base(module)
    if form is None:
        return f"type not supported ({type(module).__name__})"
    return _subclass_problem(module, base)


def plain_class(form: str) -> type:
    """The torch class a form's layer is built as before it takes its original type."""
    return {"linear": nn.Linear, "conv2d": nn.Conv2d, "nn_conv1d": nn.Conv1d}[form]

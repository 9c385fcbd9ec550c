"""Model surgery: swap pruned nn.Linear / nn.Conv2d layers for sparse ones, and back.

report = sparsetrain.sparsify(model, example_inputs=(x,))
print(report)                 # what was swapped, measured dense vs sparse times
sparsetrain.densify(model)    # plain torch modules again
"""

from __future__ import annotations

import copy
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Union

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._runtime import release_kept_memory
from .module_swap import (
    SPARSE_TYPES,
    LayerSpec,
    is_dense_layer,
    matches,
    read_directly,
    replace_module,
    sparse_type_for,
    tied_to,
    trained_weight,
    unsupported_reason,
)
from .nn import SparseConv2d, SparseLinear, _dense_types
from .nn.batchnorm import FusedBatchNorm2d

# What the model is called on: one tensor, a tuple / list of its positional arguments, or a
# mapping of its keyword arguments (a tokenizer's output: model(**inputs)).
ExampleInputs = Union[torch.Tensor, Sequence[Any], Mapping[str, Any]]
# The reason of a row for a layer that was sparse before the call.
ALREADY_SPARSE = "already sparse"
_TIED = "tied: weight shared with "


@dataclass
class LayerDecision:
    """One report row: a layer that owns a weight matrix, and what sparsify did with it."""

    name: str
    type: str
    shape: tuple
    sparsity: float
    dense_ms: float | None
    sparse_ms: float | None
    swapped: bool
    reason: str


@dataclass
class SparsifyReport:
    """One row per layer that owns a weight matrix (those swapped, and every other one with
    the reason it was not); ``str(report)`` is a table, ``to_dict()`` is for programs."""

    layers: list = field(default_factory=list)
    # (convolution, batch norm) names fused by fuse_batch_norm.
    fused_batch_norms: list = field(default_factory=list)

    @property
    def swapped(self) -> list:
        return [row.name for row in self.layers if row.swapped]

    def to_dict(self) -> dict:
        return {
            "layers": [asdict(row) for row in self.layers],
            "swapped": self.swapped,
            "fused_batch_norms": [list(p) for p in self.fused_batch_norms],
        }

    def __str__(self) -> str:
        def ms(v):
            return "-" if v is None else f"{v:.2f}"

        shapes = ["x".join(str(s) for s in r.shape) for r in self.layers]
        # Whole names and types: the columns are as wide as their longest entry.
        wn = max([len("layer")] + [len(r.name) for r in self.layers]) + 2
        wt = max([len("type")] + [len(r.type) for r in self.layers]) + 2
        ws = max([len("shape")] + [len(s) for s in shapes]) + 2
        head = (
            f"{'layer':<{wn}}{'type':<{wt}}{'shape':<{ws}}{'sparsity':>8}{'dense ms':>10}"
            f"{'sparse ms':>11}  decision"
        )
        lines = [head, "-" * len(head)]
        for r, shape in zip(self.layers, shapes):
            sparse = r.swapped or r.reason == ALREADY_SPARSE
            lines.append(
                f"{r.name:<{wn}}{r.type:<{wt}}{shape:<{ws}}{r.sparsity:>8.3f}"
                f"{ms(r.dense_ms):>10}{ms(r.sparse_ms):>11}  "
                f"{'sparse' if sparse else 'dense'} ({r.reason})"
            )
        kept = sum(r.reason == ALREADY_SPARSE for r in self.layers)
        lines.append(
            f"{len(self.swapped)} of {len(self.layers)} layers made sparse"
            + (f" ({kept} were already)" if kept else "")
        )
        return "\n".join(lines)

    __repr__ = __str__


def _uninitialized(w: torch.Tensor | None) -> bool:
    return w is None or isinstance(w, nn.parameter.UninitializedParameter)


def _sparsity_of(w: torch.Tensor | None) -> float:
    if _uninitialized(w):
        return 0.0
    w = w.detach()
    return float((w == 0).sum()) / max(1, w.numel())


def _matrix(module: nn.Module) -> torch.Tensor | None:
    """The weight matrix a report row describes: a dense layer's weight as its forward sees
    it, else the first Parameter of two or more dimensions the module registers itself."""
    if parametrize.is_parametrized(module):
        for name in module.parametrizations:
            t = getattr(module, name)
            if isinstance(t, torch.Tensor) and t.dim() >= 2:
                return t
    if is_dense_layer(module):
        w = getattr(module, "weight", None)
        return w if isinstance(w, torch.Tensor) else None
    for p in module._parameters.values():
        if not _uninitialized(p) and p.dim() >= 2:
            return p
    return None


def _owns_a_matrix(module: nn.Module) -> bool:
    """Whether a module gets a report row: a sparse layer, a dense layer sparsify takes, or
    any module that registers a Parameter of two or more dimensions itself (an embedding,
    nn.MultiheadAttention's in_proj_weight); not the ParametrizationList holding a
    parametrized weight (its layer's row says it)."""
    if isinstance(module, SPARSE_TYPES) or is_dense_layer(module):
        return True
    if isinstance(module, parametrize.ParametrizationList):
        return False
    return parametrize.is_parametrized(module) or _matrix(module) is not None


def _time_step(module: nn.Module, x: torch.Tensor, repeats: int = 5) -> float:
    """Median ms of forward + backward (input and parameter gradients) on x."""
    x = x.detach().clone().requires_grad_(True)
    with torch.no_grad():
        grad = torch.randn_like(module(x))
    times = []
    for i in range(repeats + 1):
        x.grad = None
        for p in module.parameters():
            p.grad = None
        t = time.perf_counter()
        module(x).backward(grad)
        if i:  # the first run warms up (and lets SparseConv2d pick its strategy)
            times.append(time.perf_counter() - t)
    for p in module.parameters():
        p.grad = None
    times.sort()
    return times[len(times) // 2] * 1e3


def call_model(model: nn.Module, example_inputs: ExampleInputs) -> Any:
    """``model(**inputs)`` for a mapping (a tokenizer's output), ``model(*inputs)`` for a
    tuple / list, ``model(inputs)`` for anything else (one tensor)."""
    if isinstance(example_inputs, Mapping):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def _run_once(model: nn.Module, example_inputs, hooks: list) -> None:
    """Runs the model once on example_inputs in inference mode without gradients (so batch
    norms keep their running statistics), then removes `hooks` and restores every module's
    training flag."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            call_model(model, example_inputs)
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes.items():
            m.training = training


def _input_shapes(model: nn.Module, modules: list, example_inputs) -> dict:
    """The input shape each candidate module sees (first call) when the model runs once."""
    shapes, hooks = {}, []
    for module in modules:

        def hook(mod, args, kwargs, _key=module):
            # The input: the first positional argument, or the first keyword one (a layer
            # called as layer(input=x)).
            first = args[0] if args else next(iter(kwargs.values()), None)
            if isinstance(first, torch.Tensor):
                shapes.setdefault(_key, tuple(first.shape))

        hooks.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    _run_once(model, example_inputs, hooks)
    return shapes


def _conv_batch_norm_pairs(model: nn.Module, example_inputs) -> list:
    """(sparse convolution, batch norm) pairs where the batch norm's input is the
    convolution's output as it is, seen by running the model once (_run_once: nothing about
    it changes)."""
    outputs, pairs, hooks = {}, [], []
    convs = [m for m in model.modules() if isinstance(m, SparseConv2d)]
    norms = [m for m in model.modules() if type(m) in (nn.BatchNorm2d, FusedBatchNorm2d)]

    def after_conv(mod, args, out):
        if isinstance(out, torch.Tensor):
            # A weak reference: the outputs are not held for the whole run, and an id reused
            # by a later tensor cannot match (the dead reference gives None).
            outputs[id(out)] = (weakref.ref(out), mod, out._version)

    def before_norm(mod, args):
        if args and isinstance(args[0], torch.Tensor):
            found = outputs.get(id(args[0]))
            if (
                found is not None
                and found[0]() is args[0]
                and found[2] == args[0]._version
                and (found[1], mod) not in pairs
            ):  # unchanged since (no in-place op)
                pairs.append((found[1], mod))

    hooks += [m.register_forward_hook(after_conv) for m in convs]
    hooks += [m.register_forward_pre_hook(before_norm) for m in norms]
    _run_once(model, example_inputs, hooks)
    return pairs


def fuse_batch_norm(model: nn.Module, example_inputs: ExampleInputs) -> list:
    """Let every ``nn.BatchNorm2d`` that takes a :class:`SparseConv2d`'s output as it is
    use the statistics the convolution sums while writing it (training mode; see
    :class:`sparsetrain.nn.FusedBatchNorm2d`): the batch norm becomes a FusedBatchNorm2d
    (the same object, parameters, buffers and state_dict) and the convolution sums its
    output's channel statistics. The pairs are found by running the model once on
    ``example_inputs`` (inference mode, no gradients). Returns the (convolution, batch norm)
    module names fused. :func:`sparsify` calls this when given ``example_inputs``."""
    names = {m: n for n, m in model.named_modules()}
    fused = []
    for conv, norm in _conv_batch_norm_pairs(model, example_inputs):
        conv.batch_norm_stats = True
        norm.__class__ = FusedBatchNorm2d
        fused.append((names.get(conv, ""), names.get(norm, "")))
    return fused


def sparsify(
    model: nn.Module,
    example_inputs: ExampleInputs | None = None,
    *,
    min_sparsity: float = 0.8,
    only_if_faster: bool = True,
    include: LayerSpec = None,
    exclude: LayerSpec = None,
    inplace: bool = True,
    batch_norm: bool = True,
) -> SparsifyReport:
    """Replace dense layers whose weight has at least ``min_sparsity`` zeros with
    :class:`SparseLinear` / :class:`SparseConv1d` / :class:`SparseConv2d` holding the same
    numbers: ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``, transformers' ``Conv1D`` (GPT-2) and
    subclasses of them that keep their forward (``module_swap.sparse_type_for`` says which).

    With ``example_inputs`` and ``only_if_faster``, the model runs once to learn each layer's
    real input shape, dense and sparse forward + backward are timed per layer, and the faster
    is kept. ``example_inputs``: one tensor, a tuple / list of positional arguments, or a
    mapping of keyword arguments (a tokenizer's output: ``model(**example_inputs)``).
    ``include`` / ``exclude`` take module names, glob patterns or a predicate
    ``f(name, module) -> bool``. Returns a :class:`SparsifyReport` whose ``model`` attribute is
    the model changed in place, or with ``inplace=False`` a changed copy (the original stays as
    it was). With ``example_inputs`` and ``batch_norm``, batch norms that take a sparse
    convolution's output are fused with it (:func:`fuse_batch_norm`);
    ``report.fused_batch_norms`` lists them.

    Nothing is skipped silently: every module that owns a weight matrix (a Parameter of two or
    more dimensions) gets a report row, and one left dense says why: excluded, type not
    supported (an embedding, say), parametrized, a weight derived by a hook, tied (a
    Parameter another module registers too, such as an output head tied to the input
    embedding: swapping would take it away from the other module; also warned), read
    directly by its parent (``nn.MultiheadAttention``'s ``out_proj``), not a float32 CPU
    weight, below ``min_sparsity``, not reached by ``example_inputs``, dense measured faster.
    """
    if not 0.0 <= float(min_sparsity) <= 1.0:
        raise ValueError(f"sparsify: min_sparsity must be in [0, 1], got {min_sparsity!r}")
    if not inplace:
        model = copy.deepcopy(model)
    tied, direct = tied_to(model), read_directly(model)
    # A module used at several places is one row, under its first name.
    names: dict = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if _owns_a_matrix(module):
            names.setdefault(module, []).append(name)
    report = SparsifyReport()
    candidates = []
    for module, module_names in names.items():
        name = module_names[0]
        if isinstance(module, SPARSE_TYPES):
            shape, sparsity = tuple(module._weight_shape()), module.sparsity
        else:
            w = _matrix(module)
            shape, sparsity = () if _uninitialized(w) else tuple(w.shape), _sparsity_of(w)
        row = LayerDecision(
            name,
            type(module).__name__,
            shape,
            sparsity,
            None,
            None,
            False,
            "",
        )
        report.layers.append(row)
        row.reason = _why_dense(module, module_names, model, include, exclude, tied, direct)
        if row.reason:
            if row.reason.startswith(_TIED):
                warnings.warn(
                    f"sparsify: {name} shares its weight with "
                    f"{row.reason[len(_TIED) :]} (tied); left dense",
                    stacklevel=2,
                )
        elif row.sparsity < min_sparsity:
            row.reason = f"sparsity below {min_sparsity}"
        else:
            candidates.append((module, row))
    shapes = {}
    if example_inputs is not None and only_if_faster and candidates:
        shapes = _input_shapes(model, [m for m, _ in candidates], example_inputs)
    for module, row in candidates:
        sparse = sparse_type_for(module).from_dense(module)
        sparse.train(module.training)
        if example_inputs is not None and only_if_faster:
            shape = shapes.get(module)
            if shape is None:
                row.reason = "not reached by example_inputs"
                continue
            x = torch.randn(shape, dtype=module.weight.dtype)  # (a bfloat16 model: bf16)
            row.dense_ms = _time_step(module, x)
            row.sparse_ms = _time_step(sparse, x)
            if row.sparse_ms >= row.dense_ms:
                row.reason = "dense measured faster"
                continue
            row.reason = f"{row.dense_ms / row.sparse_ms:.1f}x faster"
        else:
            row.reason = f"sparsity >= {min_sparsity}"
        if module.bias is not None:
            sparse.bias = module.bias  # the same Parameter: its hooks and identity stay
        replace_module(model, module, sparse)
        row.swapped = True
    if example_inputs is not None and batch_norm and report.swapped:
        report.fused_batch_norms = fuse_batch_norm(model, example_inputs)
    if shapes:
        # The timing's temporaries (every layout of every layer): a heap that keeps freed
        # memory (keep_freed_memory) would hold them at its peak for the rest of the run.
        release_kept_memory()
    report.model = model
    return report


def _why_dense(
    module: nn.Module,
    module_names: list,
    model: nn.Module,
    include: LayerSpec,
    exclude: LayerSpec,
    tied: dict,
    direct: dict,
) -> str:
    """Why sparsify leaves a layer as it is, whatever its sparsity ('' if it need not)."""
    if include is not None and not any(matches(n, module, include) for n in module_names):
        return "not in include"
    if any(matches(n, module, exclude) for n in module_names):
        return "excluded"
    if isinstance(module, SPARSE_TYPES):
        return ALREADY_SPARSE
    if not is_dense_layer(module):
        return unsupported_reason(module)
    if module is model:
        return "is the model itself: use from_dense"
    if parametrize.is_parametrized(module):
        return "parametrized (torch.nn.utils.parametrize): remove the parametrization first"
    weight = trained_weight(module)
    if weight is None:
        return "weight derived by a hook (such as weight_norm), not a Parameter of the layer"
    if isinstance(weight, nn.UninitializedParameter):
        return "weight not initialized yet (a lazy layer: run the model once first)"
    if id(weight) in tied:
        others = [p for p in tied[id(weight)] if _owner(p) not in module_names]
        return _TIED + ", ".join(others)
    if id(module) in direct:
        return direct[id(module)]
    w = module.weight
    if w.device.type != "cpu":
        return f"not a CPU weight ({w.device})"
    if w.dtype not in sparse_type_for(module)._param_dtypes:
        return NO_BF16_CONV if w.dtype == torch.bfloat16 else f"not float32 ({w.dtype})"
    return ""


NO_BF16_CONV = (
    "bfloat16 (sparse convolutions compute in float32: keep the model in float32 and train "
    "under autocast)"
)


def _owner(place: str) -> str:
    """The module name of a "module.parameter" place."""
    return place.rsplit(".", 1)[0] if "." in place else ""


def densify(model: nn.Module) -> nn.Module:
    """Replace every SparseLinear / SparseConv2d in ``model`` (in place) by the equal plain
    torch module; returns the model (or the dense module, if ``model`` itself is sparse)."""
    if isinstance(model, (SparseLinear, SparseConv2d)):
        return _dense_twin(model, share_bias=False)  # the layer itself stays usable
    for module in model.modules():  # plain batch norms again (nothing fills in statistics)
        if type(module) is FusedBatchNorm2d:
            module.__class__ = nn.BatchNorm2d
    done = set()
    for module in list(model.modules()):
        if isinstance(module, (SparseLinear, SparseConv2d)) and module not in done:
            done.add(module)
            replace_module(model, module, _dense_twin(module))
    return model


def _dense_twin(module, share_bias: bool = True) -> nn.Module:
    dense = module.to_dense().train(module.training)
    dense.weight.requires_grad_(module.values.requires_grad)
    if module.bias is not None:
        if share_bias:  # the same Parameter: its hooks and place in an optimizer stay
            dense.bias = module.bias
        else:
            dense.bias.requires_grad_(module.bias.requires_grad)
    return dense


def sparsify_like(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True
) -> nn.Module:
    """Give ``model`` the sparse / dense layers that ``state_dict`` has, then load it.

    For resuming from a checkpoint of a model that was partly sparsified: build the model as
    usual (all dense), then ``model = sparsify_like(model, checkpoint["model"])``. A layer is
    sparse in a state_dict when it has ``<prefix>.col_idx``: such dense layers (the types
    :func:`sparsify` takes) become :class:`SparseLinear` / :class:`SparseConv2d` (loading
    resizes them to the checkpoint's nonzeros), and sparse layers whose entry is a dense
    ``<prefix>.weight`` become dense layers of the type they were made from. Then
    ``load_state_dict(state_dict, strict=strict)``; its errors propagate (the layers are
    swapped by then). Returns the model, or the new module when ``model`` itself is a layer
    that was swapped. Build any optimizer after this call.
    """
    names: dict = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if is_dense_layer(module) or isinstance(module, SPARSE_TYPES):
            names.setdefault(module, []).append(name)
    root, swaps, errors = model, [], []
    for module, module_names in names.items():
        prefixes = [f"{n}." if n else "" for n in module_names]
        sparse_there = any(p + "col_idx" in state_dict for p in prefixes)
        dense_there = not sparse_there and any(p + "weight" in state_dict for p in prefixes)
        # Shapes as the checkpoint states them: a sparse layer's weight_shape is
        # (out, in) also for a Conv1D, whose own weight is (in, out).
        flip = _dense_types.dense_form(module) == "conv1d" or module.__dict__.get("_transposed")
        if is_dense_layer(module) and sparse_there:
            swaps.append((module, lambda m=module: sparse_type_for(m).from_dense(m)))
            key, found = "weight_shape", lambda t: tuple(int(v) for v in t.tolist())
        elif isinstance(module, SPARSE_TYPES) and dense_there:
            swaps.append((module, lambda m=module: _dense_twin(m)))
            key, found = "weight", lambda t: tuple(t.shape)
        else:
            continue
        mine = tuple(module.weight.shape)[:: -1 if flip else 1]
        # A weight of another shape is refused before any layer is swapped (as
        # load_state_dict refuses it), so a failed call leaves the model as it was.
        for p in prefixes:
            t = state_dict.get(p + key)
            if isinstance(t, torch.Tensor) and found(t) != mine:
                errors.append(
                    f"size mismatch for {p}weight: the checkpoint's weight has shape "
                    f"{found(t)}, the model's {module_names[0] or 'model'} {mine}"
                )
                break
    if errors:
        raise RuntimeError("sparsify_like: " + "; ".join(errors))
    for module, make in swaps:
        new = make().train(module.training)
        if module is model:
            root = new
        else:
            replace_module(model, module, new)
    root.load_state_dict(state_dict, strict=strict)
    return root

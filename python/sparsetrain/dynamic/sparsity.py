"""DynamicSparsity: sparse from the first step, connections moved while training (SET, RigL)."""

from __future__ import annotations

import math
import warnings

import torch
import torch.distributed as dist
from torch import nn

from .. import formats
from ..module_swap import LayerSpec, read_directly, shared_weights, sparse_type_for
from ..nn import SparseConv2d, SparseLinear
from ..nn._dense_types import dense_form
from ..pruning import _check_prunable, prunable_layers, swap_in, unswappable
from .dense_grad import GradientCapture
from .distribution import erk_densities, uniform_densities
from .selection import drop_mask, grow_positions

_SPARSE = (SparseLinear, SparseConv2d)
_WHO = "DynamicSparsity"


class DynamicSparsity:
    """Train a model sparse from the first step, moving connections every ``update_every``
    steps: SET (Mocanu et al., 2018) regrows at random, RigL (Evci et al., 2020) where the
    dense gradient is largest.

    Call :meth:`step` once per training step, after ``optimizer.step()``::

        dst = sparsetrain.DynamicSparsity(model, optimizer, sparsity=0.9, method="rigl",
                                          update_every=100, end_step=int(0.75 * steps))
        for x, y in data:
            loss_fn(model(x), y).backward()
            optimizer.step(); optimizer.zero_grad()
            dst.step()

    At construction the chosen dense layers (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``,
    transformers' ``Conv1D``; ``include`` / ``exclude`` as in
    :func:`sparsetrain.magnitude_prune`) become sparse layers on random patterns, with densities
    by ``distribution``: ``"uniform"`` (every layer at ``1 - sparsity``) or ``"erk"``
    (Erdős–Rényi-Kernel: small layers denser, the same number of weights overall; a layer it
    would make dense stays dense). They keep their initial weights at the chosen positions,
    scaled by ``1 / sqrt(density)`` so that each output starts with the variance the dense
    initialization gave it, as ``SparseLinear(..., sparsity=)`` initializes
    (``scale_init=False``: unscaled, as in the RigL paper, or for a model with trained
    weights, better pruned and made sparse first), and the optimizer trains their
    ``values`` in place of the dense weights (pass the optimizer that trains the model).
    Layers that are already sparse keep their patterns (they count in the distribution, so a
    run resumed on a model loaded with its sparse layers, e.g. by
    :func:`sparsetrain.sparsify_like`, leaves the same layers dense).

    After the ``n``-th call with ``n`` a multiple of ``update_every`` and below ``end_step``,
    each layer drops the ``round(f * nnz)`` nonzeros of smallest magnitude and grows as many
    where it had none (just-dropped positions included): at random (SET) or at the largest
    dense gradient magnitude of the step just taken (RigL). ``f`` decays from
    ``drop_fraction`` to 0 at ``end_step`` by a cosine. Grown weights start at 0 with zero
    optimizer state; every other weight and its state are unchanged, and ``values`` and the
    pattern are rewritten in place (same tensors), so a ``DistributedDataParallel`` wrapper
    built after this constructor stays valid. Ties go to the lower position.

    RigL's dense gradient exists only in the steps before updates: forward hooks, armed then,
    multiply each layer's input by its output gradient (summed over every backward of that
    step, all-reduced across processes when ``torch.distributed`` is initialized); no dense
    weight is ever kept. (A ``torch.compile``'d model does not run those hooks: RigL then warns
    that a layer got no gradient and leaves it; SET works compiled.) SET's draws come from
    ``seed`` (by default drawn once and, under
    ``torch.distributed``, taken from rank 0), so every process makes the same moves.

    Layers that cannot be made sparse here (tied weights, ``torch.nn.utils.prune``, read
    directly by their parent, bfloat16 convolutions) stay dense, with a warning; ``densities``
    maps every layer handled to its density, ``left_dense`` every layer left dense to why.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        sparsity: float = 0.9,
        method: str = "rigl",
        update_every: int = 100,
        drop_fraction: float = 0.3,
        end_step: int | None = None,
        distribution: str = "erk",
        include: LayerSpec = None,
        exclude: LayerSpec = None,
        *,
        seed: int | None = None,
        erk_power_scale: float = 1.0,
        scale_init: bool = True,
    ):
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise TypeError(
                f"{_WHO}: pass the model inside DistributedDataParallel (ddp.module) and wrap "
                f"it after this constructor (which swaps its layers)"
            )
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"{_WHO}: optimizer must be the torch.optim.Optimizer that trains the model, "
                f"got {type(optimizer).__name__}"
            )
        if method not in ("rigl", "set"):
            raise ValueError(f"{_WHO}: method must be 'rigl' or 'set', got {method!r}")
        if distribution not in ("erk", "uniform"):
            raise ValueError(
                f"{_WHO}: distribution must be 'erk' or 'uniform', got {distribution!r}"
            )
        for name, v in (("sparsity", sparsity), ("drop_fraction", drop_fraction)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{_WHO}: {name} must be in [0, 1], got {v!r}")
        if end_step is None:
            raise ValueError(
                f"{_WHO}: end_step is required: the step after which connections stop moving "
                f"(RigL uses 75% of training)"
            )
        for name, v in (("update_every", update_every), ("end_step", end_step)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{_WHO}: {name} must be a positive int, got {v!r}")
        self.model, self.optimizer = model, optimizer
        self.sparsity, self.method = float(sparsity), method
        self.update_every, self.end_step = update_every, end_step
        self.drop_fraction, self.distribution = float(drop_fraction), distribution
        self.seed = _shared_seed(seed)
        self.step_count = 0  # calls made so far
        self.left_dense: dict = {}
        self.densities: dict = {}
        self._scale_init = bool(scale_init)
        self.layers = self._make_sparse(include, exclude, float(erk_power_scale))
        self._capture = GradientCapture(self.layers) if method == "rigl" else None
        self._warned: set = set()
        self._arm_for(1)

    # -- construction ----------------------------------------------------------------------
    def _make_sparse(self, include, exclude, power_scale: float) -> dict:
        shared, direct = shared_weights(self.model), read_directly(self.model)
        chosen, sparse, shapes = {}, {}, {}
        for name, module in prunable_layers(self.model, include, exclude):
            _check_prunable(name, module, _WHO)
            if isinstance(module, _SPARSE):
                sparse[name] = module
                shapes[name] = tuple(module._weight_shape())
                continue
            why = unswappable(module, shared, direct)
            kind = sparse_type_for(module)
            if not why and module.weight.dtype not in kind._param_dtypes:
                why = f"has {module.weight.dtype} weights, which {kind.__name__} does not take"
            if why:
                self._leave_dense(name, why)
                continue
            chosen[name] = module
            shapes[name] = tuple(module.weight.shape)
        # Sparse layers count in the distribution (a resumed run's dense layers then get the
        # densities they had) but keep their patterns.
        if self.distribution == "erk":
            densities = erk_densities(shapes, self.sparsity, power_scale)
        else:
            densities = uniform_densities(shapes, self.sparsity)
        generator = torch.Generator().manual_seed(self.seed)
        for name, module in chosen.items():
            density = densities[name]
            if density >= 1.0:
                why = f"gets density 1 from the {self.distribution} distribution"
                self._leave_dense(name, why, warn=False)
                continue
            kind = sparse_type_for(module)
            transposed = dense_form(module) == "conv1d"  # its weight is (in, out)
            w = module.weight
            rows, cols = (w.shape[1], w.shape[0]) if transposed else (w.shape[0], w[0].numel())
            total = rows * cols
            row_ptr, col_idx = formats.random_csr(rows, cols, density, generator=generator)
            mask = torch.zeros(rows * cols, dtype=torch.bool)
            mask[formats.nonzero_positions(row_ptr, col_idx, rows, cols)] = True
            mask = mask.view(rows, cols)
            mask = mask.t() if transposed else mask.view(module.weight.shape)
            layer = kind.from_dense(module, mask=mask)
            if self._scale_init and layer.nnz:
                with torch.no_grad():  # each output's variance as the dense init gave it
                    layer.values.mul_((total / layer.nnz) ** 0.5)
            swap_in(self.model, name, module, layer, self.optimizer, _WHO)
            sparse[name] = layer
        ordered = {}
        for name, module in self.model.named_modules():  # model order, for every process
            if name in sparse and module is sparse[name]:
                ordered[name] = module
                self.densities[name] = 1.0 - module.sparsity
        return ordered

    def _leave_dense(self, name: str, why: str, warn: bool = True) -> None:
        self.left_dense[name] = why
        if warn:
            warnings.warn(f"{_WHO}: {name} {why}; left dense", stacklevel=3)

    # -- schedule --------------------------------------------------------------------------
    def is_update_step(self, step: int) -> bool:
        """Whether the ``step``-th call (counted from 1) moves connections."""
        return step % self.update_every == 0 and step < self.end_step

    def drop_fraction_at(self, step: int) -> float:
        """The fraction of each layer's nonzeros the ``step``-th call moves (cosine decay)."""
        if step >= self.end_step:
            return 0.0
        return self.drop_fraction * 0.5 * (1.0 + math.cos(math.pi * step / self.end_step))

    def step(self) -> bool:
        """Advance one training step; move connections if the schedule says so. True if it did."""
        self.step_count += 1
        moved = False
        if self.is_update_step(self.step_count):
            moved = self._update(self.step_count)
        self._arm_for(self.step_count + 1)
        return moved

    def _arm_for(self, step: int) -> None:
        if self._capture is None:
            return
        self._capture.clear()
        if self.is_update_step(step):
            self._capture.arm()
        else:
            self._capture.disarm()

    # -- updates ---------------------------------------------------------------------------
    def _update(self, step: int) -> bool:
        fraction = self.drop_fraction_at(step)
        moved = False
        for index, (name, layer) in enumerate(self.layers.items()):
            k = int(round(fraction * layer.nnz))
            if k == 0 or layer.nnz == layer._rows * layer._cols:
                continue  # (the same on every process: the layers' sizes agree)
            scores = self._grow_scores(name, layer, step, index)
            if scores is None:
                continue
            drop = drop_mask(layer.values.detach().abs(), k)
            grow = grow_positions(scores, layer.positions()[~drop], k)
            layer.regrow(drop, grow, self.optimizer)
            moved = True
        return moved

    def _grow_scores(self, name: str, layer, step: int, index: int) -> torch.Tensor | None:
        """One score per weight of the layer's dense matrix: the dense gradient's magnitude
        (RigL) or a uniform draw (SET); None when RigL saw no gradient for the layer."""
        total = layer._rows * layer._cols
        if self._capture is None:
            g = torch.Generator().manual_seed(hash((self.seed, step, index)) % (2**63))
            return torch.rand(total, generator=g)
        grad = self._capture.take(name)
        missing = grad is None
        if _distributed():
            # Every process joins every all-reduce, with or without a gradient of its own.
            grad = torch.zeros(layer._rows, layer._cols) if missing else grad
            flag = torch.tensor([0.0 if missing else 1.0])
            dist.all_reduce(grad)
            dist.all_reduce(flag)
            missing = float(flag) == 0.0
            grad.div_(dist.get_world_size())
        if missing:
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(
                    f"{_WHO}: layer {name} got no gradient in the step before update {step} "
                    f"(call step() after optimizer.step(), each step; a torch.compile'd model "
                    f"does not run RigL's capture hooks: use method='set' there); its "
                    f"connections stay",
                    stacklevel=3,
                )
            return None
        return grad.abs().reshape(-1)

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "seed": self.seed, "layers": list(self.layers)}

    def load_state_dict(self, state: dict) -> None:
        """Resume the schedule (load the model's state_dict too: it holds the patterns)."""
        if list(state["layers"]) != list(self.layers):
            raise ValueError(
                f"{_WHO}.load_state_dict: the checkpoint moves the layers {state['layers']}, "
                f"this one {list(self.layers)}"
            )
        self.step_count = int(state["step_count"])
        self.seed = int(state["seed"])
        self._arm_for(self.step_count + 1)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _shared_seed(seed: int | None) -> int:
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
        if _distributed():
            t = torch.tensor([seed], dtype=torch.int64)
            dist.broadcast(t, 0)
            seed = int(t)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{_WHO}: seed must be an int or None, got {seed!r}")
    return seed

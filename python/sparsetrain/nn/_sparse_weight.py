"""What every sparse layer shares: the weight as a CSR pattern plus trainable nonzeros."""

from __future__ import annotations

import torch
from torch import nn

from .. import formats
from ..functional import pattern_cache
from ..functional.common import autocast_bf16, check_values
from . import _dense_types

# What from_dense takes, per form, for its error message.
_EXPECTS = {
    "linear": "nn.Linear",
    "conv1d": "transformers' Conv1D",
    "conv2d": "nn.Conv2d",
    "nn_conv1d": "nn.Conv1d",
}


class SparseWeightModule(nn.Module):
    """Base of SparseLinear and SparseConv2d.

    The weight is a (rows, cols) CSR matrix: the trainable ``values`` (nonzeros, CSR order)
    on the pattern in the buffers ``row_ptr`` (int64) and ``col_idx`` (int32), which travel
    with ``state_dict``. Subclasses set ``_rows``/``_cols`` and derive what their kernels
    need in ``_derive`` (called by ``_rebuild_index``, the one place a pattern is accepted).
    """

    _rows: int
    _cols: int

    # The parameter dtypes this layer's kernels take; any other becomes float32.
    _param_dtypes = (torch.float32,)

    def _set_weight(
        self, row_ptr, col_idx, values, bias, *, values_grad=True, bias_grad=True, dtype=None
    ):
        """``dtype``: of values and bias (float32 unless the layer takes the one given)."""
        dtype = dtype if dtype in self._param_dtypes else torch.float32
        self.register_buffer("row_ptr", row_ptr)
        self.register_buffer("col_idx", col_idx)
        # The dense weight's shape, saved so that a checkpoint of another shape is refused on
        # load (the pattern alone cannot tell 16 -> 8 from 10 -> 8, or 3x3 from 1x9).
        self.register_buffer("weight_shape", torch.tensor(self._weight_shape(), dtype=torch.int64))
        self.values = nn.Parameter(values.to(dtype).contiguous(), requires_grad=values_grad)
        if bias is not None:
            self.bias = nn.Parameter(bias.detach().to(dtype).clone(), requires_grad=bias_grad)
        else:
            self.register_parameter("bias", None)
        self._stamp = None
        self._rebuild_index()

    @classmethod
    def _blank_for(cls, dense: nn.Module, forms: tuple):
        """An uninitialised layer of this class for ``from_dense(dense)``, once ``dense`` is
        checked to be a CPU layer of one of ``forms`` (see ``_dense_types``). It remembers
        ``dense``'s type, which ``to_dense`` gives back."""
        form = _dense_types.dense_form(dense)
        if form not in forms:
            why = (
                _dense_types.unsupported_reason(dense)
                if form is None
                else f"a {form} layer is not a {cls.__name__}"
            )
            raise TypeError(
                f"{cls.__name__}.from_dense expects {' or '.join(_EXPECTS[f] for f in forms)}, "
                f"got {type(dense).__name__} ({why})"
            )
        if dense.weight.device.type not in ("cpu", "meta"):
            raise ValueError(
                f"{cls.__name__}.from_dense: weight must be on the CPU (or the meta device), "
                f"got {dense.weight.device}"
            )
        self = cls.__new__(cls)
        SparseWeightModule.__init__(self)
        self._dense_type = type(dense)
        return self

    def _set_weight_from(
        self, dense: nn.Module, transposed: bool = False, mask: torch.Tensor | None = None
    ) -> None:
        """Take exactly the nonzeros of a dense layer's weight viewed as rows x cols
        (``transposed``: its transpose, for a weight stored (in, out)) and its bias, with their
        requires_grad, in the weight's dtype where the layer takes it (bfloat16 linear layers).
        ``mask``, a bool tensor of the weight's shape: exactly the entries where it is True
        instead (zeros included)."""
        w, bias = dense.weight, dense.bias
        if mask is not None and (
            not isinstance(mask, torch.Tensor)
            or mask.dtype != torch.bool
            or tuple(mask.shape) != tuple(w.shape)
        ):
            got = (
                f"{mask.dtype} of shape {tuple(mask.shape)}"
                if isinstance(mask, torch.Tensor)
                else type(mask).__name__
            )
            raise ValueError(
                f"{type(self).__name__}.from_dense: mask must be a bool tensor of the weight's "
                f"shape {tuple(w.shape)}, got {got}"
            )
        matrix = w.detach()
        if transposed:
            matrix = matrix.t()
            mask = None if mask is None else mask.t()
        mask = None if mask is None else mask.flatten(1)
        row_ptr, col_idx, values = formats.csr_from_dense(matrix.flatten(1), mask)
        self._set_weight(
            row_ptr,
            col_idx,
            values,
            bias,
            values_grad=w.requires_grad,
            bias_grad=bias is not None and bias.requires_grad,
            dtype=w.dtype,
        )

    def _copy_into(self, dense: nn.Module) -> nn.Module:
        """Fill a freshly built dense twin (torch's plain class) with this layer's weight (zeros
        included) and bias, and give it the type ``from_dense`` was given (a subclass that
        adds nothing, so only the class differs)."""
        with torch.no_grad():
            dense.weight.copy_(self.weight)
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        original = self.__dict__.get("_dense_type")
        if original is not None and original is not type(dense):
            dense.__class__ = original
        return dense

    # -- inspection ------------------------------------------------------------------------
    def _weight_shape(self) -> tuple:
        """The dense weight's shape (subclasses with more than two dimensions override it)."""
        return (self._rows, self._cols)

    def _dense_matrix(self) -> torch.Tensor:
        self._ensure_index()
        row_ptr, col_idx = self._pattern
        self._check_values()
        return formats.csr_to_dense(row_ptr, col_idx, self.values, self._rows, self._cols)

    @property
    def nnz(self) -> int:
        return self.col_idx.numel()

    @property
    def sparsity(self) -> float:
        total = self._rows * self._cols
        return 1.0 - self.nnz / total if total else 0.0

    # -- pattern bookkeeping ---------------------------------------------------------------
    # The kernels never read the buffers row_ptr / col_idx: they run on a private copy of the
    # pattern, validated when it was taken (self._pattern, and the indices derived from it).
    # Whatever Python does to the buffers (in place, through .data or .numpy(), set_, resize_)
    # can therefore not send a kernel out of bounds. Changes PyTorch's version counter sees are
    # taken up (validated) at the next forward; writes it does not see (.data, .numpy()) reach
    # the layer only when the buffers are assigned or loaded again.
    def _layer_name(self) -> str:
        return f"{type(self).__name__}({self._describe()})"

    def _call_name(self) -> str:
        """_layer_name, kept from the last index build (every call passes it on)."""
        name = self.__dict__.get("_name")
        if name is None:
            name = self._name = self._layer_name()
        return name

    def _index_stamp(self):
        # Through _buffers: nn.Module's attribute lookup costs microseconds on every call.
        return pattern_cache.stamp(self._buffers["row_ptr"], self._buffers["col_idx"])

    def _derive(self) -> None:
        """Build what the kernels need from the private, validated ``self._pattern``."""

    def _rebuild_index(self) -> None:
        """Take a private copy of the pattern buffers, validate it and derive the kernels'
        indices from it (the one place that does)."""
        self._stamp = None
        # Named now, not on the first call: a compiled forward must find no state to set.
        self._name = self._layer_name()
        if any(t.device.type == "meta" for t in (self.row_ptr, self.col_idx, self.values)):
            # Built on the meta device: no numbers to validate yet. The next forward (after
            # to_empty) validates what the buffers then hold; load_state_dict gives them a
            # checkpoint's pattern.
            self._pattern = None
            return
        # Ordinary (not inference) tensors, so the layer also trains after being built or
        # loaded inside torch.inference_mode().
        with torch.inference_mode(False):
            row_ptr, col_idx = self.row_ptr, self.col_idx
            if isinstance(row_ptr, torch.Tensor):
                row_ptr = row_ptr.detach().clone(memory_format=torch.contiguous_format)
            if isinstance(col_idx, torch.Tensor):
                col_idx = col_idx.detach().clone(memory_format=torch.contiguous_format)
            try:
                formats.validate_csr(row_ptr, col_idx, self._rows, self._cols)
            except ValueError as e:
                raise ValueError(f"{self._layer_name()}: {e}") from None
            if self.values.numel() != col_idx.numel():
                raise ValueError(
                    f"{self._layer_name()}: {self.values.numel()} values for "
                    f"{col_idx.numel()} column indices"
                )
            self._pattern = (row_ptr, col_idx)
            self._derive()
        self._stamp = self._index_stamp()

    def __setstate__(self, state):
        # Unpickled or deep-copied: derive the kernels' indices afresh from the pattern.
        super().__setstate__(state)
        if "weight_shape" not in self._buffers:  # pickled before the shape was saved
            self.register_buffer(
                "weight_shape", torch.tensor(self._weight_shape(), dtype=torch.int64)
            )
        self._stamp = self._pattern = None

    def _ensure_index(self) -> None:
        stamp = self._index_stamp()
        if self._stamp == stamp:
            return
        # The pattern buffers were replaced or written in place: the same numbers (as
        # DistributedDataParallel's buffer broadcast writes before every forward) keep the
        # derived indices, anything else is validated and derived afresh.
        row_ptr, col_idx = self._pattern or (None, None)
        if (
            self._pattern is not None
            and pattern_cache.same(self.row_ptr, row_ptr)
            and pattern_cache.same(self.col_idx, col_idx)
            and self.values.numel() == col_idx.numel()
        ):
            self._stamp = stamp
            return
        self._rebuild_index()

    def _check_values(self) -> None:
        """``values`` must fit the pattern the kernels run on (checked on every call: a
        Parameter's data can be replaced behind autograd's back)."""
        check_values(self._call_name(), self._parameters["values"], self._pattern[1].numel())

    def _saved_pattern(self):
        """A guard that backward checks: the pattern buffers written in place between forward
        and backward with other numbers raise PyTorch's version error, as a dense layer's
        weight does. (Rewritten with the same numbers, as DistributedDataParallel's buffer
        broadcast does before every forward, they pass: a model may run twice before one
        backward.)"""
        return PatternGuard(
            self._call_name(), self._buffers["row_ptr"], self._buffers["col_idx"], self._pattern
        )

    def prune_values(
        self, keep: torch.Tensor, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """Remove the nonzeros where ``keep`` is False, for good.

        Values and index are repacked (the same ``values`` Parameter object, resized, so it
        stays registered with any optimizer), its gradient and the ``optimizer``'s per-value
        state (SGD momentum, Adam/AdamW moments; ``step`` is kept) follow the survivors. State
        that is not per value cannot follow: it restarts, as does the state of any optimizer
        not passed here (at its next step).
        """
        keep = torch.as_tensor(keep, dtype=torch.bool).reshape(-1)
        if keep.numel() != self.nnz:
            raise ValueError(
                f"{self._layer_name()}.prune_values: keep has {keep.numel()} entries "
                f"for {self.nnz} nonzeros"
            )
        rows = formats.nonzero_rows(self.row_ptr, self._rows)
        row_ptr = torch.zeros_like(self.row_ptr)
        torch.cumsum(torch.bincount(rows[keep], minlength=self._rows), 0, out=row_ptr[1:])
        from .. import _optim_state

        old_shape, grad = self.values.shape, self.values.grad
        with torch.no_grad():
            resize_parameter(self.values, self.values.data[keep].contiguous())
            if grad is not None:
                self.values.grad = grad[keep].contiguous()
        state = optimizer.state.get(self.values) if optimizer is not None else None
        if state:
            new_state = _optim_state.carried(state, old_shape, keep)
            if new_state is None:
                del optimizer.state[self.values]  # not element-wise: restarts
            else:
                optimizer.state[self.values] = new_state
        self.row_ptr = row_ptr
        self.col_idx = self.col_idx[keep].contiguous()
        self._rebuild_index()

    def positions(self) -> torch.Tensor:
        """The flat position (row * cols + col of the (rows, cols) weight matrix) of every
        nonzero, in the order of ``values`` (int64), from the validated pattern the kernels
        run on."""
        self._ensure_index()
        row_ptr, col_idx = self._pattern
        return formats.nonzero_positions(row_ptr, col_idx, self._rows, self._cols)

    def regrow(
        self,
        drop: torch.Tensor,
        grow: torch.Tensor,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """Move connections, keeping the number of nonzeros: remove the nonzeros where ``drop``
        is True and add as many at the flat positions ``grow`` (row * cols + col of the
        (rows, cols) weight matrix; any that were not nonzeros after the drop, just-dropped ones
        included). Grown weights start at 0, as do their gradient and the ``optimizer``'s
        per-value state; every other weight keeps its value and state.

        Everything is rewritten in place: the ``values`` Parameter keeps its storage (an
        optimizer, DistributedDataParallel's buckets and FSDP see the same tensor) and the
        pattern buffers theirs (DistributedDataParallel broadcasts the same buffers).
        """
        name = self._layer_name()
        drop = torch.as_tensor(drop, dtype=torch.bool).reshape(-1)
        grow = torch.as_tensor(grow).reshape(-1)
        if drop.numel() != self.nnz:
            raise ValueError(
                f"{name}.regrow: drop has {drop.numel()} entries for {self.nnz} nonzeros"
            )
        if grow.dtype not in (torch.int64, torch.int32) or grow.numel() != int(drop.sum()):
            raise ValueError(
                f"{name}.regrow: grow must be {int(drop.sum())} integer positions (one per "
                f"dropped nonzero), got {grow.numel()} of {grow.dtype}"
            )
        from .. import _optim_state

        kept_src = (~drop).nonzero().squeeze(1)
        kept = self.positions()[kept_src]  # ascending, as CSR order is
        grow = grow.to(torch.int64).sort().values
        total = self._rows * self._cols
        if grow.numel() and (int(grow[0]) < 0 or int(grow[-1]) >= total):
            raise ValueError(f"{name}.regrow: grow positions must lie in [0, {total})")
        # Merge the two sorted lists: each entry's new place is its place in its own list
        # plus the number of entries of the other list before it.
        at = torch.searchsorted(kept, grow)
        inside = at < kept.numel()
        stays = torch.zeros_like(inside)  # grow positions that are kept nonzeros
        stays[inside] = kept[at[inside]] == grow[inside]
        if bool((grow[1:] == grow[:-1]).any()) or bool(stays.any()):
            raise ValueError(
                f"{name}.regrow: grow repeats a position or names one that stays a nonzero"
            )
        grow_new = at + torch.arange(grow.numel())
        kept_new = torch.searchsorted(grow, kept) + torch.arange(kept.numel())
        positions = torch.empty(kept.numel() + grow.numel(), dtype=torch.int64)
        positions[kept_new] = kept
        positions[grow_new] = grow

        def moved(t: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(t).reshape(-1)
            out[kept_new] = t.reshape(-1)[kept_src]
            return out

        with torch.no_grad():
            values = self._parameters["values"]
            values.copy_(moved(values.detach()))
            if values.grad is not None and values.grad.shape == values.shape:
                values.grad.copy_(moved(values.grad))
            state = optimizer.state.get(values) if optimizer is not None else None
            if state and not _optim_state.fits(state, values.shape):
                del optimizer.state[values]  # not per value: restarts, as in prune_values
            elif state:
                for v in state.values():
                    if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape == values.shape:
                        v.copy_(moved(v))
            rows = torch.div(positions, self._cols, rounding_mode="floor")
            self.row_ptr[0] = 0
            torch.cumsum(torch.bincount(rows, minlength=self._rows), 0, out=self.row_ptr[1:])
            self.col_idx.copy_(positions - rows * self._cols)
        self._rebuild_index()

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        keys = [prefix + k for k in ("row_ptr", "col_idx", "values")]
        present = [k in state_dict for k in keys]
        if any(present) and not all(present):
            # Half a pattern would pair new indices with old values: refuse, strict or not.
            missing = [k for k, p in zip(keys, present) if not p]
            raise ValueError(
                f"{prefix or type(self).__name__}: the checkpoint holds part of a "
                f"sparse weight; missing {', '.join(missing)}"
            )
        shape_key = prefix + "weight_shape"
        if all(present) and shape_key in state_dict:
            mismatch = self._shape_mismatch(state_dict[shape_key])
            if mismatch:
                # As nn.Linear refuses a weight of another shape (load_state_dict raises).
                error_msgs.append(f"size mismatch for {prefix}weight: {mismatch}")
                return
        if all(present):
            row_ptr, col_idx, values = (state_dict[k] for k in keys)
            try:
                formats.validate_csr(row_ptr, col_idx, self._rows, self._cols)
            except ValueError as e:
                raise ValueError(f"{self._layer_name()} ({prefix or 'state_dict'}): {e}") from None
            if (
                not isinstance(values, torch.Tensor)
                or values.dim() != 1
                or values.numel() != col_idx.numel()
            ):
                got = (
                    f"shape {tuple(values.shape)}"
                    if isinstance(values, torch.Tensor)
                    else type(values).__name__
                )
                raise ValueError(f"{prefix}values: expected {col_idx.numel()} values, got {got}")
            # A checkpoint may hold a different number of nonzeros: resize in place so the
            # same Parameter object stays registered with any optimizer.
            if col_idx.numel() != self.col_idx.numel():
                # Ordinary tensors even inside torch.inference_mode(), as nn.Linear's loaded
                # weight stays one: the layer must train afterwards.
                # On the meta device (a model built there) the sizes change and the numbers
                # wait for to_empty and another load.
                device = self.values.device
                with torch.inference_mode(False):
                    self.col_idx = torch.empty_like(col_idx, device=device)
                    resize_parameter(
                        self.values,
                        torch.empty(values.numel(), dtype=self.values.dtype, device=device),
                    )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if shape_key in missing_keys and all(present):
            missing_keys.remove(shape_key)  # a checkpoint saved before the shape was
        self._rebuild_index()

    def _shape_mismatch(self, saved) -> str:
        """Why a checkpoint's saved weight shape does not fit this layer ('' if it does)."""
        mine = tuple(self._weight_shape())
        if not isinstance(saved, torch.Tensor) or saved.dim() != 1:
            return f"weight_shape must be a 1-D tensor, got {saved!r}"
        theirs = tuple(int(v) for v in saved.tolist())
        if theirs != mine:
            return (
                f"copying a sparse weight of shape {theirs} into {self._layer_name()}, "
                f"whose weight has shape {mine}"
            )
        return ""

    def _check_input(self, x: torch.Tensor, what: str) -> None:
        """Inputs and parameters of the dtypes the layer's kernels take (``_param_dtypes``);
        with bf16 kernels a bfloat16 input (autocast's, which prepare_input made) and bfloat16
        parameters (a bfloat16 model) pass, and outside autocast the input's dtype must then be
        the values' dtype, as in a dense layer."""
        name = self._call_name()
        if torch.jit.is_tracing():
            raise RuntimeError(
                f"{name}: torch.jit.trace (and the TorchScript-based ONNX export) is not "
                "supported by sparse layers; torch.export and torch.compile are"
            )
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor input, got {type(x).__name__}")
        ok = self._param_dtypes
        kind = " or ".join(str(d).removeprefix("torch.") for d in ok)
        if x.dtype not in ok:
            raise TypeError(f"{name}: expected {kind} input, got {x.dtype}")
        if x.device.type != "cpu":
            raise ValueError(f"{name}: input must be on the CPU, got {x.device}")
        if self.values.dtype not in ok or (self.bias is not None and self.bias.dtype not in ok):
            raise TypeError(f"{name}: parameters must be {kind} (was .double()/.half() called?)")
        if x.dtype != self.values.dtype and not autocast_bf16():
            raise TypeError(
                f"{name}: {what} is {x.dtype} but the values are {self.values.dtype}: cast one "
                "to the other, or run under torch.autocast('cpu', dtype=torch.bfloat16)"
            )
        if self.bias is not None and tuple(self.bias.shape) != (self._rows,):
            raise ValueError(
                f"{name}: bias has shape {tuple(self.bias.shape)}, expected ({self._rows},)"
            )

    def _describe(self) -> str:
        return ""

    def __prepare_scriptable__(self):
        # torch.jit.script calls this first: say why instead of failing on our Python.
        raise RuntimeError(
            f"{self._layer_name()}: TorchScript (torch.jit.script) is not supported by sparse "
            "layers; torch.export and torch.compile are"
        )


def resize_parameter(p: nn.Parameter, data: torch.Tensor) -> None:
    """Give ``p`` new data of another length, keeping the Parameter object.

    Autograd caches a parameter's gradient accumulator, with the shape it had, while any graph
    that used it is alive (a ``loss`` kept from the previous step is enough), and assigning
    ``.data`` drops that cache only when the dtype changes. Passing through another dtype
    makes the next forward create an accumulator with the new shape.

    The state of a resized Parameter restarts in every optimizer whose state no longer fits
    it (at that optimizer's next step; see ``sparsetrain._optim_state``), and a gradient of
    the old shape is dropped: the next backward would fail on it.
    """
    other = torch.float64 if data.dtype != torch.float64 else torch.float32
    p.data = torch.empty(0, dtype=other, device=data.device)
    from .. import _optim_state

    p.data = data
    if p.grad is not None and p.grad.shape != p.shape:
        p.grad = None
    _optim_state.note_resized(p)


class PatternGuard:
    """The pattern buffers a forward pass ran with, and their versions then (see
    SparseWeightModule._saved_pattern)."""

    def __init__(self, name: str, row_ptr: torch.Tensor, col_idx: torch.Tensor, pattern):
        self.name, self.buffers, self.pattern = name, (row_ptr, col_idx), pattern
        # Inference tensors track no versions: nothing to check then.
        self.versions = (
            None
            if row_ptr.is_inference() or col_idx.is_inference()
            else (row_ptr._version, col_idx._version)
        )

    def check(self) -> None:
        if self.versions is None:
            return
        for what, buf, version, ref in zip(
            ("row_ptr", "col_idx"), self.buffers, self.versions, self.pattern
        ):
            if buf._version != version and not pattern_cache.same(buf, ref):
                raise RuntimeError(
                    f"{self.name}: one of the variables needed for gradient computation has "
                    f"been modified by an inplace operation: {what} is at version "
                    f"{buf._version}; expected version {version} instead (the pattern changed "
                    f"between forward and backward)"
                )

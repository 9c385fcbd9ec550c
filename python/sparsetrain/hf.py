"""Hugging Face transformers models: loading a sparsified model saved with ``save_pretrained``.

``model.save_pretrained(path)`` writes a sparse layer as its state_dict entries
(``values``, ``row_ptr``, ``col_idx``, ``weight_shape``, ``bias``) where the dense model
has ``weight`` / ``bias``. Such a checkpoint loads back with one call::

    model = sparsetrain.from_pretrained(BertForSequenceClassification, path)

Loading it the plain way, ``BertForSequenceClassification.from_pretrained(path)``, would build
every sparse layer dense with a random weight (transformers reports the sparse entries as
unexpected and the weights as missing, and goes on): once sparsetrain is imported, that
raises :class:`SparseCheckpointError` naming the call above.

transformers is imported only by :func:`from_pretrained`, never when sparsetrain is imported.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import warnings
from typing import Any

import torch
from torch import nn

from .module_swap import (
    replace_module,
    sparse_type_for,
    tied_to,
    trained_weight,
    unsupported_reason,
)

# What a sparse layer saves besides its bias, and the key that marks one.
_SPARSE_KEYS = ("values", "row_ptr", "col_idx", "weight_shape")
_MARK = "col_idx"
# transformers' load report goes to this logger (transformers.modeling_utils, through
# transformers.utils.loading_report.log_state_dict_report).
_HF_LOGGER = "transformers.modeling_utils"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Set while from_pretrained loads: the report transformers logs then is kept here instead
# (it lists the sparse entries as unexpected), and re-emitted if the load fails.
_captured: contextvars.ContextVar = contextvars.ContextVar("sparsetrain_hf_load", default=None)

__all__ = ["from_pretrained", "SparseCheckpointError", "install_load_guard"]


class SparseCheckpointError(RuntimeError):
    """A checkpoint with sparsetrain layers was loaded by plain transformers, which would
    initialize those layers at random; the message names the call that loads it."""


def from_pretrained(
    cls: type, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any
) -> Any:
    """Load a model saved with ``save_pretrained`` after :func:`sparsetrain.sparsify`, with
    its sparse layers: ``sparsetrain.from_pretrained(GPT2LMHeadModel, path)``.

    ``cls`` is the transformers class (``BertForSequenceClassification``, an ``AutoModel...``
    class); ``model_args`` and ``kwargs`` go to ``cls.from_pretrained`` as they are. The
    model is built and its dense weights loaded by transformers; then every layer that the
    checkpoint holds sparse (``<layer>.col_idx``) becomes a :class:`SparseLinear` /
    :class:`SparseConv2d` with the saved pattern and values (a GPT-2 ``Conv1D`` included; it
    densifies back to a ``Conv1D``). A checkpoint without sparse layers loads as
    ``cls.from_pretrained`` would load it.

    transformers' load report leaves out the entries of the sparse layers; whatever else it
    would report (weights newly initialized, entries not used) is warned about.
    ``output_loading_info=True`` returns ``(model, info)`` with those keys. Only safetensors
    checkpoints (what ``save_pretrained`` writes) are read for the sparse layers. A sparse
    layer whose place in ``cls`` is not a layer sparsetrain takes, or is tied to another
    module (``tie_word_embeddings``), raises ``ValueError``.
    """
    want_info = kwargs.pop("output_loading_info", False)
    captured: list = []
    token = _captured.set(captured)
    try:
        model, info = cls.from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
    except BaseException:
        _reemit(captured)  # what transformers said before it failed
        raise
    finally:
        _captured.reset(token)
    entries = _sparse_entries(pretrained_model_name_or_path, kwargs)
    placed = _place(model, entries)
    done = _load_sparse_layers(model, entries, placed, cls.__name__)
    info = _adjust(info, placed, done)
    unread = sorted(k for k in info["unexpected_keys"] if k.endswith(_MARK))
    if unread and not entries:
        raise SparseCheckpointError(
            f"sparsetrain.from_pretrained: {pretrained_model_name_or_path} holds sparse layers "
            f"({', '.join(unread)}) in files it cannot read: only safetensors checkpoints "
            f"(what save_pretrained writes) are supported"
        )
    left = [f"{k} (newly initialized)" for k in sorted(info["missing_keys"])]
    left += [f"{k} (in the checkpoint, not used)" for k in sorted(info["unexpected_keys"])]
    if left:
        warnings.warn(
            f"sparsetrain.from_pretrained({cls.__name__}, {pretrained_model_name_or_path}): "
            + "; ".join(left),
            stacklevel=2,
        )
    return (model, info) if want_info else model


def _sparse_entries(path, kwargs: dict) -> dict:
    """{checkpoint prefix ('' for the root): {entry name: tensor}} of every sparse layer in
    the checkpoint (read from its safetensors files, or from ``kwargs["state_dict"]``)."""
    state_dict = kwargs.get("state_dict")
    if state_dict is not None:
        keys, read = list(state_dict), state_dict.__getitem__
        return _group(keys, read)
    files = _safetensors_files(path, kwargs)
    if not files:
        return {}
    from safetensors import safe_open

    where = {}  # key -> its file (a sparse layer's entries may lie in different shards)
    for file, keys in files.items():
        if keys is None:
            with safe_open(file, framework="pt", device="cpu") as f:
                keys = list(f.keys())
        where.update(dict.fromkeys(keys, file))
    groups = _group(list(where), None)
    out: dict = {}
    for file in {where[k] for wanted in groups.values() for k in wanted.values()}:
        with safe_open(file, framework="pt", device="cpu") as f:
            for prefix, wanted in groups.items():
                for n, k in wanted.items():
                    if where[k] == file:
                        out.setdefault(prefix, {})[n] = f.get_tensor(k)
    return out


def _group(keys: list, read) -> dict:
    """{prefix: {entry name: tensor, or its key when read is None}} of the sparse layers
    among ``keys``."""
    prefixes = [k[: -len(_MARK)] for k in keys if k == _MARK or k.endswith("." + _MARK)]
    present = set(keys)
    out = {}
    for p in prefixes:
        names = [n for n in (*_SPARSE_KEYS, "bias") if p + n in present]
        out[p[:-1] if p else ""] = {n: (p + n if read is None else read(p + n)) for n in names}
    return out


def _safetensors_files(path, kwargs: dict) -> dict:
    """{file: the keys to read from it, or None for all} of the checkpoint's safetensors
    files, as transformers names them (``variant``, ``subfolder``; hub ids through its
    cache, where from_pretrained has just put them)."""
    variant, subfolder = kwargs.get("variant"), kwargs.get("subfolder") or ""

    def named(name: str) -> str:
        if not variant:
            return name
        head, _, tail = name.partition(".")
        return f"{head}.{variant}.{tail}"

    def find(name: str) -> str | None:
        local = os.path.join(os.fspath(path), subfolder, name)
        if os.path.isdir(os.fspath(path)):
            return local if os.path.isfile(local) else None
        from transformers.utils import cached_file

        hub = ("cache_dir", "proxies", "token", "revision", "local_files_only")
        return cached_file(
            path,
            name,
            subfolder=subfolder,
            _raise_exceptions_for_missing_entries=False,
            **{k: kwargs[k] for k in hub if k in kwargs},
        )

    single = find(named("model.safetensors"))
    if single is not None:
        return {single: None}
    index = find(named("model.safetensors.index.json"))
    if index is None:
        return {}
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    files: dict = {}
    for key, shard in weight_map.items():
        files.setdefault(os.path.join(os.path.dirname(index), shard), []).append(key)
    return files


def _place(model: nn.Module, entries: dict) -> dict:
    """{module name in ``model``: checkpoint prefix} for the sparse layers, matching names as
    transformers does when a base model's checkpoint meets a model with a head (and back)."""
    names = {n for n, _ in model.named_modules()}
    base = getattr(model, "base_model_prefix", "") or ""
    placed = {}
    for prefix in entries:
        candidates = [prefix]
        if base:
            candidates.append(f"{base}.{prefix}" if prefix else base)
            if prefix.startswith(base + "."):
                candidates.append(prefix[len(base) + 1 :])
        for name in candidates:
            if name in names:
                placed[name] = prefix
                break
    return placed


def _load_sparse_layers(model: nn.Module, entries: dict, placed: dict, who: str) -> set:
    """Swap each placed layer for a sparse one holding the checkpoint's pattern and values;
    returns the module names swapped."""
    tied = tied_to(model)
    done = set()
    for name, prefix in placed.items():
        module = model.get_submodule(name)
        kind = sparse_type_for(module)
        where = name or "the model"
        if kind is None:
            raise ValueError(
                f"sparsetrain.from_pretrained: the checkpoint holds {where} as a sparse layer, "
                f"but in {who} it is a {type(module).__name__} "
                f"({unsupported_reason(module)})"
            )
        weight = trained_weight(module)
        if weight is not None and id(weight) in tied:
            others = ", ".join(p for p in tied[id(weight)] if p.rsplit(".", 1)[0] != name)
            raise ValueError(
                f"sparsetrain.from_pretrained: the checkpoint holds {where} as a sparse layer, "
                f"but {who} ties its weight to {others}; load it with the tie off (for a "
                f"language model's head: tie_word_embeddings=False)"
            )
        with torch.no_grad():
            module.weight.zero_()  # its random init: the sparse layer starts with no nonzeros
        sparse = kind.from_dense(module).train(module.training)
        result = sparse.load_state_dict(entries[prefix], strict=False)
        if result.unexpected_keys or set(result.missing_keys) - {"bias", "weight_shape"}:
            raise ValueError(
                f"sparsetrain.from_pretrained: the checkpoint's sparse layer {where} does not "
                f"fit {who}'s {type(module).__name__}: missing {result.missing_keys}, "
                f"unexpected {result.unexpected_keys}"
            )
        if name:
            replace_module(model, module, sparse)
        done.add(name)
    return done


def _adjust(info: dict, placed: dict, done: set) -> dict:
    """transformers' loading info less what the loaded sparse layers explain: their
    ``weight`` is not missing, their entries (named as in the checkpoint or as in the model)
    were used."""
    filled = {f"{name}.weight" if name else "weight" for name in done}
    mine = {name for name in done} | {placed[name] for name in done}

    def explained(key: str) -> bool:
        head, _, tail = key.rpartition(".")
        return tail in _SPARSE_KEYS and head in mine

    info = dict(info)
    info["missing_keys"] = {k for k in info["missing_keys"] if k not in filled}
    info["unexpected_keys"] = {k for k in info["unexpected_keys"] if not explained(k)}
    return info


def _reemit(records: list) -> None:
    logger = logging.getLogger(_HF_LOGGER)
    for record in records:
        for handler in _handlers(logger):
            if record.levelno >= handler.level:
                handler.handle(record)


def _handlers(logger: logging.Logger) -> list:
    out, current = [], logger
    while current is not None:
        out += current.handlers
        current = current.parent if current.propagate else None
    return out


class _PlainLoadGuard(logging.Filter):
    """Turns transformers' load report of a checkpoint with sparse layers into
    :class:`SparseCheckpointError` (inside :func:`from_pretrained`: keeps the report)."""

    def filter(self, record: logging.LogRecord) -> bool:
        captured = _captured.get()
        try:
            text = _ANSI.sub("", record.getMessage())
        except Exception:  # not ours to judge
            return True
        if "LOAD REPORT" not in text:
            return True
        if captured is not None:
            captured.append(record)
            return False
        sparse = []
        for line in text.splitlines():
            cells = [c.strip() for c in line.split("|")]
            if len(cells) >= 2 and cells[1] == "UNEXPECTED" and cells[0].endswith(_MARK):
                sparse.append(cells[0][: -len(_MARK)].rstrip("."))
        if not sparse:
            return True
        found = re.search(r"(\S+) LOAD REPORT from: (.*)", text)
        cls, path = (found.group(1), found.group(2).strip()) if found else ("cls", "path")
        raise SparseCheckpointError(
            f"{path} holds layers made sparse by sparsetrain ({', '.join(sorted(sparse))}); "
            f"{cls}.from_pretrained would build them dense with random weights. Load it with "
            f"sparsetrain.from_pretrained({cls}, {path!r})"
        )


def install_load_guard() -> None:
    """Make a plain transformers load of a checkpoint with sparse layers raise
    :class:`SparseCheckpointError` (done when sparsetrain is imported; transformers need not
    be imported, the filter waits on the logger transformers will use)."""
    logger = logging.getLogger(_HF_LOGGER)
    if not any(isinstance(f, _PlainLoadGuard) for f in logger.filters):
        logger.addFilter(_PlainLoadGuard())

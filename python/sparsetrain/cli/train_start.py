"""Where a ``sparsetrain train`` run starts: a transfer from --init (or random weights), a
run from scratch with gradual pruning, or a resumed checkpoint."""

from __future__ import annotations

import argparse
import pathlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from . import CLIError
from .checkpoint_checks import check_model_state, check_optimizer
from .messages import error_reason, whole_message
from .train_model import hold_dense_masks, make_optimizer, make_pruner

if TYPE_CHECKING:
    from .data import Dataset

Say = Callable[..., None]  # prints a line of the run's output

SCRATCH_MIN_SPARSITY = 0.8  # dense layers this sparse become sparse modules (scratch mode)


@dataclass
class RunState:
    """What the training loop starts from: fresh, or restored from a checkpoint."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    pruner: object = None  # GradualMagnitudePruner (scratch mode)
    pruner_cfg: dict | None = None  # its schedule, saved with its state
    dynamic: object = None  # DynamicSparsity (rigl / set modes)
    dynamic_cfg: dict | None = None  # its schedule, saved with its state
    masked: list = field(default_factory=list)  # pruned layers that stay dense (transfer)
    masks: object = None  # re-applies their masks (hold_masks), or None
    epoch: int = 0  # epochs done
    best: float | None = None  # best validation accuracy so far
    best_epoch: int | None = None
    history: list = field(default_factory=list)


def kept_dense(cfg: dict) -> str:
    return f" ({' and '.join(cfg['exclude'])} stay dense)" if cfg["exclude"] else ""


def start_transfer(
    model: nn.Module,
    cfg: dict,
    data: Dataset,
    train_idx: torch.Tensor,
    init_sd: dict | None,
    init_path: str | None,
    first: str | None,
    classifier: str | None,
    say: Say,
) -> RunState:
    """--init (or random weights) -> magnitude_prune -> sparsify where measured faster; the
    pruned layers that stay dense get their zeros held."""
    from ..pruning import magnitude_prune
    from ..surgery import sparsify

    if init_sd is not None:
        model = apply_init(model, init_sd, init_path, cfg, first, classifier, say)
    else:
        say(
            "no --init: transfer starts from random weights (pass --init PATH to fine-tune "
            "trained weights)"
        )
    masked, masks = [], None
    if cfg["sparsity"] > 0:
        pruned = list(
            magnitude_prune(model, cfg["sparsity"], scope="layer", exclude=cfg["exclude"] or None)
        )
        say(
            f"pruned {len(pruned)} layers to sparsity {cfg['sparsity']:.2f}{kept_dense(cfg)}; "
            f"timing them dense and sparse on a batch of the data:"
        )
        example = data.batch(train_idx[: cfg["batch_size"]])
        model.eval()  # the timing run must not move the batch-norm statistics
        report = sparsify(model, example_inputs=(example,), min_sparsity=0.0, include=pruned)
        model.train()
        say(report)
        masked = [n for n in pruned if type(model.get_submodule(n)) in (nn.Linear, nn.Conv2d)]
        masks = hold_dense_masks(model, masked)
        say(
            f"fine-tuning with fixed masks: {len(report.swapped)} layers sparse"
            + (f", {len(masked)} dense with their zeros held" if masked else "")
        )
    else:
        say("sparsity 0: fine-tuning without pruning")
    return RunState(model, make_optimizer(cfg, model), masked=masked, masks=masks)


def start_scratch(model: nn.Module, cfg: dict, steps_per_epoch: int, say: Say) -> RunState:
    """Random weights and a GradualMagnitudePruner: dense for about the first epoch, at the
    final sparsity from 2/3 of the run on, pruning a few times per epoch in between."""
    from ..pruning import GradualMagnitudePruner

    optimizer = make_optimizer(cfg, model)
    if cfg["sparsity"] == 0:
        say("sparsity 0: dense training")
        return RunState(model, optimizer)
    total = steps_per_epoch * cfg["epochs"]
    start = min(steps_per_epoch, max(1, total // 4))
    pc = {
        "start_step": start,
        "end_step": max(start, (2 * total) // 3),
        "every": max(1, steps_per_epoch // 4),
        "exclude": cfg["exclude"],
        "min_sparsity": SCRATCH_MIN_SPARSITY,
    }
    pruner = make_pruner(GradualMagnitudePruner, model, optimizer, cfg, pc)
    say(
        f"gradual pruning to sparsity {cfg['sparsity']:.2f} from step {pc['start_step']} to "
        f"{pc['end_step']} ({steps_per_epoch} steps per epoch, pruning every {pc['every']})"
        f"{kept_dense(cfg)}"
    )
    return RunState(model, optimizer, pruner=pruner, pruner_cfg=pc)


def dynamic_schedule(cfg: dict, steps_per_epoch: int) -> dict:
    """RigL's defaults scaled to the run: connections move about 30 times, every 100 steps
    at most, until 3/4 of the run."""
    end = max(1, (3 * steps_per_epoch * cfg["epochs"]) // 4)
    return {
        "method": cfg["mode"],
        "update_every": max(1, min(100, end // 30)),
        "drop_fraction": 0.3,
        "end_step": end,
        "exclude": cfg["exclude"],
    }


def make_dynamic(model: nn.Module, optimizer, cfg: dict, dc: dict):
    """A DynamicSparsity on the schedule ``dc`` (ERK over the layers not excluded)."""
    from ..dynamic import DynamicSparsity

    return DynamicSparsity(
        model,
        optimizer,
        cfg["sparsity"],
        dc["method"],
        int(dc["update_every"]),
        float(dc["drop_fraction"]),
        int(dc["end_step"]),
        "erk",
        exclude=list(dc["exclude"]) or None,
        seed=cfg["seed"],
    )


def start_dynamic(model: nn.Module, cfg: dict, steps_per_epoch: int, say: Say) -> RunState:
    """Sparse from the first step (ERK densities), connections moved by RigL or SET."""
    optimizer = make_optimizer(cfg, model)
    dc = dynamic_schedule(cfg, steps_per_epoch)
    dynamic = make_dynamic(model, optimizer, cfg, dc)
    dense = ", ".join(f"{n} ({why})" for n, why in dynamic.left_dense.items())
    say(
        f"{cfg['mode']}: {len(dynamic.layers)} layers sparse from the start (ERK, overall "
        f"sparsity {cfg['sparsity']:.2f}), connections moved every {dc['update_every']} steps "
        f"until step {dc['end_step']}{kept_dense(cfg)}" + (f"; dense: {dense}" if dense else "")
    )
    return RunState(model, optimizer, dynamic=dynamic, dynamic_cfg=dc)


def resume_run(
    model: nn.Module, ckpt: dict, path: pathlib.Path, cfg: dict, args: argparse.Namespace
) -> RunState:
    """The fresh model made sparse like the checkpoint's and loaded, the optimizer, pruner and
    masks restored; --lr / --weight-decay, if given, replace the saved ones."""
    from ..pruning import GradualMagnitudePruner

    model = restore_model(model, ckpt, path)
    optimizer = make_optimizer(cfg, model)
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError, AttributeError) as e:
        raise CLIError(
            f"{path}: optimizer state does not fit the model ({error_reason(e)})"
        ) from None
    check_optimizer(optimizer, fresh, model, f"--resume {path}")
    for group in optimizer.param_groups:
        if args.lr is not None:
            group["lr"] = args.lr
        if args.weight_decay is not None:
            group["weight_decay"] = args.weight_decay
    cfg["lr"] = optimizer.param_groups[0]["lr"]
    cfg["weight_decay"] = optimizer.param_groups[0]["weight_decay"]
    state = RunState(
        model,
        optimizer,
        epoch=ckpt["epoch"],
        best=ckpt.get("best_acc"),
        best_epoch=ckpt.get("best_epoch"),
        history=list(ckpt.get("history") or []),
    )
    if cfg["mode"] == "scratch" and ckpt.get("pruner"):
        try:
            state.pruner_cfg = dict(ckpt["pruner"])
            state.pruner = make_pruner(
                GradualMagnitudePruner, model, optimizer, cfg, state.pruner_cfg
            )
            state.pruner.load_state_dict(state.pruner_cfg.pop("state"))
        except (KeyError, TypeError, ValueError) as e:
            raise CLIError(f"{path}: damaged pruning schedule ({error_reason(e)})") from None
    if cfg["mode"] in ("rigl", "set") and ckpt.get("dynamic"):
        try:
            state.dynamic_cfg = dict(ckpt["dynamic"])
            saved = state.dynamic_cfg.pop("state")
            state.dynamic = make_dynamic(model, optimizer, cfg, state.dynamic_cfg)
            state.dynamic.load_state_dict(saved)
        except (KeyError, TypeError, ValueError) as e:
            raise CLIError(f"{path}: damaged schedule ({error_reason(e)})") from None
    state.masked = list(ckpt.get("masked") or [])
    state.masks = hold_dense_masks(model, state.masked, f"--resume {path}: ")
    return state


def restore_model(model: nn.Module, ckpt: dict, path: pathlib.Path) -> nn.Module:
    """``model`` made sparse like the checkpoint's and loaded from it."""
    from ..surgery import sparsify_like

    try:
        return sparsify_like(model, ckpt["model"])
    except ValueError as e:  # a layer's own check (a broken pattern): its message names it
        raise CLIError(
            f"{path}: model state does not fit {ckpt['args'].get('model')}: {whole_message(e)}"
        ) from None
    except (RuntimeError, KeyError, TypeError) as e:
        raise CLIError(
            f"{path}: model state does not fit {ckpt['args'].get('model')} ({error_reason(e)})"
        ) from None


def apply_init(
    model: nn.Module,
    sd: dict,
    path: str,
    cfg: dict,
    first: str | None,
    classifier: str | None,
    say: Say,
) -> nn.Module:
    """Load starting weights (dense or sparse); a classifier for another number of classes
    is left at its random initialization."""
    from ..surgery import sparsify_like

    sd = dict(sd)
    dropped = False
    if classifier:
        prefix = classifier + "."
        if prefix + "weight" in sd:
            rows = sd[prefix + "weight"].shape[0]
        elif prefix + "row_ptr" in sd:
            rows = sd[prefix + "row_ptr"].numel() - 1
        else:
            rows = None
        if rows is not None and rows != cfg["num_classes"]:
            sd = {k: v for k, v in sd.items() if not k.startswith(prefix)}
            dropped = True
            say(
                f"--init: the classifier ({classifier}) has {rows} outputs and the data "
                f"{cfg['num_classes']} classes: it starts from random weights"
            )
    fits = f"{path}: does not fit {cfg['model']}"
    own = model.state_dict()
    for k, v in sd.items():
        if (
            k in own
            and k.rsplit(".", 1)[-1] not in ("values", "row_ptr", "col_idx")
            and tuple(v.shape) != tuple(own[k].shape)
        ):
            hint = ""
            if first and k == first + ".weight" and v.dim() == 4 and v.shape[1] != own[k].shape[1]:
                hint = (
                    f" (it takes {v.shape[1]}-channel images, the data has "
                    f"{own[k].shape[1]}: try --channels {v.shape[1]})"
                )
            raise CLIError(
                f"{fits}: {k} has shape {tuple(v.shape)}, the model's is "
                f"{tuple(own[k].shape)}{hint}"
            )
    check_model_state(sd, f"--init {path}")  # after the classifier that starts afresh is gone
    try:
        model = sparsify_like(model, sd, strict=False)
    except ValueError as e:  # a layer's own check (a broken pattern): its message names it
        raise CLIError(f"{fits}: {whole_message(e)}") from None
    except (RuntimeError, KeyError, TypeError) as e:
        raise CLIError(f"{fits} ({error_reason(e)})") from None
    keys = set(model.state_dict())
    missing = sorted(
        k
        for k in keys - set(sd)
        if not k.endswith("num_batches_tracked")
        and not (dropped and k.startswith(classifier + "."))
    )
    unexpected = sorted(set(sd) - keys)
    if missing or unexpected:
        parts = (
            [f"{len(missing)} of the model's entries missing (e.g. {missing[0]})"]
            if missing
            else []
        )
        parts += [f"{len(unexpected)} unknown entries (e.g. {unexpected[0]})"] if unexpected else []
        raise CLIError(f"{fits}: {', '.join(parts)}; pick the architecture with --model")
    say(f"--init: loaded {path}")
    return model

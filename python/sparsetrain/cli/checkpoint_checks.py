"""What a checkpoint of ``sparsetrain train`` holds, checked field by field on ``--resume`` /
``--init``: a damaged or hand-edited checkpoint ends in one line naming the field (exit 2),
not in a traceback or a "training diverged" epochs later."""

from __future__ import annotations

import math

import torch

from . import CLIError

# Each check: (accepts(value), what was expected).


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(lo):
    return lambda v: is_int(v) and v >= lo, f"an integer >= {lo}"


def _num_in(lo, hi=None, *, above=False, below=False):
    def ok(v):
        return (
            _is_num(v)
            and (v > lo if above else v >= lo)
            and (hi is None or (v < hi if below else v <= hi))
        )

    text = (
        f"a number in {'(' if above else '['}{lo:g}, {hi:g}{')' if below else ']'}"
        if hi is not None
        else f"a number {'>' if above else '>='} {lo:g}"
    )
    return ok, text


def _optional(check):
    ok, text = check
    return lambda v: v is None or ok(v), f"{text} or None"


def one_of(*values: str) -> tuple:
    return lambda v: isinstance(v, str) and v in values, "one of " + ", ".join(values)


_STRINGS = (
    lambda v: isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v),
    "a list of names",
)
_SIZE = (
    lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(is_int(s) and s >= 1 for s in v),
    "[height, width], positive integers",
)
_ARGS_CHECKS = {
    "model": None,  # one of MODELS: filled in by _arg_checks (the models import torch code)
    "num_classes": _int_at_least(2),
    "in_channels": _int_at_least(1),
    "input_size": _SIZE,
    "image_size": _optional(_int_at_least(1)),
    "channels": (lambda v: v is None or (is_int(v) and v in (1, 3)), "1, 3 or None"),
    "mode": one_of("transfer", "scratch", "rigl", "set"),
    "sparsity": _num_in(0, 1, below=True),
    "prune_all": (lambda v: isinstance(v, bool), "true or false"),
    "exclude": _STRINGS,
    "optimizer": None,  # one of train.DEFAULT_LR: filled in by check_checkpoint
    "lr": _num_in(0, above=True),
    "weight_decay": _num_in(0),
    "batch_size": _int_at_least(2),
    "epochs": _int_at_least(1),
    "seed": _int_at_least(0),
    "val_fraction": _num_in(0, 1, below=True),
    "init": (lambda v: v is None or isinstance(v, str), "a path or None"),
}
_TOP_CHECKS = {  # besides model, optimizer and args (checked on their own) and pruner
    "epoch": _int_at_least(0),
    "val_acc": _optional(_num_in(0, 100)),
    "best_acc": _optional(_num_in(0, 100)),
    "best_epoch": _optional(_int_at_least(1)),
    "history": (
        lambda v: isinstance(v, list) and all(isinstance(h, dict) for h in v),
        "a list of one dict per epoch",
    ),
    "classes": _STRINGS,
    "masked": _STRINGS,
}
_PRUNER_CHECKS = {
    "start_step": _int_at_least(0),
    "end_step": _int_at_least(0),
    "every": _int_at_least(1),
    "exclude": _STRINGS,
    "min_sparsity": _optional(_num_in(0, 1)),
    "state": (lambda v: isinstance(v, dict), "a dict"),
}
_PRUNER_STATE_CHECKS = {"step_count": _int_at_least(0), "sparsity": _num_in(0, 1)}
_DYNAMIC_CHECKS = {
    "method": one_of("rigl", "set"),
    "update_every": _int_at_least(1),
    "drop_fraction": _num_in(0, 1),
    "end_step": _int_at_least(1),
    "exclude": _STRINGS,
    "state": (lambda v: isinstance(v, dict), "a dict"),
}
_DYNAMIC_STATE_CHECKS = {
    "step_count": _int_at_least(0),
    "seed": _int_at_least(0),
    "layers": _STRINGS,
}


def show(v: object) -> str:
    text = repr(v) if not isinstance(v, torch.Tensor) else f"a tensor of shape {tuple(v.shape)}"
    return text if len(text) <= 60 else text[:57] + "..."


def check_fields(obj: dict, checks: dict, prefix: str, where: str, optional: tuple = ()) -> None:
    for key, (ok, expected) in checks.items():
        if key not in obj:
            if key in optional:
                continue
            raise CLIError(f"{where}: damaged checkpoint: no {prefix}{key}")
        if not ok(obj[key]):
            raise CLIError(
                f"{where}: damaged checkpoint: {prefix}{key} is {show(obj[key])}, "
                f"expected {expected}"
            )


def _schedule(obj: dict, key: str, checks: dict, state_checks: dict, where: str):
    """The checkpoint's ``key`` (a schedule with its ``state``, or None), checked."""
    schedule = obj.get(key)
    if schedule is None:
        return None
    if not isinstance(schedule, dict):
        raise CLIError(
            f"{where}: damaged checkpoint: {key} is {show(schedule)}, expected a dict or None"
        )
    check_fields(schedule, checks, f"{key}.", where)
    check_fields(schedule["state"], state_checks, f"{key}.state.", where)
    return schedule


def check_checkpoint(obj: dict, where: str) -> None:
    """Type and range of every field train() reads back from a checkpoint ("data" and
    "sparsetrain_version" are only informative: a resumed run writes its own)."""
    from ..models import MODELS
    from .train_settings import DEFAULT_LR

    checks = dict(_ARGS_CHECKS, model=one_of(*sorted(MODELS)), optimizer=one_of(*DEFAULT_LR))
    check_fields(obj["args"], checks, "args.", where)
    check_fields(
        obj,
        _TOP_CHECKS,
        "",
        where,
        optional=("val_acc", "best_acc", "best_epoch", "history", "classes", "masked"),
    )
    best_epoch = obj.get("best_epoch")
    if best_epoch is not None and best_epoch > obj["epoch"]:
        raise CLIError(
            f"{where}: damaged checkpoint: best_epoch is {best_epoch}, after the "
            f"last epoch done ({obj['epoch']})"
        )
    classes = obj.get("classes")
    if classes and len(classes) != obj["args"]["num_classes"]:
        raise CLIError(
            f"{where}: damaged checkpoint: classes names {len(classes)} classes, "
            f"args.num_classes is {obj['args']['num_classes']}"
        )
    pruner = _schedule(obj, "pruner", _PRUNER_CHECKS, _PRUNER_STATE_CHECKS, where)
    if pruner is not None and pruner["end_step"] < pruner["start_step"]:
        raise CLIError(
            f"{where}: damaged checkpoint: pruner.end_step "
            f"{pruner['end_step']} is before pruner.start_step "
            f"{pruner['start_step']}"
        )
    _schedule(obj, "dynamic", _DYNAMIC_CHECKS, _DYNAMIC_STATE_CHECKS, where)
    opt = obj["optimizer"]
    if not (
        isinstance(opt, dict)
        and isinstance(opt.get("state"), dict)
        and isinstance(opt.get("param_groups"), list)
        and all(
            isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"]
        )
    ):
        raise CLIError(
            f"{where}: damaged checkpoint: optimizer is not an optimizer's "
            f"state_dict (a dict of state and param_groups)"
        )
    for key, state in opt["state"].items():  # load_state_dict fails on these unnamed
        if not isinstance(state, dict):
            raise CLIError(
                f"{where}: damaged checkpoint: optimizer.state[{show(key)}] is "
                f"{show(state)}, expected a dict"
            )
    check_model_state(obj["model"], where)


def check_model_state(sd: object, where: str) -> None:
    """A dict of named tensors with finite numbers only: NaN or infinite weights would only
    show later as a loss of nan, blamed on the learning rate."""
    if not isinstance(sd, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
    ):
        raise CLIError(
            f"{where}: damaged checkpoint: model is not a state_dict (a dict of named tensors)"
        )
    for key, v in sd.items():
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            layer, _, field = key.rpartition(".")
            bad = int((~torch.isfinite(v)).sum())
            what = "weights" if field in ("weight", "bias", "values") else "values"
            raise CLIError(
                f"{where}: the checkpoint holds non-finite {what} in layer "
                f"{layer or key} ({key}: {bad} of {v.numel()} NaN or infinite)"
            )


def check_optimizer(
    optimizer: torch.optim.Optimizer, fresh_groups: list, model: torch.nn.Module, where: str
) -> None:
    """After load_state_dict, which checks only the number of groups and parameters: every
    hyperparameter of the kind the fresh optimizer had, and per-parameter state (momentum,
    Adam moments) of the parameter's shape, finite. Else the first step fails, or trains on
    garbage."""
    name_of = {p: n for n, p in model.named_parameters()}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for gi, (group, fresh) in enumerate(zip(optimizer.param_groups, fresh_groups)):
        for key, default in fresh.items():
            v, field = group.get(key), f"optimizer.param_groups[{gi}].{key}"
            if default is None:  # foreach, fused: None means "PyTorch picks"
                ok, expected = v is None or isinstance(v, bool), "true, false or None"
            elif isinstance(default, bool):
                ok, expected = isinstance(v, bool), "true or false"
            elif _is_num(default):
                ok = _is_num(v) and (v > 0 if key == "lr" else v >= 0)
                expected = "a positive number" if key == "lr" else "a number >= 0"
            elif isinstance(default, tuple):
                ok = (
                    isinstance(v, (tuple, list))
                    and len(v) == len(default)
                    and all(_is_num(b) and 0 <= b < 1 for b in v)
                )
                expected = f"{len(default)} numbers in [0, 1)"
            else:
                ok, expected = type(v) is type(default), type(default).__name__
            if not ok:
                raise CLIError(
                    f"{where}: damaged checkpoint: {field} is {show(v)}, expected {expected}"
                )
    index = {p: i for i, p in enumerate(params)}
    for p, state in optimizer.state.items():
        if p not in index:  # load_state_dict keeps entries of unknown ids as they are
            raise CLIError(
                f"{where}: optimizer state does not fit the model: optimizer.state "
                f"has an entry for parameter {show(p)}, the optimizer has "
                f"{len(params)} (0..{len(params) - 1})"
            )
        field = f"optimizer.state[{index[p]}]"
        if not isinstance(state, dict):
            raise CLIError(
                f"{where}: damaged checkpoint: {field} is {show(state)}, expected a dict"
            )
        for key, v in state.items():
            if key == "step":
                ok = (
                    _is_num(v)
                    or (
                        isinstance(v, torch.Tensor)
                        and v.numel() == 1
                        and bool(torch.isfinite(v).all())
                    )
                ) and float(v) >= 0
                if not ok:
                    raise CLIError(
                        f"{where}: damaged checkpoint: {field}.step is {show(v)}, "
                        f"expected a step count >= 0"
                    )
            elif isinstance(v, torch.Tensor):
                if tuple(v.shape) != tuple(p.shape):
                    raise CLIError(
                        f"{where}: optimizer state does not fit the model: "
                        f"{field}.{key} has shape {tuple(v.shape)}, parameter "
                        f"{name_of.get(p, index[p])} has {tuple(p.shape)}"
                    )
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    raise CLIError(
                        f"{where}: the checkpoint holds non-finite optimizer state "
                        f"in {field}.{key} ({name_of.get(p, index[p])})"
                    )
            elif v is not None:
                raise CLIError(
                    f"{where}: damaged checkpoint: {field}.{key} is {show(v)}, expected a tensor"
                )

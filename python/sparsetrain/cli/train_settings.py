"""The settings of a ``sparsetrain train`` run: defaults, what a checkpoint keeps, what a
resumed run must keep as it was, and the check that the data fits a resumed run."""

from __future__ import annotations

import argparse
import pathlib
from typing import TYPE_CHECKING

from . import CLIError
from .messages import short_list

if TYPE_CHECKING:
    from .data import Dataset

FORMAT = "sparsetrain-train"
FORMAT_VERSION = 1
DEFAULTS = {
    "sparsity": 0.9,
    "epochs": 10,
    "batch_size": 64,
    "optimizer": "adamw",
    "val_fraction": 0.2,
    "seed": 0,
    "out": "sparsetrain-out",
}
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3}

# settings a checkpoint keeps (what rebuilds the model, the data view and the schedule)
SAVED_ARGS = (
    "model",
    "num_classes",
    "in_channels",
    "input_size",
    "image_size",
    "channels",
    "mode",
    "sparsity",
    "prune_all",
    "exclude",
    "optimizer",
    "lr",
    "weight_decay",
    "batch_size",
    "epochs",
    "seed",
    "val_fraction",
    "init",
)
# options a resumed run must keep as they were
FIXED_ARGS = (
    "mode",
    "model",
    "sparsity",
    "prune_all",
    "optimizer",
    "image_size",
    "channels",
    "val_fraction",
    "seed",
)


def resolve_settings(args: argparse.Namespace, ckpt: dict | None, init_ckpt: dict | None) -> dict:
    """The run's settings: a resumed run's saved ones (with --epochs / --batch-size, if given),
    else the options with their defaults."""
    if ckpt is not None:
        if args.init:
            raise CLIError(
                "--init and --resume exclude each other: a resumed run continues "
                "from its checkpoint's weights"
            )
        saved = ckpt["args"]
        # what the run had, inferred values included (channels, image size)
        had = dict(saved, channels=saved["in_channels"])
        if saved["image_size"] is None and len(set(saved["input_size"])) == 1:
            had["image_size"] = saved["input_size"][0]
        for key in FIXED_ARGS:
            given = getattr(args, key)
            if given is None or (key == "model" and given == "auto"):
                continue
            if given != had.get(key):
                raise CLIError(
                    f"--{key.replace('_', '-')} {given} differs from the resumed "
                    f"run's ({had.get(key)}); a resumed run keeps its settings"
                )
        cfg = dict(saved)
        if saved["in_channels"] in (1, 3):  # read the images as the run did
            cfg["channels"] = saved["in_channels"]
        for key in ("epochs", "batch_size"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        return cfg
    mode = args.mode or ("transfer" if args.init else "scratch")
    model = args.model or "auto"
    if model == "auto" and init_ckpt is not None:
        model = init_ckpt.get("args", {}).get("model", model)  # a checkpoint of this command
    optimizer = args.optimizer or DEFAULTS["optimizer"]
    cfg = {
        "mode": mode,
        "model": model,
        "init": str(args.init) if args.init else None,
        "sparsity": DEFAULTS["sparsity"] if args.sparsity is None else args.sparsity,
        "prune_all": bool(args.prune_all),
        "optimizer": optimizer,
        "lr": args.lr or DEFAULT_LR[optimizer],
        "weight_decay": (
            args.weight_decay
            if args.weight_decay is not None
            else 0.01
            if optimizer == "adamw"
            else 0.0
        ),
        "image_size": args.image_size,
        "channels": args.channels,
        "val_fraction": (
            DEFAULTS["val_fraction"] if args.val_fraction is None else args.val_fraction
        ),
        "seed": DEFAULTS["seed"] if args.seed is None else args.seed,
        "epochs": args.epochs or DEFAULTS["epochs"],
        "batch_size": args.batch_size or DEFAULTS["batch_size"],
    }
    if cfg["batch_size"] < 2:
        raise CLIError(
            "--batch-size must be at least 2 (batch norm needs more than one image per batch)"
        )
    return cfg


def check_data_fits(data: Dataset, ckpt: dict, path: pathlib.Path) -> None:
    """--data against the resumed run's: the same classes, channels and image size."""
    saved = ckpt["args"]
    classes = list(ckpt.get("classes") or [])
    if len(data.classes) != saved["num_classes"]:
        raise CLIError(
            f"--data has {len(data.classes)} classes but {path} was trained on "
            f"{saved['num_classes']} ({short_list(classes)})"
        )
    if classes and list(data.classes) != classes:
        raise CLIError(
            f"--data has classes {short_list(data.classes)} but {path} was trained "
            f"on {short_list(classes)}"
        )
    if data.channels != saved["in_channels"]:
        raise CLIError(
            f"--data has {data.channels}-channel images but {path} was trained on "
            f"{saved['in_channels']} channels"
        )
    if list(data.size) != list(saved["input_size"]):
        h, w = saved["input_size"]
        raise CLIError(
            f"--data has {data.size[0]}x{data.size[1]} images but {path} was trained on {h}x{w}"
        )

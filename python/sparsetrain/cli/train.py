"""``sparsetrain train``: sparse transfer or sparse-from-scratch training on a data set of images.

    sparsetrain train --data images/ --init dense.pt --sparsity 0.9 --out run/
    sparsetrain train --data digits.npz --mode scratch --epochs 12 --out run/
    sparsetrain train --data images/ --resume run/last.pt

Checkpoints (``last.pt`` after every epoch, ``best.pt`` when validation accuracy improves) are
written atomically and hold everything needed to resume: model and optimizer state, the
pruning schedule, the settings that define the model, and the class names.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import pathlib
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field

import torch
from torch import nn

from . import (CLIError, add_strategy_option, checked, fraction, positive_int, set_conv_strategy,
               strategy_note)
from .checkpoint_checks import (check_checkpoint, check_fields, check_model_state,
                                check_optimizer, is_int, one_of, show)

FORMAT = "sparsetrain-train"
FORMAT_VERSION = 1
DEFAULTS = {"sparsity": 0.9, "epochs": 10, "batch_size": 64, "optimizer": "adamw",
            "val_fraction": 0.2, "seed": 0, "out": "sparsetrain-out"}
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3}
BN_BATCHES = 50  # training batches that set the batch-norm statistics after each epoch
SCRATCH_MIN_SPARSITY = 0.8  # dense layers this sparse become sparse modules (scratch mode)

DESCRIPTION = """\
Train an image classifier with unstructured-sparse weights on the CPU.

  --mode transfer  start from --init (a dense or sparse state_dict, or a checkpoint of
                   this command), prune to --sparsity by magnitude, swap the pruned layers
                   that run faster sparse for SparseConv2d / SparseLinear (measured on the
                   data's shapes; the others keep their zeros), fine-tune with fixed masks.
  --mode scratch   from random weights, prune gradually (cubic schedule) to --sparsity from
                   about epoch 1 to 2/3 of the run; layers become sparse modules once 80%
                   of their weights are gone.

After every epoch the batch-norm statistics are recomputed on up to 50 training batches,
accuracy is measured on the held-out images, and --out gets last.pt (and best.pt when
validation accuracy improved); --resume continues such a run with its next epoch.

Data (--data): a folder with one subfolder of images per class (read with Pillow), or an
.npz with x: images (N,H,W), (N,C,H,W) or (N,H,W,C), uint8 (scaled to [0, 1]) or float,
and y: integer labels (N,); an optional 'classes' array names the labels.
Labels are 0..K-1 with every class used (a gap is an error). Pixels: 8-bit / 255, 16-bit
(uint16, 16-bit PNG) / 65535, other integer types only with values 0..255; floats as they
are, never NaN or infinite. Symbolic links in a folder are followed, each real folder and
image read once; one reached from two classes is an error.

Checkpoints are checked field by field on --resume / --init: a damaged one (a value of the
wrong type or range, optimizer state that does not fit, non-finite weights) is refused in
one line naming the field. --strategy is not saved: give it again when resuming."""

EPILOG = """\
examples:
  sparsetrain train --data flowers/ --init resnet18.pt --image-size 128 --out run/
  sparsetrain train --data digits.npz --mode scratch --sparsity 0.95 --epochs 15
  sparsetrain train --data flowers/ --resume run/last.pt --epochs 20"""


# -- command line -----------------------------------------------------------------------------

positive_float = checked(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
nonnegative_float = checked(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
nonnegative_int = checked(int, lambda v: v >= 0, "an integer >= 0")


def add_parser(sub):
    from ..models import MODELS

    p = sub.add_parser("train", help="train a sparse model on an image folder or .npz",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, metavar="PATH",
                   help="folder of class subfolders of images, or an .npz with x and y")
    d.add_argument("--image-size", type=positive_int, metavar="N",
                   help="resize images to N x N (needed when their sizes differ)")
    d.add_argument("--channels", type=int, choices=(1, 3),
                   help="1 (grayscale) or 3 (RGB); default: 1 if every image is grayscale")
    d.add_argument("--val-fraction", type=fraction, metavar="F",
                   help="share of each class held out to measure accuracy (default 0.2; 0: "
                        "none, and no best.pt)")
    m = p.add_argument_group("model and sparsity")
    m.add_argument("--mode", choices=("transfer", "scratch"),
                   help="default: transfer with --init, else scratch")
    m.add_argument("--model", choices=["auto"] + sorted(MODELS),
                   help="default auto: small-cnn for images under 64 px, else resnet18")
    m.add_argument("--init", metavar="PATH",
                   help="starting weights for --mode transfer (without: random weights); a "
                        "classifier with another number of classes starts afresh")
    m.add_argument("--sparsity", type=fraction, metavar="S",
                   help="share of zero weights in the pruned layers, in [0, 1) (default 0.9)")
    m.add_argument("--prune-all", action="store_true", default=None,
                   help="prune the first convolution and the classifier too (default: they "
                        "stay dense)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, metavar="N",
                   help="total epochs (default 10; when resuming: the checkpoint's)")
    t.add_argument("--batch-size", type=positive_int, metavar="N", help="default 64")
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw"),
                   help="default adamw (sgd uses momentum 0.9)")
    t.add_argument("--lr", type=positive_float, metavar="LR",
                   help="learning rate (default 1e-3 for adam/adamw, 0.01 for sgd)")
    t.add_argument("--weight-decay", type=nonnegative_float, metavar="WD",
                   help="default: the optimizer's (0.01 for adamw, else 0)")
    t.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads for sparse kernels and PyTorch (default: PyTorch's)")
    t.add_argument("--seed", type=nonnegative_int, metavar="N",
                   help="seeds weights, validation split and data order (default 0)")
    add_strategy_option(t)  # a speed setting like --threads: not saved, give it on resume too
    c = p.add_argument_group("checkpoints")
    c.add_argument("--out", metavar="DIR",
                   help="where last.pt and best.pt go (default ./sparsetrain-out; when "
                        "resuming: the checkpoint's folder)")
    c.add_argument("--resume", metavar="PATH",
                   help="continue a run from its checkpoint (a .pt file, or a folder with "
                        "last.pt) with the next epoch")
    c.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out that holds one")
    p.set_defaults(func=run)
    return p


# -- the command ------------------------------------------------------------------------------

def run(args) -> int:
    import sparsetrain as st

    from ..models import MODELS
    from ..surgery import fuse_batch_norm
    from .data import load_dataset, split

    def say(*a):
        print(*a, flush=True)

    if args.threads:
        st.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    ckpt, ckpt_path = (None, None)
    if args.resume:
        ckpt_path = _checkpoint_path(args.resume)
        ckpt = _read_checkpoint(ckpt_path)
    if args.init and args.mode == "scratch":
        raise CLIError("--init is for --mode transfer (scratch mode starts from random weights)")
    init_sd, init_ckpt = (None, None)
    if args.init and not args.resume:
        init_sd, init_ckpt = _read_init(args.init)
    cfg = _settings(args, ckpt, init_ckpt)

    data = load_dataset(args.data, image_size=cfg["image_size"], channels=cfg["channels"],
                        say=say)
    num_classes, (h, w) = len(data.classes), data.size
    if ckpt is not None:
        _check_data_fits(data, ckpt, ckpt_path)
    cfg.update(num_classes=num_classes, in_channels=data.channels, input_size=[h, w])
    if cfg["model"] == "auto":
        cfg["model"] = "small-cnn" if max(h, w) < 64 else "resnet18"
    if cfg["model"] not in MODELS:
        raise CLIError(f"unknown model {cfg['model']!r} (known: {', '.join(sorted(MODELS))})")

    train_idx, val_idx = split(data.y, cfg["val_fraction"], cfg["seed"])
    if len(train_idx) < 2:
        raise CLIError(f"{data.source}: {len(data)} images leave {len(train_idx)} to train on; "
                       f"need at least 2 (lower --val-fraction or add images)")
    say(f"data: {data.source}: {len(data)} images {data.channels}x{h}x{w}, {num_classes} "
        f"classes ({_short_list(data.classes)}); {len(train_idx)} train, {len(val_idx)} "
        f"validation")
    if not len(val_idx):
        say("no validation split (--val-fraction 0): no val acc, and no best.pt is written")

    torch.manual_seed(cfg["seed"])
    model = MODELS[cfg["model"]](num_classes=num_classes, in_channels=data.channels)
    first, classifier = _end_layers(model)
    exclude = [] if cfg["prune_all"] else [n for n in (first, classifier) if n]
    cfg["exclude"] = exclude
    bs = cfg["batch_size"]
    steps_per_epoch = len(_batches(len(train_idx), bs, torch.Generator()))
    out = _out_dir(args, ckpt_path)

    if ckpt is not None:
        run_state = _resume(model, ckpt, ckpt_path, cfg, args)
    elif cfg["mode"] == "transfer":
        run_state = _start_transfer(model, cfg, data, train_idx, init_sd, args.init, first,
                                    classifier, say)
    else:
        run_state = _start_scratch(model, cfg, steps_per_epoch, say)
    model, optimizer, pruner = run_state.model, run_state.optimizer, run_state.pruner
    noted = set()

    def apply_strategy():  # a note for each layer that cannot run it, once
        others = [n for n in set_conv_strategy(model, args.strategy) if n not in noted]
        if others:
            noted.update(others)
            say(strategy_note(args.strategy, others))

    apply_strategy()
    masks, masked, pruner_cfg = run_state.masks, run_state.masked, run_state.pruner_cfg
    # A batch to find conv -> batch-norm pairs with, where sparse layers appear without
    # sparsify (which fuses a new transfer run's itself): a resumed model, the pruner's swaps.
    example = data.batch(train_idx[:bs]) if ckpt is not None or pruner is not None else None
    if ckpt is not None:
        fuse_batch_norm(model, example)
    start_epoch, best, best_epoch = run_state.epoch, run_state.best, run_state.best_epoch
    history = run_state.history
    weights = sum(_layer_size(m) for _, m in _prunable(model))
    say(f"model: {cfg['model']}, {num_classes} classes, {data.channels} input channel"
        f"{'s' if data.channels > 1 else ''}, {weights:,} weights in conv/linear layers; "
        f"mode {cfg['mode']}; {cfg['optimizer']} lr {cfg['lr']:g}; "
        f"{torch.get_num_threads()} threads")

    if ckpt is not None:
        if start_epoch >= cfg["epochs"]:
            say(f"{ckpt_path}: all {cfg['epochs']} epochs are done; pass --epochs N with N > "
                f"{start_epoch} to train further")
            return 0
        say(f"resuming {ckpt_path}: epoch {start_epoch} of {cfg['epochs']} done"
            + (f" (best val acc {best:.1f}%)" if best is not None else "")
            + f"; continuing with epoch {start_epoch + 1}")

    def after_step():
        if pruner is not None and pruner.step():
            fuse_batch_norm(model, example)  # layers it just made sparse
            apply_strategy()
        if masks is not None:
            masks()

    def checkpoint(epoch, val_acc):
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "sparsetrain_version": st.__version__,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "pruner": (dict(pruner_cfg, state=pruner.state_dict()) if pruner is not None
                       else None),
            "masked": masked, "epoch": epoch, "val_acc": val_acc, "best_acc": best,
            "history": history, "classes": list(data.classes),
            "args": {k: cfg[k] for k in _SAVED},
            "data": {"path": str(data.source), "images": len(data)},
        }

    _make_out_dir(out, fresh=ckpt is None)
    last, best_path = out / "last.pt", out / "best.pt"
    for epoch in range(start_epoch + 1, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        loss, train_acc = _train_epoch(model, optimizer, data, train_idx, bs,
                                       cfg["seed"], epoch, after_step, last)
        _recompute_bn_stats(model, data, train_idx, bs, cfg["seed"], epoch)
        val_acc = _accuracy(model, data, val_idx, bs) if len(val_idx) else None
        seconds = time.perf_counter() - t0
        improved = val_acc is not None and (best is None or val_acc > best)
        if improved:
            best, best_epoch = val_acc, epoch
        history.append({"epoch": epoch, "loss": loss, "train_acc": train_acc,
                        "val_acc": val_acc, "sparsity": _sparsity(model), "seconds": seconds})
        state = checkpoint(epoch, val_acc)
        state["best_epoch"] = best_epoch
        blob = _serialize(state)
        if improved:
            _atomic_write(best_path, blob)
        _atomic_write(last, blob)
        val_text = f"{val_acc:.1f}%" if val_acc is not None else "-"
        time_text = f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2f} s"
        say(f"epoch {epoch}/{cfg['epochs']}  loss {loss:.3f}  train acc {train_acc:.1f}%  "
            f"val acc {val_text}  sparsity {history[-1]['sparsity']:.2f}  {time_text}")
    say(f"checkpoints: {last} (epoch {cfg['epochs']})"
        + (f", {best_path} (val acc {best:.1f}%, epoch {best_epoch})" if best is not None
           else ""))
    return 0


# settings a checkpoint keeps (what rebuilds the model, the data view and the schedule)
_SAVED = ("model", "num_classes", "in_channels", "input_size", "image_size", "channels", "mode",
          "sparsity", "prune_all", "exclude", "optimizer", "lr", "weight_decay", "batch_size",
          "epochs", "seed", "val_fraction", "init")
# options a resumed run must keep as they were
_FIXED = ("mode", "model", "sparsity", "prune_all", "optimizer", "image_size", "channels",
          "val_fraction", "seed")


def _settings(args, ckpt, init_ckpt) -> dict:
    if ckpt is not None:
        if args.init:
            raise CLIError("--init and --resume exclude each other: a resumed run continues "
                           "from its checkpoint's weights")
        saved = ckpt["args"]
        # what the run had, inferred values included (channels, image size)
        had = dict(saved, channels=saved["in_channels"])
        if saved["image_size"] is None and len(set(saved["input_size"])) == 1:
            had["image_size"] = saved["input_size"][0]
        for key in _FIXED:
            given = getattr(args, key)
            if given is None or (key == "model" and given == "auto"):
                continue
            if given != had.get(key):
                raise CLIError(f"--{key.replace('_', '-')} {given} differs from the resumed "
                               f"run's ({had.get(key)}); a resumed run keeps its settings")
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
        "mode": mode, "model": model, "init": str(args.init) if args.init else None,
        "sparsity": DEFAULTS["sparsity"] if args.sparsity is None else args.sparsity,
        "prune_all": bool(args.prune_all), "optimizer": optimizer,
        "lr": args.lr or DEFAULT_LR[optimizer],
        "weight_decay": (args.weight_decay if args.weight_decay is not None
                         else 0.01 if optimizer == "adamw" else 0.0),
        "image_size": args.image_size, "channels": args.channels,
        "val_fraction": (DEFAULTS["val_fraction"] if args.val_fraction is None
                         else args.val_fraction),
        "seed": DEFAULTS["seed"] if args.seed is None else args.seed,
        "epochs": args.epochs or DEFAULTS["epochs"],
        "batch_size": args.batch_size or DEFAULTS["batch_size"],
    }
    if cfg["batch_size"] < 2:
        raise CLIError("--batch-size must be at least 2 (batch norm needs more than one image "
                       "per batch)")
    return cfg


@dataclass
class _RunState:
    """What the training loop starts from: fresh, or restored from a checkpoint."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    pruner: object = None          # GradualMagnitudePruner (scratch mode)
    pruner_cfg: dict | None = None  # its schedule, saved with its state
    masked: list = field(default_factory=list)  # pruned layers that stay dense (transfer)
    masks: object = None  # re-applies their masks (hold_masks), or None
    epoch: int = 0                 # epochs done
    best: float | None = None      # best validation accuracy so far
    best_epoch: int | None = None
    history: list = field(default_factory=list)


def _kept_dense(cfg) -> str:
    return f" ({' and '.join(cfg['exclude'])} stay dense)" if cfg["exclude"] else ""


def _start_transfer(model, cfg, data, train_idx, init_sd, init_path, first, classifier, say):
    """--init (or random weights) -> magnitude_prune -> sparsify where measured faster; the
    pruned layers that stay dense get their zeros held."""
    from ..pruning import magnitude_prune
    from ..surgery import sparsify

    if init_sd is not None:
        model = _apply_init(model, init_sd, init_path, cfg, first, classifier, say)
    else:
        say("no --init: transfer starts from random weights (pass --init PATH to fine-tune "
            "trained weights)")
    masked, masks = [], None
    if cfg["sparsity"] > 0:
        pruned = list(magnitude_prune(model, cfg["sparsity"], scope="layer",
                                      exclude=cfg["exclude"] or None))
        say(f"pruned {len(pruned)} layers to sparsity {cfg['sparsity']:.2f}{_kept_dense(cfg)}; "
            f"timing them dense and sparse on a batch of the data:")
        example = data.batch(train_idx[:cfg["batch_size"]])
        model.eval()  # the timing run must not move the batch-norm statistics
        report = sparsify(model, example_inputs=(example,), min_sparsity=0.0, include=pruned)
        model.train()
        say(report)
        masked = [n for n in pruned if type(model.get_submodule(n)) in (nn.Linear, nn.Conv2d)]
        masks = _hold_masks(model, masked)
        say(f"fine-tuning with fixed masks: {len(report.swapped)} layers sparse"
            + (f", {len(masked)} dense with their zeros held" if masked else ""))
    else:
        say("sparsity 0: fine-tuning without pruning")
    return _RunState(model, _make_optimizer(cfg, model), masked=masked, masks=masks)


def _start_scratch(model, cfg, steps_per_epoch, say):
    """Random weights and a GradualMagnitudePruner: dense for about the first epoch, at the
    final sparsity from 2/3 of the run on, pruning a few times per epoch in between."""
    from ..pruning import GradualMagnitudePruner

    optimizer = _make_optimizer(cfg, model)
    if cfg["sparsity"] == 0:
        say("sparsity 0: dense training")
        return _RunState(model, optimizer)
    total = steps_per_epoch * cfg["epochs"]
    start = min(steps_per_epoch, max(1, total // 4))
    pc = {"start_step": start, "end_step": max(start, (2 * total) // 3),
          "every": max(1, steps_per_epoch // 4), "exclude": cfg["exclude"],
          "min_sparsity": SCRATCH_MIN_SPARSITY}
    pruner = _make_pruner(GradualMagnitudePruner, model, optimizer, cfg, pc)
    say(f"gradual pruning to sparsity {cfg['sparsity']:.2f} from step {pc['start_step']} to "
        f"{pc['end_step']} ({steps_per_epoch} steps per epoch, pruning every {pc['every']})"
        f"{_kept_dense(cfg)}")
    return _RunState(model, optimizer, pruner=pruner, pruner_cfg=pc)


def _resume(model, ckpt, path, cfg, args):
    """The fresh model made sparse like the checkpoint's and loaded, the optimizer, pruner and
    masks restored; --lr / --weight-decay, if given, replace the saved ones."""
    from ..pruning import GradualMagnitudePruner

    model = _restore_model(model, ckpt, path)
    optimizer = _make_optimizer(cfg, model)
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError, AttributeError) as e:
        raise CLIError(f"{path}: optimizer state does not fit the model ({_reason(e)})") from None
    check_optimizer(optimizer, fresh, model, f"--resume {path}")
    for group in optimizer.param_groups:
        if args.lr is not None:
            group["lr"] = args.lr
        if args.weight_decay is not None:
            group["weight_decay"] = args.weight_decay
    cfg["lr"] = optimizer.param_groups[0]["lr"]
    cfg["weight_decay"] = optimizer.param_groups[0]["weight_decay"]
    state = _RunState(model, optimizer, epoch=ckpt["epoch"], best=ckpt.get("best_acc"),
                      best_epoch=ckpt.get("best_epoch"), history=list(ckpt.get("history") or []))
    if cfg["mode"] == "scratch" and ckpt.get("pruner"):
        try:
            state.pruner_cfg = dict(ckpt["pruner"])
            state.pruner = _make_pruner(GradualMagnitudePruner, model, optimizer, cfg,
                                        state.pruner_cfg)
            state.pruner.load_state_dict(state.pruner_cfg.pop("state"))
        except (KeyError, TypeError, ValueError) as e:
            raise CLIError(f"{path}: damaged pruning schedule ({_reason(e)})") from None
    state.masked = list(ckpt.get("masked") or [])
    state.masks = _hold_masks(model, state.masked, f"--resume {path}: ")
    return state


def _check_data_fits(data, ckpt, path) -> None:
    saved = ckpt["args"]
    classes = list(ckpt.get("classes") or [])
    if len(data.classes) != saved["num_classes"]:
        raise CLIError(f"--data has {len(data.classes)} classes but {path} was trained on "
                       f"{saved['num_classes']} ({_short_list(classes)})")
    if classes and list(data.classes) != classes:
        raise CLIError(f"--data has classes {_short_list(data.classes)} but {path} was trained "
                       f"on {_short_list(classes)}")
    if data.channels != saved["in_channels"]:
        raise CLIError(f"--data has {data.channels}-channel images but {path} was trained on "
                       f"{saved['in_channels']} channels")
    if list(data.size) != list(saved["input_size"]):
        h, w = saved["input_size"]
        raise CLIError(f"--data has {data.size[0]}x{data.size[1]} images but {path} was trained "
                       f"on {h}x{w}")


# -- model, optimizer, pruning -----------------------------------------------------------------

def _prunable(model):
    from ..pruning import prunable_layers
    return prunable_layers(model)


def _layer_size(module) -> int:
    rows = getattr(module, "_rows", None)
    return rows * module._cols if rows is not None and hasattr(module, "col_idx") \
        else module.weight.numel()


def _sparsity(model) -> float:
    zeros = total = 0
    for _, m in _prunable(model):
        size = _layer_size(m)
        total += size
        zeros += size - m.nnz if hasattr(m, "col_idx") else int((m.weight == 0).sum())
    return zeros / total if total else 0.0


def _end_layers(model):
    """Names of the first convolution and of the last linear layer (the classifier)."""
    first = classifier = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and first is None:
            first = name
        if isinstance(m, nn.Linear):
            classifier = name
    return first, classifier


def _make_optimizer(cfg, model):
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = cfg["lr"], cfg["weight_decay"]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise CLIError(f"unknown optimizer {cfg['optimizer']!r}")


def _make_pruner(cls, model, optimizer, cfg, pc):
    return cls(model, optimizer, cfg["sparsity"], start_step=int(pc["start_step"]),
               end_step=int(pc["end_step"]), every=int(pc["every"]), scope="layer",
               exclude=list(pc["exclude"]) or None, min_sparsity=pc["min_sparsity"])


def _hold_masks(model, names, where=""):
    """Keep the zeros of these dense layers (sparsetrain.hold_masks); returns the function
    that re-applies the masks after every optimizer step. ``where`` starts an error message
    (the checkpoint that named the layers)."""
    from ..pruning import hold_masks

    modules = []
    for name in names:
        try:
            modules.append(model.get_submodule(name))
        except AttributeError:
            raise CLIError(f"{where}masked layer {name!r} is not in the model") from None
    return hold_masks(m for m in modules if type(m) in (nn.Linear, nn.Conv2d))


def _restore_model(model, ckpt, path):
    from ..surgery import sparsify_like
    try:
        return sparsify_like(model, ckpt["model"])
    except ValueError as e:  # a layer's own check (a broken pattern): its message names it
        raise CLIError(f"{path}: model state does not fit {ckpt['args'].get('model')}: "
                       f"{_whole(e)}") from None
    except (RuntimeError, KeyError, TypeError) as e:
        raise CLIError(f"{path}: model state does not fit {ckpt['args'].get('model')} "
                       f"({_reason(e)})") from None


def _apply_init(model, sd, path, cfg, first, classifier, say):
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
            say(f"--init: the classifier ({classifier}) has {rows} outputs and the data "
                f"{cfg['num_classes']} classes: it starts from random weights")
    fits = f"{path}: does not fit {cfg['model']}"
    own = model.state_dict()
    for k, v in sd.items():
        if k in own and k.rsplit(".", 1)[-1] not in ("values", "row_ptr", "col_idx") \
                and tuple(v.shape) != tuple(own[k].shape):
            hint = ""
            if first and k == first + ".weight" and v.dim() == 4 and v.shape[1] != own[k].shape[1]:
                hint = (f" (it takes {v.shape[1]}-channel images, the data has "
                        f"{own[k].shape[1]}: try --channels {v.shape[1]})")
            raise CLIError(f"{fits}: {k} has shape {tuple(v.shape)}, the model's is "
                           f"{tuple(own[k].shape)}{hint}")
    check_model_state(sd, f"--init {path}")  # after the classifier that starts afresh is gone
    try:
        model = sparsify_like(model, sd, strict=False)
    except ValueError as e:  # a layer's own check (a broken pattern): its message names it
        raise CLIError(f"{fits}: {_whole(e)}") from None
    except (RuntimeError, KeyError, TypeError) as e:
        raise CLIError(f"{fits} ({_reason(e)})") from None
    keys = set(model.state_dict())
    missing = sorted(k for k in keys - set(sd) if not k.endswith("num_batches_tracked")
                     and not (dropped and k.startswith(classifier + ".")))
    unexpected = sorted(set(sd) - keys)
    if missing or unexpected:
        parts = [f"{len(missing)} of the model's entries missing (e.g. {missing[0]})"] \
            if missing else []
        parts += [f"{len(unexpected)} unknown entries (e.g. {unexpected[0]})"] if unexpected \
            else []
        raise CLIError(f"{fits}: {', '.join(parts)}; pick the architecture with --model")
    say(f"--init: loaded {path}")
    return model


# -- training -----------------------------------------------------------------------------------

def _batches(n, batch_size, generator) -> list:
    """Shuffled batches; a last batch of a single image is left out (batch norm needs two)."""
    order = torch.randperm(n, generator=generator)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def _train_epoch(model, optimizer, data, train_idx, batch_size, seed, epoch, after_step, last):
    # Seeded per epoch, so a resumed run sees the same data order as an uninterrupted one.
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    torch.manual_seed(seed * 1_000_003 + epoch)
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for step, b in enumerate(_batches(len(train_idx), batch_size, g), 1):
        idx = train_idx[b]
        x, y = data.batch(idx), data.y[idx]
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        if not torch.isfinite(loss):
            raise CLIError(f"the loss became {loss.item()} in epoch {epoch}, step {step}: "
                           f"training diverged; try a lower --lr"
                           + (f" (the last good checkpoint is {last})" if last.exists() else ""))
        loss.backward()
        optimizer.step()
        after_step()
        total_loss += float(loss.detach()) * len(idx)
        correct += int((out.detach().argmax(1) == y).sum())
        seen += len(idx)
    return total_loss / seen, 100.0 * correct / seen


@torch.no_grad()
def _recompute_bn_stats(model, data, train_idx, batch_size, seed, epoch) -> None:
    """Set the batch-norm running statistics to their plain average over up to BN_BATCHES
    training batches with the weights as they are now ("precise BN"). The running averages
    kept during training lag behind the weights by a few hundred steps, which on a small data
    set is several epochs (validation accuracy near chance while training accuracy is 100%)."""
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7)
    model.train()
    try:
        for b in _batches(len(train_idx), batch_size, g)[:BN_BATCHES]:
            model(data.batch(train_idx[b]))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum


@torch.no_grad()
def _accuracy(model, data, idx, batch_size) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(idx), batch_size):
        b = idx[i:i + batch_size]
        correct += int((model(data.batch(b)).argmax(1) == data.y[b]).sum())
    model.train()
    return 100.0 * correct / len(idx)


# -- files --------------------------------------------------------------------------------------

def _out_dir(args, ckpt_path) -> pathlib.Path:
    """The checkpoint folder, checked (nothing is written yet)."""
    if args.out is not None:
        out = pathlib.Path(args.out)
    elif ckpt_path is not None:
        out = ckpt_path.parent
    else:
        out = pathlib.Path(DEFAULTS["out"])
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a folder")
    if ckpt_path is None and (out / "last.pt").exists() and not args.overwrite:
        raise CLIError(f"{out / 'last.pt'} exists: pass --resume {out / 'last.pt'} to "
                       f"continue that run, --overwrite to start over, or another --out")
    if out.is_dir() and not os.access(out, os.W_OK):
        raise CLIError(f"--out {out}: the folder is not writable")
    return out


def _make_out_dir(out: pathlib.Path, fresh: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        if fresh:  # --overwrite: no best.pt of the old run next to the new run's
            (out / "best.pt").unlink(missing_ok=True)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot create the folder ({e.strerror})") from None


def _serialize(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _atomic_write(path: pathlib.Path, blob: bytes) -> None:
    """Write a temporary file next to ``path``, flush it to disk, then rename it over
    ``path``: a crash at any moment leaves either the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CLIError(f"cannot write checkpoint {path} ({e.strerror or e})") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        try:
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass


def _checkpoint_path(text) -> pathlib.Path:
    p = pathlib.Path(text)
    if p.is_dir():
        p = p / "last.pt"
    if not p.exists():
        raise CLIError(f"--resume {text}: no such checkpoint")
    return p


def _torch_load(path, what):
    """torch.load with weights_only=True (a checkpoint runs no code); failures are one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CLIError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"{what} {path}: is a folder, expected a file") from None
    except Exception as e:  # noqa: BLE001  (truncated zip, garbage, foreign pickles)
        if "Unsupported global" in str(e):
            reason = ("it holds Python objects besides tensors, such as a whole pickled model; "
                      "save model.state_dict() instead")
        elif not zipfile.is_zipfile(path):
            reason = "not a file written by torch.save, or truncated"
        else:
            reason = f"damaged: {_reason(e)}"
        raise CLIError(f"{what} {path}: cannot read it ({reason})") from None


def _read_checkpoint(path: pathlib.Path) -> dict:
    obj = _torch_load(path, "--resume")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CLIError(f"--resume {path}: not a checkpoint of sparsetrain train (to start "
                       f"from other weights use --init)")
    missing = [k for k in ("model", "optimizer", "epoch", "args") if k not in obj]
    if not missing:
        settings = obj["args"] if isinstance(obj["args"], dict) else {}
        missing = [f"args.{k}" for k in _SAVED if k not in settings]
    if missing:
        raise CLIError(f"--resume {path}: damaged checkpoint (no {', '.join(missing[:3])})")
    version = obj.get("format_version")
    if not is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise CLIError(f"--resume {path}: format_version {show(version)} is not one this "
                       f"sparsetrain reads (1 to {FORMAT_VERSION}); written by sparsetrain "
                       f"{show(obj.get('sparsetrain_version'))}")
    check_checkpoint(obj, f"--resume {path}")
    return obj


def _read_init(text):
    """(state_dict, checkpoint or None) from --init: a checkpoint of this command, a
    state_dict, or a dict holding one under 'state_dict' / 'model_state_dict' / 'model'."""
    path = pathlib.Path(text)
    if not path.exists():
        raise CLIError(f"--init {text}: no such file")
    obj = _torch_load(path, "--init")
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        # Of such a checkpoint --init uses the model state and args.model (the architecture).
        from ..models import MODELS
        check_model_state(obj.get("model"), f"--init {text}")
        saved = obj.get("args")
        if not isinstance(saved, dict):
            raise CLIError(f"--init {text}: damaged checkpoint: args is {show(saved)}, "
                           f"expected a dict")
        check_fields(saved, {"model": one_of(*sorted(MODELS))}, "args.", f"--init {text}",
                      optional=("model",))
        return obj["model"], obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CLIError(f"--init {text}: not a state_dict (expected a dict of tensors, as "
                       f"torch.save(model.state_dict(), path) writes)")
    if all(k.startswith("module.") for k in obj):  # saved from DistributedDataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, None


def _reason(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).strip().splitlines() if s.strip()]
    text = lines[0] if lines else type(e).__name__
    if text.startswith("Error(s) in loading state_dict") and len(lines) > 1:
        text = lines[1]
    return text if len(text) <= 240 else text[:237] + "..."


def _whole(e: BaseException, limit: int = 1000) -> str:
    """A layer's message in full, on one line (its lines joined): it names the layer and
    what is wrong, which _reason's first line could cut off. The limit only guards against
    a message that prints a whole tensor."""
    text = " ".join(s.strip() for s in str(e).splitlines() if s.strip()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short_list(names, n=5) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


if __name__ == "__main__":  # pragma: no cover
    from . import main
    sys.exit(main(["train"] + sys.argv[1:]))

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
import math
import sys
import time

import torch

from . import (
    CLIError,
    add_strategy_option,
    checked,
    fraction,
    positive_int,
    set_conv_strategy,
    strategy_note,
    train_loop,  # looked up at each call, so tests can replace its functions
)
from .checkpoint_io import (
    atomic_write,
    checkpoint_path,
    make_out_dir,
    out_dir,
    read_checkpoint,
    read_init,
    serialize,
)
from .messages import short_list
from .train_model import end_layers, layer_size, model_sparsity, prunable
from .train_settings import FORMAT, FORMAT_VERSION, SAVED_ARGS, check_data_fits, resolve_settings
from .train_start import resume_run, start_dynamic, start_scratch, start_transfer

DESCRIPTION = """\
Train an image classifier with unstructured-sparse weights on the CPU.

  --mode transfer  start from --init (a dense or sparse state_dict, or a checkpoint of
                   this command), prune to --sparsity by magnitude, swap the pruned layers
                   that run faster sparse for SparseConv2d / SparseLinear (measured on the
                   data's shapes; the others keep their zeros), fine-tune with fixed masks.
  --mode scratch   from random weights, prune gradually (cubic schedule) to --sparsity from
                   about epoch 1 to 2/3 of the run; layers become sparse modules once 80%
                   of their weights are gone.
  --mode rigl      sparse from the first step (ERK densities, overall --sparsity), the
  --mode set       connections moved every few steps until 3/4 of the run: the smallest
                   weights dropped and as many regrown where the dense gradient is
                   largest (rigl) or at random (set).

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


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..models import MODELS

    p = sub.add_parser(
        "train",
        help="train a sparse model on an image folder or .npz",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="folder of class subfolders of images, or an .npz with x and y",
    )
    d.add_argument(
        "--image-size",
        type=positive_int,
        metavar="N",
        help="resize images to N x N (needed when their sizes differ)",
    )
    d.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="1 (grayscale) or 3 (RGB); default: 1 if every image is grayscale",
    )
    d.add_argument(
        "--val-fraction",
        type=fraction,
        metavar="F",
        help="share of each class held out to measure accuracy (default 0.2; 0: "
        "none, and no best.pt)",
    )
    m = p.add_argument_group("model and sparsity")
    m.add_argument(
        "--mode",
        choices=("transfer", "scratch", "rigl", "set"),
        help="default: transfer with --init, else scratch",
    )
    m.add_argument(
        "--model",
        choices=["auto"] + sorted(MODELS),
        help="default auto: small-cnn for images under 64 px, else resnet18",
    )
    m.add_argument(
        "--init",
        metavar="PATH",
        help="starting weights for --mode transfer (without: random weights); a "
        "classifier with another number of classes starts afresh",
    )
    m.add_argument(
        "--sparsity",
        type=fraction,
        metavar="S",
        help="share of zero weights in the pruned layers, in [0, 1) (default 0.9)",
    )
    m.add_argument(
        "--prune-all",
        action="store_true",
        default=None,
        help="prune the first convolution and the classifier too (default: they stay dense)",
    )
    t = p.add_argument_group("training")
    t.add_argument(
        "--epochs",
        type=positive_int,
        metavar="N",
        help="total epochs (default 10; when resuming: the checkpoint's)",
    )
    t.add_argument("--batch-size", type=positive_int, metavar="N", help="default 64")
    t.add_argument(
        "--optimizer",
        choices=("sgd", "adam", "adamw"),
        help="default adamw (sgd uses momentum 0.9)",
    )
    t.add_argument(
        "--lr",
        type=positive_float,
        metavar="LR",
        help="learning rate (default 1e-3 for adam/adamw, 0.01 for sgd)",
    )
    t.add_argument(
        "--weight-decay",
        type=nonnegative_float,
        metavar="WD",
        help="default: the optimizer's (0.01 for adamw, else 0)",
    )
    t.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads for sparse kernels and PyTorch (default: PyTorch's)",
    )
    t.add_argument(
        "--seed",
        type=nonnegative_int,
        metavar="N",
        help="seeds weights, validation split and data order (default 0)",
    )
    add_strategy_option(t)  # a speed setting like --threads: not saved, give it on resume too
    c = p.add_argument_group("checkpoints")
    c.add_argument(
        "--out",
        metavar="DIR",
        help="where last.pt and best.pt go (default ./sparsetrain-out; when "
        "resuming: the checkpoint's folder)",
    )
    c.add_argument(
        "--resume",
        metavar="PATH",
        help="continue a run from its checkpoint (a .pt file, or a folder with "
        "last.pt) with the next epoch",
    )
    c.add_argument(
        "--overwrite", action="store_true", help="start a new run in an --out that holds one"
    )
    p.set_defaults(func=run)
    return p


# -- the command ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
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
        ckpt_path = checkpoint_path(args.resume)
        ckpt = read_checkpoint(ckpt_path)
    if args.init and args.mode in ("scratch", "rigl", "set"):
        raise CLIError(
            f"--init is for --mode transfer ({args.mode} mode starts from random weights)"
        )
    init_sd, init_ckpt = (None, None)
    if args.init and not args.resume:
        init_sd, init_ckpt = read_init(args.init)
    cfg = resolve_settings(args, ckpt, init_ckpt)

    data = load_dataset(args.data, image_size=cfg["image_size"], channels=cfg["channels"], say=say)
    num_classes, (h, w) = len(data.classes), data.size
    if ckpt is not None:
        check_data_fits(data, ckpt, ckpt_path)
    cfg.update(num_classes=num_classes, in_channels=data.channels, input_size=[h, w])
    if cfg["model"] == "auto":
        cfg["model"] = "small-cnn" if max(h, w) < 64 else "resnet18"
    if cfg["model"] not in MODELS:
        raise CLIError(f"unknown model {cfg['model']!r} (known: {', '.join(sorted(MODELS))})")

    train_idx, val_idx = split(data.y, cfg["val_fraction"], cfg["seed"])
    if len(train_idx) < 2:
        raise CLIError(
            f"{data.source}: {len(data)} images leave {len(train_idx)} to train on; "
            f"need at least 2 (lower --val-fraction or add images)"
        )
    say(
        f"data: {data.source}: {len(data)} images {data.channels}x{h}x{w}, {num_classes} "
        f"classes ({short_list(data.classes)}); {len(train_idx)} train, {len(val_idx)} "
        f"validation"
    )
    if not len(val_idx):
        say("no validation split (--val-fraction 0): no val acc, and no best.pt is written")

    torch.manual_seed(cfg["seed"])
    model = MODELS[cfg["model"]](num_classes=num_classes, in_channels=data.channels)
    first, classifier = end_layers(model)
    exclude = [] if cfg["prune_all"] else [n for n in (first, classifier) if n]
    cfg["exclude"] = exclude
    bs = cfg["batch_size"]
    steps_per_epoch = len(train_loop.epoch_batches(len(train_idx), bs, torch.Generator()))
    out = out_dir(args, ckpt_path)

    if ckpt is not None:
        run_state = resume_run(model, ckpt, ckpt_path, cfg, args)
    elif cfg["mode"] == "transfer":
        run_state = start_transfer(
            model, cfg, data, train_idx, init_sd, args.init, first, classifier, say
        )
    elif cfg["mode"] in ("rigl", "set"):
        run_state = start_dynamic(model, cfg, steps_per_epoch, say)
    else:
        run_state = start_scratch(model, cfg, steps_per_epoch, say)
    model, optimizer, pruner = run_state.model, run_state.optimizer, run_state.pruner
    dynamic = run_state.dynamic
    noted = set()

    def apply_strategy():  # a note for each layer that cannot run it, once
        others = [n for n in set_conv_strategy(model, args.strategy) if n not in noted]
        if others:
            noted.update(others)
            say(strategy_note(args.strategy, others))

    apply_strategy()
    masks, masked, pruner_cfg = run_state.masks, run_state.masked, run_state.pruner_cfg
    # A batch to find conv -> batch-norm pairs with, where sparse layers appear without
    # sparsify (which fuses a new transfer run's itself): a resumed model, the pruner's swaps,
    # the layers dynamic sparsity made sparse.
    new_sparse = ckpt is not None or pruner is not None or dynamic is not None
    example = data.batch(train_idx[:bs]) if new_sparse else None
    if ckpt is not None or dynamic is not None:
        fuse_batch_norm(model, example)
    start_epoch, best, best_epoch = run_state.epoch, run_state.best, run_state.best_epoch
    history = run_state.history
    weights = sum(layer_size(m) for _, m in prunable(model))
    say(
        f"model: {cfg['model']}, {num_classes} classes, {data.channels} input channel"
        f"{'s' if data.channels > 1 else ''}, {weights:,} weights in conv/linear layers; "
        f"mode {cfg['mode']}; {cfg['optimizer']} lr {cfg['lr']:g}; "
        f"{torch.get_num_threads()} threads"
    )

    if ckpt is not None:
        if start_epoch >= cfg["epochs"]:
            say(
                f"{ckpt_path}: all {cfg['epochs']} epochs are done; pass --epochs N with N > "
                f"{start_epoch} to train further"
            )
            return 0
        say(
            f"resuming {ckpt_path}: epoch {start_epoch} of {cfg['epochs']} done"
            + (f" (best val acc {best:.1f}%)" if best is not None else "")
            + f"; continuing with epoch {start_epoch + 1}"
        )

    def after_step():
        if pruner is not None and pruner.step():
            fuse_batch_norm(model, example)  # layers it just made sparse
            apply_strategy()
        if dynamic is not None:
            dynamic.step()  # moves connections in place: nothing to fuse again
        if masks is not None:
            masks()

    def checkpoint(epoch, val_acc):
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sparsetrain_version": st.__version__,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "pruner": (dict(pruner_cfg, state=pruner.state_dict()) if pruner is not None else None),
            "dynamic": (
                dict(run_state.dynamic_cfg, state=dynamic.state_dict())
                if dynamic is not None
                else None
            ),
            "masked": masked,
            "epoch": epoch,
            "val_acc": val_acc,
            "best_acc": best,
            "history": history,
            "classes": list(data.classes),
            "args": {k: cfg[k] for k in SAVED_ARGS},
            "data": {"path": str(data.source), "images": len(data)},
        }

    make_out_dir(out, fresh=ckpt is None)
    last, best_path = out / "last.pt", out / "best.pt"
    for epoch in range(start_epoch + 1, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        loss, train_acc = train_loop.train_epoch(
            model, optimizer, data, train_idx, bs, cfg["seed"], epoch, after_step, last
        )
        train_loop.recompute_bn_stats(model, data, train_idx, bs, cfg["seed"], epoch)
        val_acc = train_loop.accuracy(model, data, val_idx, bs) if len(val_idx) else None
        seconds = time.perf_counter() - t0
        improved = val_acc is not None and (best is None or val_acc > best)
        if improved:
            best, best_epoch = val_acc, epoch
        history.append(
            {
                "epoch": epoch,
                "loss": loss,
                "train_acc": train_acc,
                "val_acc": val_acc,
                "sparsity": model_sparsity(model),
                "seconds": seconds,
            }
        )
        state = checkpoint(epoch, val_acc)
        state["best_epoch"] = best_epoch
        blob = serialize(state)
        if improved:
            atomic_write(best_path, blob)
        atomic_write(last, blob)
        val_text = f"{val_acc:.1f}%" if val_acc is not None else "-"
        time_text = f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2f} s"
        say(
            f"epoch {epoch}/{cfg['epochs']}  loss {loss:.3f}  train acc {train_acc:.1f}%  "
            f"val acc {val_text}  sparsity {history[-1]['sparsity']:.2f}  {time_text}"
        )
    say(
        f"checkpoints: {last} (epoch {cfg['epochs']})"
        + (f", {best_path} (val acc {best:.1f}%, epoch {best_epoch})" if best is not None else "")
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    from . import main

    sys.exit(main(["train"] + sys.argv[1:]))

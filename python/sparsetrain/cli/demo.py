"""``sparsetrain demo``: a ResNet pruned to 95% trained dense and sparse side by side on
synthetic images, each in NCHW and in channels_last (the dense model's fastest fp32 format
depends on the machine): images/s, the speedup of the fastest sparse run over the fastest
dense one (both named), where the time goes, and the loss of the runs."""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import time
from typing import Callable

import torch

from . import (
    CLIError,
    add_strategy_option,
    fraction,
    positive_int,
    set_conv_strategy,
    strategy_note,
)
from ._progress import Progress

CL = torch.channels_last


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo", help="train a 95%%-sparse ResNet-18 next to the dense one", description=__doc__
    )
    p.add_argument(
        "--model",
        default="resnet18",
        help="resnet18, resnet34, resnet50 or mobilenetv2 (default: %(default)s)",
    )
    p.add_argument(
        "--sparsity",
        type=fraction,
        default=0.95,
        help="sparsity of every convolution but the first (default: %(default)s)",
    )
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--image-size", type=positive_int, default=224)
    p.add_argument("--steps", type=positive_int, default=8, help="timed steps per run")
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed steps first (the sparse layers pick their kernels)",
    )
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--seed", type=int, default=0)
    add_strategy_option(p)
    p.set_defaults(func=run)
    return p


# Profiler event name fragments -> the layer type they belong to (first match wins).
_CATEGORIES = [
    ("sparse conv", ("SparseConv2dFunction", "Subsample")),
    ("sparse linear", ("SparseLinearFunction", "sparsetrain::linear")),
    ("dense conv", ("convolution", "conv2d")),
    ("dense linear", ("addmm", "aten::mm", "aten::linear")),
    ("batch norm", ("batch_norm",)),
    ("relu / pool / add", ("threshold", "relu", "clamp", "pool", "aten::add", "aten::mean")),
    ("optimizer", ("Optimizer.", "_foreach", "aten::add_", "aten::mul_")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
]


def _category(name: str) -> str:
    for category, keys in _CATEGORIES:
        if any(k in name for k in keys):
            return category
    return "other"


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 pointed at /dev/null: PyTorch's profiler prints a line from C++ when
    it starts and when it stops ("USDT: ... profiler_start"), which would land in the
    middle of the demo's output."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def time_by_layer_type(step: Callable[[], object]) -> dict:
    """Self CPU ms of one profiled step, grouped by layer type."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU])
    with _native_stderr_silenced():  # only around start and stop: the step's own warnings show
        prof.start()
    try:
        step()
    finally:
        with _native_stderr_silenced():
            prof.stop()
    out = {}
    for event in prof.key_averages():
        if event.key.startswith(("ProfilerStep", "autograd::engine")):
            continue
        cat = _category(event.key)
        out[cat] = out.get(cat, 0.0) + event.self_cpu_time_total / 1e3
    return out


def _train(label, model, batches, warmup, steps):
    from ..benchmarks import train_step

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for x, y in batches[:warmup]:
        train_step(model, opt, x, y)
    bar = Progress(label, steps)
    times, losses = [], []
    for i, (x, y) in enumerate(batches[warmup : warmup + steps]):
        t = time.perf_counter()
        losses.append(train_step(model, opt, x, y))
        times.append(time.perf_counter() - t)
        bar.update(i + 1, f"{x.shape[0] / times[-1]:6.1f} img/s  loss {losses[-1]:.4f}")
    bar.close()
    x, y = batches[-1]
    profile = time_by_layer_type(lambda: train_step(model, opt, x, y))
    times.sort()
    return {"step_s": times[len(times) // 2], "losses": losses, "profile": profile}


def run(args: argparse.Namespace) -> int:
    from .. import hold_masks, runtime_info, set_num_threads, sparsify
    from ..benchmarks import pruned_resnet
    from ..benchmarks_cnn import CNN_MODELS

    if args.model not in CNN_MODELS:
        raise CLIError(f"--model: expected one of {', '.join(CNN_MODELS)}, got {args.model!r}")
    if args.image_size < 32:
        raise CLIError(f"--image-size: the models need at least 32 pixels, got {args.image_size}")
    if args.warmup < 0:
        raise CLIError(f"--warmup: expected a number >= 0, got {args.warmup}")
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    n, s = args.batch_size, args.image_size
    print(
        f"{args.model}, convolutions {args.sparsity:.0%} sparse (first conv and classifier "
        f"dense), batch {n}, {s}x{s} synthetic images, {args.threads} threads, malloc: "
        f"{runtime_info()['malloc']}, sparse conv strategy {args.strategy}"
    )

    dense = pruned_resnet(args.model, args.sparsity, seed=args.seed)
    sparse = copy.deepcopy(dense)
    g = torch.Generator().manual_seed(args.seed)
    batches = [
        (torch.randn(n, 3, s, s, generator=g), torch.randint(0, 1000, (n,), generator=g))
        for _ in range(args.warmup + args.steps)
    ]
    t = time.perf_counter()
    report = sparsify(sparse, example_inputs=batches[0][0], min_sparsity=0.5)
    others = set_conv_strategy(sparse, args.strategy)
    if others:
        print(strategy_note(args.strategy, others))
    print(
        f"sparsify: {len(report.swapped)} of {len(report.layers)} layers made sparse "
        f"(each timed dense vs sparse, {time.perf_counter() - t:.1f} s), "
        f"{len(report.fused_batch_norms)} batch norms fused with them"
    )
    # Each model in both memory formats (the same weights: copies before any step).
    runs = {}
    for kind, model in (("dense", dense), ("sparse", sparse)):
        runs[f"{kind} NCHW"] = model
        runs[f"{kind} channels_last"] = copy.deepcopy(model).to(memory_format=CL)
    cl_batches = [(x.contiguous(memory_format=CL), y) for x, y in batches]
    results = {}
    for label, model in runs.items():
        # The dense runs compute what the sparse ones do (their losses start equal); pruned
        # layers that stayed dense in the sparse model keep their zeros too.
        hold_masks(model)
        data = cl_batches if label.endswith("channels_last") else batches
        results[label] = _train(label, model, data, args.warmup, args.steps)
    best = {
        kind: min((k for k in results if k.startswith(kind)), key=lambda k: results[k]["step_s"])
        for kind in ("dense", "sparse")
    }
    d, sp = results[best["dense"]], results[best["sparse"]]
    print()
    print(
        f"headline: {best['sparse']} {sp['step_s'] * 1e3:.0f} ms per step vs {best['dense']} "
        f"(the fastest dense fp32 configuration) {d['step_s'] * 1e3:.0f} ms: speedup "
        f"{d['step_s'] / sp['step_s']:.2f}x"
    )
    print()
    labels = list(results)
    print(f"{'':<20}" + "".join(f"{k:>22}" for k in labels))
    rows = [
        ("step (median)", lambda r: f"{r['step_s'] * 1e3:.0f} ms"),
        ("images/s", lambda r: f"{n / r['step_s']:.1f}"),
        ("speedup", lambda r: f"{d['step_s'] / r['step_s']:.2f}x"),
        ("final loss", lambda r: f"{r['losses'][-1]:.4f}"),
    ]
    for name, cell in rows:
        print(f"{name:<20}" + "".join(f"{cell(results[k]):>22}" for k in labels))
    print()
    print(f"where the time goes (one profiled step, ms): {best['dense']} / {best['sparse']}")
    cats = sorted(
        set(d["profile"]) | set(sp["profile"]),
        key=lambda c: -d["profile"].get(c, 0.0) - sp["profile"].get(c, 0.0),
    )
    for c in cats:
        print(f"  {c:<18}{d['profile'].get(c, 0.0):>12.0f}{sp['profile'].get(c, 0.0):>12.0f}")
    return 0

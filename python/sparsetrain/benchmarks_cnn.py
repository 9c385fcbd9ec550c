"""A CNN training step in every configuration a user could pick (``bench/test_cnn_formats.py``,
``sparsetrain bench --models resnet18,resnet50,mobilenetv2``): dense and sparse, each in fp32
and under bf16 autocast, each with NCHW and channels_last inputs and weights, all taking turns
in one loop; the ratio of the fastest sparse to the fastest dense configuration of each
precision, and the peak memory of a step in each configuration.

The models of sparsetrain.models (ResNet-18 / -50, MobileNetV2; 224², batch 32, SGD with
momentum): every convolution but the first pruned to the sparsity and ``sparsify``'d (batch
norms fused); the dense model holds the same zeros.
"""

from __future__ import annotations

import copy

import torch

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
PRECISIONS = ("fp32", "bf16")


def format_step_times(
    name: str = "resnet18", sparsity: float = 0.95, repeats: int = 3, tiny: bool = False
) -> dict:
    """{"times": median seconds per "dense fp32 channels_last", "sparse bf16 nchw", ...,
    "ratio": {precision: fastest dense / fastest sparse of that precision},
    "best": {"dense fp32": its configuration, ...}}."""
    from . import sparsify
    from .benchmarks import alternating_medians, pruned_resnet, synthetic_batch, train_step

    classes = 10 if tiny else 1000
    x, y = synthetic_batch(2 if tiny else 32, 32 if tiny else 224, classes)
    dense = pruned_resnet(name, sparsity, num_classes=classes)
    sparse = copy.deepcopy(dense)
    sparsify(sparse, example_inputs=x, min_sparsity=0.5)
    steps = {}
    for kind, model in (("dense", dense), ("sparse", sparse)):
        for fmt, memory_format in FORMATS.items():
            m = model if fmt == "nchw" else copy.deepcopy(model).to(memory_format=memory_format)
            m.train()
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
            xf = x.contiguous(memory_format=memory_format)
            for p in PRECISIONS:
                steps[f"{kind} {p} {fmt}"] = lambda m=m, o=opt, xf=xf, p=p: train_step(
                    m, o, xf, y, p
                )
    times = alternating_medians(steps, repeats)
    best, ratio = {}, {}
    for p in PRECISIONS:
        for kind in ("dense", "sparse"):
            key = min((k for k in times if k.startswith(f"{kind} {p} ")), key=times.get)
            best[f"{kind} {p}"] = key.rsplit(" ", 1)[1]
        ratio[p] = (
            times[f"dense {p} {best[f'dense {p}']}"] / times[f"sparse {p} {best[f'sparse {p}']}"]
        )
    return {"times": times, "ratio": ratio, "best": best}


CNN_MODELS = ("resnet18", "resnet34", "resnet50", "mobilenetv2")


def format_step_memory(
    name: str = "resnet18", sparsity: float = 0.95, tiny: bool = False, threads: int = 2
) -> dict:
    """{"dense fp32 nchw": peak MB of one training step, ...} for the eight configurations of
    format_step_times, each measured in a fresh process (benchmarks.step_memory_in_subprocess:
    nothing else of this one counts)."""
    from .benchmarks import step_memory_in_subprocess

    size = dict(batch=2, image_size=32, num_classes=10) if tiny else {}
    out = {}
    for kind in ("dense", "sparse"):
        for p in PRECISIONS:
            for fmt in FORMATS:
                r = step_memory_in_subprocess(
                    kind == "sparse",
                    name=name,
                    sparsity=sparsity,
                    precision=p,
                    channels_last=fmt == "channels_last",
                    threads=threads,
                    **size,
                )
                out[f"{kind} {p} {fmt}"] = r["peak_mb"]
    return out

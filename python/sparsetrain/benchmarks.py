"""The benchmark grid shared by ``sparsetrain bench`` and bench/ (pytest-benchmark): layer
shapes, pruned layers, one timed training step, and the ResNet-18 end-to-end setup."""

from __future__ import annotations

import time

import torch
from torch import nn

# (batch, in_features, out_features): a transformer MLP, a large square layer, a classifier.
LINEAR_SHAPES = [(256, 768, 3072), (64, 4096, 4096), (128, 512, 1000)]
# (tokens, in, out): the linear layers of transformer fine-tuning (BERT-base's attention and
# MLP, a 1024-wide decoder's MLP, a 4096-wide one's) at 512 to 4096 tokens per batch (batch x
# sequence; 3000 is not a power of two).
TRANSFORMER_TOKENS = [512, 2048, 3000, 4096]
TRANSFORMER_FEATURES = [
    (768, 768),
    (768, 3072),
    (3072, 768),
    (1024, 4096),
    (4096, 1024),
    (4096, 4096),
]
TRANSFORMER_SHAPES = [(t, i, o) for t in TRANSFORMER_TOKENS for i, o in TRANSFORMER_FEATURES]
# What a user can pick for a linear layer: float32, or bfloat16 under torch.autocast.
PRECISIONS = ("fp32", "bf16")
# (in, out, input size, kernel, stride): ResNet-18's convolutions at 224x224, batch 32.
CONV_LAYERS = [
    (64, 64, 56, 3, 1),
    (128, 128, 28, 3, 1),
    (256, 256, 14, 3, 1),
    (512, 512, 7, 3, 1),
    (64, 128, 56, 3, 2),
    (256, 512, 14, 1, 2),
]
CONV_BATCH = 32
SPARSITIES = [0.8, 0.9, 0.95, 0.98]


def linear_name(shape) -> str:
    batch, in_f, out_f = shape
    return f"linear {batch}x{in_f}->{out_f}"


def conv_name(layer) -> str:
    cin, cout, hw, k, s = layer
    return f"conv {k}x{k}s{s} {cin}->{cout} @{hw}"


def pruned_linear(shape, sparsity: float, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    _, in_f, out_f = shape
    lin = nn.Linear(in_f, out_f)
    with torch.no_grad():
        lin.weight.mul_(torch.rand(out_f, in_f) >= sparsity)
    return lin


def pruned_conv(layer, sparsity: float, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    cin, cout, _, k, s = layer
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) >= sparsity)
    return conv


def linear_input(shape) -> torch.Tensor:
    return torch.randn(shape[0], shape[1], requires_grad=True)


def conv_input(layer, batch: int = CONV_BATCH) -> torch.Tensor:
    cin, _, hw, _, _ = layer
    return torch.randn(batch, cin, hw, hw, requires_grad=True)


def layer_step(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    """Forward + backward with input, weight and bias gradients (what training needs)."""
    x.grad = None
    module.zero_grad(set_to_none=True)
    module(x).backward(grad)


def autocast_step(
    module: nn.Module, x: torch.Tensor, grad: torch.Tensor, precision: str = "fp32"
) -> None:
    """layer_step in ``precision``: "fp32", or "bf16" under torch.autocast (``grad`` in the
    output's dtype)."""
    x.grad = None
    module.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        y = module(x)
    y.backward(grad)


def alternating_medians(steps: dict, repeats: int, warmup: int = 1) -> dict:
    """Median seconds of each zero-argument callable in ``steps``, timed in turns (one of each
    per round) so that every configuration meets the same machine noise."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def precision_row(times: dict, precisions) -> dict:
    """From median seconds keyed "dense fp32", "sparse bf16", ...: each as ms
    (``dense_fp32_ms``, ...), the fastest precision of each kind (``best_dense``,
    ``best_sparse``) and the fastest dense time over the fastest sparse one (``speedup``)."""
    best_dense = min(precisions, key=lambda p: times[f"dense {p}"])
    best_sparse = min(precisions, key=lambda p: times[f"sparse {p}"])
    row = {
        "speedup": times[f"dense {best_dense}"] / times[f"sparse {best_sparse}"],
        "best_dense": best_dense,
        "best_sparse": best_sparse,
    }
    for kind in ("dense", "sparse"):
        for p in precisions:
            row[f"{kind}_{p}_ms"] = times[f"{kind} {p}"] * 1e3
    return row


def matmul_peak_gflops(precision: str = "fp32", n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a dense n x n matmul in ``precision`` (bf16: under autocast): the machine's
    practical peak for the products these layers form."""
    a, b = torch.randn(n, n), torch.randn(n, n)

    def mm():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            torch.mm(a, b)

    return 2.0 * n**3 / median_time(mm, repeats=repeats) / 1e9


def output_grad(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.randn_like(module(x))


def median_time(fn, *args, repeats: int = 7, warmup: int = 2) -> float:
    """Median wall-clock seconds of ``fn(*args)`` over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def nnz_flops(module, x: torch.Tensor) -> float:
    """Multiply-adds x 2 of the three products (forward, input and weight gradient) that touch
    the nonzeros: the work a sparse layer really does."""
    with torch.no_grad():
        y = module(x)
    per_output = y.numel() / y.shape[1] if y.dim() > 2 else y.shape[0]
    return 6.0 * module.nnz * per_output


# -- end to end -------------------------------------------------------------------------------
def pruned_resnet(
    name: str = "resnet18", sparsity: float = 0.95, num_classes: int = 1000, seed: int = 0
) -> nn.Module:
    """A model of sparsetrain.models (a ResNet, MobileNetV2) whose convolutions (except the
    first) are magnitude-pruned to ``sparsity`` per layer; the first convolution and the
    classifier stay dense, as in the literature."""
    from . import magnitude_prune
    from .models import MODELS

    torch.manual_seed(seed)
    model = MODELS[name](num_classes=num_classes)
    magnitude_prune(model, sparsity, scope="layer", exclude=["conv1", "fc"])
    return model


def synthetic_batch(
    batch: int = 32, image_size: int = 224, num_classes: int = 1000, seed: int = 0
) -> tuple:
    """Random images (batch, 3, image_size, image_size) and labels, the same for a seed."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, image_size, image_size, generator=g)
    return x, torch.randint(0, num_classes, (batch,), generator=g)


def train_step(
    model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32"
) -> float:
    """One SGD training step (forward, loss, backward, optimizer step), the forward under
    bf16 autocast for precision "bf16" (the loss in float32); returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(x)
    loss = nn.functional.cross_entropy(logits.float(), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def machine() -> dict:
    """What the numbers were measured on."""
    import os
    import platform

    from ._runtime import runtime_info

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(ln for ln in f if ln.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        # what dense bf16 runs on: AMX tiles, AVX512-BF16 dot products, or neither (emulated)
        "amx": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        **runtime_info(),
    }


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise OSError(f"{field} not in /proc/self/status")


def measure_step_memory(
    sparse: bool,
    name: str = "resnet18",
    batch: int = 32,
    image_size: int = 224,
    sparsity: float = 0.95,
    warmup: int = 2,
    precision: str = "fp32",
    channels_last: bool = False,
    num_classes: int = 1000,
) -> dict:
    """Resident memory of one training step in this process (Linux): RSS before the step and
    the peak during it (VmHWM, reset just before through /proc/self/clear_refs); the model and
    its input in channels_last if asked, the forward under bf16 autocast for "bf16"."""
    model = pruned_resnet(name, sparsity, num_classes=num_classes)
    x, y = synthetic_batch(batch, image_size, num_classes)
    if sparse:
        from . import sparsify

        sparsify(model, example_inputs=x, min_sparsity=0.5)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(warmup):
        train_step(model, opt, x, y, precision)
    before = _status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := current RSS
    train_step(model, opt, x, y, precision)
    peak = _status_mb("VmHWM")
    return {"rss_before_mb": before, "peak_mb": peak, "step_mb": peak - before}


def _peak_rss_kb() -> int:
    """The process's peak resident memory so far, KiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes there, KiB elsewhere


# A round that raises the peak resident memory by less than this (KiB) no longer grows the
# process: steady state.
_STEADY_GROWTH_KB = 4096


def alternating_steps(
    name: str = "resnet18",
    batch: int = 32,
    image_size: int = 224,
    sparsity: float = 0.95,
    rounds: int = 7,
    warmup: int = 2,
    max_warmup: int = 10,
) -> dict:
    """Dense and sparse training steps of one pruned model taking turns in one loop, so both
    see the same machine noise and allocator state; medians (ms) of the `rounds` rounds after
    warm-up and the per-round dense/sparse ratios, sorted.

    Warm-up is at least `warmup` rounds and lasts until a round that does not raise the
    process's peak resident memory (by _STEADY_GROWTH_KB; at most `max_warmup` rounds): until
    then the process is still growing to its working size, and a step that maps fresh memory
    in is timed with its page faults, which a long training run pays only at its start. With
    freed memory kept that takes 3-8 rounds here (the heap the two models share grows by
    50-230 MB in each); with glibc returning memory, every step page-faults anyway and the
    peak stops rising after 1-2.
    `warmup_rounds` in the result says how many rounds it took."""
    import copy
    import statistics

    from . import sparsify

    dense = pruned_resnet(name, sparsity)
    x, y = synthetic_batch(batch, image_size)
    sparse = copy.deepcopy(dense)
    sparsify(sparse, example_inputs=x, min_sparsity=0.5)
    models = (dense, sparse)
    opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in models]

    def one_round():
        out = []
        for m, opt in zip(models, opts):
            start = time.perf_counter()
            train_step(m, opt, x, y)
            out.append(time.perf_counter() - start)
        return out

    done = 0
    while done < max_warmup:
        peak = _peak_rss_kb()
        one_round()
        done += 1
        steady = _peak_rss_kb() - peak < _STEADY_GROWTH_KB
        if steady and done >= warmup:
            break
    times = ([], [])
    for _ in range(rounds):
        for t, seconds in zip(times, one_round()):
            t.append(seconds)
    td, ts = (statistics.median(t) for t in times)
    ratios = sorted(a / b for a, b in zip(*times))
    return {
        "dense_ms": td * 1e3,
        "sparse_ms": ts * 1e3,
        "ratios": [round(r, 2) for r in ratios],
        "warmup_rounds": done,
    }


def run_in_subprocess(
    function: str,
    keep_freed_memory: bool = False,
    threads: int = 2,
    env: dict | None = None,
    **kwargs,
) -> dict:
    """``function(**kwargs)`` of this module in a fresh interpreter (`threads` threads, extra
    environment variables `env`), so one measurement's freed memory and allocator state do
    not blur another's; with `keep_freed_memory`, the child runs under
    ``sparsetrain.keep_freed_memory()``."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, torch, sparsetrain, sparsetrain.benchmarks as B; "
        f"torch.set_num_threads({threads}); "
        f"{'sparsetrain.keep_freed_memory(); ' if keep_freed_memory else ''}"
        f"r = B.{function}(**{kwargs!r}); "
        "r['malloc'] = sparsetrain.runtime_info()['malloc']; print(json.dumps(r))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_memory_in_subprocess(sparse: bool, keep_freed_memory: bool = False, **kwargs) -> dict:
    """measure_step_memory in a fresh interpreter. Without `keep_freed_memory`, glibc gets a
    fixed mmap threshold: it then returns every large freed block at once (by default it
    raises the threshold after a free and keeps later blocks in its heap), so resident memory
    follows the memory really in use, for dense and sparse runs alike."""
    env = None if keep_freed_memory else {"MALLOC_MMAP_THRESHOLD_": "131072"}
    return run_in_subprocess(
        "measure_step_memory", keep_freed_memory, env=env, sparse=sparse, **kwargs
    )

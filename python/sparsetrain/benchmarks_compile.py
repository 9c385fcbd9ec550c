"""torch.compile of whole training steps (``bench/test_compile.py``): the model run eagerly
and compiled with ``fullgraph=True`` (so a graph break fails), dense and sparse, taking turns
in one loop on the same parameters; the compile time of each compiled model (its first step
minus an eager step) and the graph breaks dynamo reports.
"""

from __future__ import annotations

import time

import torch


def _configuration(name: str, sparse: bool, sparsity: float, tiny: bool):
    """(model, step(model, precision) -> loss, the forward's (args, kwargs)) of one
    configuration: "bert" (benchmarks_hf: AdamW) or "resnet18" (224², batch 32, SGD with
    momentum, every convolution but the first pruned, sparsify'd with its batch norms fused;
    float32 only)."""
    if name != "resnet18":
        from . import benchmarks_hf as H

        model, opt, b, _ = H.prepared(name, sparse, sparsity, tiny)
        return model, lambda m, p: H.step(m, opt, b, p), ((), b)
    from . import sparsify
    from .benchmarks import pruned_resnet, synthetic_batch, train_step

    model = pruned_resnet(name, sparsity, num_classes=10 if tiny else 1000)
    x, y = synthetic_batch(2 if tiny else 32, 32 if tiny else 224, 10 if tiny else 1000)
    if sparse:
        sparsify(model, example_inputs=x, min_sparsity=0.5)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, lambda m, p: train_step(m, opt, x, y), ((x,), {})


def compile_step_times(
    name: str,
    sparsity: float,
    repeats: int,
    tiny: bool = False,
    precision: str = "fp32",
    options: dict | None = None,
) -> dict:
    """{"times": median seconds per configuration ("dense eager", "sparse compiled", ...),
    "compile_s": {"dense": s, "sparse": s}, "graph_breaks": {...}} for the model ``name``
    ("bert" or "resnet18"). ``options``: torch.compile's inductor options (e.g.
    {"fallback_random": True}: dropout from ATen's generator, as eager draws it, instead of
    inductor's own)."""
    import torch._dynamo

    from .benchmarks import alternating_medians

    steps, compile_s, breaks = {}, {}, {}
    for kind in ("dense", "sparse"):
        model, step, (args, kwargs) = _configuration(name, kind == "sparse", sparsity, tiny)
        compiled = torch.compile(model, fullgraph=True, options=options)
        t = time.perf_counter()
        step(model, precision)
        eager = time.perf_counter() - t
        t = time.perf_counter()
        step(compiled, precision)  # compiles forward and backward
        compile_s[kind] = time.perf_counter() - t - eager
        breaks[kind] = torch._dynamo.explain(model)(*args, **kwargs).graph_break_count
        for mode, m in (("eager", model), ("compiled", compiled)):
            steps[f"{kind} {mode}"] = lambda m=m, step=step: step(m, precision)
    times = alternating_medians(steps, repeats)
    return {"times": times, "compile_s": compile_s, "graph_breaks": breaks}

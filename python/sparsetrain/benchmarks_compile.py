"""torch.compile of whole training steps (``bench/test_compile.py``): the model run eagerly
and compiled with ``fullgraph=True`` (so a graph break fails), dense and sparse, taking turns
in one loop on the same parameters; the compile time of each compiled model (its first step
minus an eager step) and the graph breaks dynamo reports.
"""

from __future__ import annotations

import time


def compile_step_times(
    name: str,
    sparsity: float,
    repeats: int,
    tiny: bool = False,
    precision: str = "fp32",
    options: dict | None = None,
) -> dict:
    """{"times": median seconds per configuration ("dense eager", "sparse compiled", ...),
    "compile_s": {"dense": s, "sparse": s}, "graph_breaks": {...}, "swapped": layers}.
    ``options``: torch.compile's inductor options (e.g. {"fallback_random": True}: dropout
    from ATen's generator, as eager draws it, instead of inductor's own)."""
    import torch._dynamo

    from . import benchmarks_hf as H
    from .benchmarks import alternating_medians

    steps, compile_s, breaks, swapped = {}, {}, {}, 0
    for kind in ("dense", "sparse"):
        model, opt, b, n = H.prepared(name, kind == "sparse", sparsity, tiny)
        swapped = max(swapped, n)
        breaks[kind] = torch._dynamo.explain(model)(**b).graph_break_count
        compiled = torch.compile(model, fullgraph=True, options=options)
        t = time.perf_counter()
        H.step(model, opt, b, precision)
        eager = time.perf_counter() - t
        t = time.perf_counter()
        H.step(compiled, opt, b, precision)  # compiles forward and backward
        compile_s[kind] = time.perf_counter() - t - eager
        for mode, m in (("eager", model), ("compiled", compiled)):
            steps[f"{kind} {mode}"] = lambda m=m, o=opt, b=b: H.step(m, o, b, precision)
    times = alternating_medians(steps, repeats)
    return {"times": times, "compile_s": compile_s, "graph_breaks": breaks, "swapped": swapped}

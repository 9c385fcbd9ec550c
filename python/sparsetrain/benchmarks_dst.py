"""What dynamic sparse training's updates cost (``bench/test_dynamic_sparsity.py``).

A model made sparse by :class:`DynamicSparsity` trains next to its dense twin (one step of
each in turn), with an update every second step, so that plain steps and update steps take
turns: an update step costs its training step (RigL's gradient capture runs during it) plus
``DynamicSparsity.step()``. Amortized over
``update_every`` steps, the overhead is (update step + update - plain step) / (update_every
* plain step).

Models: ResNet-18 (224², batch 32, SGD with momentum; every convolution but the first, batch
norms fused) and BERT-base (benchmarks_hf: 16 x 128 tokens, AdamW; the encoder's linears),
uniform sparsity.
"""

from __future__ import annotations

import time

import torch


def _configuration(name: str, tiny: bool):
    """(dense model, make_optimizer(model), step(model, opt), the layers DynamicSparsity takes
    (include / exclude), an example input for fuse_batch_norm or None)."""
    if name == "bert":
        from . import benchmarks_hf as H

        b = H.batch(name, tiny=tiny)
        return (
            H.build(name, tiny=tiny),
            lambda m: torch.optim.AdamW(m.parameters(), lr=1e-5),
            lambda m, o: H.step(m, o, b, "fp32"),
            dict(include=H._PRUNED[name]),
            None,
        )
    if name != "resnet18":
        raise ValueError(f"unknown model {name!r}: expected resnet18 or bert")
    from .benchmarks import synthetic_batch, train_step
    from .models import MODELS

    torch.manual_seed(0)
    classes = 10 if tiny else 1000
    x, y = synthetic_batch(2 if tiny else 32, 32 if tiny else 224, classes)
    return (
        MODELS[name](num_classes=classes),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9),
        lambda m, o: train_step(m, o, x, y),
        dict(exclude=["conv1", "fc"]),
        x,
    )


def update_cost(
    name: str,
    method: str = "rigl",
    sparsity: float = 0.9,
    repeats: int = 5,
    update_every: int = 100,
    tiny: bool = False,
) -> dict:
    """Median seconds of a plain step, an update step and the update itself, and the
    amortized overhead at ``update_every`` (a fraction of training time); and of a step of the
    dense model, timed in the same loop."""
    from . import DynamicSparsity, fuse_batch_norm

    dense, make_optimizer, step, layers, example = _configuration(name, tiny)
    dense_opt = make_optimizer(dense)
    model, _, _, _, _ = _configuration(name, tiny)
    opt = make_optimizer(model)
    # Updates at every second call, the drop fraction near its start all along.
    dst = DynamicSparsity(model, opt, sparsity, method, 2, 0.3, 10**9, "uniform", **layers, seed=0)
    if example is not None:
        fuse_batch_norm(model, example)
    model.train()
    dense.train()
    times = {"plain step": [], "update step": [], "update": [], "dense step": []}
    for i in range(2 * (repeats + 1)):
        t = time.perf_counter()
        step(dense, dense_opt)
        if i >= 2:
            times["dense step"].append(time.perf_counter() - t)
        t0 = time.perf_counter()
        step(model, opt)
        t1 = time.perf_counter()
        moved = dst.step()
        t2 = time.perf_counter()
        if i < 2:
            continue  # warm-up
        if moved:
            times["update step"].append(t1 - t0)
            times["update"].append(t2 - t1)
        else:
            times["plain step"].append(t1 - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    extra = med["update step"] + med["update"] - med["plain step"]
    return {
        **med,
        "overhead": extra / (update_every * med["plain step"]),
        "update_every": update_every,
        "layers": len(dst.layers),
        "nnz": sum(layer.nnz for layer in dst.layers.values()),
    }

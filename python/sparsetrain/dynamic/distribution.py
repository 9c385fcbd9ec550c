"""How many nonzeros each layer gets for an overall sparsity: uniform or Erdős–Rényi-Kernel."""

from __future__ import annotations

import math


def uniform_densities(shapes: dict, sparsity: float) -> dict:
    """{name: density}: every layer at ``1 - sparsity``."""
    return {name: 1.0 - float(sparsity) for name in shapes}


def erk_densities(shapes: dict, sparsity: float, power_scale: float = 1.0) -> dict:
    """{name: density} for the weight ``shapes`` ({name: dense weight shape}) by the
    Erdős–Rényi-Kernel rule (Evci et al., 2020): a layer's density is proportional to
    (sum of its dimensions / product of its dimensions) ** power_scale, scaled so that the
    layers together keep ``1 - sparsity`` of their weights. A layer the rule would make denser
    than 1 is dense (density 1) and the others are scaled again to make up for it."""
    total = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: (sum(shape) / total[name]) ** power_scale for name, shape in shapes.items()}
    budget = (1.0 - float(sparsity)) * sum(total.values())
    dense: set = set()
    while True:
        rest = budget - sum(total[n] for n in dense)
        weight = sum(raw[n] * total[n] for n in shapes if n not in dense)
        scale = rest / weight if weight > 0 else 0.0
        over = {n for n in shapes if n not in dense and scale * raw[n] > 1.0}
        if not over:
            break
        dense |= over
    return {n: 1.0 if n in dense else max(0.0, scale * raw[n]) for n in shapes}

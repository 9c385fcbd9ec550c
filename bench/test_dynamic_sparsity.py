"""What DynamicSparsity's updates cost, amortized over update_every=100 steps, on ResNet-18
and BERT-base at 90% (``sparsetrain.benchmarks_dst``): plain steps and update steps taking
turns, 2 threads, medians.

Run: python -m pytest bench/test_dynamic_sparsity.py --benchmark-only -s (BERT needs the hf
extra).
"""

import pytest

from sparsetrain import benchmarks_dst as D


@pytest.mark.parametrize("method", ["rigl", "set"])
@pytest.mark.parametrize("name", ["resnet18", "bert"])
def test_update_cost(benchmark, name, method):
    if name == "bert":
        pytest.importorskip("transformers")
    out = benchmark.pedantic(D.update_cost, args=(name, method, 0.9, 5), rounds=1, iterations=1)
    benchmark.extra_info.update(kind="dst", name=name, method=method, sparsity=0.9, **out)
    print(
        f"\n{name} {method} 90%: dense step {out['dense step'] * 1e3:.0f} ms, plain step "
        f"{out['plain step'] * 1e3:.0f} ms, update step "
        f"{out['update step'] * 1e3:.0f} ms + update {out['update'] * 1e3:.0f} ms; "
        f"overhead at every {out['update_every']}: {out['overhead']:.2%}"
    )

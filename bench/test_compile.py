"""torch.compile of a ResNet-18 and a BERT-base training step (fullgraph=True), dense and
sparse, eager and compiled, taking turns in one loop (``sparsetrain.benchmarks_compile``),
2 threads, medians; with each compiled model's compile time and the graph breaks dynamo
reports.

Run: python -m pytest bench/test_compile.py --benchmark-only -s (BERT needs the hf extra).
"""

import pytest

from sparsetrain import benchmarks_compile as C


def test_resnet18_compiled(benchmark):
    out = benchmark.pedantic(
        C.compile_step_times, args=("resnet18", 0.95, 5), rounds=1, iterations=1
    )
    benchmark.extra_info.update(kind="compile", name="resnet18", sparsity=0.95, **out)
    t = out["times"]
    print(
        "\nResNet-18 95%: "
        + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in t.items())
        + f"; compile s {out['compile_s']}; graph breaks {out['graph_breaks']}"
    )
    assert out["graph_breaks"] == {"dense": 0, "sparse": 0}


# Inductor's own dropout RNG (the default) or ATen's (fallback_random), which eager uses.
@pytest.mark.parametrize("fallback_random", [False, True])
@pytest.mark.parametrize("sparsity", [0.95])
def test_bert_compiled(benchmark, sparsity, fallback_random):
    pytest.importorskip("transformers")
    options = {"fallback_random": fallback_random}
    out = benchmark.pedantic(
        C.compile_step_times,
        args=("bert", sparsity, 3),
        kwargs={"options": options},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(kind="compile", name="bert", sparsity=sparsity, **out)
    t = out["times"]
    print(
        f"\nBERT-base {sparsity:.0%}, {options}: "
        + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in t.items())
        + f"; compile s {out['compile_s']}; graph breaks {out['graph_breaks']}"
    )
    assert out["graph_breaks"] == {"dense": 0, "sparse": 0}

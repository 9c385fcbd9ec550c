"""Transformer-scale linear layers in fp32 and bf16, and the BERT / Llama training steps:
dense and sparse in both precisions taking turns in one loop (the same measurement as
``sparsetrain bench --layers transformer`` / ``--models``), 2 threads, medians.

Run: python -m pytest bench/test_transformer.py --benchmark-only -s
(``-k layers`` or ``-k models`` for one part; the models need the hf extra). Each benchmark
times one alternating round set; the rows (ms per configuration, the fastest sparse against
the fastest dense, nonzero GFLOP/s) are printed at the end.
"""

import pytest

from sparsetrain import benchmarks as B
from sparsetrain.cli.bench import measure_linear

SPARSITIES = [0.8, 0.9, 0.95]
# The 2048- and 4096-token shapes (issue 18's targets); the CLI runs the whole grid.
SHAPES = [s for s in B.TRANSFORMER_SHAPES if s[0] in (2048, 4096)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-{s[2]}")
def test_layers(benchmark, shape):
    rows = benchmark.pedantic(
        measure_linear,
        args=(shape, SPARSITIES, 3, list(B.PRECISIONS)),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(kind="precision_rows", name=B.linear_name(shape), rows=rows)


@pytest.mark.parametrize("model", ["bert", "llama"])
def test_models(benchmark, model):
    pytest.importorskip("transformers")
    from sparsetrain import benchmarks_hf as H

    def run():
        return {s: H.step_times(model, s, list(B.PRECISIONS), 3) for s in (0.9, 0.95)}

    out = benchmark.pedantic(run, rounds=1, iterations=1)
    rows = [{"sparsity": s, **B.precision_row(r["times"], B.PRECISIONS)} for s, r in out.items()]
    benchmark.extra_info.update(kind="precision_rows", name=model, rows=rows)

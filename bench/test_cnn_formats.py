"""A ResNet-18 training step (224², batch 32, SGD with momentum, convolutions but the first
at 95% / 90%) dense and sparse, each in fp32 and under bf16 autocast, each NCHW and
channels_last, all taking turns (``sparsetrain.benchmarks_cnn``), 2 threads, medians; the
fastest sparse against the fastest dense configuration of the same precision.

Run: python -m pytest bench/test_cnn_formats.py --benchmark-only -s
"""

import pytest

from sparsetrain import benchmarks_cnn as C


@pytest.mark.parametrize("sparsity", [0.95, 0.9])
def test_resnet18_every_configuration(benchmark, sparsity):
    out = benchmark.pedantic(
        C.format_step_times, args=("resnet18", sparsity, 3), rounds=1, iterations=1
    )
    benchmark.extra_info.update(kind="cnn_formats", name="resnet18", sparsity=sparsity, **out)
    t = out["times"]
    print(
        f"\nResNet-18 {sparsity:.0%}: "
        + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in t.items())
        + "; "
        + ", ".join(
            f"{p}: sparse {out['best'][f'sparse {p}']} vs dense {out['best'][f'dense {p}']} "
            f"{out['ratio'][p]:.2f}x"
            for p in C.PRECISIONS
        )
    )

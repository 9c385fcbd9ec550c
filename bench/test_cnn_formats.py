"""CNN training steps (224², batch 32, SGD with momentum, convolutions but the first pruned)
dense and sparse, each in fp32 and under bf16 autocast, each NCHW and channels_last, all
taking turns (``sparsetrain.benchmarks_cnn``), 2 threads, medians; the fastest sparse against
the fastest dense configuration of the same precision, and the peak memory of each
configuration's step (each in a fresh process). ResNet-18 at 95% and 90%, ResNet-50 at 95%
and 90%, MobileNetV2 at 90%.

Run: python -m pytest bench/test_cnn_formats.py --benchmark-only -s
"""

import pytest

from sparsetrain import benchmarks_cnn as C

NAMES = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "mobilenetv2": "MobileNetV2"}


@pytest.mark.parametrize(
    "name,sparsity",
    [
        ("resnet18", 0.95),
        ("resnet18", 0.9),
        ("resnet50", 0.95),
        ("resnet50", 0.9),
        ("mobilenetv2", 0.9),
    ],
)
def test_every_configuration(benchmark, name, sparsity):
    out = benchmark.pedantic(C.format_step_times, args=(name, sparsity, 3), rounds=1, iterations=1)
    peaks = C.format_step_memory(name, sparsity)
    benchmark.extra_info.update(
        kind="cnn_formats", name=name, sparsity=sparsity, peak_mb=peaks, **out
    )
    t = out["times"]
    print(
        f"\n{NAMES[name]} {sparsity:.0%}: "
        + ", ".join(f"{k} {v * 1e3:.0f} ms ({peaks[k]:.0f} MB)" for k, v in t.items())
        + "; "
        + ", ".join(
            f"{p}: sparse {out['best'][f'sparse {p}']} vs dense {out['best'][f'dense {p}']} "
            f"{out['ratio'][p]:.2f}x"
            for p in C.PRECISIONS
        )
    )

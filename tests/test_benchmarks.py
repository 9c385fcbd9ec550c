"""The end-to-end benchmark's measuring loop (sparsetrain.benchmarks.alternating_steps), on a
tiny ResNet-18 run: what it returns, and when its warm-up stops."""

import pytest

from sparsetrain import benchmarks as B

TINY = dict(name="resnet18", batch=2, image_size=32)


def _fake_peak(monkeypatch, per_round):
    """_peak_rss_kb as a counter that grows by per_round[k] during warm-up round k (read
    before and after each round), then stays put."""
    state = {"reads": 0, "total": 0}

    def peak():
        k = state["reads"] // 2  # two reads per warm-up round
        if state["reads"] % 2 == 1 and k < len(per_round):
            state["total"] += per_round[k]
        state["reads"] += 1
        return state["total"]

    monkeypatch.setattr(B, "_peak_rss_kb", peak)


def test_result_shape():
    r = B.alternating_steps(rounds=3, warmup=1, max_warmup=4, **TINY)
    assert r["dense_ms"] > 0 and r["sparse_ms"] > 0
    assert len(r["ratios"]) == 3 and r["ratios"] == sorted(r["ratios"])
    assert 1 <= r["warmup_rounds"] <= 4


@pytest.mark.parametrize(
    "per_round, warmup, max_warmup, expected",
    [
        ([600_000, 230_000, 60_000, 10, 0], 2, 10, 4),  # the process stops growing in round 4
        ([600_000, 0, 0], 2, 10, 2),  # steady early: the minimum still holds
        ([100_000] * 20, 2, 5, 5),  # never steady: capped
        ([B._STEADY_GROWTH_KB, B._STEADY_GROWTH_KB - 1], 1, 10, 2),  # the threshold is exclusive
    ],
)
def test_warmup_lasts_until_the_process_stops_growing(
    monkeypatch, per_round, warmup, max_warmup, expected
):
    _fake_peak(monkeypatch, per_round)
    r = B.alternating_steps(rounds=1, warmup=warmup, max_warmup=max_warmup, **TINY)
    assert r["warmup_rounds"] == expected


def test_cnn_formats_benchmark_names_the_fastest_configurations():
    from sparsetrain import benchmarks_cnn

    out = benchmarks_cnn.format_step_times("resnet18", 0.9, repeats=1, tiny=True)
    t = out["times"]
    assert len(t) == 8 and min(t.values()) > 0  # 2 kinds x 2 precisions x 2 formats
    for p in ("fp32", "bf16"):
        dense = min(v for k, v in t.items() if k.startswith(f"dense {p} "))
        sparse = min(v for k, v in t.items() if k.startswith(f"sparse {p} "))
        assert out["ratio"][p] == pytest.approx(dense / sparse)
        assert t[f"dense {p} {out['best'][f'dense {p}']}"] == dense

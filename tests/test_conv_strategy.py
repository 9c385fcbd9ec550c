"""How a SparseConv2d picks its kernel layout: "auto" by a rule of the shapes (the same
layout, so the same bits, for any thread count, ISA timing or process), "timed" by measuring
once per batch-size range and plane size; per-shape plans are bounded."""

import threading

import pytest
import torch

import sparsetrain as st
import sparsetrain.nn.conv_plans as conv_plans
from sparsetrain.formats.conv import conv_shape
from sparsetrain.functional import conv_autotune


def _layer(strategy="auto", **kw):
    torch.manual_seed(0)
    return st.SparseConv2d(8, 8, 3, padding=1, sparsity=0.8, strategy=strategy, **kw)


@pytest.fixture
def count_timings(monkeypatch):
    calls = []
    real = conv_plans.time_layouts

    def counting(layouts, *a, **k):
        calls.append(tuple(layout.name for layout in layouts))
        return real(layouts, *a, **k)

    monkeypatch.setattr(conv_plans, "time_layouts", counting)
    return calls


@pytest.mark.parametrize(
    "batch,hw,stride",
    [(32, 56, 1), (32, 14, 1), (32, 7, 1), (8, 7, 1), (16, 28, 2), (32, 28, 2), (1, 5, 1)],
)
def test_auto_layout_and_bits_do_not_depend_on_the_thread_count(batch, hw, stride, count_timings):
    layer = _layer(stride=stride)
    x = torch.randn(batch, 8, hw, hw, requires_grad=True)
    before = st.get_num_threads()
    results, chosen = [], []
    try:
        for threads in (1, 2, 3):
            st.set_num_threads(threads)
            fresh = _layer(stride=stride)  # a first call at each thread count
            y = fresh(x)
            y.backward(torch.ones_like(y))
            results.append((y.detach(), x.grad.clone(), fresh.values.grad.clone()))
            chosen.append(dict(fresh._plans.chosen))
            x.grad = None
    finally:
        st.set_num_threads(before)
    assert chosen[0] == chosen[1] == chosen[2]
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert torch.equal(a, b)
    assert count_timings == []  # nothing was timed
    s = conv_shape(layer._geometry, hw, hw)
    isa = st.get_isa()
    expected = conv_autotune.auto_strategy(layer._geometry, s, batch, isa)
    assert next(iter(chosen[0].values())) == expected
    most = 196 if isa.startswith("avx512") else 49
    assert expected == ("batch" if batch >= 16 and s.Ho * s.Wo <= most else "plane")


@pytest.mark.parametrize("stride", [1, 2])
def test_auto_keeps_1x1_convolutions_on_nchw_as_it_is(stride):
    layer = st.SparseConv2d(8, 8, 1, stride=stride, sparsity=0.8)
    layer(torch.randn(32, 8, 14, 14))  # 7x7 after a stride of 2: still in place
    assert list(layer._plans.chosen.values()) == ["plane"]


def test_auto_layout_follows_the_isa(isa):
    layer = _layer()
    x = torch.randn(32, 8, 14, 14)
    layer(x)
    assert list(layer._plans.chosen.values()) == ["batch" if isa.startswith("avx512") else "plane"]


def test_timed_decides_once_per_batch_range_whatever_the_thread_count(count_timings):
    layer = _layer("timed")
    before = st.get_num_threads()
    try:
        st.set_num_threads(1)
        layer(torch.randn(32, 8, 10, 10))
        st.set_num_threads(3)
        layer(torch.randn(32, 8, 10, 10))
        layer(torch.randn(30, 8, 10, 10))  # 17-32: the same range
        assert len(count_timings) == 1
        layer(torch.randn(33, 8, 10, 10))
        assert len(count_timings) == 2
    finally:
        st.set_num_threads(before)


def test_concurrent_first_timed_calls_time_once(count_timings):
    layer = _layer("timed")
    x = torch.randn(16, 8, 9, 9)
    out = [None] * 4
    go = threading.Barrier(4)

    def worker(i):
        go.wait()
        out[i] = layer(x)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(count_timings) == 1
    for y in out[1:]:
        assert torch.equal(y, out[0])


@pytest.mark.parametrize("strategy", ["auto", "timed", "plane"])
def test_plans_are_bounded_for_inputs_of_varying_shape(strategy, count_timings):
    layer = _layer(strategy)
    for i in range(40):
        layer(torch.randn(1 + i % 5, 8, 6 + i, 7))
        assert len(layer._plans.indices) <= st.tuning.PLAN_CACHE_SIZE
        assert len(layer._plans.layouts) <= st.tuning.PLAN_CACHE_SIZE
        assert len(layer._plans.chosen) <= 40
    # The most recent shape's plan is kept and reused.
    x = torch.randn(5, 8, 45, 7)
    layer(x)
    index = layer._plans.indices.get((45, 7))
    layer(x)
    assert layer._plans.indices.get((45, 7)) is index
    if strategy == "timed":
        # One timing per (batch range, plane size): 40 plane sizes here, and shapes that come
        # back are not timed again although their plans were dropped.
        assert len(count_timings) <= 41
        before = len(count_timings)
        for i in range(40):
            layer(torch.randn(1 + i % 5, 8, 6 + i, 7))
        assert len(count_timings) == before


def test_strategy_is_checked():
    with pytest.raises(ValueError, match="strategy must be one of"):
        _layer("fastest")


@pytest.mark.parametrize(
    "kw,shape",
    [
        (dict(), (32, 8, 14, 14)),
        (dict(), (4, 8, 9, 9)),
        (dict(stride=2), (32, 8, 28, 28)),
        (dict(padding_mode="reflect"), (32, 8, 12, 12)),
        (dict(), (8, 14, 14)),
    ],
)
def test_strategy_for_tells_what_auto_runs_before_and_after_the_call(kw, shape):
    layer = _layer(**kw)
    before = layer.strategy_for(shape)
    layer(torch.randn(shape))
    assert list(layer._plans.chosen.values()) == [before]
    assert layer.strategy_for(torch.Size(shape)) == before


@pytest.mark.parametrize("stride", [1, 2])
def test_strategy_for_a_1x1_strided_layer_sees_the_subsampled_plane(stride):
    layer = st.SparseConv2d(8, 8, 1, stride=stride, sparsity=0.8)
    assert layer.strategy_for((32, 8, 14, 14)) == "plane"  # in place on NCHW
    layer.strategy = "direct"  # stride 1 after subsampling: the direct kernels run it
    assert layer.strategy_for((32, 8, 14, 14)) == "direct"
    layer(torch.randn(32, 8, 14, 14))
    assert list(layer._plans.layouts)[-1][3] == "direct"


def test_strategy_for_timed_is_known_once_timed(count_timings):
    layer = _layer("timed")
    assert layer.strategy_for((16, 8, 10, 10)) is None
    layer(torch.randn(16, 8, 10, 10))
    chosen = layer.strategy_for((16, 8, 10, 10))
    assert chosen in ("direct", "plane", "batch") and len(count_timings) == 1
    assert layer.strategy_for((12, 8, 10, 10)) == chosen  # the same batch-size range
    assert layer.strategy_for((32, 8, 10, 10)) is None


@pytest.mark.parametrize("strategy", ["direct", "plane", "batch"])
def test_strategy_for_a_fixed_strategy_is_that_strategy(strategy):
    assert _layer(strategy).strategy_for((2, 8, 10, 10)) == strategy


@pytest.mark.parametrize("shape", [(2, 3, 10, 10), (10, 10), (2, 8, 1, 1)])
def test_strategy_for_refuses_shapes_the_layer_cannot_take(shape):
    with pytest.raises(ValueError, match=r"SparseConv2d\(8->8, 3x3\)"):
        st.SparseConv2d(8, 8, 3, sparsity=0.8).strategy_for(shape)


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1), dict(stride=(1, 3))])
def test_direct_on_a_strided_convolution_is_refused_naming_the_layer(kw):
    """The direct kernels are stride-1 only: asking for them never runs another layout."""
    match = r"SparseConv2d\(8->8, 3x3\): strategy 'direct' runs stride-1 convolutions only"
    with pytest.raises(ValueError, match=match):
        st.SparseConv2d(8, 8, 3, strategy="direct", **kw)
    with pytest.raises(ValueError, match=match):
        st.SparseConv2d.from_dense(torch.nn.Conv2d(8, 8, 3, **kw), strategy="direct")
    layer = st.SparseConv2d(8, 8, 3, **kw)
    assert "direct" not in layer.strategies and set(layer.strategies) == {
        "auto",
        "timed",
        "plane",
        "batch",
    }
    with pytest.raises(ValueError, match=match):
        layer.strategy = "direct"
    assert layer.strategy == "auto"  # unchanged


@pytest.mark.parametrize("kw", [dict(), dict(kernel_size=1, stride=2)])
def test_direct_runs_where_the_kernels_see_stride_1(kw):
    kw = dict(dict(kernel_size=3, padding=1), **kw)
    if kw["kernel_size"] == 1:
        kw.pop("padding")
    layer = st.SparseConv2d(8, 8, strategy="direct", sparsity=0.8, **kw)
    assert "direct" in layer.strategies
    x = torch.randn(2, 8, 9, 9)
    layer(x)
    assert [key[3] for key in layer._plans.layouts] == ["direct"]
    assert layer.strategy_for(x.shape) == "direct"


def test_strategy_survives_copies_and_pickles():
    import copy
    import pickle

    layer = _layer("batch")
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert other.strategy == "batch" and "strategy='batch'" in repr(other)

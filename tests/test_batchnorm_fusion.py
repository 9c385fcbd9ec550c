"""Batch norm fused with the sparse convolution in front of it (sparsetrain/nn/batchnorm.py):
the same outputs, gradients and running statistics as nn.Conv2d + nn.BatchNorm2d, and a
plain nn.BatchNorm2d computation whenever the statistics cannot be trusted."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import sparsetrain as st
from helpers import assert_close, forward_backward


class ConvBN(nn.Module):
    def __init__(self, conv, bn, between=None):
        super().__init__()
        self.conv, self.bn, self.between = conv, bn, between

    def forward(self, x):
        y = self.conv(x)
        if self.between is not None:
            y = self.between(y)
        return torch.relu(self.bn(y))


def pruned_pair(
    stride=1, bias=False, affine=True, momentum=0.1, track=True, cin=5, cout=7, kernel=3
):
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) > 0.7)
    bn = nn.BatchNorm2d(cout, affine=affine, momentum=momentum, track_running_stats=track)
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return ConvBN(conv, bn)


def fused_twin(dense: ConvBN, x, strategy="auto"):
    sparse = copy.deepcopy(dense)
    sparse.conv = st.SparseConv2d.from_dense(dense.conv, strategy=strategy)
    assert st.fuse_batch_norm(sparse, x) == [("conv", "bn")]
    assert type(sparse.bn) is st.FusedBatchNorm2d and sparse.conv.batch_norm_stats
    return sparse


@pytest.fixture
def fused_calls(monkeypatch):
    """A list that grows by one each time a batch norm normalizes with the convolution's
    statistics (the fused path)."""
    calls = []
    orig = st.nn.batchnorm._NormalizeWithStats.apply
    monkeypatch.setattr(
        st.nn.batchnorm._NormalizeWithStats, "apply", lambda *a: calls.append(1) or orig(*a)
    )
    return calls


def compare(sparse, dense, x, g, what):
    ys, dxs = forward_backward(sparse, x, g)
    yd, dxd = forward_backward(dense, x, g)
    assert_close(ys, yd, f"{what}: output")
    assert_close(dxs, dxd, f"{what}: input gradient")
    mask = dense.conv.weight.detach() != 0
    assert_close(sparse.conv.values.grad, dense.conv.weight.grad[mask], f"{what}: values gradient")
    for name in ("weight", "bias"):
        ps, pd = getattr(sparse.bn, name), getattr(dense.bn, name)
        if pd is not None:
            assert_close(ps.grad, pd.grad, f"{what}: batch norm {name} gradient")
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        bs, bd = getattr(sparse.bn, name), getattr(dense.bn, name)
        if bd is not None:
            assert_close(bs.float(), bd.float(), f"{what}: {name}", rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", ["plane", "batch"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("batch", [3, 17])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_matches_conv_and_batchnorm(isa, strategy, stride, batch, bias, fused_calls):
    """Three training steps and an inference step: every output, gradient and running
    statistic as nn.Conv2d + nn.BatchNorm2d (plane layout with and without the kernels'
    own packing, the 16-image batch layout with a partial group, strided)."""
    dense = pruned_pair(stride=stride, bias=bias)
    x = torch.randn(batch, 5, 9, 11)
    sparse = fused_twin(dense, x, strategy)
    for i in range(3):
        x = torch.randn(batch, 5, 9, 11) * (1 + i) + i  # a mean far from 0 too
        g = torch.randn(dense.conv(x).shape)  # (the convolution alone: no BN update)
        compare(sparse, dense, x, g, f"step {i}")
    assert len(fused_calls) >= 3, "the fused path was not taken"
    sparse.eval(), dense.eval()
    with torch.no_grad():
        assert_close(sparse(x), dense(x), "inference with the running statistics")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_after_1x1(isa, stride, bias, fused_calls):
    """A 1x1 convolution (strided: on the subsampled input) is a product on NCHW as it is;
    its kernel sums the rows it writes, and the bias added afterwards is added to the sums."""
    dense = pruned_pair(stride=stride, bias=bias, kernel=1)
    x = torch.randn(6, 5, 8, 8)
    sparse = fused_twin(dense, x, "plane")
    for i in range(2):
        x = torch.randn(6, 5, 8, 8) + i
        compare(sparse, dense, x, torch.randn(dense.conv(x).shape), f"step {i}")
    assert len(fused_calls) == 2, "the fused path was not taken"


@pytest.mark.parametrize(
    "affine, momentum, track", [(False, 0.1, True), (True, None, True), (True, 0.1, False)]
)
def test_fused_batchnorm_options(affine, momentum, track):
    """No affine parameters, a cumulative moving average (momentum None), no running
    statistics at all: as nn.BatchNorm2d."""
    dense = pruned_pair(affine=affine, momentum=momentum, track=track)
    x = torch.randn(6, 5, 8, 8)
    sparse = fused_twin(dense, x, "plane")
    for i in range(3):
        x = torch.randn(6, 5, 8, 8) + i
        compare(sparse, dense, x, torch.randn(6, 7, 8, 8), f"step {i}")


def test_in_place_change_between_conv_and_norm_is_seen():
    """The statistics describe the output as the kernel wrote it: an in-place change before
    the batch norm (version counter) makes it compute them itself."""
    dense = pruned_pair()
    x = torch.randn(8, 5, 9, 9)
    sparse = fused_twin(dense, x, "plane")  # (fuse_batch_norm itself would not pair them)
    dense.between = sparse.between = lambda y: y.mul_(2.0).add_(3.0)
    compare(sparse, dense, x, torch.randn(8, 7, 9, 9), "changed in place")


def test_stats_need_a_finite_batch():
    """A NaN in x takes the convolution's dense fallback; the batch norm then computes its
    statistics itself (NaN, as nn.BatchNorm2d gives)."""
    dense = pruned_pair()
    x = torch.randn(8, 5, 9, 9)
    sparse = fused_twin(dense, x, "plane")
    x[2, 1, 4, 4] = float("nan")
    with torch.no_grad():
        ys, yd = sparse(x), dense(x)
    assert torch.equal(torch.isnan(ys), torch.isnan(yd))
    assert_close(
        sparse.bn.running_mean.nan_to_num(7.0),
        dense.bn.running_mean.nan_to_num(7.0),
        "running mean after a NaN batch",
    )


def test_channel_far_from_zero_uses_plain_statistics(fused_calls):
    """Sums of squares cancel when a channel's mean dwarfs its spread: then the batch norm
    computes the statistics itself, and the result still matches nn.BatchNorm2d."""
    dense = pruned_pair(bias=True)
    with torch.no_grad():
        dense.conv.bias[3] = 1000.0
    x = torch.randn(8, 5, 9, 9)
    sparse = fused_twin(dense, x, "plane")
    g = torch.randn(8, 7, 9, 9)
    # The fused batch norm falls back to the statistics nn.BatchNorm2d computes: the same
    # numbers as the plain batch norm on the same sparse convolution. (Against the dense
    # model only loosely: the convolutions round a channel near 1000 differently, and the
    # ReLU after the normalization can flip for an element sitting on its kink.)
    plain = copy.deepcopy(dense)
    plain.conv = copy.deepcopy(sparse.conv)
    plain.conv.batch_norm_stats = False
    ys, dxs = forward_backward(sparse, x, g)
    yp, dxp = forward_backward(plain, x, g)
    assert torch.equal(ys, yp) and torch.equal(dxs, dxp)
    yd, _ = forward_backward(dense, x, g)
    assert_close(ys, yd, "mean 1000: output", rtol=1e-3, atol=1e-3)
    assert not fused_calls


def test_unbatched_and_eval_inputs_use_plain_batchnorm():
    dense = pruned_pair()
    x = torch.randn(4, 5, 9, 9)
    sparse = fused_twin(dense, x, "plane")
    compare(sparse, dense, x, torch.randn(4, 7, 9, 9), "batched")
    sparse.conv.eval()  # the convolution sums nothing outside training mode
    compare(sparse, dense, x, torch.randn(4, 7, 9, 9), "convolution in eval mode")


def test_same_bits_for_any_thread_count():
    """Each (image, channel) sum comes from one thread in a fixed order, and images are
    added in order: the fused output does not depend on the thread count."""
    dense = pruned_pair(cin=16, cout=24)
    x = torch.randn(20, 16, 12, 12)
    sparse = fused_twin(dense, x, "batch")
    outs = []
    try:
        for threads in (1, 2, 3):
            st.set_num_threads(threads)
            model = copy.deepcopy(sparse)
            outs.append(forward_backward(model, x, torch.ones(20, 24, 12, 12)))
    finally:
        st.set_num_threads(None)  # follow torch again, as every test starts
    for y, dx in outs[1:]:
        assert torch.equal(y, outs[0][0]) and torch.equal(dx, outs[0][1])


def test_sparsify_fuses_resnet_and_leaves_running_statistics_alone():
    """sparsify with example inputs fuses every batch norm behind a sparse convolution (the
    ResNet-18 stem's stays plain), keeps the batch-norm state_dict keys, and its own
    example run changes no running statistic; densify makes them plain again."""
    from sparsetrain.benchmarks import pruned_resnet

    model = pruned_resnet(sparsity=0.9, num_classes=10)
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    report = st.sparsify(model, example_inputs=x, min_sparsity=0.5, only_if_faster=False)
    assert len(report.fused_batch_norms) == 19
    assert ("layer1.0.conv1", "layer1.0.bn1") in report.fused_batch_norms
    assert report.to_dict()["fused_batch_norms"][0] == ["layer1.0.conv1", "layer1.0.bn1"]
    assert type(model.bn1) is nn.BatchNorm2d
    assert type(model.layer3[0].downsample[1]) is st.FusedBatchNorm2d
    after = model.state_dict()
    for k, v in before.items():
        if ".bn" in k or "downsample.1" in k or k.startswith("bn1"):
            assert torch.equal(after[k], v), k
    st.densify(model)
    assert not any(type(m) is st.FusedBatchNorm2d for m in model.modules())
    assert (
        st.sparsify(
            pruned_resnet(sparsity=0.9, num_classes=10),
            example_inputs=x,
            min_sparsity=0.5,
            only_if_faster=False,
            batch_norm=False,
        ).fused_batch_norms
        == []
    )


def test_stats_binding_checks():
    from sparsetrain import _C

    ptr = np.array([0, 1], dtype=np.int64)
    off = np.array([0], dtype=np.int64)
    val = np.ones(1, dtype=np.float32)
    b = np.arange(8, dtype=np.float32)
    c = np.zeros(8, dtype=np.float32)
    common = dict(
        ptr=ptr,
        offsets=off,
        values=val,
        pos=None,
        scratch=None,
        b=b,
        b_image_stride=4,
        c=c,
        ldc=4,
        c_image_stride=4,
        len=4,
        images=2,
        nthreads=1,
    )
    planes = dict(grid_w=2, plane_h=2, plane_w=2)

    def call(**kw):
        return _C.spmm_offsets_planes(**common, **planes, **kw)

    stats = np.full(4, 7.0)
    call(stats=stats)  # 2 images x 1 row, 2 x 2 planes
    np.testing.assert_allclose(
        stats, [0 + 1 + 2 + 3, 0 + 1 + 4 + 9, 4 + 5 + 6 + 7, 16 + 25 + 36 + 49]
    )
    rows = np.full(4, 7.0)
    _C.spmm_offsets_rows(**common, stats=rows)  # into rows: the same values, the same sums
    np.testing.assert_array_equal(rows, stats)
    merge = _C.ConvInputLayout(n=2, c=1, unit=1, h=2, w=2, sh=1, sw=1, pt=0, pl=0, hq=2, wq=2)
    no_ldc = {k: v for k, v in common.items() if k != "ldc"}
    _C.spmm_offsets_merge(**no_ldc, merge=merge)
    with pytest.raises(TypeError):  # an input gradient form: no batch norm statistics
        _C.spmm_offsets_merge(**no_ldc, merge=merge, stats=stats)
    with pytest.raises(ValueError, match="images \\* rows \\* 2"):
        call(stats=np.zeros(3))
    with pytest.raises(ValueError, match="float64"):
        call(stats=np.zeros(4, dtype=np.float32))
    empty = np.full(4, 7.0)
    _C.spmm_offsets_planes(**dict(common, len=0), **planes, stats=empty)
    np.testing.assert_array_equal(empty, 0.0)  # nothing written: zero sums


def test_autocast_takes_plain_batchnorm():
    """Under CPU autocast the batch norm is nn.BatchNorm2d's, as in the unfused model."""
    dense = pruned_pair()
    x = torch.randn(6, 5, 8, 8)
    sparse = fused_twin(dense, x, "plane")
    plain = copy.deepcopy(sparse)
    plain.bn.__class__ = nn.BatchNorm2d
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = sparse(x), plain(x)
    assert a.dtype == b.dtype
    assert torch.equal(a, b)
    assert torch.equal(sparse.bn.running_mean, plain.bn.running_mean)


@pytest.mark.parametrize("inplace", [False, True])
def test_only_direct_pairs_are_fused(inplace):
    """A batch norm that sees the convolution's output through another op (even an in-place
    one, which hands on the same tensor) is left as it is."""
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) > 0.7)
    model = nn.Sequential(
        st.SparseConv2d.from_dense(conv),
        nn.ReLU(inplace=inplace),
        nn.BatchNorm2d(6),
        st.SparseConv2d.from_dense(nn.Conv2d(6, 6, 1, bias=False)),
        nn.BatchNorm2d(6),
    )
    assert st.fuse_batch_norm(model, torch.randn(2, 4, 5, 5)) == [("3", "4")]
    assert type(model[2]) is nn.BatchNorm2d and not model[0].batch_norm_stats

"""SparseConv2d on channels_last (NHWC) inputs: the kernels read and write NHWC themselves.
Outputs and every gradient as nn.Conv2d, in the input's memory format, with the same bits
as the NCHW run of the same layer; the layout changes' NHWC packs equal to the NCHW packs of
the same tensor; fused batch norm in both formats."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import sparsetrain as st
from helpers import assert_close, forward_backward
from sparsetrain import _C

CL = torch.channels_last


def pruned_conv(cin, cout, k, sparsity=0.6, **kw):
    conv = nn.Conv2d(cin, cout, k, **kw)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) >= sparsity)
    return conv


def is_cl(t):
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def run_formats(conv, x, strategy):
    """The sparse layer on x in NCHW and in channels_last, and nn.Conv2d on x: outputs and
    gradients compared; channels_last results are channels_last and equal the NCHW ones."""
    sp = st.SparseConv2d.from_dense(conv, strategy=strategy)
    g = torch.randn_like(conv(x))
    out = {}
    for fmt in ("nchw", "cl"):
        xs = x.clone(memory_format=CL if fmt == "cl" else torch.contiguous_format)
        xs.requires_grad_()
        sp.zero_grad()
        y = sp(xs)
        y.backward(g.contiguous(memory_format=CL) if fmt == "cl" else g)
        out[fmt] = (y.detach(), xs.grad, sp.values.grad.clone())
    xd = x.clone().requires_grad_()
    conv.zero_grad()
    yd = conv(xd)
    yd.backward(g)
    y, dx, dv = out["cl"]
    assert is_cl(y) and is_cl(dx), "channels_last in, channels_last out"
    assert_close(y, yd, "output")
    assert_close(dx, xd.grad, "input gradient")
    mask = conv.weight.detach() != 0
    assert_close(dv, conv.weight.grad[mask], "values gradient", rtol=1e-4, atol=1e-4)
    # The same products as the NCHW kernels (in the same order where both run the same
    # form; a 1x1 layer runs in place on NCHW only).
    for a, b, what in zip(out["cl"], out["nchw"], ("output", "input gradient", "values gradient")):
        assert_close(a, b, f"{what} vs NCHW", rtol=1e-6, atol=1e-6)
    return sp


@pytest.fixture
def layout_strategy(request, monkeypatch):
    """As in test_conv.py: "plane" with the kernels packing each image themselves,
    "plane-prepacked" with the input packed beforehand."""
    from sparsetrain import tuning

    name = request.param
    if name.startswith("plane"):
        monkeypatch.setattr(tuning, "FUSED_PACK", name == "plane")
    return name.split("-")[0]


STRATEGIES = ["plane", "plane-prepacked", "batch", "direct"]


@pytest.mark.parametrize("layout_strategy", STRATEGIES, indirect=True)
@pytest.mark.parametrize(
    "cin,cout,k,stride,padding,dilation",
    [
        (16, 32, 3, 1, 1, 1),  # whole 16-channel blocks
        (5, 7, 3, 1, 1, 1),  # partial blocks only
        (21, 19, 3, 2, 1, 1),  # strided: the merge form / unpacking
        (33, 17, 5, 1, 2, 2),  # dilated, a 1-channel last block
        (20, 24, 1, 1, 0, 1),  # 1x1: NCHW runs it in place, NHWC packs
        (20, 24, 1, 2, 0, 1),  # 1x1 strided: on the subsampled input
        (24, 40, 3, 2, 0, 1),  # unpadded strided
        (8, 6, (1, 7), 3, (0, 3), 1),  # stride 3, a wide kernel
    ],
)
def test_matches_nn_conv2d(isa, layout_strategy, cin, cout, k, stride, padding, dilation):
    if layout_strategy == "direct" and (stride != 1 and k != 1):
        pytest.skip("the direct kernels are stride-1 only")
    torch.manual_seed(cin * 100 + cout)
    conv = pruned_conv(cin, cout, k, stride=stride, padding=padding, dilation=dilation)
    run_formats(conv, torch.randn(3, cin, 13, 11), layout_strategy)


@pytest.mark.parametrize("layout_strategy", ["plane", "plane-prepacked", "batch"], indirect=True)
@pytest.mark.parametrize("batch", [1, 5, 17, 33])
def test_batch_sizes(isa, layout_strategy, batch):
    """Partial 16-image groups of the batch layout; a last pixel block at the tensor's end."""
    run_formats(pruned_conv(18, 7, 3, padding=1), torch.randn(batch, 18, 9, 19), layout_strategy)


@pytest.mark.parametrize("strategy", ["plane", "batch"])
def test_wide_rows_and_no_bias(isa, strategy):
    """Rows longer than the 256-pixel staging segment."""
    run_formats(pruned_conv(17, 4, (1, 3), padding=(0, 1)), torch.randn(18, 17, 2, 300), strategy)
    run_formats(pruned_conv(16, 16, 3, stride=2, bias=False), torch.randn(4, 16, 7, 9), strategy)


def test_nonfinite_inputs_propagate_as_nn_conv2d():
    conv = pruned_conv(16, 8, 3, padding=1)
    sp = st.SparseConv2d.from_dense(conv)
    x = torch.randn(4, 16, 8, 8)
    x[1, 3, 2, 2] = float("nan")
    x[2, 0, 0, 0] = float("inf")
    ys, yd = sp(x.contiguous(memory_format=CL)), conv(x)
    assert is_cl(ys)
    torch.testing.assert_close(ys, yd, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_memory_format_follows_each_input():
    """One layer, inputs of both formats in turn; ambiguous shapes (one channel, 1x1 planes)
    count as NCHW, as their outputs are both."""
    conv = pruned_conv(16, 8, 3, padding=1)
    sp = st.SparseConv2d.from_dense(conv)
    x = torch.randn(2, 16, 6, 6)
    assert is_cl(sp(x.contiguous(memory_format=CL)))
    assert sp(x).is_contiguous()
    assert is_cl(sp(x.contiguous(memory_format=CL)))
    one = st.SparseConv2d.from_dense(pruned_conv(16, 8, 1))
    y = one(torch.randn(2, 16, 1, 1).contiguous(memory_format=CL))
    assert y.is_contiguous() and y.is_contiguous(memory_format=CL)


@pytest.mark.parametrize("strategy", ["plane", "batch"])
def test_one_output_channel(isa, strategy):
    """One output channel: y is NCHW and channels_last at once (the kernels then write plain
    planes), dx still channels_last."""
    conv = pruned_conv(16, 1, 3, padding=1)
    sp = st.SparseConv2d.from_dense(conv, strategy=strategy)
    x = torch.randn(17, 16, 5, 6).contiguous(memory_format=CL)
    xs, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    ys, yd = sp(xs), conv(xd)
    assert_close(ys, yd, "output")
    ys.sum().backward()
    yd.sum().backward()
    assert is_cl(xs.grad)
    assert_close(xs.grad, xd.grad, "input gradient")


def _pack_pair(n, c, h, w, unit, sh, sw, pt, pl):
    hq, wq = -(-(h + pt + 1) // sh), -(-(w + pl + 1) // sw)
    kw = dict(n=n, c=c, unit=unit, h=h, w=w, sh=sh, sw=sw, pt=pt, pl=pl, hq=hq, wq=wq)
    return _C.ConvInputLayout(**kw), _C.ConvInputLayout(**kw, nhwc=True)


@pytest.mark.parametrize("unit", [1, 16])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("n,c", [(3, 5), (17, 16), (2, 33)])
def test_layout_changes_read_and_write_nhwc(isa, unit, stride, n, c):
    """conv_pack_input / conv_unpack_grad_input / conv_pack_grad_output on an NHWC tensor
    with an nhwc layout: the same packed buffers (and channel sums) as on its NCHW copy."""
    h, w = 7, 19
    lay, lay_cl = _pack_pair(n, c, h, w, unit, stride, stride, 1, 2)
    x = torch.randn(n, c, h, w)
    x_cl = x.permute(0, 2, 3, 1).contiguous()
    size = lay.groups * c * stride * stride * lay.hq * lay.wq * unit
    packed, packed_cl = np.full(size, 7.0, np.float32), np.full(size, -7.0, np.float32)
    f = _C.conv_pack_input(
        x=x.numpy().ravel(), packed=packed, layout=lay, nthreads=2, check_finite=True
    )
    f_cl = _C.conv_pack_input(
        x=x_cl.numpy().ravel(), packed=packed_cl, layout=lay_cl, nthreads=2, check_finite=True
    )
    assert f is True and f_cl is True
    np.testing.assert_array_equal(packed_cl, packed)
    back = np.full(x.numel(), 3.0, np.float32)
    _C.conv_unpack_grad_input(x=back, packed=packed, layout=lay_cl, nthreads=2)
    np.testing.assert_array_equal(back, x_cl.numpy().ravel())
    # The output side: y (n, c, ho, wo) onto its bordered grid, channel sums alongside.
    ho, wo, wq, off = 5, 9, 11, 13
    per = off + ho * wq + 4
    outs = {}
    for nhwc in (False, True):
        lo = _C.ConvOutputLayout(
            n=n, c=c, unit=unit, ho=ho, wo=wo, wq=wq, per_channel=per, offset=off, nhwc=nhwc
        )
        y = torch.randn(n, c, ho, wo, generator=torch.Generator().manual_seed(1))
        src = y.permute(0, 2, 3, 1).contiguous() if nhwc else y
        grid = np.full(lo.groups * c * per * unit, float(nhwc), np.float32)
        sums = np.zeros(lo.groups * c)
        _C.conv_pack_grad_output(
            y=src.numpy().ravel(), grid=grid, channel_sums=sums, layout=lo, nthreads=2
        )
        outs[nhwc] = grid, sums
        if unit == 1:  # sums only
            only = np.zeros(lo.groups * c)
            _C.conv_pack_grad_output(
                y=src.numpy().ravel(), grid=None, channel_sums=only, layout=lo, nthreads=2
            )
            np.testing.assert_allclose(only, sums, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(outs[True][0], outs[False][0])
    # (float partial sums in another order)
    np.testing.assert_allclose(outs[True][1], outs[False][1], rtol=1e-5, atol=1e-5)


def test_layouts_pickle_and_compare_with_their_format():
    import pickle

    lay, lay_cl = _pack_pair(2, 3, 4, 5, 1, 1, 1, 1, 1)
    assert lay_cl.nhwc and not lay.nhwc and lay != lay_cl
    assert pickle.loads(pickle.dumps(lay_cl)) == lay_cl
    assert "nhwc=1" in repr(lay_cl)


def test_planes_binding_checks_the_pixel_stride():
    args = dict(
        ptr=np.array([0, 0], np.int64),
        offsets=np.zeros(0, np.int64),
        values=np.zeros(0, np.float32),
        pos=None,
        scratch=None,
        b=np.zeros(16, np.float32),
        b_image_stride=16,
        c=np.zeros(8, np.float32),
        c_image_stride=8,
        len=4,
        images=1,
        nthreads=1,
        grid_w=2,
        plane_h=2,
        plane_w=2,
    )
    with pytest.raises(ValueError, match="pixel_stride"):
        _C.spmm_offsets_planes(ldc=4, pixel_stride=2, **args)  # needs ldc 1
    with pytest.raises(ValueError, match="too small"):
        _C.spmm_offsets_planes(ldc=1, pixel_stride=3, **args)  # 4 pixels x 3 > 8


class ConvBN(nn.Module):
    def __init__(self, conv, bn):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


@pytest.mark.parametrize("strategy", ["plane", "batch"])
@pytest.mark.parametrize("stride", [1, 2])
def test_fused_batch_norm_channels_last(isa, strategy, stride, monkeypatch):
    """The kernels' per-channel statistics of NHWC outputs: the same training steps as
    nn.Conv2d + nn.BatchNorm2d on channels_last inputs, through the fused path."""
    conv = pruned_conv(18, 20, 3, stride=stride, padding=1, bias=True)
    dense = ConvBN(conv, nn.BatchNorm2d(20))
    x = torch.randn(17, 18, 9, 11).contiguous(memory_format=CL)
    sparse = copy.deepcopy(dense)
    sparse.conv = st.SparseConv2d.from_dense(conv, strategy=strategy)
    assert st.fuse_batch_norm(sparse, x) == [("conv", "bn")]
    calls = []
    orig = st.nn.batchnorm._NormalizeWithStats.apply
    monkeypatch.setattr(
        st.nn.batchnorm._NormalizeWithStats, "apply", lambda *a: calls.append(1) or orig(*a)
    )
    for i in range(2):
        x = (torch.randn(17, 18, 9, 11) * (1 + i) + i).contiguous(memory_format=CL)
        g = torch.randn(dense.conv(x).shape).contiguous(memory_format=CL)  # (no BN update)
        ys, dxs = forward_backward(sparse, x, g)
        yd, dxd = forward_backward(dense, x, g)
        assert is_cl(ys) and is_cl(dxs)
        assert_close(ys, yd, "output")
        assert_close(dxs, dxd, "input gradient")
        assert_close(sparse.bn.running_var, dense.bn.running_var, "running_var")
        assert_close(sparse.bn.weight.grad, dense.bn.weight.grad, "bn weight gradient")
    assert len(calls) == 2, "the fused path was not taken"

"""Inputs a sparse layer cannot take raise a TypeError / ValueError naming the layer, before
any native kernel runs (the kernels are replaced by a tripwire here to prove it)."""

import numpy as np
import pytest
import torch

import sparsetrain as st

KERNELS = [
    "spmm",
    "spmmt",
    "sddmm",
    "pack",
    "unpack",
    "spmm_offsets_rows",
    "spmm_offsets_planes",
    "spmm_offsets_planes16",
    "spmm_offsets_merge",
    "sddmm_offsets",
    "conv_grads_offsets_planes",
    "conv_grads_offsets_planes16",
    "conv_grads_offsets_merge",
    "conv_grads_one_pass_planes",
    "conv_grads_one_pass_planes16",
    "conv_pack_input",
    "conv_unpack_grad_input",
    "conv_pack_grad_output",
    "conv_direct_spmm",
    "conv_direct_sddmm",
]


@pytest.fixture
def no_native(monkeypatch):
    """Every kernel binding raises if reached."""

    def tripwire(*args, **kwargs):
        raise AssertionError("a native kernel ran for an invalid input")

    for name in KERNELS:
        monkeypatch.setattr(st._C, name, tripwire)


LINEAR_NAME = r"SparseLinear\(10->4\)"
CONV_NAME = r"SparseConv2d\(4->6, 3x3\)"

BAD_DTYPES = [
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
    torch.complex64,
]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
def test_linear_wrong_dtype(no_native, dtype):
    sp = st.SparseLinear(10, 4, sparsity=0.5)
    with pytest.raises(TypeError, match=LINEAR_NAME + r".*float32.*" + str(dtype).split(".")[1]):
        sp(torch.zeros(3, 10, dtype=dtype))


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
def test_conv_wrong_dtype(no_native, dtype):
    sp = st.SparseConv2d(4, 6, 3, sparsity=0.5, strategy="plane")
    with pytest.raises(TypeError, match=CONV_NAME + r".*float32"):
        sp(torch.zeros(2, 4, 8, 8, dtype=dtype))


@pytest.mark.parametrize(
    "x,exc,match",
    [
        (torch.randn(3, 11), ValueError, r"\(\*, 10\)"),
        (torch.randn(3, 10, 1), ValueError, r"\(\*, 10\)"),
        (torch.tensor(1.0), ValueError, r"\(\*, 10\)"),  # rank 0
        (torch.randn(3, 10, device="meta"), ValueError, "CPU"),
        (torch.randn(3, 10).to_sparse(), TypeError, "dense"),
        (torch.randn(3, 10).to_mkldnn(), TypeError, "dense"),
        ([[0.0] * 10], TypeError, "tensor"),
        (np.zeros((3, 10), dtype=np.float32), TypeError, "tensor"),
    ],
    ids=["features", "rank3-features", "rank0", "meta", "sparse", "mkldnn", "list", "numpy"],
)
def test_linear_bad_inputs(no_native, x, exc, match):
    with pytest.raises(exc, match=LINEAR_NAME + ".*" + match):
        st.SparseLinear(10, 4, sparsity=0.5)(x)


@pytest.mark.parametrize(
    "x,exc,match",
    [
        (torch.randn(2, 3, 8, 8), ValueError, r"\(N, 4, H, W\)"),
        (torch.randn(2, 8, 8), ValueError, r"\(N, 4, H, W\)"),
        (torch.randn(1, 2, 4, 8, 8), ValueError, r"\(N, 4, H, W\)"),  # rank 5
        (torch.randn(4, 8), ValueError, r"\(N, 4, H, W\)"),  # rank 2
        (torch.randn(2, 4, 2, 8), ValueError, "smaller than the kernel"),
        (torch.randn(2, 4, 8, 8, device="meta"), ValueError, "CPU"),
        (torch.randn(2, 4, 8, 8).to_sparse(), TypeError, "dense"),
        (torch.randn(2, 4, 8, 8).to_mkldnn(), TypeError, "dense"),
        ("x", TypeError, "tensor"),
    ],
    ids=[
        "channels",
        "rank3-channels",
        "rank5",
        "rank2",
        "too-small",
        "meta",
        "sparse",
        "mkldnn",
        "str",
    ],
)
@pytest.mark.parametrize("strategy", ["auto", "direct", "plane", "batch"])
def test_conv_bad_inputs(no_native, x, exc, match, strategy):
    with pytest.raises(exc, match=CONV_NAME + ".*" + match):
        st.SparseConv2d(4, 6, 3, sparsity=0.5, strategy=strategy)(x)


def test_nested_tensor_input(no_native):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = torch.nested.nested_tensor([torch.randn(2, 10), torch.randn(3, 10)])
    with pytest.raises(TypeError, match=LINEAR_NAME + ".*nested"):
        st.SparseLinear(10, 4, sparsity=0.5)(x)


def test_parameters_cast_away_from_float32(no_native):
    sp = st.SparseLinear(10, 4, sparsity=0.5).double()
    with pytest.raises(TypeError, match=LINEAR_NAME + ".*parameters must be float32"):
        sp(torch.randn(3, 10))
    conv = st.SparseConv2d(4, 6, 3, sparsity=0.5).half()
    with pytest.raises(TypeError, match=CONV_NAME + ".*parameters must be float32"):
        conv(torch.randn(2, 4, 8, 8))


def test_the_tripwire_catches_valid_inputs(no_native):
    # Proves the fixture above really stands between the layers and the kernels.
    with pytest.raises(AssertionError, match="native kernel"):
        st.SparseLinear(10, 4, sparsity=0.5)(torch.randn(3, 10))
    for strategy in ("direct", "plane", "batch"):
        with pytest.raises(AssertionError, match="native kernel"):
            st.SparseConv2d(4, 6, 3, sparsity=0.5, strategy=strategy)(torch.randn(2, 4, 8, 8))


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_zero_in_features_like_nn_linear():
    # Not an error: nn.Linear(0, 3) maps (*, 0) to the bias.
    sp = st.SparseLinear(0, 3, sparsity=0.0)
    dense = sp.to_dense()
    x = torch.randn(2, 5, 0)
    assert torch.equal(sp(x), dense(x))

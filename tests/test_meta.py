"""Sparse models built on the meta device: no memory until to_empty, the numbers from
load_state_dict (the way large models are loaded)."""

import pytest
import torch
from torch import nn

import sparsetrain as st


def test_layers_built_on_meta_load_a_checkpoint():
    with torch.device("meta"):
        lin = st.SparseLinear(64, 32, sparsity=0.9)
        conv = st.SparseConv2d(8, 16, 3, padding=1, sparsity=0.9)
    assert lin.values.device.type == "meta" and lin.col_idx.device.type == "meta"
    assert lin.nnz == round(0.1 * 64 * 32)
    ref_lin = st.SparseLinear(64, 32, sparsity=0.8)  # another nnz: the layer resizes
    ref_conv = st.SparseConv2d(8, 16, 3, padding=1, sparsity=0.7)
    for layer, ref, x in (
        (lin, ref_lin, torch.randn(5, 64)),
        (conv, ref_conv, torch.randn(2, 8, 6, 6)),
    ):
        layer.to_empty(device="cpu")
        layer.load_state_dict(ref.state_dict())
        assert layer.nnz == ref.nnz
        torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=0)


def test_to_empty_without_a_checkpoint_raises_naming_the_layer():
    with torch.device("meta"):
        lin = st.SparseLinear(64, 32, sparsity=0.9)
    lin.to_empty(device="cpu")
    lin.row_ptr.fill_(7)  # whatever memory held: not a pattern
    with pytest.raises(ValueError, match=r"SparseLinear\(64->32\).*sparsity pattern"):
        lin(torch.randn(2, 64))


def test_a_meta_model_takes_a_sparse_checkpoint_with_sparsify_like():
    torch.manual_seed(0)

    def build():
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))

    trained = build()
    st.magnitude_prune(trained, 0.9, scope="layer")
    st.sparsify(trained, only_if_faster=False)
    with torch.device("meta"):
        model = build()
    model = st.sparsify_like(model, trained.state_dict())
    assert isinstance(model[0], st.SparseLinear) and model[0].values.device.type == "meta"
    assert model[0].nnz == trained[0].nnz  # sized by the checkpoint, still no memory
    model.to_empty(device="cpu")
    model.load_state_dict(trained.state_dict())
    x = torch.randn(3, 64)
    torch.testing.assert_close(model(x), trained(x), rtol=0, atol=0)

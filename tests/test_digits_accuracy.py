"""Accuracy on real data (scikit-learn's bundled digits), through the two examples' flows.

Sparse layers must train like dense layers holding the same masks (within 1 point),
gradual pruning from scratch to 90% must end within 2 points of dense training, and dynamic
sparse training at 90% from the first step within 1.5 (RigL) and 2.5 (SET) points.
"""

import pathlib
import sys

import pytest

import sparsetrain as st

pytest.importorskip("sklearn")  # only its bundled data file is read
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))

import dynamic_sparsity  # noqa: E402
import gradual_pruning  # noqa: E402
import sparse_transfer  # noqa: E402


def sparse_layers(model):
    return {
        name: layer.sparsity
        for name, layer in model.named_modules()
        if isinstance(layer, (st.SparseConv2d, st.SparseLinear))
    }


def test_sparse_fine_tuning_matches_dense_with_the_same_masks():
    out = sparse_transfer.run(
        sparsity=0.9, pretrain_epochs=6, epochs=6, only_if_faster=False, verbose=False
    )
    layers = sparse_layers(out["model"])
    assert sorted(layers) == ["10", "2", "5", "8"]  # every pruned layer trained sparse
    assert all(abs(s - 0.9) < 0.01 for s in layers.values()), layers
    assert out["sparse"] > 90.0, out
    assert abs(out["sparse"] - out["dense_masked"]) <= 1.0, out


def test_sparse_fine_tuning_under_bf16_autocast_matches_float32():
    # The same flow, the fine-tuning under bf16 autocast (the sparse linear layers run their
    # bf16 kernels): within 1 point of the float32 run.
    kw = dict(sparsity=0.9, pretrain_epochs=6, epochs=6, only_if_faster=False, verbose=False)
    fp32, bf16 = sparse_transfer.run(**kw), sparse_transfer.run(**kw, bf16=True)
    assert bf16["sparse"] > 90.0, bf16
    assert abs(bf16["sparse"] - fp32["sparse"]) <= 1.0, (fp32["sparse"], bf16["sparse"])
    assert abs(bf16["sparse"] - bf16["dense_masked"]) <= 1.0, bf16


def test_gradual_pruning_from_scratch_ends_near_dense_training():
    out = gradual_pruning.run(sparsity=0.9, epochs=12, verbose=False)
    layers = sparse_layers(out["model"])
    assert sorted(layers) == ["10", "2", "5", "8"]
    assert all(abs(s - 0.9) < 0.01 for s in layers.values()), layers
    assert out["dense"] > 90.0, out
    assert out["gradual"] >= out["dense"] - 2.0, out


def test_dynamic_sparse_training_from_scratch_ends_near_dense_training():
    out = dynamic_sparsity.run(sparsity=0.9, verbose=False)
    for method in ("rigl", "set"):
        model = out[f"{method}_model"]
        layers = sparse_layers(model)
        # ERK: the small first convolution and classifier dense, the rest 90% overall.
        assert sorted(layers) == ["2", "5", "8"], layers
        sparse = [model[int(i)] for i in layers]
        dense_weights = sum(model[i].weight.numel() for i in (0, 10))
        kept = sum(m.nnz for m in sparse) + dense_weights
        total = sum(m._rows * m._cols for m in sparse) + dense_weights
        assert kept / total == pytest.approx(0.1, abs=0.01)
    assert out["dense"] > 95.0, out
    assert out["rigl"] >= out["dense"] - 1.5, out
    assert out["set"] >= out["dense"] - 2.5, out

"""Checkpoints of whole models: sparsified -> fresh sparsified model, densified -> dense model,
resume with the optimizer, malformed indices."""

import io

import pytest
import torch
from torch import nn

import sparsetrain as st


def build(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.ModuleDict({"head": nn.Linear(32 * 4 * 4, 10)})["head"],
    )


def sparse_model(seed, sparsity):
    model = build(seed)
    st.magnitude_prune(model, sparsity, scope="layer", exclude="0")
    report = st.sparsify(model, min_sparsity=0.5)
    assert report.swapped == ["3", "5", "8"]
    return model


def step(model, opt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 8, 8, generator=g)
    y = torch.randint(0, 10, (4,), generator=g)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf)


def test_sparsified_checkpoint_loads_into_a_fresh_sparsified_model():
    model = sparse_model(0, 0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for i in range(3):
        step(model, opt, i)
    ckpt = roundtrip({"model": model.state_dict(), "opt": opt.state_dict()})

    fresh = sparse_model(1, 0.6)  # another architecture instance, other nnz everywhere
    assert fresh[3].nnz != model[3].nnz
    values = [fresh[i].values for i in (3, 5, 8)]
    fresh.load_state_dict(ckpt["model"])
    assert [fresh[i].values for i in (3, 5, 8)] == values  # same Parameter objects, resized
    for i in (3, 5, 8):
        assert fresh[i].nnz == model[i].nnz
        assert torch.equal(fresh[i].col_idx, model[i].col_idx)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh_opt.load_state_dict(ckpt["opt"])
    model.eval(), fresh.eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fresh(x), model(x))
    model.train(), fresh.train()
    # resuming continues exactly where the original goes on
    for i in range(3, 5):
        assert step(fresh, fresh_opt, i) == pytest.approx(step(model, opt, i), rel=1e-5)
    for a, b in zip(model.parameters(), fresh.parameters()):
        torch.testing.assert_close(a, b)


def test_densified_checkpoint_loads_into_a_plain_dense_model():
    model = sparse_model(0, 0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step(model, opt, 0)
    st.densify(model)
    assert not any(isinstance(m, (st.SparseConv2d, st.SparseLinear)) for m in model.modules())
    dense = build(5)
    dense.load_state_dict(roundtrip(model.state_dict()))
    model.eval(), dense.eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(dense(x), model(x))
    assert float((dense[3].weight == 0).float().mean()) >= 0.89


def test_sparse_checkpoint_into_a_dense_model_fails_clearly():
    sd = sparse_model(0, 0.9).state_dict()
    with pytest.raises(RuntimeError, match="values|row_ptr|weight"):
        build(0).load_state_dict(sd)


CORRUPTIONS = {
    "column out of range": lambda sd, p: sd[p + "col_idx"].__setitem__(0, 10**6),
    "negative column": lambda sd, p: sd[p + "col_idx"].__setitem__(-1, -1),
    "unsorted columns": lambda sd, p: sd[p + "col_idx"].__setitem__(
        slice(0, 2), sd[p + "col_idx"][:2].flip(0)
    ),
    "row pointers going down": lambda sd, p: sd[p + "row_ptr"].__setitem__(1, 10**6),
    "row_ptr not ending at nnz": lambda sd, p: sd[p + "row_ptr"].__setitem__(-1, 3),
    "too few values": lambda sd, p: sd.__setitem__(p + "values", sd[p + "values"][:-1]),
    "too few row pointers": lambda sd, p: sd.__setitem__(p + "row_ptr", sd[p + "row_ptr"][:-1]),
}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
@pytest.mark.parametrize("layer", ["3", "8"])
def test_malformed_index_raises_value_error_and_keeps_the_layer(what, layer):
    model = sparse_model(0, 0.9)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    CORRUPTIONS[what](sd, layer + ".")
    target = sparse_model(0, 0.9)
    x = torch.randn(2, 3, 8, 8)
    target.eval()
    before = target(x)
    with pytest.raises(ValueError):
        target.load_state_dict(roundtrip(sd))
    # the layer that refused the checkpoint still holds its own weight and works
    torch.testing.assert_close(target(x), before)

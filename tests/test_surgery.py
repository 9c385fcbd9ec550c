"""sparsify / densify: model surgery between dense torch layers and sparse ones."""

import pytest
import torch
from torch import nn

import sparsetrain as st


def prune_(module, sparsity):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(torch.rand_like(m.weight) >= sparsity)
    return module


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.blocks = nn.ModuleDict({"a": nn.Linear(16, 32), "b": nn.Linear(32, 16)})
        self.heads = nn.ModuleList([nn.Linear(16, 5)])
        self.shared = nn.Linear(16, 16)

    def forward(self, x):
        x = self.features(x).mean((2, 3))
        x = self.blocks["b"](torch.relu(self.blocks["a"](x)))
        x = self.shared(self.shared(x))  # one module used twice
        return self.heads[0](x)


def test_sparsify_swaps_pruned_layers_and_keeps_the_function():
    net = prune_(Net(), 0.9)
    x = torch.randn(4, 3, 12, 12)
    before = net(x)
    report = st.sparsify(net, min_sparsity=0.8, only_if_faster=False)
    assert isinstance(net.features[0], st.SparseConv2d)
    assert isinstance(net.blocks["a"], st.SparseLinear)
    assert isinstance(net.heads[0], st.SparseLinear)
    assert isinstance(net.shared, st.SparseLinear)
    assert len(report.swapped) == 6 and report.model is net
    torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-5)
    text = str(report)
    assert "features.0" in text and "6 of 6" in text
    d = report.to_dict()
    assert d["swapped"] == report.swapped and len(d["layers"]) == 6


def test_min_sparsity_include_exclude():
    net = prune_(Net(), 0.9)
    with torch.no_grad():
        net.blocks["a"].weight.fill_(1.0)  # dense: below min_sparsity
    report = st.sparsify(
        net,
        include=["features.*", "blocks.a", "shared"],
        exclude=lambda name, m: name == "features.2",
        only_if_faster=False,
    )
    assert isinstance(net.features[0], st.SparseConv2d)
    assert type(net.features[2]) is nn.Conv2d
    assert type(net.blocks["a"]) is nn.Linear
    assert type(net.blocks["b"]) is nn.Linear  # not included
    rows = {r.name: r for r in report.layers}
    assert "sparsity below" in rows["blocks.a"].reason
    # Left out by include / exclude: still a row each, saying so (nothing skipped silently).
    assert rows["features.2"].reason == "excluded" and not rows["features.2"].swapped
    assert rows["blocks.b"].reason == "not in include" and not rows["blocks.b"].swapped


def test_tied_weights_stay_dense_with_a_warning():
    a, b = nn.Linear(8, 8), nn.Linear(8, 8)
    b.weight = a.weight
    model = prune_(nn.Sequential(a, nn.ReLU(), b), 0.95)
    with pytest.warns(UserWarning, match="shares its weight"):
        report = st.sparsify(model, only_if_faster=False)
    assert type(model[0]) is nn.Linear and type(model[2]) is nn.Linear
    assert report.swapped == []


def test_not_inplace_leaves_the_original():
    net = prune_(Net(), 0.9)
    report = st.sparsify(net, inplace=False, only_if_faster=False)
    assert type(net.features[0]) is nn.Conv2d
    assert isinstance(report.model.features[0], st.SparseConv2d)


def test_only_if_faster_measures_every_candidate():
    model = prune_(nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10)), 0.95)
    x = torch.randn(64, 256)
    before = model(x)
    report = st.sparsify(model, example_inputs=(x,))
    for row in report.layers:
        assert row.dense_ms is not None and row.sparse_ms is not None
        assert row.swapped == (row.sparse_ms < row.dense_ms)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_densify_round_trip_and_training_still_works():
    net = prune_(Net(), 0.9)
    x = torch.randn(2, 3, 12, 12)
    st.sparsify(net, only_if_faster=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    net(x).sum().backward()
    opt.step()
    y = net(x)
    st.densify(net)
    assert not any(isinstance(m, (st.SparseLinear, st.SparseConv2d)) for m in net.modules())
    torch.testing.assert_close(net(x), y, rtol=1e-5, atol=1e-5)
    assert isinstance(st.densify(st.SparseLinear(4, 4)), nn.Linear)


def test_bad_min_sparsity():
    with pytest.raises(ValueError, match="min_sparsity"):
        st.sparsify(nn.Linear(2, 2), min_sparsity=1.5)


def test_a_bare_layer_is_reported_not_swapped():
    lin = prune_(nn.Linear(8, 8), 0.9)
    report = st.sparsify(lin, only_if_faster=False)
    assert report.swapped == [] and "model itself" in report.layers[0].reason


@pytest.mark.parametrize("kept", [False, True])
def test_sparsify_returns_its_timing_temporaries_when_memory_is_kept(kept, monkeypatch):
    """Under keep_freed_memory the heap would hold sparsify's timing temporaries for good:
    sparsify gives the free heap back once it has timed the layers (and only then)."""
    import sparsetrain._runtime as rt

    calls = []
    monkeypatch.setattr(rt, "_malloc_kept", kept)
    monkeypatch.setattr(rt._C, "release_free_memory", lambda: calls.append(1) or True)
    model = prune_(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), 0.9)
    st.sparsify(model, example_inputs=(torch.randn(8, 64),))
    st.sparsify(prune_(nn.Sequential(nn.Linear(64, 64)), 0.9))  # no timing: nothing to return
    assert calls == ([1] if kept else [])

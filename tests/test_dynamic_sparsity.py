"""DynamicSparsity (SET, RigL): updates against a reference on dense masked tensors, the
schedule, checkpoints, the dense gradient of every layer type, and bad input."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import sparsetrain as st
from sparsetrain.dynamic import erk_densities
from sparsetrain.dynamic.dense_grad import dense_gradient
from sparsetrain.dynamic.selection import drop_mask, grow_positions, largest
from sparsetrain.formats import nonzero_positions


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(20, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 5)
    )


def cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, padding_mode="reflect"),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def batch(model, n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 20) if isinstance(model[0], (nn.Linear, st.SparseLinear)) else (n, 3, 8, 8)
    return torch.randn(shape, generator=g), torch.randint(0, 5, (n,), generator=g)


def train_step(model, opt, x, y):
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad()


def dense_state(layer, state):
    """A per-value optimizer state tensor of a sparse layer scattered into its dense matrix."""
    out = torch.zeros(layer._rows * layer._cols)
    out[nonzero_positions(layer.row_ptr, layer.col_idx, layer._rows, layer._cols)] = state
    return out


def reference_update(layer, state, grow_scores, fraction):
    """One update computed on dense masked tensors with an independent selection (NumPy
    lexsort: magnitude first, position second): (new mask, new dense weight, new states)."""
    w = layer.weight.detach().reshape(-1).clone()
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask[nonzero_positions(layer.row_ptr, layer.col_idx, layer._rows, layer._cols)] = True
    states = {k: dense_state(layer, v) for k, v in state.items() if v.dim() > 0}
    k = int(round(fraction * layer.nnz))
    active = mask.nonzero().squeeze(1).numpy()
    order = np.lexsort((active, w[active].abs().numpy()))  # smallest |w| first, ties by position
    dropped = active[order[:k]]
    after = mask.clone()
    after[dropped] = False
    candidates = (~after).nonzero().squeeze(1).numpy()
    score = grow_scores.reshape(-1)[candidates].numpy()
    grown = candidates[np.lexsort((candidates, -score))[:k]]  # largest score first
    new_mask = after.clone()
    new_mask[grown] = True
    new_w = w * after
    new_states = {key: v * after for key, v in states.items()}
    return new_mask, new_w, new_states


def layer_mask(layer):
    mask = torch.zeros(layer._rows * layer._cols, dtype=torch.bool)
    mask[nonzero_positions(layer.row_ptr, layer.col_idx, layer._rows, layer._cols)] = True
    return mask


# -- distributions ----------------------------------------------------------------------------
def test_erk_keeps_the_budget_and_favours_small_layers():
    shapes = {"a": (64, 3, 3, 3), "b": (128, 64, 3, 3), "c": (10, 512)}
    d = erk_densities(shapes, 0.9)
    total = {n: math.prod(s) for n, s in shapes.items()}
    kept = sum(d[n] * total[n] for n in shapes)
    assert kept == pytest.approx(0.1 * sum(total.values()), rel=1e-9)
    assert d["c"] == 1.0 and 1.0 > d["a"] > d["b"]  # sum / product of dims: c, a, b
    # A layer the rule would make denser than 1 is dense, the others make up for it.
    d = erk_densities({"tiny": (4, 4), "big": (512, 512)}, 0.5)
    assert d["tiny"] == 1.0
    assert d["tiny"] * 16 + d["big"] * 512 * 512 == pytest.approx(0.5 * (16 + 512 * 512))


def test_construction_makes_layers_sparse_with_the_dense_initial_weights():
    model = cnn()
    dense = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    biases = [m.bias for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    dst = st.DynamicSparsity(model, opt, sparsity=0.8, distribution="uniform", end_step=100)
    assert list(dst.layers) == ["0", "2", "5"] and dst.left_dense == {}
    params = {id(p) for g in opt.param_groups for p in g["params"]}
    for (name, layer), bias in zip(dst.layers.items(), biases):
        assert isinstance(layer, (st.SparseConv2d, st.SparseLinear))
        assert layer.sparsity == pytest.approx(0.8, abs=0.01)
        assert dst.densities[name] == pytest.approx(1 - layer.sparsity)
        assert layer.bias is bias and id(layer.values) in params
        ref = dense.get_submodule(name).weight.detach()
        kept = layer.weight.detach() != 0
        scale = (1 / (1 - layer.sparsity)) ** 0.5  # each output's variance kept
        torch.testing.assert_close(layer.weight.detach()[kept], ref[kept] * scale)
    unscaled = cnn()
    plain = st.DynamicSparsity(
        unscaled, torch.optim.SGD(unscaled.parameters(), lr=0.1), 0.8, end_step=9, scale_init=False
    )
    for name, layer in plain.layers.items():
        kept = layer.weight.detach() != 0
        assert torch.equal(layer.weight.detach()[kept], dense.get_submodule(name).weight[kept])
    # A second DynamicSparsity over sparse layers keeps their patterns.
    patterns = {n: layer.col_idx.clone() for n, layer in dst.layers.items()}
    again = st.DynamicSparsity(model, opt, sparsity=0.5, method="set", end_step=100)
    assert all(torch.equal(again.layers[n].col_idx, c) for n, c in patterns.items())


def test_erk_distribution_reaches_the_overall_sparsity():
    model = cnn()
    total = sum(m.weight.numel() for m in model if isinstance(m, (nn.Conv2d, nn.Linear)))
    dst = st.DynamicSparsity(model, torch.optim.SGD(model.parameters(), lr=0.1), 0.9, end_step=9)
    nnz = sum(layer.nnz for layer in dst.layers.values())
    assert nnz == pytest.approx(0.1 * total, rel=0.01)
    assert len(set(round(d, 3) for d in dst.densities.values())) == 3  # not uniform


# -- selection ---------------------------------------------------------------------------------
def test_selection_breaks_ties_by_position_and_counts_nan_as_largest():
    scores = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0, float("nan"), 0.0])
    assert largest(scores, 2).tolist() == [1, 5]
    assert largest(scores, 3).tolist() == [1, 2, 5]
    assert largest(scores, 0).tolist() == [] and largest(scores, 9).tolist() == list(range(7))
    assert drop_mask(torch.tensor([0.5, 0.1, 0.1, float("nan"), 0.1]), 2).tolist() == [
        False,
        True,
        True,
        False,
        False,
    ]
    # Growth never picks a position that stays alive, whatever its score.
    grow = grow_positions(torch.tensor([9.0, 0.0, 0.0, 5.0]), torch.tensor([0, 3]), 2)
    assert grow.tolist() == [1, 2]


# -- updates against the dense masked reference ---------------------------------------------------
@pytest.mark.parametrize("make", [mlp, cnn], ids=["mlp", "cnn"])
@pytest.mark.parametrize("method", ["rigl", "set"])
def test_an_update_equals_the_dense_masked_reference(make, method):
    model = make()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    dst = st.DynamicSparsity(model, opt, 0.8, method, update_every=3, end_step=50, seed=7)
    x, y = batch(model)
    for step in range(1, 4):
        train_step(model, opt, x, y)
        if step < 3:
            assert not dst.step()
    fraction = dst.drop_fraction_at(3)
    refs = {}
    for index, (name, layer) in enumerate(dst.layers.items()):
        if method == "rigl":
            scores = dst._capture.sums[name].abs()
        else:
            g = torch.Generator().manual_seed(hash((dst.seed, 3, index)) % (2**63))
            scores = torch.rand(layer._rows * layer._cols, generator=g)
        refs[name] = reference_update(layer, opt.state[layer.values], scores, fraction)
    nnz = {n: layer.nnz for n, layer in dst.layers.items()}
    values = {n: layer.values for n, layer in dst.layers.items()}
    assert dst.step()
    for name, layer in dst.layers.items():
        mask, w, states = refs[name]
        assert layer.nnz == nnz[name] and layer.values is values[name]
        assert torch.equal(layer_mask(layer), mask), name
        assert torch.equal(layer.weight.detach().reshape(-1), w), name
        state = opt.state[layer.values]
        for key, ref in states.items():
            assert torch.equal(dense_state(layer, state[key]), ref), (name, key)
        assert int(state["step"]) == 3
    train_step(model, opt, x, y)  # trains on the new patterns


def test_rigl_grows_where_the_dense_gradient_is_largest():
    model = mlp()
    reference = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # weights stay: gradients comparable
    dst = st.DynamicSparsity(model, opt, 0.9, "rigl", update_every=1, end_step=10)
    x, y = batch(model)
    with torch.no_grad():
        for name, layer in dst.layers.items():
            reference.get_submodule(name).weight.copy_(layer.weight)
    nn.functional.cross_entropy(reference(x), y).backward()
    train_step(model, opt, x, y)
    for name in dst.layers:
        dense = reference.get_submodule(name).weight.grad
        torch.testing.assert_close(dst._capture.sums[name], dense, rtol=1e-5, atol=1e-6)


def test_the_dense_gradient_sums_accumulated_backward_passes():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    dst = st.DynamicSparsity(model, opt, 0.9, "rigl", update_every=1, end_step=10)
    (x1, y1), (x2, y2) = batch(model, seed=1), batch(model, seed=2)
    for x, y in ((x1, y1), (x2, y2)):
        nn.functional.cross_entropy(model(x), y).backward()
    summed = {n: g.clone() for n, g in dst._capture.sums.items()}
    dst._capture.clear()
    parts = []
    for x, y in ((x1, y1), (x2, y2)):
        nn.functional.cross_entropy(model(x), y).backward()
        parts.append({n: g.clone() for n, g in dst._capture.sums.items()})
        dst._capture.clear()
    for n in summed:
        torch.testing.assert_close(summed[n], parts[0][n] + parts[1][n])
    with torch.no_grad():
        model(x1)  # no gradient: nothing captured
    assert dst._capture.sums == {}


@pytest.mark.parametrize(
    "conv",
    [
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, dilation=(1, 2)),
        dict(in_channels=4, out_channels=8, kernel_size=3, padding="same", groups=2),
        dict(in_channels=4, out_channels=6, kernel_size=2, padding="same", padding_mode="circular"),
        dict(in_channels=4, out_channels=6, kernel_size=1, stride=2),
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, padding_mode="reflect"),
    ],
)
def test_dense_gradient_of_convolutions_equals_autograd(conv):
    torch.manual_seed(0)
    dense = nn.Conv2d(**conv)
    layer = st.SparseConv2d.from_dense(dense)
    x = torch.randn(3, 4, 9, 10)
    y = dense(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    got = dense_gradient(layer, x, dy)
    torch.testing.assert_close(got, dense.weight.grad.reshape(got.shape), rtol=1e-4, atol=1e-5)


def test_dense_gradient_of_a_transposed_conv1d_layer():
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    dense = Conv1D(6, 4)  # weight (in=4, out=6)
    layer = st.SparseLinear.from_dense(dense)
    x = torch.randn(2, 3, 4)
    y = dense(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    torch.testing.assert_close(dense_gradient(layer, x, dy), dense.weight.grad.t())


# -- schedule, counts, determinism ---------------------------------------------------------------
def test_schedule_and_constant_nnz():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dst = st.DynamicSparsity(model, opt, 0.9, "set", update_every=2, drop_fraction=0.5, end_step=8)
    assert [s for s in range(1, 12) if dst.is_update_step(s)] == [2, 4, 6]
    assert dst.drop_fraction_at(0) == 0.5 and dst.drop_fraction_at(4) == pytest.approx(0.25)
    assert dst.drop_fraction_at(8) == 0.0
    nnz = {n: layer.nnz for n, layer in dst.layers.items()}
    x, y = batch(model)
    moved, masks = [], []
    for _ in range(10):
        train_step(model, opt, x, y)
        moved.append(dst.step())
        masks.append({n: layer_mask(layer) for n, layer in dst.layers.items()})
        assert {n: layer.nnz for n, layer in dst.layers.items()} == nnz
    assert moved == [False, True, False, True, False, True, False, False, False, False]
    assert not torch.equal(masks[0]["0"], masks[1]["0"])
    assert all(torch.equal(masks[6][n], masks[9][n]) for n in nnz)  # none after end_step


def run_steps(method, steps, state=None, seed=3):
    """Train `steps` steps; with `state` (from a previous run), resume from it first."""
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    dst = st.DynamicSparsity(model, opt, 0.8, method, update_every=2, end_step=20, seed=seed)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        dst.load_state_dict(state["dst"])
    start = dst.step_count
    for step in range(start, start + steps):
        x, y = batch(model, seed=step)
        train_step(model, opt, x, y)
        dst.step()
    return model, opt, dst


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_resuming_mid_schedule_is_exact(method, tmp_path):
    whole, _, _ = run_steps(method, 9)
    model, opt, dst = run_steps(method, 5)  # step 5: the next (6) is an update step
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "dst": dst.state_dict()},
        tmp_path / "ckpt.pt",
    )
    resumed, _, _ = run_steps(method, 4, torch.load(tmp_path / "ckpt.pt"), seed=99)
    for key, v in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], v), key


def test_set_is_reproducible_from_its_seed():
    a, _, _ = run_steps("set", 6, seed=5)
    b, _, _ = run_steps("set", 6, seed=5)
    c, _, _ = run_steps("set", 6, seed=6)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not torch.equal(a[0].col_idx, c[0].col_idx)


# -- what is left dense, and bad input ---------------------------------------------------------
def test_layers_that_cannot_be_sparse_are_reported():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
            self.b.weight = self.a.weight
            self.attn = nn.MultiheadAttention(8, 2)
            self.head = nn.Linear(8, 4)

    model = Tied()
    with pytest.warns(UserWarning, match="left dense"):
        dst = st.DynamicSparsity(
            model, torch.optim.SGD(model.parameters(), lr=0.1), 0.5, end_step=5
        )
    assert set(dst.left_dense) == {"a", "b", "attn.out_proj"}
    assert "shares its weight" in dst.left_dense["a"]
    assert "read directly" in dst.left_dense["attn.out_proj"]
    assert list(dst.layers) == ["head"]


def test_a_layer_erk_makes_dense_stays_dense():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 256), nn.Linear(256, 256))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dst = st.DynamicSparsity(
            model, torch.optim.SGD(model.parameters(), lr=0.1), 0.5, end_step=5
        )
    assert "density 1" in dst.left_dense["0"] and isinstance(model[0], nn.Linear)
    assert isinstance(model[2], st.SparseLinear)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="magnitude"), "method"),
        (dict(distribution="normal"), "distribution"),
        (dict(sparsity=1.5), "sparsity"),
        (dict(drop_fraction=-0.1), "drop_fraction"),
        (dict(update_every=0), "update_every"),
        (dict(end_step=None), "end_step is required"),
        (dict(end_step=2.5), "end_step"),
        (dict(seed="x"), "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    model = mlp()
    args = dict(end_step=10) | kwargs
    with pytest.raises(ValueError, match=match):
        st.DynamicSparsity(model, torch.optim.SGD(model.parameters(), lr=0.1), **args)


def test_wrong_model_or_optimizer_raise():
    model = mlp()
    with pytest.raises(TypeError, match="optimizer"):
        st.DynamicSparsity(model, None, end_step=10)
    dst = st.DynamicSparsity(model, torch.optim.SGD(model.parameters(), lr=0.1), end_step=10)
    with pytest.raises(ValueError, match="moves the layers"):
        dst.load_state_dict({"step_count": 1, "seed": 0, "layers": ["x"]})


def test_regrow_checks_its_arguments():
    layer = st.SparseLinear(8, 4, sparsity=0.5)
    positions = nonzero_positions(layer.row_ptr, layer.col_idx, 4, 8)
    free = [p for p in range(32) if p not in set(positions.tolist())]
    drop = torch.zeros(layer.nnz, dtype=torch.bool)
    drop[:2] = True
    with pytest.raises(ValueError, match="drop has"):
        layer.regrow(drop[:-1], torch.tensor(free[:2]))
    with pytest.raises(ValueError, match="one per dropped"):
        layer.regrow(drop, torch.tensor(free[:3]))
    with pytest.raises(ValueError, match=r"lie in \[0, 32\)"):
        layer.regrow(drop, torch.tensor([free[0], 32]))
    with pytest.raises(ValueError, match="repeats"):
        layer.regrow(drop, torch.tensor([free[0], free[0]]))
    with pytest.raises(ValueError, match="stays a nonzero"):
        layer.regrow(drop, torch.tensor([free[0], int(positions[5])]))
    before = layer.values.detach().clone()
    layer.regrow(drop, torch.tensor([int(positions[0]), free[0]]))  # a dropped one regrows
    assert layer.nnz == before.numel()
    dense = layer.weight.detach().reshape(-1)
    assert dense[positions[0]] == 0 and dense[free[0]] == 0 and dense[positions[1]] == 0
    assert torch.equal(dense[positions[2:]], before[2:])


def test_from_dense_with_a_mask_keeps_zeros():
    dense = nn.Linear(6, 4)
    with torch.no_grad():
        dense.weight[0, 0] = 0.0
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, 0] = mask[1, 2] = mask[3, 5] = True
    layer = st.SparseLinear.from_dense(dense, mask=mask)
    assert layer.nnz == 3 and torch.equal(layer.weight.detach(), dense.weight.detach() * mask)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        st.SparseLinear.from_dense(dense, mask=mask.float())
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        st.SparseConv2d.from_dense(nn.Conv2d(2, 3, 3), mask=mask)


def test_rigl_leaves_a_layer_without_gradient_alone_and_says_so():
    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(20, 5), nn.Linear(20, 5)

        def forward(self, x):
            return self.used(x)

    model = Branches()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dst = st.DynamicSparsity(model, opt, 0.8, "rigl", update_every=1, end_step=10)
    before = model.unused.col_idx.clone()
    x, y = batch(mlp())
    train_step(model, opt, x, y)
    with pytest.warns(UserWarning, match="unused got no gradient"):
        assert dst.step()  # the used layer moved
    assert torch.equal(model.unused.col_idx, before)


def test_update_cost_benchmark_runs():
    from sparsetrain import benchmarks_dst

    out = benchmarks_dst.update_cost("resnet18", "rigl", 0.9, repeats=1, tiny=True)
    assert out["layers"] == 19 and out["update_every"] == 100  # every conv but the first
    assert min(out[k] for k in ("plain step", "update step", "update", "dense step")) > 0
    assert out["overhead"] == pytest.approx(
        (out["update step"] + out["update"] - out["plain step"]) / (100 * out["plain step"])
    )
    with pytest.raises(ValueError, match="unknown model"):
        benchmarks_dst.update_cost("vgg", tiny=True)


def test_rigl_under_bf16_autocast_and_on_a_bfloat16_model():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dst = st.DynamicSparsity(model, opt, 0.8, "rigl", update_every=1, end_step=10)
    x, y = batch(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()
    assert all(g.dtype == torch.float32 for g in dst._capture.sums.values())
    opt.step()
    assert dst.step()
    bf = mlp().to(torch.bfloat16)
    opt = torch.optim.SGD(bf.parameters(), lr=0.1)
    dst = st.DynamicSparsity(bf, opt, 0.8, "rigl", update_every=1, end_step=10)
    assert all(layer.values.dtype == torch.bfloat16 for layer in dst.layers.values())
    nnz = {n: layer.nnz for n, layer in dst.layers.items()}
    train_step(bf, opt, x.bfloat16(), y)
    assert dst.step() and {n: layer.nnz for n, layer in dst.layers.items()} == nnz


def test_gpt2_conv1d_layers_move_on_their_transposed_weights():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50, n_positions=16)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dst = st.DynamicSparsity(
        model, opt, 0.8, "rigl", update_every=1, end_step=10, include="transformer.h.*"
    )
    assert sorted(dst.layers) == [
        "transformer.h.0.attn.c_attn",
        "transformer.h.0.attn.c_proj",
        "transformer.h.0.mlp.c_fc",
        "transformer.h.0.mlp.c_proj",
    ]
    ids = torch.randint(0, 50, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    layer = dst.layers["transformer.h.0.mlp.c_fc"]  # Conv1D(128, 32): in 32, out 128
    assert dst._capture.sums["transformer.h.0.mlp.c_fc"].shape == (128, 32)
    opt.step()
    before = layer.positions().clone()
    assert dst.step()
    assert not torch.equal(layer.positions(), before)
    model(input_ids=ids, labels=ids).loss.backward()  # trains on the moved patterns


def _compiled_and_eager(method):
    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        dst = st.DynamicSparsity(model, opt, 0.8, method, update_every=2, end_step=100, seed=1)
        return model, opt, dst

    runs = [build(), build()]
    compiled = torch.compile(runs[0][0])
    x, y = batch(mlp())
    for _ in range(4):
        for model, opt, dst in ((compiled, *runs[0][1:]), runs[1]):
            train_step(model, opt, x, y)
            dst.step()
    return runs[0][0], runs[1][0]


def test_set_under_torch_compile_equals_eager():
    compiled, eager = _compiled_and_eager("set")
    for (key, a), b in zip(compiled.state_dict().items(), eager.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=key)


def test_rigl_under_torch_compile_says_it_sees_no_gradient():
    with pytest.warns(UserWarning, match="torch.compile'd model does not run RigL"):
        _compiled_and_eager("rigl")

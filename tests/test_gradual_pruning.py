"""GradualMagnitudePruner: the cubic schedule, dense -> sparse hand-over, optimizer state."""
import pytest
import torch
from torch import nn

import sparsetrain as st


def small_cnn():
    return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 24), nn.ReLU(),
                         nn.Linear(24, 5))


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}


def train(model, opt, pruner, steps, keep_loss=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    losses, changed = [], []
    loss = None
    for _ in range(steps):
        x = torch.randn(6, 2, 8, 8, generator=g)
        y = torch.randint(0, 5, (6,), generator=g)
        if not keep_loss:
            loss = None
        loss = nn.functional.cross_entropy(model(x), y)  # the old graph is still alive here
        opt.zero_grad()
        loss.backward()
        opt.step()
        changed.append(pruner.step())
        losses.append(loss.item())
    return losses, changed


def test_cubic_schedule():
    s = [st.cubic_sparsity(t, 0.9, 10, 110) for t in range(0, 130, 10)]
    assert s[0] == 0.0 and s[1] == 0.0  # before and at start (initial 0)
    assert s[-1] == s[-2] == pytest.approx(0.9) and s[-3] < 0.9
    assert all(a <= b for a, b in zip(s, s[1:]))
    # s_f + (s_i - s_f)(1 - p)^3 at p = 0.5
    assert st.cubic_sparsity(60, 0.9, 10, 110, initial_sparsity=0.1) == pytest.approx(
        0.9 + (0.1 - 0.9) * 0.125)


def test_prunes_on_schedule_and_swaps_past_min_sparsity():
    torch.manual_seed(0)
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    pruner = st.GradualMagnitudePruner(model, opt, 0.9, start_step=3, end_step=15, every=4,
                                       exclude="0")
    steps_seen = []
    for step in range(1, 21):
        before = [type(m).__name__ for m in model]
        _, changed = train(model, opt, pruner, 1, seed=step)
        if changed[0]:
            steps_seen.append(step)
        assert pruner.step_count == step
        if step >= 15:
            assert pruner.sparsity == pytest.approx(0.9)
        assert before == [type(m).__name__ for m in model] or changed[0]
    # 3 prunes to sparsity 0 (nothing changes), 7, 11, 15 do.
    assert steps_seen == [7, 11, 15]
    assert isinstance(model[0], nn.Conv2d)  # excluded: never pruned
    assert float((model[0].weight == 0).float().mean()) == 0.0
    for i, kind in ((2, st.SparseConv2d), (5, st.SparseLinear), (7, st.SparseLinear)):
        assert isinstance(model[i], kind), i
        assert model[i].sparsity == pytest.approx(0.9, abs=0.02)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == n_params
    owned = {id(p) for p in model.parameters()}
    assert all(id(p) in owned for p in params)  # the optimizer holds the model's parameters


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_sparse_hand_over_equals_masked_dense_training(opt_name):
    """Swapping layers for sparse modules mid-training changes no numbers: the same run with
    every layer kept dense under its mask gives the same weights."""
    runs = []
    for min_sparsity in (0.5, None):
        torch.manual_seed(0)
        model = small_cnn()
        opt = OPTIMIZERS[opt_name](model.parameters())
        pruner = st.GradualMagnitudePruner(model, opt, 0.85, start_step=2, end_step=14, every=3,
                                           min_sparsity=min_sparsity)
        losses, _ = train(model, opt, pruner, 20)
        runs.append((model, losses))
    (sparse, l_sparse), (dense, l_dense) = runs
    assert any(isinstance(m, st.SparseConv2d) for m in sparse)
    assert not any(isinstance(m, (st.SparseConv2d, st.SparseLinear)) for m in dense)
    torch.testing.assert_close(torch.tensor(l_sparse), torch.tensor(l_dense), rtol=1e-4,
                               atol=1e-5)
    for i in (0, 2, 5, 7):
        w_dense = dense[i].weight.detach()
        w_sparse = sparse[i].weight.detach()
        # pruned weights of the dense run stayed exactly zero through the optimizer steps
        assert torch.equal(w_dense == 0, w_sparse == 0), i
        torch.testing.assert_close(w_sparse, w_dense, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sparse[i].bias, dense[i].bias, rtol=1e-4, atol=1e-5)


def test_bias_parameter_and_state_survive_the_swap():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30))
    bias = model[0].bias
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    pruner = st.GradualMagnitudePruner(model, opt, 0.9, start_step=1, end_step=1, every=1)
    x = torch.randn(4, 20)
    model(x).sum().backward()
    opt.step()
    exp_avg = opt.state[model[0].weight]["exp_avg"].clone()
    assert pruner.step()
    sp = model[0]
    assert isinstance(sp, st.SparseLinear) and sp.bias is bias
    assert opt.state[sp.values]["exp_avg"].shape == sp.values.shape
    kept = sp.weight.detach().reshape(-1) != 0
    torch.testing.assert_close(opt.state[sp.values]["exp_avg"], exp_avg.reshape(-1)[kept])
    assert opt.state[sp.values]["step"] == 1
    assert opt.state[bias]["exp_avg"].shape == bias.shape


def test_resume_keeps_dense_masks():
    torch.manual_seed(0)
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = st.GradualMagnitudePruner(model, opt, 0.6, start_step=1, end_step=3, every=1,
                                       min_sparsity=None)
    train(model, opt, pruner, 4)
    state, pstate = model.state_dict(), pruner.state_dict()
    fresh = small_cnn()
    fresh.load_state_dict(state)
    opt2 = torch.optim.SGD(fresh.parameters(), lr=0.05)
    resumed = st.GradualMagnitudePruner(fresh, opt2, 0.6, start_step=1, end_step=3, every=1,
                                        min_sparsity=None)
    resumed.load_state_dict(pstate)
    assert resumed.step_count == 4
    zeros = fresh[0].weight.detach() == 0
    train(fresh, opt2, resumed, 3)
    assert torch.all(fresh[0].weight.detach()[zeros] == 0)


def test_bad_arguments():
    model = small_cnn()
    with pytest.raises(ValueError, match="final_sparsity"):
        st.GradualMagnitudePruner(model, None, 1.5, 0, 10)
    with pytest.raises(ValueError, match="start_step"):
        st.GradualMagnitudePruner(model, None, 0.9, 10, 5)
    with pytest.raises(ValueError, match="every"):
        st.GradualMagnitudePruner(model, None, 0.9, 0, 5, every=0)
    with pytest.raises(ValueError, match="scope"):
        st.GradualMagnitudePruner(model, None, 0.9, 0, 5, scope="row")
    with pytest.raises(ValueError, match="min_sparsity"):
        st.GradualMagnitudePruner(model, None, 0.9, 0, 5, min_sparsity=2)


def test_pruning_while_the_previous_graph_is_alive():
    """A loss kept from the previous step holds autograd's cached gradient accumulator of
    `values`; after pruning resizes them the next backward must still work."""
    torch.manual_seed(0)
    sp = st.SparseConv2d(4, 6, 3, sparsity=0.5)
    opt = torch.optim.SGD(sp.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 4, 6, 6)
    loss = sp(x).square().mean()
    loss.backward()
    opt.step()
    st.magnitude_prune(sp, 0.8, scope="layer", optimizer=opt)
    loss2 = sp(x).square().mean()  # `loss` and its graph are still alive
    loss2.backward()
    assert sp.values.grad.shape == sp.values.shape
    opt.step()
    del loss

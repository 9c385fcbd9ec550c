"""GradualMagnitudePruner: the cubic schedule, dense -> sparse hand-over, optimizer state."""

import collections
import warnings
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst
from torch import nn

import sparsetrain as st


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 24),
        nn.ReLU(),
        nn.Linear(24, 5),
    )


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5),
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
        0.9 + (0.1 - 0.9) * 0.125
    )


def test_prunes_on_schedule_and_swaps_past_min_sparsity():
    torch.manual_seed(0)
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    pruner = st.GradualMagnitudePruner(
        model, opt, 0.9, start_step=3, end_step=15, every=4, exclude="0"
    )
    steps_seen = []
    for step in range(0, 20):  # steps count from 0: the first call is step 0
        before = [type(m).__name__ for m in model]
        _, changed = train(model, opt, pruner, 1, seed=step + 1)
        if changed[0]:
            steps_seen.append(step)
        assert pruner.step_count == step + 1
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
        pruner = st.GradualMagnitudePruner(
            model, opt, 0.85, start_step=2, end_step=14, every=3, min_sparsity=min_sparsity
        )
        losses, _ = train(model, opt, pruner, 20)
        runs.append((model, losses))
    (sparse, l_sparse), (dense, l_dense) = runs
    assert any(isinstance(m, st.SparseConv2d) for m in sparse)
    assert not any(isinstance(m, (st.SparseConv2d, st.SparseLinear)) for m in dense)
    torch.testing.assert_close(torch.tensor(l_sparse), torch.tensor(l_dense), rtol=1e-4, atol=1e-5)
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
    pruner = st.GradualMagnitudePruner(model, opt, 0.9, start_step=0, end_step=0, every=1)
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
    pruner = st.GradualMagnitudePruner(
        model, opt, 0.6, start_step=1, end_step=3, every=1, min_sparsity=None
    )
    train(model, opt, pruner, 4)
    state, pstate = model.state_dict(), pruner.state_dict()
    fresh = small_cnn()
    fresh.load_state_dict(state)
    opt2 = torch.optim.SGD(fresh.parameters(), lr=0.05)
    resumed = st.GradualMagnitudePruner(
        fresh, opt2, 0.6, start_step=1, end_step=3, every=1, min_sparsity=None
    )
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


# -- the schedule's step numbering -----------------------------------------------------------


def test_start_and_end_zero_prune_at_the_first_call():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 10))
    pruner = st.GradualMagnitudePruner(
        model, None, 0.9, start_step=0, end_step=0, min_sparsity=None
    )
    assert pruner.step()
    assert float((model[0].weight == 0).float().mean()) == pytest.approx(0.9)
    assert not pruner.step()


@settings(max_examples=80, deadline=None, database=None, derandomize=True)
@given(
    start=hst.integers(0, 12),
    length=hst.integers(0, 15),
    every=hst.integers(1, 20),
    initial=hst.sampled_from([0.0, 0.3]),
    final=hst.sampled_from([0.5, 0.9]),
)
def test_schedule_prunes_exactly_at_the_scheduled_steps(start, length, every, initial, final):
    """Step t is the (t + 1)-th call; pruning happens at start, start + every, ... up to end,
    and at end, with the final sparsity reached at end and kept after it."""
    end = start + length
    torch.manual_seed(0)
    layer = nn.Linear(20, 10, bias=False)
    pruner = st.GradualMagnitudePruner(
        nn.Sequential(layer),
        None,
        final,
        start,
        end,
        every,
        initial_sparsity=initial,
        min_sparsity=None,
    )
    expected = sorted({t for t in range(start, end + 1, every)} | {end})
    real, calls = st.pruning.magnitude_prune, []

    def spy(model, sparsity, *args, **kwargs):
        calls.append((pruner.step_count - 1, sparsity))  # step_count counts this call
        return real(model, sparsity, *args, **kwargs)

    zeros_after = {}
    with mock.patch.object(st.pruning, "magnitude_prune", spy):
        for t in range(end + 5):
            pruner.step()
            zeros_after[t] = int((layer.weight == 0).sum())
            if t < end:
                assert pruner.sparsity < final
    assert [t for t, _ in calls] == expected
    for t, s in calls:
        progress = (t - start) / (end - start) if end > start else 1.0
        assert s == pytest.approx(final + (initial - final) * (1 - progress) ** 3)
    assert calls[-1] == (end, final)
    assert zeros_after[end] == 200 - round((1 - final) * 200)  # final sparsity at end_step
    assert all(zeros_after[t] == zeros_after[end] for t in range(end, end + 5))
    if start < end:
        assert calls[0] == (start, pytest.approx(initial))


# -- layers that stay dense: tied weights ------------------------------------------------------


class TiedLM(nn.Module):
    """An embedding tied to the output head, as language models do."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.body = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens):
        return self.head(torch.relu(self.body(self.emb(tokens))))


def tied_lm():
    model = TiedLM()

    def loss(g):
        tokens = torch.randint(0, 50, (8, 6), generator=g)
        return nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())

    return model, loss, ["head"], "body"


def tied_linears():
    model = nn.Sequential(
        nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )
    model[2].weight = model[0].weight

    def loss(g):
        return model(torch.randn(8, 16, generator=g)).square().mean()

    return model, loss, ["0", "2"], "4"


def tied_convs():
    model = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    )
    model[2].weight = model[0].weight

    def loss(g):
        return model(torch.randn(8, 4, 5, 5, generator=g)).square().mean()

    return model, loss, ["0", "2"], "5"


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("build", [tied_lm, tied_linears, tied_convs])
def test_tied_weights_stay_dense_and_keep_training(build, opt_name):
    """tied=True: a tied weight is pruned under a mask, never swapped."""
    torch.manual_seed(0)
    model, loss_fn, tied, untied = build()
    weight = model.get_submodule(tied[0]).weight
    opt = OPTIMIZERS[opt_name](model.parameters())
    pruner = st.GradualMagnitudePruner(
        model, opt, 0.9, start_step=0, end_step=4, every=2, min_sparsity=0.5, tied=True
    )
    g = torch.Generator().manual_seed(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(8):
            opt.zero_grad()
            loss_fn(g).backward()
            opt.step()
            pruner.step()
    assert isinstance(model.get_submodule(untied), (st.SparseLinear, st.SparseConv2d))
    for name in tied:  # dense, still the one shared Parameter
        assert type(model.get_submodule(name)) in (nn.Linear, nn.Conv2d)
        assert model.get_submodule(name).weight is weight
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    assert held == {id(p) for p in model.parameters()}  # nothing left out, nothing stale
    zeros = weight.detach() == 0
    assert float(zeros.float().mean()) == pytest.approx(0.9, abs=0.01)
    before = weight.detach().clone()
    opt.zero_grad()
    loss_fn(g).backward()
    opt.step()
    pruner.step()
    assert torch.all(weight.detach()[zeros] == 0)  # pruned under the mask
    assert torch.any(weight.detach() != before)  # and still training
    told = collections.Counter(
        str(w.message).split()[1] for w in caught if "shares its weight" in str(w.message)
    )
    assert told == {name: 1 for name in tied}  # warned once per layer, not per pruning step


@pytest.mark.parametrize("build", [tied_lm, tied_linears, tied_convs])
def test_tied_weights_are_left_unpruned_by_default(build):
    """Zeros in a tied weight reach every module using it (the embedding too) and buy no
    speed, as the layer stays dense: by default the pruner leaves it alone, warned once."""
    torch.manual_seed(0)
    model, loss_fn, tied, untied = build()
    weight = model.get_submodule(tied[0]).weight
    zeros_before = int((weight == 0).sum())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    pruner = st.GradualMagnitudePruner(
        model, opt, 0.9, start_step=0, end_step=4, every=2, min_sparsity=0.5
    )
    g = torch.Generator().manual_seed(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(6):
            opt.zero_grad()
            loss_fn(g).backward()
            opt.step()
            pruner.step()
    assert isinstance(model.get_submodule(untied), (st.SparseLinear, st.SparseConv2d))
    for name in tied:
        assert model.get_submodule(name).weight is weight
    assert int((weight == 0).sum()) == zeros_before
    told = collections.Counter(
        str(w.message).split()[1] for w in caught if "(tied); left unpruned" in str(w.message)
    )
    assert told == {name: 1 for name in tied}


# -- optimizer state that cannot be carried over -----------------------------------------------

HAND_OVER = dict(OPTIMIZERS, adafactor=lambda p: torch.optim.Adafactor(p, lr=0.01))


@pytest.mark.parametrize("opt_name", sorted(HAND_OVER))
def test_hand_over_carries_element_wise_state_and_restarts_the_rest(opt_name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30))
    opt = HAND_OVER[opt_name](model.parameters())
    pruner = st.GradualMagnitudePruner(model, opt, 0.9, start_step=1, end_step=1)
    x = torch.randn(4, 20)
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        pruner.step()
    sp = model[0]
    assert isinstance(sp, st.SparseLinear)
    state = opt.state.get(sp.values, {})
    if opt_name == "adafactor":  # a factored (row, column) second moment: restarts
        assert not state
    else:
        assert state and all(
            v.shape == sp.values.shape
            for v in state.values()
            if isinstance(v, torch.Tensor) and v.dim()
        )
    for _ in range(2):  # Adafactor failed here: "variance should be defined ..."
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    for v in opt.state[sp.values].values():
        if isinstance(v, torch.Tensor) and v.dim():
            assert v.shape == sp.values.shape
    if "step" in opt.state[sp.values]:
        assert float(opt.state[sp.values]["step"]) == (2 if opt_name == "adafactor" else 4)


# -- swapping without the optimizer ------------------------------------------------------------


@pytest.mark.parametrize("given_opt", ["none", "another"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_a_swap_the_training_optimizer_was_not_told_of_fails_loudly(opt_name, given_opt):
    torch.manual_seed(0)
    model = small_cnn()
    opt = OPTIMIZERS[opt_name](model.parameters())
    other = torch.optim.SGD([model[0].bias], lr=0.1) if given_opt == "another" else None
    pruner = st.GradualMagnitudePruner(model, other, 0.9, start_step=0, end_step=0, exclude="0")
    train(model, opt, pruner, 1)  # swaps every layer but the first
    assert isinstance(model[2], st.SparseConv2d)
    with pytest.raises(RuntimeError, match="pass this optimizer to GradualMagnitudePruner"):
        train(model, opt, pruner, 1)
    # No false alarm for an optimizer built over the new parameters.
    fresh = OPTIMIZERS[opt_name](model.parameters())
    train(model, fresh, pruner, 2)


def test_no_optimizer_is_fine_while_layers_stay_dense():
    torch.manual_seed(0)
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = st.GradualMagnitudePruner(
        model, None, 0.9, start_step=0, end_step=2, every=1, min_sparsity=None
    )
    train(model, opt, pruner, 5)
    assert float((model[2].weight == 0).float().mean()) == pytest.approx(0.9, abs=0.01)

"""PyTorch 2 for the sparse linear layers: torch.compile with no graph breaks (fullgraph),
torch.export, torch.func. The layers' kernels are torch.library custom ops
(sparsetrain::linear and its backward), opaque to the compiler."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
import torch._functorch.config
import torch._inductor.config
from torch import nn

import sparsetrain as st


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    # Nothing from another build's compile caches: each test compiles what this tree says.
    torch._dynamo.reset()
    with (
        torch._inductor.config.patch(fx_graph_cache=False),
        torch._functorch.config.patch(enable_autograd_cache=False),
    ):
        yield
    torch._dynamo.reset()


def sparse_mlp(seed=0):
    torch.manual_seed(seed)
    dense = nn.Sequential(nn.Linear(24, 48), nn.GELU(), nn.Linear(48, 5))
    st.magnitude_prune(dense, 0.8, scope="layer")
    model = copy.deepcopy(dense)
    st.sparsify(model, only_if_faster=False)
    assert all(isinstance(model[i], st.SparseLinear) for i in (0, 2))
    return model


def train_steps(model, batches, lr=0.1):
    """Losses and the final parameters of SGD steps on (x, target) batches."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for x, t in batches:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), t)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses), [p.detach().clone() for p in model.parameters()]


def batches(sizes, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 24, generator=g), torch.randint(0, 5, (n,), generator=g)) for n in sizes
    ]


def test_a_sparse_mlp_is_one_graph():
    model = sparse_mlp()
    explained = torch._dynamo.explain(model)(torch.randn(8, 24))
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_compiled_training_steps_equal_eager_without_recompiling():
    eager, compiled = sparse_mlp(), sparse_mlp()
    data = batches([16, 16, 16])
    ref_losses, ref_params = train_steps(eager, data)
    cmodel = torch.compile(compiled, fullgraph=True)
    with torch._dynamo.config.patch(error_on_recompile=False):
        losses, params = train_steps(cmodel, data[:1])
    with torch._dynamo.config.patch(error_on_recompile=True):  # steps 2 and 3: no recompile
        more, params = train_steps(cmodel, data[1:])
    torch.testing.assert_close(torch.cat([losses, more]), ref_losses)
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q)


def test_a_new_batch_size_compiles_once_more_at_most():
    model = sparse_mlp()
    cmodel = torch.compile(model, fullgraph=True)
    for n in (16, 40):  # the second size recompiles, with the batch dynamic
        x = torch.randn(n, 24)
        torch.testing.assert_close(cmodel(x), model(x))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n in (23, 9, 300):
            x = torch.randn(n, 24)
            torch.testing.assert_close(cmodel(x), model(x))
            cmodel(x).sum().backward()


def test_compiled_under_bf16_autocast_matches_eager():
    model = sparse_mlp()
    cmodel = torch.compile(model, fullgraph=True)
    x = torch.randn(16, 24, requires_grad=True)
    xc = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
        yc = cmodel(xc)
    assert yc.dtype == torch.bfloat16
    torch.testing.assert_close(yc, y)
    y.float().sum().backward()
    yc.float().sum().backward()
    torch.testing.assert_close(xc.grad, x.grad)


def test_the_pattern_checks_still_hold_when_compiled():
    model = sparse_mlp()
    cmodel = torch.compile(model, fullgraph=True)
    x = torch.randn(4, 24)
    cmodel(x)
    with torch.no_grad():
        model[0].col_idx[0] = 10**6  # out of range: validated at the next call
    with pytest.raises(ValueError, match=r"SparseLinear\(24->48\).*column"):
        cmodel(x)


def test_export_runs_and_matches_eager():
    model = sparse_mlp()
    x = torch.randn(7, 24)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))
    x2 = torch.randn(7, 24)
    torch.testing.assert_close(exported.module()(x2), model(x2))


def assert_func_grad_is_autograds(model, x, t):
    """torch.func.grad of a functional_call's loss equals backward's gradients."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p):
        out = torch.func.functional_call(model, (p, buffers), (x,))
        return nn.functional.cross_entropy(out, t)

    grads = torch.func.grad(loss)(params)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), t).backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, msg=k)


def test_func_grad_of_a_functional_call_is_autograds():
    assert_func_grad_is_autograds(sparse_mlp(), *batches([6])[0])


def test_vmap_says_it_is_not_supported():
    model = sparse_mlp()
    x = torch.randn(3, 6, 24)
    with pytest.raises(RuntimeError, match="vmap"):
        torch.func.vmap(model)(x)


tf = pytest.importorskip("transformers")


def test_a_sparse_bert_training_step_compiles_in_one_graph():
    from test_hf import bert

    torch.manual_seed(0)
    model = bert()
    st.magnitude_prune(model, 0.9, scope="layer")
    st.sparsify(model, only_if_faster=False)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 96, (2, 8), generator=g)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    labels = torch.tensor([0, 2])
    explained = torch._dynamo.explain(model)(**inputs)
    assert explained.graph_break_count == 0, explained.break_reasons
    eager = copy.deepcopy(model)
    cmodel = torch.compile(model, fullgraph=True)
    out = cmodel(**inputs, labels=labels)
    out.loss.backward()
    ref = eager(**inputs, labels=labels)
    ref.loss.backward()
    torch.testing.assert_close(out.logits, ref.logits)
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_the_ops_pass_opcheck():
    # The schemas, and the fake (meta) implementations against the real ones. (Not opcheck's
    # AOT test: the forward op's batch-major output holds rows it never writes; the compiled
    # steps above compare what matters.)
    from sparsetrain.functional.linear import linear_backward_op, linear_op

    layer = st.SparseLinear(24, 12, sparsity=0.7)
    x = torch.randn(5, 24)
    w, b = layer.values.detach(), layer.bias.detach()
    args = (x, w, b, layer.row_ptr, layer.col_idx, 12, 24, "L")
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(linear_op, args, test_utils=checks)
    y, xt, gen = linear_op(*args)
    back = (torch.randn_like(y), xt, *args[1:5], gen, 12, 24, "L", True, True, True)
    torch.library.opcheck(linear_backward_op, back, test_utils=checks)


def test_eager_calls_and_the_ops_agree_bitwise():
    model = sparse_mlp()
    x = torch.randn(9, 24, requires_grad=True)
    y = model(x)  # plain eager: the ops' bodies without the dispatcher
    y.sum().backward()
    grads = [x.grad] + [p.grad for p in model.parameters()]
    x2 = x.detach().clone().requires_grad_()
    model.zero_grad()
    from torch.utils._python_dispatch import TorchDispatchMode

    class Passthrough(TorchDispatchMode):  # an active dispatch mode: the op path
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Passthrough():
        y2 = model(x2)
        y2.sum().backward()
    assert torch.equal(y, y2)
    for g, h in zip(grads, [x2.grad] + [p.grad for p in model.parameters()]):
        assert torch.equal(g, h)


def test_double_backward_raises():
    model = sparse_mlp()
    x = torch.randn(4, 24, requires_grad=True)
    (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once|differentiat"):
        g.sum().backward()


def test_torchscript_and_tracing_say_they_are_not_supported():
    layer = st.SparseLinear(16, 8, sparsity=0.5)
    with pytest.raises(RuntimeError, match=r"SparseLinear\(16->8\): TorchScript"):
        torch.jit.script(layer)
    with pytest.raises(RuntimeError, match=r"SparseLinear\(16->8\): torch.jit.trace"):
        torch.jit.trace(layer, torch.randn(2, 16))
    conv = st.SparseConv2d(3, 4, 3, sparsity=0.5)
    with pytest.raises(RuntimeError, match=r"SparseConv2d\(.*\): torch.jit.trace"):
        torch.jit.trace(conv, torch.randn(1, 3, 8, 8))


def sparse_cnn(seed=0):
    """Convolutions of every kind the layers route differently (3x3 with a fused batch norm,
    strided, a 1x1 strided one run on its subsampled input, reflect padding, groups), then a
    sparse classifier; pruned and sparsify'd with example inputs (batch norms fused)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 1, stride=2),
        nn.Conv2d(32, 32, 3, padding=1, padding_mode="reflect", groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 5),
    )
    st.magnitude_prune(model, 0.7, scope="layer")
    x = torch.randn(6, 3, 16, 16)
    report = st.sparsify(model, example_inputs=x, min_sparsity=0.5, only_if_faster=False)
    assert len(report.swapped) == 5 and report.fused_batch_norms
    return model.train(), x


def test_a_sparse_cnn_training_step_compiles_in_one_graph_equal_to_eager():
    model, x = sparse_cnn()
    t = torch.randint(0, 5, (x.shape[0],))
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    eager = copy.deepcopy(model)
    data = [(x, t), (x.flip(0), t.flip(0))]
    ref_losses, ref_params = train_steps(eager, data, lr=0.05)
    losses, params = train_steps(torch.compile(model, fullgraph=True), data, lr=0.05)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-4, atol=1e-5)
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_a_sparse_cnn_exports_and_differentiates_with_torch_func():
    model, x = sparse_cnn()
    model.eval()
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))
    assert_func_grad_is_autograds(model, x, torch.randint(0, 5, (x.shape[0],)))


def test_a_sparse_cnn_takes_a_new_batch_size_with_one_recompilation_at_most():
    model, x = sparse_cnn()
    model.eval()
    cmodel = torch.compile(model, fullgraph=True)
    for n in (6, 4):  # the second size recompiles, with the batch dynamic
        torch.testing.assert_close(cmodel(x[:n]), model(x[:n]))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n in (5, 3):
            torch.testing.assert_close(cmodel(x[:n]), model(x[:n]))


def test_a_channels_last_cnn_compiles_keeping_its_format():
    """channels_last through the op path: the fake outputs carry the real ones' strides (the
    compiler plans with them), the compiled step equals eager, the output stays
    channels_last."""
    from sparsetrain.functional.conv_ops import conv2d_backward_op, conv2d_op, geometry_ints

    model, x = sparse_cnn()
    cl = torch.channels_last
    model = model.to(memory_format=cl)
    x = x.contiguous(memory_format=cl)
    layer = next(m for m in model.modules() if isinstance(m, st.SparseConv2d))
    args = (
        x,
        layer.values.detach(),
        None,
        layer.row_ptr,
        layer.col_idx,
        geometry_ints(layer._geometry),
        "auto",
        "C",
    )
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(conv2d_op, args, test_utils=checks)
    y, finite, gen = conv2d_op(*args)
    assert y.is_contiguous(memory_format=cl) and not y.is_contiguous()
    back = (y.clone(), *args[:5], finite, gen, *args[5:], True, True, False)
    torch.library.opcheck(conv2d_backward_op, back, test_utils=checks)
    t = torch.randint(0, 5, (x.shape[0],))
    eager = copy.deepcopy(model)
    data = [(x, t), (x.flip(0), t.flip(0))]
    ref_losses, ref_params = train_steps(eager, data, lr=0.05)
    cmodel = torch.compile(model, fullgraph=True)
    losses, params = train_steps(cmodel, data, lr=0.05)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-4, atol=1e-5)
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    first = nn.Sequential(*list(model)[:3])
    assert torch.compile(first, fullgraph=True)(x).is_contiguous(memory_format=cl)

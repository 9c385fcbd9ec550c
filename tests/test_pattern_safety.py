"""Whatever Python does to a sparse layer's pattern buffers or values, no kernel reads or
writes out of bounds, and nothing silently mixes two patterns: every write is either taken
up (validated), refused with an error naming the layer, or caught by autograd's version
check between forward and backward, as for a dense layer's weight."""

import pytest
import torch
import torch.nn.functional as F

import sparsetrain as st
from helpers import assert_close
from sparsetrain.formats import csr_to_dense


def _linear():
    return st.SparseLinear(24, 12, sparsity=0.7)


def _conv(strategy):
    return lambda: st.SparseConv2d(4, 6, 3, padding=1, sparsity=0.7, strategy=strategy)


LAYERS = {
    "linear": _linear,
    "conv-plane": _conv("plane"),
    "conv-batch": _conv("batch"),
    "conv-direct": _conv("direct"),
}


def _input(layer):
    if isinstance(layer, st.SparseLinear):
        return torch.randn(5, 24)
    return torch.randn(2 if layer.strategy != "batch" else 17, 4, 7, 7)


def _dense_of(layer, row_ptr, col_idx, values):
    w = csr_to_dense(row_ptr, col_idx, values, layer._rows, layer._cols)
    return w.view(layer._weight_shape())


def _reference(layer, x, w, g):
    """Output, input gradient and dense weight gradient of the dense layer with weight w."""
    x = x.clone().requires_grad_()
    w = w.detach().clone().requires_grad_()
    if isinstance(layer, st.SparseLinear):
        y = F.linear(x, w, layer.bias)
    else:
        y = F.conv2d(x, w, layer.bias, layer.stride, layer.padding)
    y.backward(g)
    return y.detach(), x.grad, w.grad


def _other_valid_pattern(layer):
    """Another valid pattern with the same number of nonzeros (shifted columns)."""
    cols = (layer.col_idx.to(torch.int64) + 1) % layer._cols
    rows = torch.repeat_interleave(
        torch.arange(layer._rows), layer.row_ptr[1:] - layer.row_ptr[:-1]
    )
    order = torch.argsort(rows * layer._cols + cols)
    return layer.row_ptr.clone(), cols[order].to(torch.int32)


# Ways to write into a buffer: (name, function(buffer, position, value)). The first two are
# seen by PyTorch's version counter, the middle two are not, the last two replace storage.
def _index_put(t, i, v):
    t[i] = v


def _data_write(t, i, v):
    t.data[i] = v


def _numpy_write(t, i, v):
    t.numpy()[i] = v


def _copy(t, i, v):
    other = t.clone()
    other[i] = v
    t.copy_(other)


def _set(t, i, v):
    other = t.clone()
    other[i] = v
    t.set_(other)


def _resize_grow(t, i, v):
    n = t.numel()
    t.resize_(n + 5)
    t[n:] = v


WRITES = {
    "index": _index_put,
    "data": _data_write,
    "numpy": _numpy_write,
    "copy_": _copy,
    "set_": _set,
    "resize_": _resize_grow,
}


def _run(layer, x, g, when, mutate):
    """Forward + backward with `mutate` applied before the forward or between the two.
    Returns (y, dx, dvalues) or the exception raised."""
    x = x.clone().requires_grad_()
    try:
        if when == "before":
            mutate()
        y = layer(x)
        if when == "between":
            mutate()
        y.backward(g)
        return y.detach(), x.grad, layer.values.grad
    except (ValueError, RuntimeError) as e:
        return e


def _check_outcome(layer, x, g, out, patterns):
    """Either an exception, or results that equal the dense layer on one of `patterns`
    (never a mixture of two)."""
    if isinstance(out, Exception):
        return
    y, dx, dv = out
    for row_ptr, col_idx, values in patterns:
        w = _dense_of(layer, row_ptr, col_idx, values)
        ry, rdx, rdw = _reference(layer, x, w, g)
        flat = st.formats.nonzero_positions(row_ptr, col_idx, layer._rows, layer._cols)
        rdv = rdw.reshape(-1)[flat]
        if (
            torch.allclose(y, ry, atol=1e-4)
            and torch.allclose(dx, rdx, atol=1e-4)
            and dv.shape == rdv.shape
            and torch.allclose(dv, rdv, atol=1e-4)
        ):
            return
    raise AssertionError("results match none of the patterns the layer could have used")


@pytest.mark.parametrize("layer_kind", list(LAYERS))
@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("buffer", ["row_ptr", "col_idx"])
@pytest.mark.parametrize("value", ["huge", "negative", "valid"])
@pytest.mark.parametrize("when", ["before", "between"])
def test_pattern_writes_never_crash_or_mix_patterns(layer_kind, write, buffer, value, when):
    torch.manual_seed(1)
    layer = LAYERS[layer_kind]()
    x = _input(layer)
    with torch.no_grad():
        g = torch.randn_like(layer(x))
    old = (layer.row_ptr.clone(), layer.col_idx.clone(), layer.values.detach().clone())
    if value == "valid":
        if write == "resize_":
            pytest.skip("a resized buffer is never a valid pattern of the same layer")
        new_ptr, new_idx = _other_valid_pattern(layer)
        src = new_ptr if buffer == "row_ptr" else new_idx

        def mutate():
            t = getattr(layer, buffer)
            if write in ("copy_", "set_"):
                WRITES[write](t, 0, int(src[0]))  # then overwrite all of it the same way
                if write == "copy_":
                    t.copy_(src)
                else:
                    t.set_(src.clone())
            else:
                for i in range(src.numel()):
                    if int(t[i]) != int(src[i]):
                        WRITES[write](t, i, int(src[i]))

        patterns = [old, (new_ptr, new_idx, old[2])] if buffer == "col_idx" else [old]
    else:
        v = {"huge": 10**9, "negative": -7}[value]
        pos = 1 if buffer == "row_ptr" else 0

        def mutate():
            WRITES[write](getattr(layer, buffer), pos, v)

        patterns = [old]
    out = _run(layer, x, g, when, mutate)
    if (
        when == "between"
        and write in ("index", "copy_", "set_", "resize_")
        and not (value == "valid" and buffer == "row_ptr")
    ):
        # Seen by the version counter: autograd refuses, as for a dense weight written in
        # place after forward (row_ptr rewritten with its own numbers changes nothing... but
        # its version: refused too, except where no entry differed and nothing was written).
        assert isinstance(out, RuntimeError), out
    _check_outcome(layer, x, g, out, patterns)
    # The layer stays usable (or names itself) afterwards.
    try:
        y = layer(x)
        assert torch.isfinite(y).all()
    except ValueError as e:
        assert type(layer).__name__ in str(e)


@pytest.mark.parametrize("layer_kind", list(LAYERS))
def test_a_valid_pattern_change_between_forward_and_backward_raises_the_version_error(layer_kind):
    layer = LAYERS[layer_kind]()
    x = _input(layer).requires_grad_()
    y = layer(x)
    new_ptr, new_idx = _other_valid_pattern(layer)
    layer.col_idx.copy_(new_idx)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    # The next forward runs on the new pattern.
    y = layer(x)
    w = _dense_of(layer, new_ptr, new_idx, layer.values.detach())
    assert_close(y, _reference(layer, x.detach(), w, torch.ones_like(y))[0], "new pattern")


def _resized_values(layer, n):
    layer.values.data = torch.randn(n)


VALUE_WRITES = {
    "shorter": lambda m: _resized_values(m, m.nnz - 3),
    "longer": lambda m: _resized_values(m, m.nnz + 50),
    "empty": lambda m: _resized_values(m, 0),
    "2-D": lambda m: setattr(m.values, "data", torch.randn(m.nnz, 1)),
    "strided": lambda m: setattr(m.values, "data", torch.randn(2 * m.nnz)[::2]),
    "resize_": lambda m: m.values.data.resize_(m.nnz + 100),
    "double": lambda m: setattr(m.values, "data", m.values.data.double()),
}


@pytest.mark.parametrize("layer_kind", list(LAYERS))
@pytest.mark.parametrize("write", list(VALUE_WRITES))
@pytest.mark.parametrize("when", ["before", "between"])
def test_values_replaced_behind_autograd_raise_naming_the_layer(layer_kind, write, when):
    layer = LAYERS[layer_kind]()
    x = _input(layer).requires_grad_()
    nnz = layer.nnz
    if when == "before":
        VALUE_WRITES[write](layer)
        v = layer.values
        if v.shape == (nnz,) and v.is_contiguous() and v.dtype == torch.float32:
            layer(x).sum().backward()  # (resize_ through .data leaves the Parameter as it was)
            assert layer.values.grad.shape == (nnz,)
            return
        with pytest.raises((ValueError, TypeError), match=type(layer).__name__):
            layer(x).sum().backward()
    else:
        y = layer(x)
        try:
            VALUE_WRITES[write](layer)
        except RuntimeError:
            return  # PyTorch itself refused the write
        try:
            y.sum().backward()
        except (RuntimeError, ValueError) as e:
            # Ours names the layer; autograd's own shape / dtype checks may come first.
            assert type(layer).__name__ in str(e) or "gradient" in str(e) or "dtype" in str(e)
        else:
            # Only a write that left the shape alone may go through (resize_ grows in place
            # and keeps the first nnz values: then the gradient has the forward's shape).
            assert write in ("resize_", "double"), write


# -- checkpoints of another shape ----------------------------------------------------------
SHAPE_PAIRS = {
    "linear in": (
        lambda: st.SparseLinear(10, 8, sparsity=0.5),
        lambda: st.SparseLinear(16, 8, sparsity=0.5),
    ),
    "conv 3x3 into 1x9": (
        lambda: st.SparseConv2d(2, 4, 3, sparsity=0.5),
        lambda: st.SparseConv2d(2, 4, (1, 9), sparsity=0.5),
    ),
    "conv 3x3 into 5x5": (
        lambda: st.SparseConv2d(2, 4, 3, sparsity=0.5),
        lambda: st.SparseConv2d(2, 4, 5, sparsity=0.5),
    ),
    "conv out channels": (
        lambda: st.SparseConv2d(2, 4, 3, sparsity=0.5),
        lambda: st.SparseConv2d(2, 6, 3, sparsity=0.5),
    ),
}


@pytest.mark.parametrize("pair", list(SHAPE_PAIRS))
@pytest.mark.parametrize("strict", [True, False])
def test_a_checkpoint_of_another_shape_is_refused(pair, strict):
    src, dst = (f() for f in SHAPE_PAIRS[pair])
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        dst.load_state_dict(src.state_dict(), strict=strict)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, before[k]), k  # nothing loaded


def test_a_checkpoint_saved_without_the_shape_still_loads():
    src, dst = st.SparseLinear(16, 8, sparsity=0.5), st.SparseLinear(16, 8, sparsity=0.9)
    sd = src.state_dict()
    del sd["weight_shape"]
    dst.load_state_dict(sd)  # strict: the missing shape is not an error
    assert torch.equal(dst.weight, src.weight)


@pytest.mark.parametrize("pair", list(SHAPE_PAIRS))
def test_sparsify_like_refuses_another_shape_before_swapping(pair):
    src, dst = (f() for f in SHAPE_PAIRS[pair])
    model = torch.nn.Sequential(dst.to_dense())
    sd = {"0." + k: v for k, v in src.state_dict().items()}
    with pytest.raises(RuntimeError, match="size mismatch"):
        st.sparsify_like(model, sd)
    assert type(model[0]) in (torch.nn.Linear, torch.nn.Conv2d)  # left as it was


# -- errors name the layer ------------------------------------------------------------------
def test_pattern_errors_name_the_layer():
    layer = st.SparseLinear(16, 8, sparsity=0.5)
    sd = layer.state_dict()
    sd["row_ptr"] = torch.zeros(5, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"SparseLinear\(16->8\).*row_ptr has length 5"):
        layer.load_state_dict(sd)
    conv = st.SparseConv2d(3, 4, 3, sparsity=0.5)
    conv.col_idx[0] = 10**6
    with pytest.raises(ValueError, match=r"SparseConv2d\(3->4, 3x3\)"):
        conv(torch.randn(1, 3, 8, 8))


# -- torch.inference_mode -------------------------------------------------------------------
def test_layers_work_inside_inference_mode_and_train_after():
    src = st.SparseLinear(30, 10, sparsity=0.5)
    layer = st.SparseLinear(30, 10, sparsity=0.9)
    x = torch.randn(4, 30)
    with torch.inference_mode():
        built = st.SparseLinear(30, 10, sparsity=0.9)
        conv = st.SparseConv2d(3, 4, 3, sparsity=0.8)
        assert built(x).shape == (4, 10)
        assert conv(torch.randn(1, 3, 6, 6)).shape == (1, 4, 4, 4)
        layer.load_state_dict(src.state_dict())  # another nnz
        assert torch.equal(layer(x), src(x))
        model = st.sparsify_like(
            torch.nn.Sequential(torch.nn.Linear(30, 10)),
            {"0." + k: v for k, v in src.state_dict().items()},
        )
        assert torch.equal(model(x), src(x))
        bad = src.state_dict()
        bad["col_idx"] = bad["col_idx"] + 1000
        with pytest.raises(ValueError):
            layer.load_state_dict(bad)
    # Outside inference mode the loaded layer still trains.
    layer(x).sum().backward()
    assert layer.values.grad.shape == (src.nnz,)


@pytest.mark.parametrize("layer_kind", list(LAYERS))
def test_a_bias_of_another_shape_is_refused_naming_the_layer(layer_kind):
    layer = LAYERS[layer_kind]()
    layer.bias.data = torch.zeros(2)
    with pytest.raises(ValueError, match=rf"{type(layer).__name__}\(.*bias has shape \(2,\)"):
        layer(_input(layer))


@pytest.mark.parametrize("layer_kind", list(LAYERS))
def test_the_same_numbers_written_between_forward_and_backward_pass(layer_kind):
    # DistributedDataParallel's buffer broadcast rewrites the pattern before every forward:
    # a model run twice before one backward must still train.
    layer = LAYERS[layer_kind]()
    x = _input(layer).requires_grad_()
    y1 = layer(x)
    layer.row_ptr.copy_(layer.row_ptr.clone())
    layer.col_idx.copy_(layer.col_idx.clone())
    y2 = layer(x)
    (y1.sum() + y2.sum()).backward()
    x2 = x.detach().clone().requires_grad_()
    (2 * layer(x2).sum()).backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_the_ops_run_on_the_layers_own_validated_copy():
    # SparseLinear hands the index it derived to the ops: no second copy of the pattern.
    from sparsetrain.functional import pattern_cache
    from sparsetrain.functional.linear import _linear_index

    layer = st.SparseLinear(40, 30, sparsity=0.8)
    entry = _linear_index(layer.row_ptr, layer.col_idx, 30, 40, "L")
    assert entry.pattern[0] is layer._pattern[0] and entry.pattern[1] is layer._pattern[1]
    assert pattern_cache.lookup(layer.row_ptr, layer.col_idx, ("linear", 30, 40), None) is entry


def test_eager_and_compiled_convolutions_share_one_set_of_plans():
    from sparsetrain.functional.conv_ops import _plans, geometry_ints

    conv = st.SparseConv2d(4, 8, 3, padding=1, sparsity=0.5)
    entry = _plans(conv.row_ptr, conv.col_idx, geometry_ints(conv._geometry), "C")
    assert entry.derived is conv._plans and entry.pattern[0] is conv._pattern[0]

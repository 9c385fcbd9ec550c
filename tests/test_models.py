"""The reference models of sparsetrain.models: the published architectures (parameter counts
as torchvision's), sparsify swaps their convolutions (depthwise included), and a sparse
training step in channels_last equals the NCHW one."""

import copy

import pytest
import torch

import sparsetrain as st
from sparsetrain.benchmarks import pruned_resnet, synthetic_batch, train_step
from sparsetrain.models import MODELS

# torchvision's counts for 1000 classes.
PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenetv2": 3_504_872,
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_architecture_sizes(name):
    model = MODELS[name]()
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2"])
def test_sparse_step_in_both_formats(name):
    model = pruned_resnet(name, 0.9, num_classes=10)
    x, y = synthetic_batch(2, 32, 10)
    report = st.sparsify(model, example_inputs=x, min_sparsity=0.5, only_if_faster=False)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    sparse = [m for m in model.modules() if isinstance(m, st.SparseConv2d)]
    assert len(convs) == 1 and len(sparse) == len(report.swapped)  # all but the stem
    if name == "mobilenetv2":
        assert any(m.groups == m.in_channels > 1 for m in sparse)  # depthwise ones too
    # Inference (running statistics: no small-batch variance to amplify rounding) agrees
    # across formats; a training step in channels_last keeps the format through the sparse
    # layers and trains.
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    model.eval(), cl.eval()
    with torch.no_grad():
        torch.testing.assert_close(cl(x_cl), model(x), rtol=1e-3, atol=1e-4)
    cl.train()
    formats = []
    hooks = [
        m.register_forward_hook(
            lambda m, i, o: formats.append(o.is_contiguous(memory_format=torch.channels_last))
        )
        for m in cl.modules()
        if isinstance(m, st.SparseConv2d)
    ]
    opt = torch.optim.SGD(cl.parameters(), lr=0.01, momentum=0.9)
    losses = [train_step(cl, opt, x_cl, y) for _ in range(2)]
    for h in hooks:
        h.remove()
    assert all(formats) and len(formats) == 2 * len(sparse)
    assert all(torch.isfinite(torch.tensor(losses)))

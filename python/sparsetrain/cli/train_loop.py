"""One epoch of ``sparsetrain train``: shuffled batches, the training steps, the batch-norm
statistics recomputed afterwards, and the validation accuracy."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from . import CLIError

if TYPE_CHECKING:
    from .data import Dataset

BN_BATCHES = 50  # training batches that set the batch-norm statistics after each epoch


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled batches; a last batch of a single image is left out (batch norm needs two)."""
    order = torch.randperm(n, generator=generator)
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    train_idx: torch.Tensor,
    batch_size: int,
    seed: int,
    epoch: int,
    after_step: Callable[[], None],
    last: pathlib.Path,
) -> tuple[float, float]:
    """(mean loss, training accuracy in %) of one epoch; ``after_step`` runs after every
    optimizer step; ``last`` (the last checkpoint) is named when the loss diverges."""
    # Seeded per epoch, so a resumed run sees the same data order as an uninterrupted one.
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    torch.manual_seed(seed * 1_000_003 + epoch)
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for step, b in enumerate(epoch_batches(len(train_idx), batch_size, g), 1):
        idx = train_idx[b]
        x, y = data.batch(idx), data.y[idx]
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        if not torch.isfinite(loss):
            raise CLIError(
                f"the loss became {loss.item()} in epoch {epoch}, step {step}: "
                f"training diverged; try a lower --lr"
                + (f" (the last good checkpoint is {last})" if last.exists() else "")
            )
        loss.backward()
        optimizer.step()
        after_step()
        total_loss += float(loss.detach()) * len(idx)
        correct += int((out.detach().argmax(1) == y).sum())
        seen += len(idx)
    return total_loss / seen, 100.0 * correct / seen


@torch.no_grad()
def recompute_bn_stats(
    model: nn.Module, data: Dataset, train_idx: torch.Tensor, batch_size: int, seed: int, epoch: int
) -> None:
    """Set the batch-norm running statistics to their plain average over up to BN_BATCHES
    training batches with the weights as they are now ("precise BN"). The running averages
    kept during training lag behind the weights by a few hundred steps, which on a small data
    set is several epochs (validation accuracy near chance while training accuracy is 100%)."""
    bns = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7)
    model.train()
    try:
        for b in epoch_batches(len(train_idx), batch_size, g)[:BN_BATCHES]:
            model(data.batch(train_idx[b]))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset, idx: torch.Tensor, batch_size: int) -> float:
    """Accuracy in % on the images ``idx`` of ``data`` (eval mode, then training mode again)."""
    model.eval()
    correct = 0
    for i in range(0, len(idx), batch_size):
        b = idx[i : i + batch_size]
        correct += int((model(data.batch(b)).argmax(1) == data.y[b]).sum())
    model.train()
    return 100.0 * correct / len(idx)

"""What the digits examples share: scikit-learn's bundled 8x8 digits (no download), a small
CNN, a training loop and the test accuracy."""

from __future__ import annotations

import gzip
import importlib.util
import pathlib

import numpy as np
import torch
from torch import nn


def _digits_csv() -> pathlib.Path:
    # Read the file scikit-learn ships rather than importing sklearn.datasets: that import
    # loads scikit-learn's own OpenMP runtime next to torch's, which nothing here needs.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the digits examples need scikit-learn (pip install scikit-learn)")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "datasets/data/digits.csv.gz"


def load_digits(train_fraction: float = 0.75, seed: int = 0):
    """((x_train, y_train), (x_test, y_test)): images (N, 1, 8, 8) scaled to [0, 1]."""
    with gzip.open(_digits_csv(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)  # 64 pixels, then the label
    x = torch.from_numpy(table[:, :64].copy()).view(-1, 1, 8, 8) / 16.0
    y = torch.from_numpy(table[:, 64].astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    n = int(train_fraction * len(y))
    return (x[:n], y[:n]), (x[n:], y[n:])


def make_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def train(
    model,
    optimizer,
    data,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    after_step=None,
    bf16: bool = False,
) -> None:
    """Plain mini-batch training; ``after_step()`` runs after every optimizer step; ``bf16``:
    forward under torch.autocast("cpu", dtype=torch.bfloat16)."""
    x, y = data
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(x[idx])
            nn.functional.cross_entropy(logits.float(), y[idx]).backward()
            optimizer.step()
            if after_step is not None:
                after_step()


@torch.no_grad()
def accuracy(model, data) -> float:
    """Test accuracy in percent."""
    x, y = data
    model.eval()
    return 100.0 * float((model(x).argmax(1) == y).float().mean())

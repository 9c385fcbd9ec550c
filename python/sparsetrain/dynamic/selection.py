"""Which connections an update drops and which it grows, deterministically.

Ties are broken by position (the lower flat position first), and NaN counts as the largest
score, as in ``torch.sort``: every process, and a reference on dense masked tensors, then
picks the same entries.
"""

from __future__ import annotations

import torch


def largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The positions (sorted, int64) of the ``k`` largest of the 1-D ``scores``."""
    n = scores.numel()
    if k <= 0:
        return torch.empty(0, dtype=torch.int64)
    if k >= n:
        return torch.arange(n, dtype=torch.int64)
    scores = torch.nan_to_num(scores.float(), nan=float("inf"))
    # The k-th largest value is the same number however topk finds it; the entries above it
    # all make the cut, and the first of those equal to it fill the rest.
    kth = torch.topk(scores, k, sorted=False).values.min()
    above = (scores > kth).nonzero().squeeze(1)
    equal = (scores == kth).nonzero().squeeze(1)[: k - above.numel()]
    return torch.cat([above, equal]).sort().values


def drop_mask(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask over a layer's nonzeros: True at the ``k`` smallest ``magnitudes``."""
    mask = torch.zeros(magnitudes.numel(), dtype=torch.bool)
    scores = torch.nan_to_num(magnitudes.float(), nan=float("inf"))
    mask[largest(-scores, k)] = True
    return mask


def grow_positions(scores: torch.Tensor, alive: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` flat positions with the largest ``scores`` (non-negative, one per weight of
    the dense matrix, flattened) among those not in ``alive`` (flat positions of the
    nonzeros that stay)."""
    scores = torch.nan_to_num(scores.reshape(-1).float(), nan=float("inf")).clone()
    scores[alive] = -1.0  # below every candidate
    return largest(scores, k)

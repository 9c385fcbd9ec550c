"""Which connections an update drops and which it grows, deterministically.

Ties are broken by position (the lower flat position first), and NaN counts as the largest
score, as in ``torch.sort``: every process, and a reference on dense masked tensors, then
picks the same entries.
"""

from __future__ import annotations

import torch


def _clean(scores: torch.Tensor) -> torch.Tensor:
    """A float copy of ``scores``, flattened, NaN made the largest value."""
    return torch.nan_to_num(scores.reshape(-1).float(), nan=float("inf"))


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The positions (ascending, int64) of the ``k`` largest of ``scores`` (no NaN)."""
    n = scores.numel()
    if k <= 0:
        return torch.empty(0, dtype=torch.int64)
    if k >= n:
        return torch.arange(n, dtype=torch.int64)
    # The k-th largest value is the same number however topk finds it; the entries above it
    # all make the cut, and the first of those equal to it fill the rest.
    kth = torch.topk(scores, k, sorted=False).values.min()
    chosen = (scores >= kth).nonzero().squeeze(1)
    if chosen.numel() > k:
        keep = scores[chosen] > kth
        ties = (~keep).nonzero().squeeze(1)[: k - int(keep.sum())]
        keep[ties] = True
        chosen = chosen[keep]
    return chosen


def largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The positions (ascending, int64) of the ``k`` largest of the 1-D ``scores``."""
    return _top(_clean(scores), k)


def drop_mask(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask over a layer's nonzeros: True at the ``k`` smallest ``magnitudes``."""
    mask = torch.zeros(magnitudes.numel(), dtype=torch.bool)
    mask[_top(_clean(magnitudes).neg_(), k)] = True
    return mask


def grow_positions(scores: torch.Tensor, alive: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` flat positions with the largest ``scores`` (non-negative, one per weight of
    the dense matrix, flattened) among those not in ``alive`` (flat positions of the
    nonzeros that stay)."""
    scores = _clean(scores)
    scores[alive] = -1.0  # below every candidate
    return _top(scores, k)

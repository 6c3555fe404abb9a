"""Classification metrics torchmetrics lacks."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

__all__ = ["MultilabelTopKAccuracy"]


class MultilabelTopKAccuracy(Metric):
    """Share of images whose ``top_k`` highest-scoring classes include at least one true class.

    This is the multi-label counterpart of top-k accuracy: "is the single best scene the camera would
    pick one of the scenes actually present?". Images without any true class are skipped.

    Args:
        num_labels: number of classes ``K``.
        top_k: how many of the highest scores may hit.
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_labels: int, top_k: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 1 <= top_k <= num_labels:
            raise ValueError(f"top_k must be in [1, {num_labels}], got {top_k}.")
        self.num_labels = num_labels
        self.top_k = top_k
        self.add_state("hits", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of scores ``(B, K)`` and multi-hot targets ``(B, K)``."""
        if preds.shape != target.shape or preds.shape[-1] != self.num_labels:
            raise ValueError(
                f"Expected preds and target of shape (B, {self.num_labels}), got {tuple(preds.shape)}, "
                f"{tuple(target.shape)}."
            )
        present = target.sum(dim=1) > 0
        best = preds.topk(self.top_k, dim=1).indices
        hit = target.gather(1, best).amax(dim=1) > 0
        self.hits += (hit & present).sum()
        self.total += present.sum()

    def compute(self) -> torch.Tensor:
        return self.hits.float() / self.total.clamp(min=1).float()

"""Segmentation metrics: boundary F-score, plus the boundary-map helpers the segmentation loss shares.

IoU and Dice come straight from torchmetrics (``MulticlassJaccardIndex``, ``MulticlassF1Score``, ...);
torchmetrics has no boundary metric, so :class:`BoundaryFScore` is written here, as a torchmetrics
``Metric`` whose states are plain counts summed across processes (DDP-synced like any torchmetrics metric).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics import Metric

__all__ = [
    "BoundaryFScore",
    "boundary_pixels",
    "dilate",
    "disk_kernel",
    "disk_offsets",
    "erode",
    "label_boundaries",
    "to_label_map",
]


@functools.lru_cache(maxsize=16)
def _disk(radius: int) -> torch.Tensor:
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)
    return ((coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2 + 1e-6).float()


def disk_kernel(radius: int, device: torch.device | None = None) -> torch.Tensor:
    """A ``(1, 1, 2r+1, 2r+1)`` float kernel that is 1 inside the Euclidean disk of ``radius`` pixels."""
    return _disk(int(radius)).to(device)[None, None]


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate a boolean ``(N, H, W)`` or ``(N, C, H, W)`` mask by a disk of ``radius`` pixels."""
    if radius <= 0:
        return mask.bool()
    shape = mask.shape
    flat = mask.reshape(-1, 1, *shape[-2:]).float()
    out = F.conv2d(flat, disk_kernel(radius, mask.device), padding=radius) > 0.5
    return out.reshape(shape)


def erode(region: torch.Tensor) -> torch.Tensor:
    """Erode a boolean ``(..., H, W)`` mask by one pixel (3x3); pixels outside the image count as inside."""
    # min-pool as -maxpool(-x): max_pool pads with -inf, so the image border never counts as a boundary.
    flat = region.reshape(-1, 1, *region.shape[-2:]).float()
    eroded = -F.max_pool2d(-flat, kernel_size=3, stride=1, padding=1)
    return eroded.reshape(region.shape) > 0.5


def boundary_pixels(labels: torch.Tensor) -> torch.Tensor:
    """Pixels of a ``(B, H, W)`` label map with an 8-neighbour of another label (inner boundaries of all regions).

    The image border is not a boundary. One pass for all classes: a pixel is on a boundary when the 3x3 maximum
    or minimum of the labels around it differs from its own label.
    """
    flat = labels.unsqueeze(1).float()
    high = F.max_pool2d(flat, kernel_size=3, stride=1, padding=1)
    low = -F.max_pool2d(-flat, kernel_size=3, stride=1, padding=1)
    return ((high != flat) | (low != flat)).squeeze(1)


@functools.lru_cache(maxsize=16)
def disk_offsets(radius: int) -> tuple[tuple[int, int], ...]:
    """Integer ``(dy, dx)`` offsets within a Euclidean disk of ``radius`` pixels."""
    r = int(radius)
    return tuple((dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r + 1e-6)


def _matched(source: torch.Tensor, other: torch.Tensor, radius: int) -> torch.Tensor:
    """Where ``source >= 0``: whether ``other`` holds the same label within ``radius`` pixels (both ``(B, H, W)``).

    Shifting the label map over the disk's offsets compares classes directly, so the cost does not grow with
    the number of classes (a per-class dilation would).
    """
    h, w = source.shape[-2:]
    padded = F.pad(other, (radius, radius, radius, radius), value=-1)
    found = torch.zeros_like(source, dtype=torch.bool)
    for dy, dx in disk_offsets(radius):
        window = padded[:, radius + dy : radius + dy + h, radius + dx : radius + dx + w]
        found |= window == source
    return found & (source >= 0)


def label_boundaries(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inner boundary pixels of every class region.

    Args:
        labels: ``(B, H, W)`` integer label map (values outside ``[0, num_classes)`` belong to no class).
        num_classes: number of classes.

    Returns:
        ``(B, num_classes, H, W)`` bool: pixels of class ``c`` with a 8-neighbour of another label.
    """
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, 1, 1)
    regions = labels.unsqueeze(1) == classes
    return regions & ~erode(regions)


def to_label_map(preds: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Turn predictions into a ``(B, H, W)`` label map.

    Accepts an integer label map ``(B, H, W)``; class scores ``(B, C, H, W)`` with ``C > 1`` (argmax); or
    binary scores ``(B, 1, H, W)`` / ``(B, H, W)`` floats. Binary floats outside ``[0, 1]`` are treated as
    logits (sigmoid first), as torchmetrics does; the foreground is ``probability > threshold``.
    """
    if not preds.is_floating_point():
        return preds.long()
    if preds.ndim == 4 and preds.shape[1] > 1:
        return preds.argmax(dim=1)
    if preds.ndim == 4:
        preds = preds[:, 0]
    if preds.min() < 0 or preds.max() > 1:
        preds = preds.sigmoid()
    return (preds > threshold).long()


class BoundaryFScore(Metric):
    """Boundary F-score: precision and recall of class-boundary pixels within a tolerance band.

    A predicted boundary pixel of class ``c`` is correct when a ground-truth boundary pixel of ``c`` lies
    within ``tolerance`` pixels (Euclidean disk); recall is the same test the other way round. Counts
    are summed over the whole dataset (and across processes), then ``F = 2PR / (P + R)`` per class. The
    score measures edge quality (hair, shoulders, fingers), which IoU barely sees.

    Pixels whose ground truth is ``ignore_index``, and their direct neighbours, are not scored.

    Args:
        num_classes: number of classes of the label maps (2 for binary person masks).
        tolerance: half-width of the band, in pixels.
        include_background: also score class 0's boundary (for binary masks it equals the person's).
        average: ``"macro"``: mean over scored classes that have a boundary in the ground truth or in the
            prediction; ``"none"``: one score per class (NaN for classes without any boundary).
        ignore_index: ground-truth value of unlabelled pixels.
        threshold: foreground threshold for binary probability inputs.

    Example:
        >>> metric = BoundaryFScore(num_classes=2, tolerance=2)
        >>> target = torch.zeros(1, 32, 32, dtype=torch.long)
        >>> target[:, 8:24, 8:24] = 1
        >>> metric(target.clone(), target)
        tensor(1.)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    pred_boundary: torch.Tensor
    pred_matched: torch.Tensor
    target_boundary: torch.Tensor
    target_matched: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        tolerance: int = 2,
        include_background: bool = False,
        average: Literal["macro", "none"] = "macro",
        ignore_index: int | None = 255,
        threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"BoundaryFScore needs num_classes >= 2 (binary masks have 2), got {num_classes}.")
        if average not in ("macro", "none"):
            raise ValueError(f"average must be 'macro' or 'none', got {average!r}.")
        self.num_classes = num_classes
        self.tolerance = int(tolerance)
        self.include_background = include_background
        self.average = average
        self.ignore_index = ignore_index
        self.threshold = threshold
        for name in ("pred_boundary", "pred_matched", "target_boundary", "target_matched"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` as accepted by :func:`to_label_map`, ``target`` a ``(B, H, W)`` label map."""
        labels = to_label_map(preds, self.threshold)
        target = target.long()
        if labels.shape != target.shape:
            raise ValueError(f"BoundaryFScore: prediction shape {tuple(labels.shape)} != target {tuple(target.shape)}")
        if self.ignore_index is not None:
            valid = erode(target != self.ignore_index)
        else:
            valid = torch.ones_like(target, dtype=torch.bool)
        in_range = (labels >= 0) & (labels < self.num_classes)
        # Boundary pixels carry their class; every other pixel is -1.
        pred_b = torch.where(boundary_pixels(labels) & valid & in_range, labels, -1)
        target_b = torch.where(boundary_pixels(target) & valid & (target < self.num_classes), target, -1)
        pred_hit = _matched(pred_b, target_b, self.tolerance)
        target_hit = _matched(target_b, pred_b, self.tolerance)

        def count(classes: torch.Tensor) -> torch.Tensor:
            return torch.bincount(classes, minlength=self.num_classes)[: self.num_classes].double()

        self.pred_boundary += count(pred_b[pred_b >= 0])
        self.target_boundary += count(target_b[target_b >= 0])
        self.pred_matched += count(pred_b[pred_hit])
        self.target_matched += count(target_b[target_hit])

    def compute(self) -> torch.Tensor:
        precision = self.pred_matched / self.pred_boundary.clamp_min(1)
        recall = self.target_matched / self.target_boundary.clamp_min(1)
        score = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        present = (self.pred_boundary + self.target_boundary) > 0
        score = torch.where(present, score, torch.nan)
        first = 0 if self.include_background else 1
        if self.average == "none":
            return score.float()
        scored = score[first:]
        scored = scored[~scored.isnan()]
        return scored.mean().float() if scored.numel() else torch.tensor(0.0, device=score.device)

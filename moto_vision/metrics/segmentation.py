"""Segmentation metrics: the boundary F-score as DAVIS defines it, plus the boundary-map helpers the loss shares.

IoU and Dice come straight from torchmetrics (``MulticlassJaccardIndex``, ``MulticlassF1Score``, ...);
torchmetrics has no boundary metric, so :class:`BoundaryFScore` is written here, following the DAVIS benchmark's
``f_measure`` / ``_seg2bmap`` (``davis2017/metrics.py`` in github.com/davisvideochallenge/davis2017-evaluation;
Perazzi et al., CVPR 2016, after Martin et al.'s BSDS ``seg2bmap``):

- boundary maps by :func:`seg2bmap` (a pixel differs from its right, lower or lower-right neighbour);
- tolerance ``ceil(0.008 x image diagonal)`` pixels by default (:func:`tolerance_pixels`), as a disk dilation;
- precision / recall / F per image, with DAVIS's rules for empty boundaries (:func:`f_from_counts`);
- void (``ignore_index``) pixels removed from both masks before their boundaries are taken.

States are per-class sums (DDP-synced by torchmetrics).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics import Metric

__all__ = [
    "BoundaryFScore",
    "PooledBoundaryFScore",
    "boundary_counts",
    "boundary_pixels",
    "dilate",
    "disk_kernel",
    "disk_offsets",
    "erode",
    "f_from_counts",
    "label_boundaries",
    "seg2bmap",
    "to_label_map",
    "tolerance_pixels",
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


#: Classes per int64 bit field (bit 63 is the sign bit; staying below it keeps the shifts plain).
_BITS = 62


def _boundary_bits(labels: torch.Tensor) -> torch.Tensor:
    """DAVIS boundary maps of every class at once: bit ``c`` of ``(..., H, W)`` int64 is class ``c``'s ``_seg2bmap``.

    Labels must be in ``[0, 62)``, or negative for pixels of no class. For one class's binary mask, ``_seg2bmap``
    marks a pixel whose mask value differs from its right, lower or lower-right neighbour (each where it exists in
    the image); two neighbouring labels that differ are such a change for both of their classes. One bit field for
    all classes keeps the cost independent of the number of classes (19 for face parsing).
    """
    bit = torch.where(labels >= 0, torch.ones_like(labels).bitwise_left_shift(labels.clamp_min(0)), 0)
    out = torch.zeros_like(bit)
    h, w = labels.shape[-2:]
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        here = (..., slice(0, h - dy), slice(0, w - dx))
        there = (..., slice(dy, h), slice(dx, w))
        change = labels[here] != labels[there]
        out[here] |= torch.where(change, bit[here] | bit[there], 0)
    return out


def _dilate_bits(bits: torch.Tensor, radius: int) -> torch.Tensor:
    """OR of ``bits`` over a Euclidean disk of ``radius`` (skimage's ``disk``: ``dx^2 + dy^2 <= r^2``).

    The disk is taken row by row: horizontal runs of half-width ``isqrt(r^2 - dy^2)``, built incrementally, then
    OR-ed at their vertical offsets (about ``4 r`` shifted ORs instead of ``pi r^2``). Outside the image is empty.
    """
    if radius <= 0:
        return bits
    h, w = bits.shape[-2:]
    widths = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    padded = F.pad(bits, (radius, radius))
    runs = [bits]
    for k in range(1, widths[0] + 1):
        runs.append(runs[-1] | padded[..., radius + k : radius + k + w] | padded[..., radius - k : radius - k + w])
    out = runs[widths[0]].clone()
    for dy in range(1, radius + 1):
        run = runs[widths[dy]]
        out[..., : h - dy, :] |= run[..., dy:, :]
        out[..., dy:, :] |= run[..., : h - dy, :]
    return out


def seg2bmap(masks: torch.Tensor) -> torch.Tensor:
    """One-pixel-wide boundary maps of binary masks ``(..., H, W)``, as DAVIS's ``_seg2bmap`` (after BSDS).

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour, so the boundary lies
    half a pixel towards the origin from the true edge and a mask and its complement have the same map. On the
    last row only the right neighbour counts, on the last column only the lower one; the bottom-right corner is
    never a boundary. The image border is not an edge.
    """
    return (_boundary_bits(masks.long()) & 2) > 0


def tolerance_pixels(tolerance: float, height: int, width: int) -> int:
    """DAVIS's ``bound_pix``: ``tolerance`` itself when ``>= 1`` (pixels), else ``ceil(tolerance x diagonal)``.

    Raises:
        ValueError: for a negative tolerance or a fractional one above 1 (a disk radius is a whole number of pixels).
    """
    if tolerance < 0 or (tolerance >= 1 and tolerance != int(tolerance)):
        raise ValueError(
            f"Boundary F tolerance must be a fraction of the image diagonal in [0, 1) (DAVIS: 0.008) or a whole "
            f"number of pixels >= 1; got {tolerance}."
        )
    if tolerance >= 1:
        return int(tolerance)
    # sqrt(h^2 + w^2) in float64, as numpy.linalg.norm(shape) in the reference (ceil is sensitive to the last bit).
    return math.ceil(tolerance * math.sqrt(height * height + width * width))


def _class_group(labels: torch.Tensor, first: int, classes: int, void: torch.Tensor | None) -> torch.Tensor:
    """Labels ``first .. first + classes - 1`` renumbered from 0; every other label and void pixels become -1."""
    labels = labels.long() - first
    outside = (labels < 0) | (labels >= classes)
    if void is not None:
        outside |= void
    return labels.masked_fill(outside, -1)


def boundary_counts(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int, radius: int, void: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boundary pixel counts of every class of label maps ``(B, H, W)``, per image, as DAVIS's ``f_measure``.

    Each class ``c`` is scored as DAVIS scores an object: the binary masks ``preds == c`` and ``target == c``,
    void pixels removed from both first (their edges then become boundaries of both), turned into boundary maps
    (:func:`seg2bmap`) and matched within a disk of ``radius`` pixels. Labels outside ``[0, num_classes)`` belong
    to no class.

    Returns:
        ``(n_pred, n_target, pred_matched, target_matched)``, each ``(B, num_classes)`` float64: boundary pixels of
        the prediction and of the target, and how many of each lie within ``radius`` of the other's.
    """
    counts = [torch.zeros(preds.shape[0], num_classes, dtype=torch.float64, device=preds.device) for _ in range(4)]
    for first in range(0, num_classes, _BITS):
        classes = min(_BITS, num_classes - first)
        pred_b = _boundary_bits(_class_group(preds, first, classes, void))
        target_b = _boundary_bits(_class_group(target, first, classes, void))
        maps = (pred_b, target_b, pred_b & _dilate_bits(target_b, radius), target_b & _dilate_bits(pred_b, radius))
        for total, bits in zip(counts, maps):
            for c in range(classes):
                total[:, first + c] = bits.bitwise_right_shift(c).bitwise_and(1).sum(dim=(-2, -1)).double()
    n_pred, n_target, pred_matched, target_matched = counts
    return n_pred, n_target, pred_matched, target_matched


def f_from_counts(
    n_pred: torch.Tensor, n_target: torch.Tensor, pred_matched: torch.Tensor, target_matched: torch.Tensor
) -> torch.Tensor:
    """Boundary F from :func:`boundary_counts`, with DAVIS's rules for empty boundaries.

    Precision is 1 without a predicted boundary, recall 1 without a true one, so: two masks without any boundary
    score 1; a missing prediction (or a boundary predicted where there is none) scores 0. ``F = 0`` when
    ``P + R = 0``.
    """
    precision = torch.where(n_pred > 0, pred_matched / n_pred.clamp_min(1), 1.0)
    recall = torch.where(n_target > 0, target_matched / n_target.clamp_min(1), 1.0)
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp_min(1e-12), 0.0)


class _BoundaryScore(Metric):
    """Shared input handling of the boundary F-scores: DAVIS's per-class counts for each image.

    Arguments: see :class:`BoundaryFScore`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    images: torch.Tensor
    #: Names of the subclass's per-class ``(num_classes,)`` float64 sum states.
    _class_states: tuple[str, ...] = ()

    def __init__(
        self,
        num_classes: int,
        tolerance: float = 0.008,
        include_background: bool = False,
        average: Literal["macro", "none"] = "macro",
        ignore_index: int | None = 255,
        threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"{type(self).__name__} needs num_classes >= 2 (binary masks have 2), got {num_classes}.")
        if average not in ("macro", "none"):
            raise ValueError(f"average must be 'macro' or 'none', got {average!r}.")
        tolerance_pixels(tolerance, 1, 1)  # validate now, not at the first batch
        self.num_classes = num_classes
        self.tolerance = float(tolerance)
        self.include_background = include_background
        self.average = average
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.add_state("images", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        for name in self._class_states:
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def _counts(self, preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(n_pred, n_target, pred_matched, target_matched)``, each ``(B, num_classes)``."""
        labels = to_label_map(preds, self.threshold)
        target = target.long()
        if labels.shape != target.shape:
            raise ValueError(
                f"{type(self).__name__}: prediction shape {tuple(labels.shape)} != target {tuple(target.shape)}"
            )
        void = None if self.ignore_index is None else target == self.ignore_index
        radius = tolerance_pixels(self.tolerance, *target.shape[-2:])
        return boundary_counts(labels, target, self.num_classes, radius, void)

    def _reduce(self, score: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Per-class ``score`` to the output: classes never present are NaN; macro averages the present ones."""
        score = torch.where(present, score, torch.nan)
        if self.average == "none":
            return score.float()
        scored = score[0 if self.include_background else 1 :]
        scored = scored[~scored.isnan()]
        if scored.numel():
            return scored.mean().float()
        # No scored class has a boundary anywhere: every image pair is two empty boundaries, which DAVIS scores 1.
        return torch.tensor(1.0 if self.images > 0 else math.nan, device=score.device)


class BoundaryFScore(_BoundaryScore):
    """Boundary F-score as the DAVIS benchmark defines it: per image, then averaged over images.

    For every image and class, the class's binary mask in the prediction and in the ground truth is turned into a
    one-pixel boundary map (:func:`seg2bmap`); a predicted boundary pixel is correct when a true one lies within
    the tolerance (a disk of :func:`tolerance_pixels` pixels: ``ceil(0.008 x diagonal)`` by default, 3 px at
    256 x 256), recall is the same test the other way round, and ``F = 2PR / (P + R)`` with DAVIS's rules for
    empty boundaries (:func:`f_from_counts`: two empty masks score 1). The score measures edge quality (hair,
    shoulders, fingers), which IoU barely sees.

    Multi-class (face parsing): every class is scored as DAVIS scores an object, its per-image F averaged over all
    images (1 where the class is absent from both masks). A class without a boundary in any image, in neither the
    prediction nor the ground truth, is not scored (NaN with ``average="none"``); ``"macro"`` averages the scored
    classes (class 0 only with ``include_background``); with no scored class at all, every image pair is empty and
    the score is 1. Pixels whose ground truth is ``ignore_index`` are removed from both masks, as DAVIS's void
    pixels. :class:`PooledBoundaryFScore` pools the counts over the dataset instead.

    Args:
        num_classes: number of classes of the label maps (2 for binary person masks).
        tolerance: fraction of the image diagonal (``< 1``, DAVIS: 0.008) or whole pixels (``>= 1``).
        include_background: also score class 0's boundary (for binary masks it equals the person's).
        average: ``"macro"`` (mean over scored classes) or ``"none"`` (one score per class).
        ignore_index: ground-truth value of void pixels (``None``: none).
        threshold: foreground threshold for binary probability inputs.

    Example:
        >>> metric = BoundaryFScore(num_classes=2)
        >>> target = torch.zeros(1, 32, 32, dtype=torch.long)
        >>> target[:, 8:24, 8:24] = 1
        >>> metric(target.clone(), target)
        tensor(1.)
    """

    f_sum: torch.Tensor
    present: torch.Tensor
    _class_states = ("f_sum", "present")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` as accepted by :func:`to_label_map`, ``target`` a ``(B, H, W)`` label map."""
        n_pred, n_target, pred_matched, target_matched = self._counts(preds, target)
        self.f_sum += f_from_counts(n_pred, n_target, pred_matched, target_matched).sum(dim=0)
        self.present += ((n_pred + n_target) > 0).sum(dim=0)
        self.images += n_pred.shape[0]

    def compute(self) -> torch.Tensor:
        return self._reduce(self.f_sum / self.images.clamp_min(1), self.present > 0)


class PooledBoundaryFScore(_BoundaryScore):
    """Boundary F-score with the boundary counts pooled over the dataset (not DAVIS's per-image mean).

    Same boundary maps, tolerance, void handling and empty-boundary rules as :class:`BoundaryFScore`, but
    precision and recall are ratios of counts summed over all images, so images with long boundaries weigh more.
    Reported for comparison with pooled tables; the tasks log the DAVIS score. Arguments as
    :class:`BoundaryFScore`.
    """

    pred_boundary: torch.Tensor
    pred_matched: torch.Tensor
    target_boundary: torch.Tensor
    target_matched: torch.Tensor
    _class_states = ("pred_boundary", "pred_matched", "target_boundary", "target_matched")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` as accepted by :func:`to_label_map`, ``target`` a ``(B, H, W)`` label map."""
        n_pred, n_target, pred_matched, target_matched = self._counts(preds, target)
        self.pred_boundary += n_pred.sum(dim=0)
        self.target_boundary += n_target.sum(dim=0)
        self.pred_matched += pred_matched.sum(dim=0)
        self.target_matched += target_matched.sum(dim=0)
        self.images += n_pred.shape[0]

    def compute(self) -> torch.Tensor:
        score = f_from_counts(self.pred_boundary, self.target_boundary, self.pred_matched, self.target_matched)
        return self._reduce(score, (self.pred_boundary + self.target_boundary) > 0)

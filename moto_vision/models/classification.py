"""Image classification head and losses on a multi-scale backbone (plain PyTorch, no Lightning).

:class:`ClassificationHead` takes the feature list a :class:`~moto_vision.backbones.Backbone` returns,
so the scene task and the multi-task model share it. :class:`ClassificationLoss` covers multi-class
(softmax cross-entropy with label smoothing) and multi-label (sigmoid binary cross-entropy, or timm's
asymmetric loss) with optional per-class weights against class imbalance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from timm.loss import AsymmetricLossMultiLabel
from torch import nn

from moto_vision.errors import OptionError
from moto_vision.models.ops import spatial_mean

__all__ = ["ClassificationHead", "ClassificationLoss", "class_weights_from_counts"]


class ClassificationHead(nn.Module):
    """Global average pooling of chosen feature maps, then dropout and a linear layer to class logits.

    Args:
        in_channels: channels of every feature map of the backbone (``Backbone.channels``).
        num_classes: number of output logits.
        feature_indices: which feature maps to pool and concatenate (default: the deepest). Adding a
            shallow one gives the head direct access to low-level statistics (exposure, colour, noise).
        hidden: width of an optional hidden layer (Linear + Hardswish, as in MobileNetV3's classifier);
            ``0`` for none.
        dropout: dropout before the last linear layer.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        feature_indices: Sequence[int] = (-1,),
        hidden: int = 0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise OptionError(f"num_classes must be positive, got {num_classes}.")
        count = len(in_channels)
        self.feature_indices = [i % count for i in feature_indices]
        width = sum(in_channels[i] for i in self.feature_indices)
        layers: list[nn.Module] = []
        if hidden > 0:
            layers += [nn.Linear(width, hidden), nn.Hardswish()]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Map the backbone's feature list to logits ``(B, num_classes)``."""
        # Global average pooling (keepdim, then a view): the form XNNPACK delegates; a plain mean splits the graph.
        pooled = [spatial_mean(features[i]).flatten(1) for i in self.feature_indices]
        return self.classifier(torch.cat(pooled, dim=1) if len(pooled) > 1 else pooled[0])


class ClassificationLoss(nn.Module):
    """Loss of a multi-class or multi-label classifier, with per-class weights.

    Multi-class: softmax cross-entropy with label smoothing, targets ``(B,)`` class indices.
    Multi-label: sigmoid binary cross-entropy (``"bce"``) or the asymmetric loss of Ridnik et al.
    (``"asymmetric"``, timm's implementation), targets ``(B, K)`` multi-hot floats.

    The class weights are a buffer (all ones by default) so they travel with checkpoints; set them from
    training-set counts with :meth:`set_class_weights` and :func:`class_weights_from_counts`.

    Args:
        num_classes: number of classes ``K``.
        multi_label: multi-label (sigmoid) instead of multi-class (softmax).
        label_smoothing: multi-class label smoothing.
        multilabel_loss: ``"bce"`` or ``"asymmetric"``.
        gamma_neg: asymmetric loss focusing of negatives.
        gamma_pos: asymmetric loss focusing of positives.
        clip: asymmetric loss probability margin on negatives.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        multi_label: bool = False,
        label_smoothing: float = 0.1,
        multilabel_loss: Literal["bce", "asymmetric"] = "bce",
        gamma_neg: float = 4.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
    ) -> None:
        super().__init__()
        self.multi_label = multi_label
        self.label_smoothing = label_smoothing
        self.multilabel_loss = multilabel_loss
        self.register_buffer("class_weights", torch.ones(num_classes))
        # Reduction "none": the per-class weights are applied here, then summed over classes and averaged
        # over the batch (the ASL paper's normalisation).
        self.asymmetric = (
            AsymmetricLossMultiLabel(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, reduction="none")
            if multi_label and multilabel_loss == "asymmetric"
            else None
        )

    def set_class_weights(self, weights: torch.Tensor) -> None:
        """Replace the per-class weights (``(K,)``)."""
        self.class_weights.copy_(weights.to(self.class_weights))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch: ``logits`` ``(B, K)``; ``target`` ``(B,)`` long or ``(B, K)`` float."""
        if not self.multi_label:
            return F.cross_entropy(logits, target, weight=self.class_weights, label_smoothing=self.label_smoothing)
        target = target.to(logits.dtype)
        if self.asymmetric is not None:
            return (self.asymmetric(logits, target) * self.class_weights).sum(dim=1).mean()
        losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return (losses * self.class_weights).mean()


def class_weights_from_counts(
    counts: torch.Tensor, mode: Literal["none", "inverse_frequency", "sqrt_inverse_frequency"]
) -> torch.Tensor:
    """Per-class loss weights from training-set class counts, normalised to mean 1.

    Classes absent from the training set get weight 0 (they contribute no loss either way).
    """
    counts = counts.float()
    if mode == "none":
        return torch.ones_like(counts)
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    if mode == "sqrt_inverse_frequency":
        weights = weights.sqrt()
    present = counts > 0
    return weights / weights[present].mean() if present.any() else torch.ones_like(counts)

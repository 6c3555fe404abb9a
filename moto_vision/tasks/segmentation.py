"""``PortraitSegmenter``: binary portrait masks and multi-class face parsing on a timm backbone."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from moto_vision.heads.base import IGNORE_INDEX
from moto_vision.heads.segmentation import SegmentationKit, segmentation_labels
from moto_vision.tasks.base import KitTask

__all__ = ["PortraitSegmenter"]


class PortraitSegmenter(KitTask):
    """Portrait (person mask) segmentation and face parsing.

    ``forward(x)`` takes sRGB images ``(B, 3, H, W)`` in ``[0, 1]`` and returns logits ``(B, C, H, W)`` at the
    input resolution: ``C = 1`` for binary portrait masks (sigmoid), ``C = num_classes`` for face parsing
    (softmax). The backbone is any timm model (``self.backbone``, a moto-vision ``Backbone``); the decoder, loss,
    metrics and pictures are those of :class:`~moto_vision.heads.SegmentationKit`, whose options
    (:class:`~moto_vision.heads.SegmentationOptions`) are arguments here under the same names.

    Args:
        backbone: timm model name of the encoder.
        pretrained: backbone weights: ``False``, a local file, or ``True`` (timm hub).
        decoder: ``mobile`` (LR-ASPP context + skip refinement, the light default), ``lraspp``, ``unet``,
            ``fpn`` or ``deeplabv3plus``.
        decoder_channels: decoder width (``None``: the decoder's default).
        num_classes: 1 for binary person masks, ``N`` for ``N``-class face parsing (``moto-vision fit`` takes the
            data's).
        class_names: names of the classes (background first); default ``["background", "person"]`` for
            binary masks and ``class_0 ...`` otherwise. They travel with checkpoints and exported models.
        image_size: input size the model is deployed at (square; ``moto-vision fit`` takes the data's).
        dice_weight: weight of the Dice loss term.
        boundary_weight: weight of the cross-entropy on a band around ground-truth boundaries.
        boundary_width: half-width in pixels of that band.
        class_weights: per-class cross-entropy weights (binary: ``[background, person]``).
        ignore_index: mask value of unlabelled pixels.
        boundary_tolerance: tolerance of the DAVIS boundary F-score metric: a fraction of the image diagonal
            (``< 1``, DAVIS: 0.008) or whole pixels (``>= 1``).
        **kwargs: the arguments every task shares (``lr``, ``weight_decay``, ``warmup_fraction``,
            ``freeze_backbone``, ``log_predictions``; see :class:`~moto_vision.tasks.BaseTask`).
    """

    kit_type = SegmentationKit
    task_name: ClassVar[str] = "segmentation"
    optimizer_defaults: ClassVar[dict[str, float]] = {"lr": 3e-3, "weight_decay": 1e-4, "warmup_fraction": 0.05}

    def __init__(
        self,
        backbone: str = "mobilenetv3_small_050",
        pretrained: bool | str = False,
        decoder: Literal["mobile", "lraspp", "unet", "fpn", "deeplabv3plus"] = "mobile",
        decoder_channels: int | None = None,
        num_classes: int = 1,
        class_names: list[str] | None = None,
        image_size: int = 256,
        dice_weight: float = 1.0,
        boundary_weight: float = 0.0,
        boundary_width: int = 3,
        class_weights: list[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
        boundary_tolerance: float = 0.008,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

    @property
    def binary(self) -> bool:
        return self.kit.binary

    @property
    def class_names(self) -> list[str]:
        """Class names, background first (two for binary masks)."""
        return self.kit.class_names

    def predict_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Label map ``(B, H, W)`` from logits (sigmoid > 0.5, i.e. logit > 0, for binary; argmax otherwise)."""
        return segmentation_labels(logits)

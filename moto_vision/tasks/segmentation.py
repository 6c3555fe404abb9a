"""``PortraitSegmenter``: binary portrait masks and multi-class face parsing on a timm backbone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryJaccardIndex,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)
from torchmetrics.wrappers import ClasswiseWrapper

from moto_vision.backbones import create_backbone
from moto_vision.callbacks.segmentation import overlay_labels
from moto_vision.metrics.segmentation import BoundaryFScore
from moto_vision.models.common import Normalize
from moto_vision.models.segmentation import SegmentationLoss, create_segmentation_decoder
from moto_vision.tasks.base import BaseTask

__all__ = ["PortraitSegmenter"]


class PortraitSegmenter(BaseTask):
    """Portrait (person mask) segmentation and face parsing.

    ``forward(x)`` takes sRGB images ``(B, 3, H, W)`` in ``[0, 1]`` and returns logits ``(B, C, H, W)`` at the
    input resolution: ``C = 1`` for binary portrait masks (sigmoid), ``C = num_classes`` for face parsing
    (softmax). The backbone is any timm model (``self.backbone``, a moto-vision ``Backbone``); the decoder
    is one of :data:`moto_vision.models.DECODERS`.

    Args:
        backbone: timm model name of the encoder.
        pretrained: backbone weights: ``False``, a local file, or ``True`` (timm hub).
        decoder: ``mobile`` (LR-ASPP context + skip refinement, the light default), ``lraspp``, ``unet``,
            ``fpn`` or ``deeplabv3plus``.
        decoder_channels: decoder width (``None``: the decoder's default).
        num_classes: 1 for binary person masks, ``N`` for ``N``-class face parsing.
        class_names: names of the classes (background first); default ``["background", "person"]`` for
            binary masks and ``class_0 ...`` otherwise. They travel with checkpoints and exported models.
        image_size: input size the model is deployed at (square).
        dice_weight: weight of the Dice loss term.
        boundary_weight: weight of the cross-entropy on a band around ground-truth boundaries.
        boundary_width: half-width in pixels of that band.
        class_weights: per-class cross-entropy weights (binary: ``[background, person]``).
        ignore_index: mask value of unlabelled pixels.
        boundary_tolerance: tolerance in pixels of the boundary F-score metric.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay (not applied to norms and biases).
        warmup_fraction: share of the steps spent in linear warm-up.
        freeze_backbone: train the decoder only.
        log_predictions: log image / ground truth / prediction grids during validation.
    """

    monitor: ClassVar[str] = "val_iou"
    monitor_mode: ClassVar[Literal["min", "max"]] = "max"
    color_domain: ClassVar[Literal["srgb", "linear"]] = "srgb"
    task_name: ClassVar[str] = "segmentation"
    target_key: ClassVar[str] = "mask"

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
        ignore_index: int = 255,
        boundary_tolerance: int = 2,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.05,
        freeze_backbone: bool = False,
        log_predictions: bool = True,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (1 = binary person mask), got {num_classes}.")
        labels = 2 if num_classes == 1 else num_classes
        if class_names is not None and len(class_names) != labels:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes={num_classes} needs {labels} "
                f"({'background and person' if num_classes == 1 else 'one per class, background first'})."
            )
        super().__init__()

    # ----------------------------------------------------------------- configuration
    @property
    def binary(self) -> bool:
        return self.hparams.num_classes == 1

    @property
    def class_names(self) -> list[str]:
        """Class names, background first (two for binary masks)."""
        if self.hparams.class_names:
            return list(self.hparams.class_names)
        if self.binary:
            return ["background", "person"]
        return [f"class_{i}" for i in range(self.hparams.num_classes)]

    def configure_models(self) -> None:
        self.normalize = Normalize()
        self.backbone = create_backbone(self.hparams.backbone, pretrained=self.hparams.pretrained)
        self.decoder = create_segmentation_decoder(
            self.hparams.decoder,
            self.backbone.channels,
            self.backbone.reductions,
            self.hparams.num_classes,
            channels=self.hparams.decoder_channels,
        )

    def configure_losses(self) -> None:
        self.criterion = SegmentationLoss(
            self.hparams.num_classes,
            dice_weight=self.hparams.dice_weight,
            boundary_weight=self.hparams.boundary_weight,
            boundary_width=self.hparams.boundary_width,
            class_weights=self.hparams.class_weights,
            ignore_index=self.hparams.ignore_index,
        )

    def configure_metrics(self) -> MetricCollection:
        ignore = self.hparams.ignore_index
        names = self.class_names
        labels = len(names)
        if self.binary:
            headline: dict[str, Any] = {
                "iou": BinaryJaccardIndex(ignore_index=ignore),
                "dice": BinaryF1Score(ignore_index=ignore),
            }
        else:
            headline = {
                "iou": MulticlassJaccardIndex(labels, average="macro", ignore_index=ignore),
                "dice": MulticlassF1Score(labels, average="macro", ignore_index=ignore),
            }
        per_class = ClasswiseWrapper(
            MulticlassJaccardIndex(labels, average="none", ignore_index=ignore), labels=names, prefix="iou_"
        )
        boundary = BoundaryFScore(labels, tolerance=self.hparams.boundary_tolerance, ignore_index=ignore)
        return MetricCollection({**headline, "per_class": per_class, "boundary_f": boundary}, compute_groups=False)

    # ----------------------------------------------------------------- forward and loss
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, H, W)`` at the input resolution for sRGB images ``(B, 3, H, W)`` in ``[0, 1]``."""
        features = self.backbone(self.normalize(x))
        return self.decoder(features, size=x.shape[-2:])

    def compute_loss(self, outputs: torch.Tensor, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self.criterion(outputs, batch["mask"])

    def predict_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Label map ``(B, H, W)`` from logits (sigmoid > 0.5, i.e. logit > 0, for binary; argmax otherwise)."""
        return (logits[:, 0] > 0).long() if self.binary else logits.argmax(1)

    def update_metrics(self, metrics: MetricCollection, outputs: torch.Tensor, batch: Mapping[str, Any]) -> None:
        metrics.update(self.predict_labels(outputs), batch["mask"])

    # ----------------------------------------------------------------- lifecycle checks
    def setup(self, stage: str) -> None:
        """Check that the datamodule's classes and image size match the model before any step runs."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        data_classes = getattr(datamodule, "class_names", None)
        data_outputs = getattr(datamodule, "num_classes", None)
        if data_outputs is not None and data_outputs != self.hparams.num_classes:
            raise ValueError(
                f"The data has {data_outputs} output class(es) ({data_classes}) but the model has num_classes="
                f"{self.hparams.num_classes}. Set --model.init_args.num_classes {data_outputs} and class_names, "
                "or change --data.init_args.labels."
            )
        if data_classes and self.hparams.class_names and list(data_classes) != list(self.hparams.class_names):
            raise ValueError(
                f"Model class_names {list(self.hparams.class_names)} differ from the data's {list(data_classes)}; "
                "make them equal (they name the output channels in checkpoints and exports)."
            )
        data_size = getattr(datamodule, "image_size", None)
        if data_size is not None and data_size != self.hparams.image_size:
            rank_zero_warn(
                f"Data image_size {data_size} differs from the model's image_size {self.hparams.image_size} "
                "(the size exports use); recipes keep them equal."
            )

    # ----------------------------------------------------------------- reporting
    def render_batch(self, batch: Mapping[str, Any], outputs: torch.Tensor, max_images: int = 8) -> torch.Tensor:
        """Rows of (image, ground truth overlay, prediction overlay)."""
        from torchvision.utils import make_grid

        count = min(max_images, batch["image"].shape[0])
        images = batch["image"][:count].float().clamp(0, 1)
        truth = batch["mask"][:count]
        predicted = self.predict_labels(outputs[:count])
        labels = len(self.class_names)
        tiles = []
        for image, t, p in zip(images, truth, predicted):
            tiles += [image, overlay_labels(image, t, labels), overlay_labels(image, p, labels)]
        return make_grid(tiles, nrow=3, padding=2, pad_value=1.0)

    def report_test_results(self, values: Mapping[str, float]) -> None:
        """Print IoU, Dice, boundary F-score and the per-class IoU table."""
        from rich.console import Console
        from rich.table import Table

        summary = Table(title=f"Test results ({'person mask' if self.binary else 'face parsing'})")
        summary.add_column("metric")
        summary.add_column("value", justify="right")
        rows = [
            ("IoU (person)" if self.binary else "mIoU", "test_iou"),
            ("Dice" if self.binary else "mean Dice", "test_dice"),
            (f"Boundary F ({self.hparams.boundary_tolerance}px)", "test_boundary_f"),
        ]
        for label, key in rows:
            if key in values:
                summary.add_row(label, f"{values[key]:.4f}")
        per_class = Table(title="IoU per class")
        per_class.add_column("class")
        per_class.add_column("IoU", justify="right")
        for name in self.class_names:
            key = f"test_iou_{name}"
            if key in values:
                per_class.add_row(name, f"{values[key]:.4f}")
        console = Console()
        console.print(summary)
        console.print(per_class)

    def export_metadata(self) -> dict[str, Any]:
        meta = super().export_metadata()
        meta.update(
            {
                "class_names": self.class_names,
                "num_classes": self.hparams.num_classes,
                "output": "logits",
                "activation": "sigmoid" if self.binary else "softmax",
                "image_size": self.hparams.image_size,
                "decoder": self.hparams.decoder,
            }
        )
        return meta

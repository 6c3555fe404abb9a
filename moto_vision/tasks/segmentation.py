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

__all__ = [
    "check_mask_classes",
    "mask_class_names",
    "PortraitSegmenter",
    "print_segmentation_report",
    "render_segmentation_grid",
    "segmentation_labels",
    "segmentation_metrics",
]


def segmentation_metrics(
    class_names: list[str],
    *,
    binary: bool,
    ignore_index: int = 255,
    boundary_tolerance: float = 0.008,
    core_only: bool = False,
) -> MetricCollection:
    """The portrait / face-parsing metrics: IoU, Dice, per-class IoU and boundary F-score.

    Shared by :class:`PortraitSegmenter` and the multi-task model, so both report the same numbers under the same
    names. The collection is updated with label maps (:func:`segmentation_labels`) and ``long`` masks.

    Args:
        class_names: class names, background first (two for binary masks).
        binary: person masks (one logit channel) rather than multi-class parsing.
        ignore_index: mask value of unlabelled pixels.
        boundary_tolerance: tolerance of the DAVIS boundary F-score: a fraction of the image diagonal (``< 1``,
            DAVIS: 0.008) or whole pixels (``>= 1``).
        core_only: IoU and Dice only (cheap enough for every training step).
    """
    labels = len(class_names)
    if binary:
        headline: dict[str, Any] = {
            "iou": BinaryJaccardIndex(ignore_index=ignore_index),
            "dice": BinaryF1Score(ignore_index=ignore_index),
        }
    else:
        headline = {
            "iou": MulticlassJaccardIndex(labels, average="macro", ignore_index=ignore_index),
            "dice": MulticlassF1Score(labels, average="macro", ignore_index=ignore_index),
        }
    if core_only:
        return MetricCollection(headline, compute_groups=False)
    per_class = ClasswiseWrapper(
        MulticlassJaccardIndex(labels, average="none", ignore_index=ignore_index), labels=class_names, prefix="iou_"
    )
    boundary = BoundaryFScore(labels, tolerance=boundary_tolerance, ignore_index=ignore_index)
    return MetricCollection({**headline, "per_class": per_class, "boundary_f": boundary}, compute_groups=False)


def check_mask_classes(num_classes: int, class_names: list[str] | None, prefix: str = "") -> None:
    """Raise a ``ValueError`` unless ``num_classes >= 1`` and ``class_names`` (if given) has one name per class.

    Binary masks (``num_classes == 1``) have two names, background and person. ``prefix`` is the argument names'
    prefix in the error (``"portrait_"`` for :class:`~moto_vision.tasks.MultiTaskPerception`).
    """
    if num_classes < 1:
        raise ValueError(f"{prefix}num_classes must be >= 1 (1 = binary person mask), got {num_classes}.")
    labels = 2 if num_classes == 1 else num_classes
    if class_names is not None and len(class_names) != labels:
        raise ValueError(
            f"{prefix}class_names has {len(class_names)} names but {prefix}num_classes={num_classes} needs {labels} "
            f"({'background and person' if num_classes == 1 else 'one per class, background first'})."
        )


def mask_class_names(num_classes: int, class_names: list[str] | None = None) -> list[str]:
    """Names of the mask classes, background first.

    ``class_names`` when given, else ``background, person`` for binary masks (``num_classes == 1``) or
    ``class_0 ... class_{N-1}``.
    """
    if class_names:
        return list(class_names)
    if num_classes == 1:
        return ["background", "person"]
    return [f"class_{i}" for i in range(num_classes)]


def segmentation_labels(logits: torch.Tensor) -> torch.Tensor:
    """Label map ``(B, H, W)`` from logits: sigmoid > 0.5 (logit > 0) for one channel, arg-max otherwise."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)


def render_segmentation_grid(
    images: torch.Tensor, truth: torch.Tensor, logits: torch.Tensor, num_labels: int, max_images: int = 8
) -> torch.Tensor:
    """Rows of (image, ground-truth overlay, prediction overlay) as one ``(3, H, W)`` picture in ``[0, 1]``."""
    from torchvision.utils import make_grid

    count = min(max_images, images.shape[0])
    images = images[:count].float().clamp(0, 1)
    predicted = segmentation_labels(logits[:count])
    tiles = []
    for image, t, p in zip(images, truth[:count], predicted):
        tiles += [image, overlay_labels(image, t, num_labels), overlay_labels(image, p, num_labels)]
    return make_grid(tiles, nrow=3, padding=2, pad_value=1.0)


def _tolerance_text(tolerance: float) -> str:
    return f"{tolerance:g} x diagonal" if tolerance < 1 else f"{tolerance:g} px"


def print_segmentation_report(
    values: Mapping[str, float],
    class_names: list[str],
    *,
    binary: bool,
    boundary_tolerance: float,
    prefix: str = "test_",
    title: str | None = None,
) -> None:
    """Print IoU, Dice, boundary F-score and the per-class IoU table of test metrics named ``<prefix><metric>``."""
    from rich.console import Console
    from rich.table import Table

    summary = Table(title=title or f"Test results ({'person mask' if binary else 'face parsing'})")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    rows = [
        ("IoU (person)" if binary else "mIoU", "iou"),
        ("Dice" if binary else "mean Dice", "dice"),
        (f"Boundary F (DAVIS, {_tolerance_text(boundary_tolerance)})", "boundary_f"),
    ]
    for label, key in rows:
        if f"{prefix}{key}" in values:
            summary.add_row(label, f"{values[f'{prefix}{key}']:.4f}")
    per_class = Table(title="IoU per class")
    per_class.add_column("class")
    per_class.add_column("IoU", justify="right")
    for name in class_names:
        key = f"{prefix}iou_{name}"
        if key in values:
            per_class.add_row(name, f"{values[key]:.4f}")
    console = Console()
    console.print(summary)
    console.print(per_class)


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
        boundary_tolerance: tolerance of the DAVIS boundary F-score metric: a fraction of the image diagonal
            (``< 1``, DAVIS: 0.008) or whole pixels (``>= 1``).
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
        boundary_tolerance: float = 0.008,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.05,
        freeze_backbone: bool = False,
        log_predictions: bool = True,
    ) -> None:
        check_mask_classes(num_classes, class_names)
        super().__init__()

    # ----------------------------------------------------------------- configuration
    @property
    def binary(self) -> bool:
        return self.hparams.num_classes == 1

    @property
    def class_names(self) -> list[str]:
        """Class names, background first (two for binary masks)."""
        return mask_class_names(self.hparams.num_classes, self.hparams.class_names)

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
        return segmentation_metrics(
            self.class_names,
            binary=self.binary,
            ignore_index=self.hparams.ignore_index,
            boundary_tolerance=self.hparams.boundary_tolerance,
        )

    # ----------------------------------------------------------------- forward and loss
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, H, W)`` at the input resolution for sRGB images ``(B, 3, H, W)`` in ``[0, 1]``."""
        features = self.backbone(self.normalize(x))
        return self.decoder(features, size=x.shape[-2:])

    def compute_loss(self, outputs: torch.Tensor, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self.criterion(outputs, batch["mask"])

    def predict_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Label map ``(B, H, W)`` from logits (sigmoid > 0.5, i.e. logit > 0, for binary; argmax otherwise)."""
        return segmentation_labels(logits)

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
        return render_segmentation_grid(
            batch["image"], batch["mask"], outputs, len(self.class_names), max_images=max_images
        )

    def report_test_results(self, values: Mapping[str, float]) -> None:
        """Print IoU, Dice, boundary F-score and the per-class IoU table."""
        print_segmentation_report(
            values, self.class_names, binary=self.binary, boundary_tolerance=self.hparams.boundary_tolerance
        )

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

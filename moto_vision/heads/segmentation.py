"""The portrait kit: person masks and face parsing with a segmentation decoder on every backbone level."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryJaccardIndex,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)
from torchmetrics.wrappers import ClasswiseWrapper

from moto_vision.errors import OptionError
from moto_vision.heads.base import IGNORE_INDEX, TaskKit
from moto_vision.heads.registry import register_kit
from moto_vision.metrics.segmentation import BoundaryFScore
from moto_vision.models.segmentation import SegmentationLoss, create_segmentation_decoder
from moto_vision.viz import overlay_labels

__all__ = [
    "SegmentationKit",
    "SegmentationOptions",
    "check_mask_classes",
    "mask_class_names",
    "print_segmentation_report",
    "render_segmentation_grid",
    "segmentation_labels",
    "segmentation_metrics",
]

Decoder = Literal["mobile", "lraspp", "unet", "fpn", "deeplabv3plus"]


@dataclass(frozen=True)
class SegmentationOptions:
    """Options of the portrait / face-parsing head.

    Args:
        decoder: ``mobile`` (LR-ASPP context + skip refinement, the light default), ``lraspp``, ``unet``, ``fpn``
            or ``deeplabv3plus``.
        decoder_channels: decoder width (``None``: the decoder's default).
        num_classes: 1 for binary person masks, ``N`` for ``N``-class face parsing.
        class_names: names of the classes, background first (default: ``background, person`` for binary masks,
            else ``class_0 ...``). They travel with checkpoints and exported models.
        dice_weight: weight of the Dice loss term.
        boundary_weight: weight of the cross-entropy on a band around ground-truth boundaries.
        boundary_width: half-width in pixels of that band.
        class_weights: per-class cross-entropy weights (binary: ``[background, person]``).
        ignore_index: mask value of unlabelled pixels.
        boundary_tolerance: tolerance of the DAVIS boundary F-score metric: a fraction of the image diagonal
            (``< 1``, DAVIS: 0.008) or whole pixels (``>= 1``).
    """

    decoder: Decoder = "mobile"
    decoder_channels: int | None = None
    num_classes: int = 1
    class_names: list[str] | None = None
    dice_weight: float = 1.0
    boundary_weight: float = 0.0
    boundary_width: int = 3
    class_weights: list[float] | None = None
    ignore_index: int = IGNORE_INDEX
    boundary_tolerance: float = 0.008


@register_kit
class SegmentationKit(TaskKit):
    """Portrait segmentation and face parsing: logits ``(B, C, H, W)`` at the input size (``C = 1``: sigmoid)."""

    name = "portrait"
    target_key = "mask"
    domain = "srgb"
    fill_value = IGNORE_INDEX
    datamodule = "moto_vision.data.PortraitDataModule"
    options_type = SegmentationOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        check_mask_classes(self.options.num_classes, self.options.class_names)

    @property
    def headline(self) -> str:
        return "iou"

    @property
    def headline_mode(self) -> Literal["min", "max"]:
        return "max"

    @property
    def binary(self) -> bool:
        return self.options.num_classes == 1

    @property
    def class_names(self) -> list[str]:
        """Class names, background first (two for binary masks)."""
        return mask_class_names(self.options.num_classes, self.options.class_names)

    # ------------------------------------------------------------------------------------------ model
    def build(self, channels: Sequence[int], reductions: Sequence[int]) -> dict[str, nn.Module]:
        o = self.options
        decoder = create_segmentation_decoder(
            o.decoder, channels, reductions, o.num_classes, channels=o.decoder_channels
        )
        return {"decoder": decoder}

    def forward(self, parts: Any, features: Sequence[Tensor], image: Tensor) -> Tensor:
        return parts.decoder(features, size=image.shape[-2:])

    # ------------------------------------------------------------------------------------------ training
    def build_loss(self) -> nn.Module:
        o = self.options
        return SegmentationLoss(
            o.num_classes,
            dice_weight=o.dice_weight,
            boundary_weight=o.boundary_weight,
            boundary_width=o.boundary_width,
            class_weights=o.class_weights,
            ignore_index=o.ignore_index,
        )

    def metrics(self, core_only: bool = False) -> MetricCollection:
        return segmentation_metrics(
            self.class_names,
            binary=self.binary,
            ignore_index=self.options.ignore_index,
            boundary_tolerance=self.options.boundary_tolerance,
            core_only=core_only,
        )

    def update(
        self, parts: Any, metrics: Iterable[tuple[str, Metric]], output: Tensor, target: Tensor, prefix: str = ""
    ) -> None:
        labels = segmentation_labels(output)
        for _, metric in metrics:
            metric.update(labels, target)

    # ------------------------------------------------------------------------------------------ reporting
    def render(self, parts: Any, images: Tensor, output: Tensor, target: Tensor, max_images: int = 8) -> Tensor:
        return render_segmentation_grid(images, target, output, len(self.class_names), max_images=max_images)

    def report(self, parts: Any, values: Mapping[str, float], *, prefix: str, title: str | None = None) -> None:
        print_segmentation_report(
            values,
            self.class_names,
            binary=self.binary,
            boundary_tolerance=self.options.boundary_tolerance,
            prefix=prefix,
            title=title,
        )

    def export_metadata(self, parts: Any) -> dict[str, Any]:
        o = self.options
        return {
            "output": "logits",
            "shape": ["batch", o.num_classes, "height", "width"],
            "activation": "sigmoid" if self.binary else "softmax",
            "class_names": self.class_names,
            "num_classes": o.num_classes,
            "decoder": o.decoder,
        }

    def check_data(self, datamodule: Any, where: str = "--model.init_args.") -> None:
        data_classes = getattr(datamodule, "class_names", None)
        data_outputs = getattr(datamodule, "num_classes", None)
        num_classes, names = self.options.num_classes, self.options.class_names
        if data_outputs is not None and data_outputs != num_classes:
            raise OptionError(
                f"The portrait data has {data_outputs} output class(es) ({data_classes}) but the model has "
                f"num_classes={num_classes}. Set {where}num_classes {data_outputs} and {where}class_names, or "
                "change the data's labels."
            )
        if data_classes and names and list(data_classes) != list(names):
            raise OptionError(
                f"Model class_names {list(names)} differ from the portrait data's {list(data_classes)}; make them "
                f"equal ({where}class_names): they name the output channels in checkpoints and exports."
            )


def segmentation_metrics(
    class_names: list[str],
    *,
    binary: bool,
    ignore_index: int = IGNORE_INDEX,
    boundary_tolerance: float = 0.008,
    core_only: bool = False,
) -> MetricCollection:
    """The portrait / face-parsing metrics: IoU, Dice, per-class IoU and boundary F-score.

    The collection is updated with label maps (:func:`segmentation_labels`) and ``long`` masks.

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
    prefix in the error.
    """
    if num_classes < 1:
        raise OptionError(f"{prefix}num_classes must be >= 1 (1 = binary person mask), got {num_classes}.")
    labels = 2 if num_classes == 1 else num_classes
    if class_names is not None and len(class_names) != labels:
        raise OptionError(
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


def segmentation_labels(logits: Tensor) -> Tensor:
    """Label map ``(B, H, W)`` from logits: sigmoid > 0.5 (logit > 0) for one channel, arg-max otherwise."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)


def render_segmentation_grid(
    images: Tensor, truth: Tensor, logits: Tensor, num_labels: int, max_images: int = 8
) -> Tensor:
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

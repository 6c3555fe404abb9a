"""The scene kit: a pooled classifier with calibrated scores (temperature scaling, per-class thresholds).

Multi-class heads (one best scene) train with softmax cross-entropy and label smoothing; multi-label heads
(independent scenes that co-occur: portrait + night + backlight) with sigmoid binary cross-entropy or the asymmetric
loss. After every validation epoch the kit calibrates its head on the validation outputs (:meth:`SceneKit.calibrate`):
a temperature and, for multi-label heads, one decision threshold per class that maximises F1. Both are buffers of the
head's :class:`~moto_vision.models.ScoreCalibrator` part, so every checkpoint carries the calibration fitted for its
own weights; the exported graph returns the calibrated scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)
from torchmetrics.wrappers import ClasswiseWrapper

from moto_vision.errors import OptionError
from moto_vision.heads.base import TaskKit
from moto_vision.heads.registry import register_kit
from moto_vision.heads.scene_taxonomy import resolve_class_names
from moto_vision.metrics.calibration import MultilabelCalibrationError, expected_calibration_error
from moto_vision.metrics.classification import MultilabelTopKAccuracy
from moto_vision.models.calibration import ScoreCalibrator
from moto_vision.models.classification import ClassificationHead, ClassificationLoss, class_weights_from_counts

__all__ = ["SceneKit", "SceneOptions", "calibrate_scores", "scene_metrics", "update_scene_metrics"]

#: Metrics fed with decisions (thresholded scores) rather than scores in multi-label mode.
_DECISION_METRICS = {"f1_macro", "f1_micro", "precision", "recall", "exact_match"}


@dataclass(frozen=True)
class SceneOptions:
    """Options of the scene head.

    Args:
        class_names: the scene classes, in label order: a list, ``"synthetic"`` (the classes of the embedded
            synthetic dataset), ``"camera"`` (the 30-class camera taxonomy,
            :data:`~moto_vision.heads.scene_taxonomy.CAMERA_SCENES`) or a text file with one name per line. Stored
            in checkpoints as the resolved list.
        multi_label: independent sigmoid scores with per-class thresholds (several scenes per image) instead of
            one softmax over the classes.
        feature_indices: backbone feature maps the head pools (default: the deepest, ``[-1]``); adding a shallow
            one (e.g. ``[1, -1]``) exposes low-level exposure and noise statistics to the head.
        hidden: width of a hidden layer in the head (``0``: linear head).
        dropout: dropout before the last layer.
        label_smoothing: multi-class label smoothing.
        multilabel_loss: ``"bce"`` (better-calibrated raw scores) or ``"asymmetric"`` (ASL, for many rare labels).
        loss_weighting: per-class loss weights from training-set class counts against imbalance.
        temperature_scaling: fit the temperature on the validation set after every validation epoch (thresholds
            of multi-label heads are always fitted).
        top_k: ``k`` of the top-k accuracy and of the scenes written by ``predict``.
        ece_bins: number of confidence bins of the expected calibration error.
    """

    class_names: list[str] | str = "synthetic"
    multi_label: bool = False
    feature_indices: list[int] | None = None
    hidden: int = 0
    dropout: float = 0.2
    label_smoothing: float = 0.1
    multilabel_loss: Literal["bce", "asymmetric"] = "bce"
    loss_weighting: Literal["none", "inverse_frequency", "sqrt_inverse_frequency"] = "none"
    temperature_scaling: bool = True
    top_k: int = 3
    ece_bins: int = 15


@register_kit
class SceneKit(TaskKit):
    """Scene detection: logits ``(B, K)``; the deployed graph returns calibrated scores."""

    name = "scene"
    target_key = "label"
    domain = "srgb"
    fill_value = -1
    datamodule = "moto_vision.data.SceneDataModule"
    options_type = SceneOptions
    calibrates = True

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        names = resolve_class_names(self.options.class_names)
        if len(names) < 2:
            raise OptionError(f"Scene detection needs at least two classes, got {names}.")
        # The resolved list replaces a taxonomy name or file path, so checkpoints are self-contained.
        self.options = dataclasses.replace(self.options, class_names=names)

    @property
    def class_names(self) -> list[str]:
        return list(self.options.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.options.class_names)

    @property
    def multi_label(self) -> bool:
        return bool(self.options.multi_label)

    @property
    def top_k(self) -> int:
        return max(1, min(int(self.options.top_k), self.num_classes))

    @property
    def headline(self) -> str:
        # Multi-label models are selected by mAP: threshold-free, so selection does not chase the fitted thresholds.
        return "map" if self.multi_label else "top1"

    @property
    def headline_mode(self) -> Literal["min", "max"]:
        return "max"

    def feature_levels(self, num_levels: int) -> list[int]:
        return sorted({i % num_levels for i in self.options.feature_indices or [-1]})

    # ------------------------------------------------------------------------------------------ model
    def build(self, channels: Sequence[int], reductions: Sequence[int]) -> dict[str, nn.Module]:
        o = self.options
        head = ClassificationHead(
            channels, self.num_classes, feature_indices=o.feature_indices or [-1], hidden=o.hidden, dropout=o.dropout
        )
        return {"head": head, "calibrator": ScoreCalibrator(self.num_classes, multi_label=self.multi_label)}

    def forward(self, parts: Any, features: Sequence[Tensor], image: Tensor) -> Tensor:
        return parts.head(features)

    def export_output(self, parts: Any, output: Tensor) -> Tensor:
        return parts.calibrator(output)

    def output_from_export(self, parts: Any, exported: Tensor) -> Tensor:
        return parts.calibrator.logits_from_scores(exported)

    # ------------------------------------------------------------------------------------------ training
    def build_loss(self) -> nn.Module:
        o = self.options
        return ClassificationLoss(
            self.num_classes,
            multi_label=self.multi_label,
            label_smoothing=o.label_smoothing,
            multilabel_loss=o.multilabel_loss,
        )

    def setup_loss(self, criterion: nn.Module, datamodule: Any) -> None:
        mode = self.options.loss_weighting
        if mode != "none" and hasattr(datamodule, "class_counts"):
            criterion.set_class_weights(class_weights_from_counts(datamodule.class_counts(), mode))

    def metrics(self, core_only: bool = False) -> MetricCollection:
        return scene_metrics(
            self.class_names,
            multi_label=self.multi_label,
            top_k=self.top_k,
            ece_bins=self.options.ece_bins,
            core_only=core_only,
        )

    def update(
        self, parts: Any, metrics: Iterable[tuple[str, Metric]], output: Tensor, target: Tensor, prefix: str = ""
    ) -> None:
        update_scene_metrics(metrics, parts.calibrator, output, target, prefix=prefix)

    def calibrate(self, parts: Any, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        o = self.options
        report = calibrate_scores(
            parts.calibrator, outputs, targets, temperature=o.temperature_scaling, ece_bins=o.ece_bins
        )
        return {
            "temperature": report["temperature"],
            "ece_before_calibration": report["ece_before"],
            "ece_after_calibration": report["ece_after"],
        }

    # ------------------------------------------------------------------------------------------ reporting
    def thresholds(self, parts: Any) -> list[float] | None:
        """The fitted per-class thresholds (multi-label), else ``None``."""
        return [float(t) for t in parts.calibrator.thresholds] if self.multi_label else None

    def render(self, parts: Any, images: Tensor, output: Tensor, target: Tensor, max_images: int = 8) -> Tensor:
        from moto_vision.heads.scene_report import render_predictions

        probs = parts.calibrator(output[:max_images].detach().float())
        return render_predictions(
            images[:max_images],
            probs,
            target[:max_images],
            self.class_names,
            multi_label=self.multi_label,
            thresholds=parts.calibrator.thresholds,
        )

    def report(
        self,
        parts: Any,
        values: Mapping[str, float],
        *,
        prefix: str,
        title: str | None = None,
        confusion_png: Any = None,
    ) -> None:
        from moto_vision.heads.scene_report import print_scene_report

        print_scene_report(
            values,
            class_names=self.class_names,
            multi_label=self.multi_label,
            temperature=float(parts.calibrator.temperature),
            thresholds=self.thresholds(parts),
            top_k=self.top_k,
            confusion_png=confusion_png,
            prefix=prefix,
        )

    def export_metadata(self, parts: Any) -> dict[str, Any]:
        return {
            "output": "calibrated_scores",
            "shape": ["batch", self.num_classes],
            "activation": "sigmoid" if self.multi_label else "softmax",
            "class_names": self.class_names,
            "multi_label": self.multi_label,
            "temperature": float(parts.calibrator.temperature),
            "decision": "per_class_threshold" if self.multi_label else "argmax",
            "thresholds": self.thresholds(parts),
            "top_k": self.top_k,
        }

    def check_data(self, datamodule: Any, where: str = "--model.init_args.") -> None:
        data_names = getattr(datamodule, "class_names", None)
        if data_names is not None and list(data_names) != self.class_names:
            listing = data_names if len(data_names) <= 40 else f"{len(data_names)} classes (first: {data_names[:5]})"
            raise OptionError(
                f"The scene data's classes {listing} differ from the model's {self.class_names} (names and order "
                f"must match). Pass the data's classes to the model: {where}class_names '[...]' or a text file with "
                "one name per line, or choose the data's classes with the data's `classes`."
            )
        data_multi_label = getattr(datamodule, "multi_label", None)
        if data_multi_label is not None and bool(data_multi_label) != self.multi_label:
            raise OptionError(
                f"The model's multi_label={self.multi_label} but the scene data's multi_label={data_multi_label}; set "
                f"both the same ({where}multi_label)."
            )


def scene_metrics(
    class_names: list[str], *, multi_label: bool, top_k: int = 3, ece_bins: int = 15, core_only: bool = False
) -> MetricCollection:
    """The scene-detection metrics.

    Multi-class: top-1 / top-k accuracy, F1, per-class precision and recall, calibration error before and after
    temperature scaling. Multi-label: mAP, top-1 (the best scene is present), F1 with the fitted thresholds, exact
    match, per-class precision and recall, calibration errors. Update it with :func:`update_scene_metrics`.

    Args:
        class_names: the classes in label order.
        multi_label: sigmoid scores with per-class thresholds instead of one softmax.
        top_k: ``k`` of the top-k accuracy (clipped to the number of classes).
        ece_bins: bins of the expected calibration error.
        core_only: the few headline metrics only (cheap enough for training steps).
    """
    k, names = len(class_names), list(class_names)
    top_k = max(1, min(int(top_k), k))
    metrics: dict[str, Metric] = {}
    if multi_label:
        metrics["map"] = MultilabelAveragePrecision(k, average="macro")
        metrics["top1"] = MultilabelTopKAccuracy(k, top_k=1)
        metrics["f1_macro"] = MultilabelF1Score(k, average="macro")
        if not core_only:
            if top_k > 1:
                metrics[f"top{top_k}"] = MultilabelTopKAccuracy(k, top_k=top_k)
            metrics["f1_micro"] = MultilabelF1Score(k, average="micro")
            metrics["exact_match"] = MultilabelExactMatch(k)
            metrics["precision"] = ClasswiseWrapper(MultilabelPrecision(k, average=None), names, prefix="precision_")
            metrics["recall"] = ClasswiseWrapper(MultilabelRecall(k, average=None), names, prefix="recall_")
            metrics["ece"] = MultilabelCalibrationError(k, n_bins=ece_bins)
            metrics["ece_uncalibrated"] = MultilabelCalibrationError(k, n_bins=ece_bins)
    else:
        metrics["top1"] = MulticlassAccuracy(k, top_k=1, average="micro")
        metrics["f1_macro"] = MulticlassF1Score(k, average="macro")
        if not core_only:
            if top_k > 1:
                metrics[f"top{top_k}"] = MulticlassAccuracy(k, top_k=top_k, average="micro")
            metrics["f1_micro"] = MulticlassF1Score(k, average="micro")
            metrics["precision"] = ClasswiseWrapper(MulticlassPrecision(k, average=None), names, prefix="precision_")
            metrics["recall"] = ClasswiseWrapper(MulticlassRecall(k, average=None), names, prefix="recall_")
            metrics["ece"] = MulticlassCalibrationError(k, n_bins=ece_bins)
            metrics["ece_uncalibrated"] = MulticlassCalibrationError(k, n_bins=ece_bins)
    # Metrics are updated one by one with different inputs (scores, decisions), so no shared compute groups.
    return MetricCollection(metrics, compute_groups=False)


def update_scene_metrics(
    metrics: Iterable[tuple[str, Metric]],
    calibrator: ScoreCalibrator,
    logits: Tensor,
    target: Tensor,
    prefix: str = "",
) -> None:
    """Update :func:`scene_metrics` from logits: each metric gets the scores or decisions it is defined on.

    Args:
        metrics: ``(name, metric)`` pairs, e.g. ``collection.items(keep_base=True, copy_state=False)``.
        calibrator: the head's calibrator (temperature and thresholds).
        logits: ``(B, K)`` logits.
        target: ``(B,)`` class indices or ``(B, K)`` multi-hot labels.
        prefix: stripped from the names before they are matched (e.g. ``"scene_"`` in the multi-task model).
    """
    multi_label = calibrator.multi_label
    probs = calibrator.probabilities(logits, calibrated=True)
    if multi_label:
        target = target.round().long()
    decisions = calibrator.decide(probs).float() if multi_label else None
    for name, metric in metrics:
        name = name.removeprefix(prefix)
        if name == "ece_uncalibrated":
            metric.update(calibrator.probabilities(logits, calibrated=False), target)
        elif decisions is not None and name in _DECISION_METRICS:
            metric.update(decisions, target)
        else:
            metric.update(probs, target)


@torch.no_grad()
def calibrate_scores(
    calibrator: ScoreCalibrator,
    logits: Tensor,
    targets: Tensor,
    *,
    temperature: bool = True,
    ece_bins: int = 15,
) -> dict[str, float]:
    """Fit ``calibrator`` (temperature, multi-label thresholds) on held-out logits and report the calibration error.

    Returns:
        ``temperature``, ``ece_before``, ``ece_after``, ``nll_before`` and ``nll_after``.
    """
    multi_label = calibrator.multi_label
    logits, targets = logits.detach().float().cpu(), targets.detach().cpu()
    if multi_label:
        targets = targets.round().long()
    device = calibrator.temperature.device
    raw = calibrator.probabilities(logits.to(device), calibrated=False).cpu()
    before = expected_calibration_error(raw, targets, multi_label=multi_label, n_bins=ece_bins)
    report = calibrator.fit(logits, targets, temperature=temperature)
    calibrated = calibrator.probabilities(logits.to(device), calibrated=True).cpu()
    after = expected_calibration_error(calibrated, targets, multi_label=multi_label, n_bins=ece_bins)
    return {**report, "ece_before": before, "ece_after": after}

"""``SceneClassifier``: camera scene detection with calibrated scores.

A timm backbone and a pooled linear head give ``(B, K)`` logits. Multi-class models (one best scene)
train with softmax cross-entropy and label smoothing; multi-label models (independent scenes that
co-occur: portrait + night + backlight) with sigmoid binary cross-entropy or the asymmetric loss.

After every validation epoch the model calibrates itself on the validation set: a temperature
(temperature scaling) and, for multi-label models, one decision threshold per class that maximises
F1. Both are buffers of the model, so every checkpoint carries the calibration fitted for its own
weights, ``SceneClassifier.load_from_checkpoint(path)`` restores it, and :meth:`export_metadata`
reports it. The exported graph (:meth:`export_module`) returns the calibrated scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelAveragePrecision,
    MultilabelConfusionMatrix,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)
from torchmetrics.wrappers import ClasswiseWrapper

from moto_vision.backbones import create_backbone
from moto_vision.data.scene.taxonomy import resolve_class_names
from moto_vision.metrics.calibration import MultilabelCalibrationError, expected_calibration_error
from moto_vision.metrics.classification import MultilabelTopKAccuracy
from moto_vision.models.calibration import ScoreCalibrator
from moto_vision.models.classification import ClassificationHead, ClassificationLoss, class_weights_from_counts
from moto_vision.models.common import Normalize
from moto_vision.tasks.base import BaseTask

__all__ = ["CalibratedSceneModel", "SceneClassifier", "calibrate_scores", "scene_metrics", "update_scene_metrics"]

Batch = dict[str, Any]

#: Metrics fed with decisions (thresholded scores) rather than scores in multi-label mode.
_DECISION_METRICS = {"f1_macro", "f1_micro", "precision", "recall", "exact_match"}


def scene_metrics(
    class_names: list[str], *, multi_label: bool, top_k: int = 3, ece_bins: int = 15, core_only: bool = False
) -> MetricCollection:
    """The scene-detection metrics (shared by :class:`SceneClassifier` and the multi-task model).

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
    logits: torch.Tensor,
    target: torch.Tensor,
    prefix: str = "",
) -> None:
    """Update :func:`scene_metrics` from logits: each metric gets the scores or decisions it is defined on.

    Args:
        metrics: ``(name, metric)`` pairs, e.g. ``collection.items(keep_base=True, copy_state=False)``.
        calibrator: the model's calibrator (temperature and thresholds).
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
    logits: torch.Tensor,
    targets: torch.Tensor,
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


class CalibratedSceneModel(nn.Module):
    """The exported scene model: ``[0, 1]`` sRGB image ``(B, 3, H, W)`` -> calibrated scores ``(B, K)``.

    Normalisation, backbone, head and the fitted temperature are inside the graph, so the phone applies
    only the per-class thresholds (multi-label) or takes the arg-max (multi-class).
    """

    def __init__(self, normalize: nn.Module, backbone: nn.Module, head: nn.Module, calibrator: ScoreCalibrator) -> None:
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone
        self.head = head
        self.calibrator = calibrator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.calibrator(self.head(self.backbone(self.normalize(x))))


class SceneClassifier(BaseTask):
    """Scene detection: sRGB image -> scene logits, with calibrated scores and per-class thresholds.

    Args:
        class_names: the scene classes, in label order: a list, ``"synthetic"`` (the classes of the
            embedded synthetic dataset), ``"camera"`` (the 30-class camera taxonomy,
            :data:`~moto_vision.data.scene.taxonomy.CAMERA_SCENES`) or a text file with one name per line.
            Stored in the checkpoint as the resolved list.
        multi_label: independent sigmoid scores with per-class thresholds (several scenes per image)
            instead of one softmax over the classes.
        backbone: timm model name.
        pretrained: ``False``, a local weights file, or ``True`` for timm hub weights.
        image_size: the deploy input size (keep equal to the data's ``image_size``).
        feature_indices: backbone feature maps the head pools (``-1`` = deepest); adding a shallow one
            (e.g. ``[1, -1]``) exposes low-level exposure and noise statistics to the head.
        hidden: width of a hidden layer in the head (``0``: linear head).
        dropout: dropout before the last layer.
        label_smoothing: multi-class label smoothing.
        multilabel_loss: ``"bce"`` (better-calibrated raw scores) or ``"asymmetric"`` (ASL, for many
            rare labels).
        loss_weighting: per-class loss weights from training-set class counts against imbalance.
        temperature_scaling: fit the temperature on the validation set after every validation epoch
            (thresholds of multi-label models are always fitted).
        top_k: ``k`` of the top-k accuracy and of the scenes written by ``predict``.
        ece_bins: number of confidence bins of the expected calibration error.
        lr: peak learning rate (AdamW, warm-up then cosine).
        weight_decay: AdamW weight decay (not applied to norms and biases).
        warmup_fraction: share of the steps spent warming up.
        freeze_backbone: train the head only.
        log_predictions: log a grid of labelled validation predictions every epoch.
    """

    monitor = "val_top1"
    monitor_mode = "max"
    color_domain = "srgb"
    task_name = "scene"
    target_key = "label"

    def __init__(
        self,
        class_names: list[str] | str = "synthetic",
        multi_label: bool = False,
        backbone: str = "mobilenetv3_small_050",
        pretrained: bool | str = False,
        image_size: int = 64,
        feature_indices: list[int] | None = None,
        hidden: int = 0,
        dropout: float = 0.2,
        label_smoothing: float = 0.1,
        multilabel_loss: Literal["bce", "asymmetric"] = "bce",
        loss_weighting: Literal["none", "inverse_frequency", "sqrt_inverse_frequency"] = "none",
        temperature_scaling: bool = True,
        top_k: int = 3,
        ece_bins: int = 15,
        lr: float = 3e-3,
        weight_decay: float = 0.02,
        warmup_fraction: float = 0.05,
        freeze_backbone: bool = False,
        log_predictions: bool = True,
    ) -> None:
        super().__init__()
        # Training tracks a few headline metrics; per-class and calibration metrics are for val and test.
        self.train_metrics = self._metrics(core_only=True).clone(prefix="train_")
        self.test_confusion = (
            MultilabelConfusionMatrix(self.num_classes) if multi_label else MulticlassConfusionMatrix(self.num_classes)
        )
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._last_confusion_png: Path | None = None

    # ----------------------------------------------------------------- model
    def configure_models(self) -> None:
        names = resolve_class_names(self.hparams.class_names)
        if len(names) < 2:
            raise ValueError(f"Scene detection needs at least two classes, got {names}.")
        # The resolved list replaces a taxonomy name or file path, so checkpoints are self-contained.
        self.hparams.class_names = names
        self.class_names: list[str] = names
        self.num_classes = len(names)
        self.multi_label = bool(self.hparams.multi_label)
        if self.multi_label:
            self.monitor = "val_map"  # threshold-free, so model selection does not chase the fitted thresholds
        self.top_k = max(1, min(int(self.hparams.top_k), self.num_classes))
        self.normalize = Normalize()
        self.backbone = create_backbone(self.hparams.backbone, pretrained=self.hparams.pretrained)
        self.head = ClassificationHead(
            self.backbone.channels,
            self.num_classes,
            feature_indices=self.hparams.feature_indices or [-1],
            hidden=self.hparams.hidden,
            dropout=self.hparams.dropout,
        )
        self.calibrator = ScoreCalibrator(self.num_classes, multi_label=self.multi_label)

    def configure_losses(self) -> None:
        self.criterion = ClassificationLoss(
            self.num_classes,
            multi_label=self.multi_label,
            label_smoothing=self.hparams.label_smoothing,
            multilabel_loss=self.hparams.multilabel_loss,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scene logits ``(B, K)`` of sRGB images ``(B, 3, H, W)`` in ``[0, 1]``."""
        return self.head(self.backbone(self.normalize(x)))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated scene probabilities ``(B, K)`` (softmax or sigmoid of the temperature-scaled logits)."""
        return self.calibrator(self(x))

    @property
    def temperature(self) -> float:
        """The fitted temperature (1.0 until calibrated)."""
        return float(self.calibrator.temperature)

    @property
    def thresholds(self) -> list[float]:
        """Per-class decision thresholds of multi-label models (0.5 until fitted)."""
        return [float(t) for t in self.calibrator.thresholds]

    def compute_loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": self.criterion(outputs, batch["label"])}

    # ----------------------------------------------------------------- metrics
    def configure_metrics(self) -> MetricCollection:
        return self._metrics(core_only=False)

    def _metrics(self, *, core_only: bool) -> MetricCollection:
        return scene_metrics(
            self.class_names,
            multi_label=self.multi_label,
            top_k=self.top_k,
            ece_bins=self.hparams.ece_bins,
            core_only=core_only,
        )

    def update_metrics(self, metrics: MetricCollection, outputs: torch.Tensor, batch: Batch) -> None:
        self._update_from_logits(metrics, outputs, batch["label"])

    def _update_from_logits(self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor) -> None:
        update_scene_metrics(metrics.items(keep_base=True, copy_state=False), self.calibrator, logits, target)

    # ----------------------------------------------------------------- setup: data checks and class weights
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        data_names = getattr(datamodule, "class_names", None)
        if stage != "predict" and data_names is not None and list(data_names) != self.class_names:
            listing = data_names if len(data_names) <= 40 else f"{len(data_names)} classes (first: {data_names[:5]})"
            raise ValueError(
                f"The data's classes {listing} differ from the model's {self.class_names} (names and order must "
                "match). Pass the data's classes to the model: --model.class_names '[...]' or a text file with one "
                "name per line, or choose the data's classes with --data.classes."
            )
        data_multi_label = getattr(datamodule, "multi_label", None)
        if data_multi_label is not None and bool(data_multi_label) != self.multi_label:
            raise ValueError(
                f"model.multi_label={self.multi_label} but data.multi_label={data_multi_label}; set both the same."
            )
        mode = self.hparams.loss_weighting
        if stage == "fit" and mode != "none" and hasattr(datamodule, "class_counts"):
            counts = datamodule.class_counts()
            self.criterion.set_class_weights(class_weights_from_counts(counts, mode))

    # ----------------------------------------------------------------- calibration
    @torch.no_grad()
    def calibrate(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Fit the temperature (and multi-label thresholds) on held-out logits and targets.

        Returns:
            ``temperature``, ``ece_before``, ``ece_after``, ``nll_before`` and ``nll_after``.
        """
        return calibrate_scores(
            self.calibrator,
            logits,
            targets,
            temperature=self.hparams.temperature_scaling,
            ece_bins=self.hparams.ece_bins,
        )

    @torch.no_grad()
    def calibrate_on(self, dataloader: Any) -> dict[str, float]:
        """Run the model over a labelled dataloader (held-out data) and :meth:`calibrate` on its outputs."""
        was_training = self.training
        self.eval()
        logits, targets = [], []
        for batch in dataloader:
            logits.append(self(batch["image"].to(self.device)).cpu())
            targets.append(batch["label"])
        self.train(was_training)
        return self.calibrate(torch.cat(logits), torch.cat(targets))

    # ----------------------------------------------------------------- loops
    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        result = super().validation_step(batch, batch_idx, dataloader_idx)
        self._val_outputs.append((result["outputs"].detach(), batch["label"].detach()))
        return result

    def on_validation_epoch_end(self) -> None:
        outputs, self._val_outputs = self._val_outputs, []
        sanity = self._trainer is not None and self.trainer.sanity_checking
        if outputs and not sanity:
            logits = torch.cat([o for o, _ in outputs])
            targets = torch.cat([t for _, t in outputs])
            all_logits, all_targets = logits, targets
            if self._trainer is not None and self.trainer.world_size > 1:
                all_logits = self.all_gather(logits).flatten(0, 1)
                all_targets = self.all_gather(targets).flatten(0, 1)
            report = self.calibrate(all_logits, all_targets)
            self.log_dict(
                {
                    "val_temperature": report["temperature"],
                    "val_ece_before_calibration": report["ece_before"],
                    "val_ece_after_calibration": report["ece_after"],
                }
            )
            # Score the epoch with the calibration just fitted, i.e. exactly as this checkpoint will behave.
            self.val_metrics.reset()
            self._update_from_logits(self.val_metrics, logits, targets)
        super().on_validation_epoch_end()

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        result = super().test_step(batch, batch_idx, dataloader_idx)
        probs = self.calibrator(result["outputs"].detach())
        if self.multi_label:
            self.test_confusion.update(self.calibrator.decide(probs).long(), batch["label"].round().long())
        else:
            self.test_confusion.update(probs.argmax(dim=-1), batch["label"])
        return result

    def on_test_epoch_end(self) -> None:
        if self.test_confusion.update_called:
            self._last_confusion_png = self._write_confusion_matrix(self.test_confusion.compute())
            self.test_confusion.reset()
        super().on_test_epoch_end()

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        probs = self.predict_proba(batch["image"])
        paths = batch.get("path")
        if paths is None:  # synthetic images have no file
            paths = [f"batch{batch_idx:05d}_{i:03d}" for i in range(probs.shape[0])]
        return {"scores": probs, "path": list(paths)}

    # ----------------------------------------------------------------- reporting
    def _write_confusion_matrix(self, confusion: torch.Tensor) -> Path | None:
        from moto_vision.tasks.scene_report import plot_confusion

        if self._trainer is None:
            return None
        run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        path = plot_confusion(confusion.cpu(), self.class_names, run_dir / "confusion_matrix.png")
        for logger in self.trainer.loggers:
            kind = type(logger).__name__
            if kind == "TensorBoardLogger":
                from moto_vision.tasks.scene_report import read_png

                logger.experiment.add_image("test_confusion_matrix", read_png(path), global_step=self.global_step)
            elif kind == "WandbLogger":
                logger.log_image(key="test_confusion_matrix", images=[str(path)])
        return path

    def report_test_results(self, values: Mapping[str, float]) -> None:
        from moto_vision.tasks.scene_report import print_scene_report

        print_scene_report(
            values,
            class_names=self.class_names,
            multi_label=self.multi_label,
            temperature=self.temperature,
            thresholds=self.thresholds if self.multi_label else None,
            top_k=self.top_k,
            confusion_png=self._last_confusion_png,
        )

    def render_batch(self, batch: Batch, outputs: Any, max_images: int = 8) -> torch.Tensor | None:
        from moto_vision.tasks.scene_report import render_predictions

        probs = self.calibrator(outputs[:max_images].detach().float())
        return render_predictions(
            batch["image"][:max_images],
            probs,
            batch["label"][:max_images],
            self.class_names,
            multi_label=self.multi_label,
            thresholds=self.calibrator.thresholds,
        )

    # ----------------------------------------------------------------- export and checkpoints
    def export_module(self) -> nn.Module:
        """The deployed graph: ``[0, 1]`` sRGB image -> calibrated scene scores ``(B, K)``."""
        return CalibratedSceneModel(self.normalize, self.backbone, self.head, self.calibrator)

    def outputs_from_export(self, scores: torch.Tensor) -> torch.Tensor:
        """Logits equivalent to the exported calibrated scores, so exported models are scored by this task's metrics.

        ``moto_vision.deploy`` calls it on the outputs of :meth:`export_module`. ``sigmoid(z / T) = p`` gives
        ``z = T * logit(p)``; ``softmax(z / T) = p`` gives ``z = T * log(p)`` up to a per-image constant, which no
        softmax, arg-max, loss or metric sees.
        """
        temperature = self.calibrator.temperature.to(scores.dtype)
        if self.multi_label:
            return temperature * torch.logit(scores, eps=1e-6)
        return temperature * scores.clamp_min(1e-30).log()

    def export_metadata(self) -> dict[str, Any]:
        meta = super().export_metadata()
        meta.update(
            {
                "class_names": list(self.class_names),
                "multi_label": self.multi_label,
                "image_size": int(self.hparams.image_size),
                "output": "calibrated_scores",
                "activation": "sigmoid" if self.multi_label else "softmax",
                "temperature": self.temperature,
                "decision": "per_class_threshold" if self.multi_label else "argmax",
                "thresholds": self.thresholds if self.multi_label else None,
                "top_k": self.top_k,
            }
        )
        return meta

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # Also readable without building the model (the buffers are the source of truth when loading).
        checkpoint["moto_vision"]["scene"] = {
            "class_names": list(self.class_names),
            "multi_label": self.multi_label,
            "temperature": self.temperature,
            "thresholds": self.thresholds,
        }

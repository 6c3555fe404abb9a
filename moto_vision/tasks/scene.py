"""``SceneClassifier``: camera scene detection with calibrated scores.

A timm backbone and a pooled linear head give ``(B, K)`` logits. Multi-class models (one best scene)
train with softmax cross-entropy and label smoothing; multi-label models (independent scenes that
co-occur: portrait + night + backlight) with sigmoid binary cross-entropy or the asymmetric loss.

After every validation epoch the model calibrates itself on the validation set (the scene kit's
:meth:`~moto_vision.heads.SceneKit.calibrate`): a temperature (temperature scaling) and, for multi-label models,
one decision threshold per class that maximises F1. Both are buffers of the model, so every checkpoint carries the
calibration fitted for its own weights, ``SceneClassifier.load_from_checkpoint(path)`` restores it, and
:meth:`export_metadata` reports it. The exported graph (:meth:`export_module`) returns the calibrated scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torchmetrics.classification import MulticlassConfusionMatrix, MultilabelConfusionMatrix

from moto_vision import viz
from moto_vision.heads.scene import SceneKit, calibrate_scores
from moto_vision.tasks.base import KitTask

__all__ = ["SceneClassifier"]

Batch = dict[str, Any]


class SceneClassifier(KitTask):
    """Scene detection: sRGB image -> scene logits, with calibrated scores and per-class thresholds.

    The head, loss, metrics, calibration and pictures are those of :class:`~moto_vision.heads.SceneKit`; its
    options (:class:`~moto_vision.heads.SceneOptions`) are arguments here under the same names.

    Args:
        class_names: the scene classes, in label order: a list, ``"synthetic"`` (the classes of the
            embedded synthetic dataset), ``"camera"`` (the 30-class camera taxonomy,
            :data:`~moto_vision.heads.scene_taxonomy.CAMERA_SCENES`) or a text file with one name per line.
            Stored in the checkpoint as the resolved list.
        multi_label: independent sigmoid scores with per-class thresholds (several scenes per image)
            instead of one softmax over the classes (``moto-vision fit`` takes the data's).
        backbone: timm model name.
        pretrained: ``False``, a local weights file, or ``True`` for timm hub weights.
        image_size: the deploy input size (``moto-vision fit`` takes the data's ``image_size``).
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
        **kwargs: the arguments every task shares (``lr``, ``weight_decay``, ``warmup_fraction``,
            ``freeze_backbone``, ``log_predictions``; see :class:`~moto_vision.tasks.BaseTask`).
    """

    kit_type = SceneKit
    kit: SceneKit
    task_name: ClassVar[str] = "scene"
    optimizer_defaults: ClassVar[dict[str, float]] = {"lr": 3e-3, "weight_decay": 0.02, "warmup_fraction": 0.05}

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Training tracks a few headline metrics; per-class and calibration metrics are for val and test.
        self.train_metrics = self.kit.metrics(core_only=True).clone(prefix="train_")
        k = self.num_classes
        self.test_confusion = MultilabelConfusionMatrix(k) if self.multi_label else MulticlassConfusionMatrix(k)
        self._last_confusion_png: Path | None = None

    # ----------------------------------------------------------------- facts
    @property
    def class_names(self) -> list[str]:
        return self.kit.class_names

    @property
    def num_classes(self) -> int:
        return self.kit.num_classes

    @property
    def multi_label(self) -> bool:
        return self.kit.multi_label

    @property
    def top_k(self) -> int:
        return self.kit.top_k

    @property
    def temperature(self) -> float:
        """The fitted temperature (1.0 until calibrated)."""
        return float(self.calibrator.temperature)

    @property
    def thresholds(self) -> list[float]:
        """Per-class decision thresholds of multi-label models (0.5 until fitted)."""
        return [float(t) for t in self.calibrator.thresholds]

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated scene probabilities ``(B, K)`` (softmax or sigmoid of the temperature-scaled logits)."""
        return self.calibrator(self(x))

    # ----------------------------------------------------------------- calibration
    @torch.no_grad()
    def calibrate(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Fit the temperature (and multi-label thresholds) on held-out logits and targets.

        Returns:
            ``temperature``, ``ece_before``, ``ece_after``, ``nll_before`` and ``nll_after``.
        """
        o = self.kit.options
        return calibrate_scores(
            self.calibrator, logits, targets, temperature=o.temperature_scaling, ece_bins=o.ece_bins
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
        from moto_vision.heads.scene_report import plot_confusion

        if self._trainer is None:
            return None
        run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        path = plot_confusion(confusion.cpu(), self.class_names, run_dir / "confusion_matrix.png")
        viz.log_image(self.trainer.loggers, "test_confusion_matrix", path, self.global_step)
        return path

    def report_test_results(self, values: Mapping[str, float]) -> None:
        self.kit.report(self, values, prefix="test_", title=None, confusion_png=self._last_confusion_png)

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # Also readable without building the model (the buffers are the source of truth when loading).
        checkpoint["moto_vision"]["scene"] = {
            "class_names": list(self.class_names),
            "multi_label": self.multi_label,
            "temperature": self.temperature,
            "thresholds": self.thresholds,
        }

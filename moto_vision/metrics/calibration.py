"""Expected calibration error (ECE) of classifier scores, as torchmetrics ``Metric`` classes.

Multi-class models use torchmetrics' own :class:`~torchmetrics.classification.MulticlassCalibrationError`
(top-label ECE: the confidence of the arg-max class against its accuracy). torchmetrics has no
multi-label version, so :class:`MultilabelCalibrationError` treats every (image, class) pair as one
binary prediction and bins the per-class scores against how often the class is present, which is the
reliability a camera needs when it thresholds each scene score on its own.

:func:`CalibrationError` picks the right one: ``CalibrationError("multilabel", num_classes=9)``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torchmetrics import Metric
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

__all__ = ["CalibrationError", "MultilabelCalibrationError", "expected_calibration_error"]


class MultilabelCalibrationError(BinaryCalibrationError):
    """ECE of independent per-class probabilities ``(B, K)`` against multi-hot targets ``(B, K)``.

    Args:
        num_labels: number of classes ``K``.
        n_bins: number of equal-width confidence bins.
        norm: ``"l1"`` (ECE), ``"l2"`` (RMS calibration error) or ``"max"`` (MCE).
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    def __init__(
        self, num_labels: int, n_bins: int = 15, norm: Literal["l1", "l2", "max"] = "l1", **kwargs: Any
    ) -> None:
        super().__init__(n_bins=n_bins, norm=norm, **kwargs)
        self.num_labels = num_labels

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` probabilities (or logits) ``(B, K)``, ``target`` multi-hot ``(B, K)``."""
        if preds.ndim != 2 or preds.shape[1] != self.num_labels or target.shape != preds.shape:
            raise ValueError(
                f"MultilabelCalibrationError expects preds and target of shape (B, {self.num_labels}); got "
                f"{tuple(preds.shape)} and {tuple(target.shape)}."
            )
        super().update(preds.reshape(-1), target.reshape(-1).long())


def CalibrationError(  # noqa: N802 - a factory that reads like the class it returns, as in torchmetrics
    task: Literal["multiclass", "multilabel"], num_classes: int, n_bins: int = 15, norm: str = "l1", **kwargs: Any
) -> Metric:
    """The ECE metric of a ``"multiclass"`` or ``"multilabel"`` classifier with ``num_classes`` classes."""
    if task == "multiclass":
        return MulticlassCalibrationError(num_classes=num_classes, n_bins=n_bins, norm=norm, **kwargs)
    if task == "multilabel":
        return MultilabelCalibrationError(num_labels=num_classes, n_bins=n_bins, norm=norm, **kwargs)
    raise ValueError(f"task must be 'multiclass' or 'multilabel', got {task!r}.")


def expected_calibration_error(
    probs: torch.Tensor, targets: torch.Tensor, *, multi_label: bool, n_bins: int = 15
) -> float:
    """ECE of a whole set of probabilities at once (``(N, K)``; targets ``(N,)`` or ``(N, K)``)."""
    metric = CalibrationError("multilabel" if multi_label else "multiclass", probs.shape[-1], n_bins=n_bins)
    metric.update(probs.detach().float().cpu(), targets.detach().cpu())
    return float(metric.compute())

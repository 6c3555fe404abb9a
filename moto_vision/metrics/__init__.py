"""torchmetrics ``Metric`` classes for the camera tasks (no Lightning; DDP-synced by torchmetrics)."""

from moto_vision.metrics.angular import (
    AngularError,
    error_statistics,
    recovery_angular_error,
    reproduction_angular_error,
)
from moto_vision.metrics.calibration import CalibrationError, MultilabelCalibrationError, expected_calibration_error
from moto_vision.metrics.classification import MultilabelTopKAccuracy
from moto_vision.metrics.collection import flatten_metrics
from moto_vision.metrics.segmentation import BoundaryFScore

__all__ = [
    "AngularError",
    "BoundaryFScore",
    "CalibrationError",
    "MultilabelCalibrationError",
    "MultilabelTopKAccuracy",
    "error_statistics",
    "expected_calibration_error",
    "flatten_metrics",
    "recovery_angular_error",
    "reproduction_angular_error",
]

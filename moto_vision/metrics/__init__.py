"""torchmetrics ``Metric`` classes for the camera tasks (no Lightning; DDP-synced by torchmetrics)."""

from moto_vision.metrics.calibration import CalibrationError, MultilabelCalibrationError, expected_calibration_error
from moto_vision.metrics.classification import MultilabelTopKAccuracy
from moto_vision.metrics.segmentation import BoundaryFScore

__all__ = [
    "BoundaryFScore",
    "CalibrationError",
    "MultilabelCalibrationError",
    "MultilabelTopKAccuracy",
    "expected_calibration_error",
]

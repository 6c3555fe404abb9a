"""Plain ``nn.Module`` building blocks: heads, decoders, normalisation, classical baselines (no Lightning)."""

from moto_vision.models.calibration import ScoreCalibrator, fit_temperature, fit_thresholds
from moto_vision.models.classification import ClassificationHead, ClassificationLoss, class_weights_from_counts
from moto_vision.models.common import Normalize

__all__ = [
    "ClassificationHead",
    "ClassificationLoss",
    "Normalize",
    "ScoreCalibrator",
    "class_weights_from_counts",
    "fit_temperature",
    "fit_thresholds",
]

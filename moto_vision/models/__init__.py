"""Plain ``nn.Module`` building blocks: heads, decoders, normalisation, classical baselines (no Lightning)."""

from moto_vision.models.awb import (
    AngularLoss,
    ConfidencePoolingHead,
    GrayEdge,
    GrayWorld,
    PoolingMLPHead,
    ShadesOfGray,
    WhitePatch,
    apply_white_balance,
    create_baseline,
)
from moto_vision.models.calibration import ScoreCalibrator, fit_temperature, fit_thresholds
from moto_vision.models.classification import ClassificationHead, ClassificationLoss, class_weights_from_counts
from moto_vision.models.common import Normalize

__all__ = [
    "AngularLoss",
    "ClassificationHead",
    "ClassificationLoss",
    "ConfidencePoolingHead",
    "GrayEdge",
    "GrayWorld",
    "Normalize",
    "PoolingMLPHead",
    "ScoreCalibrator",
    "ShadesOfGray",
    "WhitePatch",
    "apply_white_balance",
    "class_weights_from_counts",
    "create_baseline",
    "fit_temperature",
    "fit_thresholds",
]

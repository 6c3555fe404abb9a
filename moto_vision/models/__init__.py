"""Plain ``nn.Module`` building blocks: heads, decoders, normalisation, classical baselines (no Lightning)."""

from moto_vision.models.calibration import ScoreCalibrator, fit_temperature, fit_thresholds
from moto_vision.models.classification import ClassificationHead, ClassificationLoss, class_weights_from_counts
from moto_vision.models.common import Normalize
from moto_vision.models.segmentation import (
    DECODERS,
    DeepLabV3PlusDecoder,
    FPNDecoder,
    LRASPPDecoder,
    MobileDecoder,
    SegmentationLoss,
    UNetDecoder,
    create_segmentation_decoder,
)

__all__ = [
    "DECODERS",
    "ClassificationHead",
    "ClassificationLoss",
    "DeepLabV3PlusDecoder",
    "FPNDecoder",
    "LRASPPDecoder",
    "MobileDecoder",
    "Normalize",
    "ScoreCalibrator",
    "SegmentationLoss",
    "UNetDecoder",
    "class_weights_from_counts",
    "create_segmentation_decoder",
    "fit_temperature",
    "fit_thresholds",
]

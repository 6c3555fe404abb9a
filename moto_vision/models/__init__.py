"""Plain ``nn.Module`` building blocks: heads, decoders, normalisation, classical baselines (no Lightning)."""

from moto_vision.models.awb import (
    AngularLoss,
    CameraPriorHead,
    ConfidencePoolingHead,
    GrayEdge,
    GrayWorld,
    PoolingMLPHead,
    ShadesOfGray,
    WhitePatch,
    apply_white_balance,
    channel_reference,
    create_baseline,
)
from moto_vision.models.calibration import ScoreCalibrator, fit_temperature, fit_thresholds
from moto_vision.models.classification import ClassificationHead, ClassificationLoss, class_weights_from_counts
from moto_vision.models.common import Normalize
from moto_vision.models.multitask import (
    ClassificationBranch,
    FixedWeighting,
    GradNormWeighting,
    IlluminantBranch,
    LossWeighting,
    SegmentationBranch,
    UncertaintyWeighting,
)
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
    "AngularLoss",
    "CameraPriorHead",
    "ClassificationBranch",
    "ClassificationHead",
    "ClassificationLoss",
    "ConfidencePoolingHead",
    "DeepLabV3PlusDecoder",
    "FixedWeighting",
    "FPNDecoder",
    "GrayEdge",
    "GrayWorld",
    "IlluminantBranch",
    "LRASPPDecoder",
    "LossWeighting",
    "MobileDecoder",
    "Normalize",
    "PoolingMLPHead",
    "ScoreCalibrator",
    "SegmentationBranch",
    "SegmentationLoss",
    "ShadesOfGray",
    "UNetDecoder",
    "GradNormWeighting",
    "UncertaintyWeighting",
    "WhitePatch",
    "apply_white_balance",
    "channel_reference",
    "class_weights_from_counts",
    "create_baseline",
    "create_segmentation_decoder",
    "fit_temperature",
    "fit_thresholds",
]

"""Plain ``nn.Module`` building blocks: heads, decoders, normalisation, classical baselines (no Lightning)."""

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
    "DeepLabV3PlusDecoder",
    "FPNDecoder",
    "LRASPPDecoder",
    "MobileDecoder",
    "Normalize",
    "SegmentationLoss",
    "UNetDecoder",
    "create_segmentation_decoder",
]

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
from moto_vision.models.common import Normalize

__all__ = [
    "AngularLoss",
    "ConfidencePoolingHead",
    "GrayEdge",
    "GrayWorld",
    "Normalize",
    "PoolingMLPHead",
    "ShadesOfGray",
    "WhitePatch",
    "apply_white_balance",
    "create_baseline",
]

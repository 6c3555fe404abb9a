"""Plain ``nn.Module`` building blocks: heads, decoders, normalisation, classical baselines (no Lightning)."""

from moto_vision.models.common import Normalize

__all__ = ["Normalize"]

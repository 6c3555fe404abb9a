"""torchmetrics ``Metric`` classes for the camera tasks (no Lightning; DDP-synced by torchmetrics)."""

from moto_vision.metrics.segmentation import BoundaryFScore

__all__: list[str] = ["BoundaryFScore"]

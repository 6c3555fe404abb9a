"""torchmetrics ``Metric`` classes for the camera tasks (no Lightning; DDP-synced by torchmetrics)."""

from moto_vision.metrics.angular import (
    AngularError,
    error_statistics,
    recovery_angular_error,
    reproduction_angular_error,
)

__all__ = ["AngularError", "error_statistics", "recovery_angular_error", "reproduction_angular_error"]

"""torchmetrics ``Metric`` classes for the camera tasks (no Lightning; DDP-synced by torchmetrics)."""

__all__: list[str] = []

"""Helpers for the values a ``MetricCollection`` computes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["flatten_metrics"]


def flatten_metrics(values: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten nested metric results into one level: ``{"angular": {"mean": t}}`` -> ``{"angular_mean": t}``.

    Metrics that return a dict of statistics (such as :class:`~moto_vision.metrics.AngularError`) nest inside a
    ``MetricCollection``'s result; loggers and reports want flat names. Entries that are not tensors are dropped.
    """
    flat: dict[str, torch.Tensor] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{prefix}{key}_"))
        elif isinstance(value, torch.Tensor):
            flat[f"{prefix}{key}"] = value
    return flat

"""LightningModules for the camera tasks."""

from moto_vision.tasks.awb import AWBRegressor
from moto_vision.tasks.base import BaseTask

__all__ = ["AWBRegressor", "BaseTask"]

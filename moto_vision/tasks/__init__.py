"""LightningModules for the camera tasks."""

from moto_vision.tasks.base import BaseTask

__all__ = ["BaseTask"]

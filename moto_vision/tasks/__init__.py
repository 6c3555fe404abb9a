"""LightningModules for the camera tasks."""

from moto_vision.tasks.base import BaseTask
from moto_vision.tasks.scene import SceneClassifier
from moto_vision.tasks.segmentation import PortraitSegmenter

__all__ = ["BaseTask", "PortraitSegmenter", "SceneClassifier"]

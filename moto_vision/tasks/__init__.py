"""LightningModules for the camera tasks."""

from moto_vision.tasks.awb import AWBRegressor
from moto_vision.tasks.base import BaseTask
from moto_vision.tasks.multitask import MultiTaskPerception
from moto_vision.tasks.scene import SceneClassifier
from moto_vision.tasks.segmentation import PortraitSegmenter

__all__ = ["AWBRegressor", "BaseTask", "MultiTaskPerception", "PortraitSegmenter", "SceneClassifier"]

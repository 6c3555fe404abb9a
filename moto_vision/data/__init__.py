"""Datasets (real formats and synthetic generators) and LightningDataModules."""

from moto_vision.data.base import BaseDataModule
from moto_vision.data.scene import SceneDataModule
from moto_vision.data.scene_taxonomy import CAMERA_SCENES, SYNTHETIC_SCENES, SceneClass

__all__ = ["CAMERA_SCENES", "SYNTHETIC_SCENES", "BaseDataModule", "SceneClass", "SceneDataModule"]

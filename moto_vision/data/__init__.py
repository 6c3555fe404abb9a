"""Datasets (real formats and synthetic generators) and LightningDataModules."""

from moto_vision.data.base import BaseDataModule
from moto_vision.data.portrait import PortraitDataModule
from moto_vision.data.scene import SceneDataModule

__all__ = ["BaseDataModule", "PortraitDataModule", "SceneDataModule"]

"""Datasets (real formats and synthetic generators) and LightningDataModules."""

from moto_vision.data.awb import AWBDataModule
from moto_vision.data.base import BaseDataModule
from moto_vision.data.multitask import MultiTaskDataModule
from moto_vision.data.portrait import PortraitDataModule
from moto_vision.data.scene import SceneDataModule

__all__ = ["AWBDataModule", "BaseDataModule", "MultiTaskDataModule", "PortraitDataModule", "SceneDataModule"]

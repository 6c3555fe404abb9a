"""Datasets (real formats and synthetic generators) and LightningDataModules."""

from moto_vision.data.awb import AWBDataModule
from moto_vision.data.base import BaseDataModule
from moto_vision.data.portrait import PortraitDataModule
from moto_vision.data.scene import SceneDataModule

# isort: split
# Last: its typed per-task sections are read from the signatures of the datamodules above.
from moto_vision.data.multitask import MultiTaskDataModule

__all__ = ["AWBDataModule", "BaseDataModule", "MultiTaskDataModule", "PortraitDataModule", "SceneDataModule"]

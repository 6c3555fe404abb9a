"""Datasets (real formats and synthetic generators) and LightningDataModules."""

from moto_vision.data.base import BaseDataModule
from moto_vision.data.portrait import PortraitDataModule

__all__ = ["BaseDataModule", "PortraitDataModule"]

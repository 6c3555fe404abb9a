"""Datasets (real formats and synthetic generators) and LightningDataModules."""

from moto_vision.data.base import BaseDataModule

__all__ = ["BaseDataModule"]

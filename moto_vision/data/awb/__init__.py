"""Auto-white-balance data: raw benchmark formats, sRGB photos, synthetic Mondrians and ``AWBDataModule``."""

from moto_vision.data.awb import formats  # noqa: F401  (registers the AWB formats)
from moto_vision.data.awb.datamodule import AWB_FORMATS, AWBDataModule
from moto_vision.data.awb.datasets import PhotoAWBDataset, RawAWBDataset
from moto_vision.data.awb.synthetic import MondrianConfig, SyntheticAWBDataset, render_mondrians

__all__ = [
    "AWB_FORMATS",
    "AWBDataModule",
    "MondrianConfig",
    "PhotoAWBDataset",
    "RawAWBDataset",
    "SyntheticAWBDataset",
    "render_mondrians",
]

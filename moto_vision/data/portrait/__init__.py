"""Portrait segmentation and face parsing data: synthetic portraits, real formats, the datamodule."""

from moto_vision.data.portrait import formats  # noqa: F401  (registers the portrait formats)
from moto_vision.data.portrait.augment import SegmentationAugmentation, flip_permutation
from moto_vision.data.portrait.datamodule import PERSON_CLASSES, PortraitDataModule, assign_splits
from moto_vision.data.portrait.datasets import (
    PredictFolderDataset,
    RecordsDataset,
    SyntheticPortraitDataset,
    fit_to_square,
)
from moto_vision.data.portrait.formats import (
    CELEBAMASK_HQ_CLASSES,
    LAPA_CLASSES,
    PortraitDataError,
    read_image,
    read_mask,
)
from moto_vision.data.portrait.synthetic import PART_NAMES, render_portrait

__all__ = [
    "CELEBAMASK_HQ_CLASSES",
    "LAPA_CLASSES",
    "PART_NAMES",
    "PERSON_CLASSES",
    "PortraitDataError",
    "PortraitDataModule",
    "PredictFolderDataset",
    "RecordsDataset",
    "SegmentationAugmentation",
    "SyntheticPortraitDataset",
    "assign_splits",
    "fit_to_square",
    "flip_permutation",
    "read_image",
    "read_mask",
    "render_portrait",
]

"""``PortraitDataModule``: portrait masks and face parsing, synthetic by default, real formats by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from moto_vision.data.base import BaseDataModule
from moto_vision.data.errors import DataOptionError
from moto_vision.data.options import refuse_ignored_options, require_format_for_root, with_defaults
from moto_vision.data.portrait.augment import SegmentationAugmentation, flip_permutation
from moto_vision.data.portrait.datasets import PredictFolderDataset, RecordsDataset, SyntheticPortraitDataset
from moto_vision.data.portrait.formats import FORMAT_CLASSES, PortraitDataError, list_images
from moto_vision.data.portrait.synthetic import PART_NAMES
from moto_vision.data.records import SampleRecord, apply_split_manifest, format_names, get_indexer
from moto_vision.data.validation import check_records

__all__ = ["PERSON_CLASSES", "PortraitDataModule", "assign_splits"]

#: Class names of binary portrait masks.
PERSON_CLASSES: tuple[str, ...] = ("background", "person")
#: What the format-specific arguments (``None`` = not given) become where the format reads them.
DEFAULTS: dict[str, object] = {
    "resize": "letterbox",
    "val_fraction": 0.1,
    "test_fraction": 0.1,
    "synthetic_train_size": 512,
    "synthetic_val_size": 64,
    "synthetic_test_size": 128,
}


def assign_splits(
    records: list[SampleRecord], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[SampleRecord]]:
    """Group records by split, drawing missing splits at random (by ``seed``) from the untagged / train ones.

    Records without a split are divided into train / val / test by the fractions; when the dataset has
    official splits but no validation split, ``val_fraction`` of train becomes validation (likewise test).
    Records sharing a ``group`` always land in the same split.
    """
    by_split: dict[str, list[SampleRecord]] = {"train": [], "val": [], "test": []}
    untagged = []
    for record in records:
        (by_split[record.split] if record.split in by_split else untagged).append(record)
    generator = torch.Generator().manual_seed(seed)

    def carve(pool: list[SampleRecord], fraction: float) -> tuple[list[SampleRecord], list[SampleRecord]]:
        groups: dict[str, list[SampleRecord]] = {}
        for record in sorted(pool, key=lambda r: str(r.image)):
            groups.setdefault(record.group or str(record.image), []).append(record)
        keys = sorted(groups)
        order = torch.randperm(len(keys), generator=generator).tolist()
        count = round(len(keys) * fraction) if fraction > 0 else 0
        if fraction > 0 and len(keys) > 1:
            count = min(max(count, 1), len(keys) - 1)
        taken = [r for i in order[:count] for r in groups[keys[i]]]
        kept = [r for i in order[count:] for r in groups[keys[i]]]
        return kept, taken

    if untagged:
        rest, by_test = carve(untagged, test_fraction)
        rest, by_val = carve(rest, val_fraction / max(1e-9, 1 - test_fraction))
        by_split["train"] += rest
        by_split["val"] += by_val
        by_split["test"] += by_test
    if not by_split["val"] and by_split["train"]:
        by_split["train"], by_split["val"] = carve(by_split["train"], val_fraction)
    if not by_split["test"] and by_split["train"]:
        by_split["train"], by_split["test"] = carve(by_split["train"], test_fraction)
    return by_split


class PortraitDataModule(BaseDataModule):
    """Portrait (person mask) and face-parsing data with joint image/mask augmentation on the device.

    Args:
        root: dataset folder (not needed for ``synthetic``).
        format: ``synthetic`` (embedded default, no files) or a registered ``portrait`` format:
            ``mask_folder``, ``matting``, ``celebamask_hq``, ``lapa``.
        labels: ``"person"`` for binary person masks (any non-background class is the person) or
            ``"parts"`` for the dataset's classes (face parsing).
        mask_class_names: class names of ``mask_folder`` id masks with ``labels="parts"`` (id order); other
            formats fix their own classes. (Not ``class_names``: that is the model's argument, and Lightning
            refuses a datamodule and a model hyperparameter of the same name with different values.)
        image_size: side of the square training images (equal to the model's ``image_size``).
        resize: files only (real formats, ``predict_root``): ``"letterbox"`` (keep aspect, pad; the padding is
            ignored; the default) or ``"stretch"``.
        splits: split-manifest folder (``train.txt`` / ``val.txt`` / ``test.txt``) overriding the format's splits.
        val_fraction: real formats only: share of the training data held out for validation when the format has no
            val split (default 0.1).
        test_fraction: real formats only: share held out for testing when the format has no test split (default 0.1).
        synthetic_train_size: ``synthetic`` only: training samples (default 512).
        synthetic_val_size: ``synthetic`` only: validation samples, a fixed set (default 64).
        synthetic_test_size: ``synthetic`` only: test samples, a fixed set (default 128).
        synthetic_framing: ``synthetic`` only: ``"half_body"`` or ``"face"`` (default: ``face`` for parts, else
            ``half_body``).

    Options a format does not read are refused (:mod:`moto_vision.data.options`), as is a ``root`` with the
    synthetic format.
        augment: flip, affine and colour augmentation of training batches.
        isp_preset: camera-pipeline augmentation of training images (:func:`moto_vision.isp.isp_preset`, sRGB
            domain: illuminant and white-balance errors, exposure, vignetting, sensor noise); the masks are
            untouched. ``"none"`` disables it.
        predict_root: folder of images for ``predict`` (default: the test split).
        batch_size: samples per batch.
        num_workers: data-loading workers.
        seed: seed of synthetic data, random splits and shuffling.
    """

    def __init__(
        self,
        root: str | None = None,
        format: str = "synthetic",
        labels: Literal["person", "parts"] = "person",
        mask_class_names: list[str] | None = None,
        image_size: int = 256,
        resize: Literal["letterbox", "stretch"] | None = None,
        splits: str | None = None,
        val_fraction: float | None = None,
        test_fraction: float | None = None,
        synthetic_train_size: int | None = None,
        synthetic_val_size: int | None = None,
        synthetic_test_size: int | None = None,
        synthetic_framing: Literal["half_body", "face"] | None = None,
        augment: bool = True,
        isp_preset: Literal["none", "light", "default", "heavy"] = "default",
        predict_root: str | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root = root
        self.format = format
        self.labels = labels
        self.user_class_names = mask_class_names
        if format != "synthetic" and format not in format_names("portrait"):
            known = ["synthetic", *format_names("portrait")]
            raise DataOptionError(f"Unknown portrait format {format!r}; known: {known}.")
        files, synthetic = format != "synthetic", format == "synthetic"
        refuse_ignored_options(
            type(self).__name__,
            format,
            {
                "splits": (splits, files),
                "val_fraction": (val_fraction, files),
                "test_fraction": (test_fraction, files),
                "resize": (resize, files or predict_root is not None),
                "synthetic_train_size": (synthetic_train_size, synthetic),
                "synthetic_val_size": (synthetic_val_size, synthetic),
                "synthetic_test_size": (synthetic_test_size, synthetic),
                "synthetic_framing": (synthetic_framing, synthetic),
            },
            DEFAULTS,
        )
        require_format_for_root(type(self).__name__, "portrait", root, format)
        self.image_size = image_size
        given = {"resize": resize, "val_fraction": val_fraction, "test_fraction": test_fraction}
        given.update(synthetic_train_size=synthetic_train_size, synthetic_val_size=synthetic_val_size)
        value = with_defaults({**given, "synthetic_test_size": synthetic_test_size}, DEFAULTS)
        self.resize = value["resize"]
        self.splits = splits
        self.val_fraction, self.test_fraction = value["val_fraction"], value["test_fraction"]
        self.synthetic_sizes = {
            "train": value["synthetic_train_size"],
            "val": value["synthetic_val_size"],
            "test": value["synthetic_test_size"],
        }
        self.synthetic_framing = synthetic_framing or ("face" if labels == "parts" else "half_body")
        self.augment_train = augment
        self.isp_preset = isp_preset
        self.predict_root = predict_root
        self._check_arguments()

    # ----------------------------------------------------------------- classes
    def _check_arguments(self) -> None:
        if self.format != "synthetic":
            if self.root is None:
                raise DataOptionError(f"format={self.format!r} needs the dataset folder: pass --data.root /path/to/it.")
            if self.labels == "parts" and self.format == "matting":
                raise DataOptionError("Matting datasets only have person mattes: use labels='person'.")
            if self.labels == "parts" and self.format == "mask_folder" and not self.user_class_names:
                raise DataOptionError(
                    "mask_folder with labels='parts' needs mask_class_names (one name per class id, background first)."
                )
        self.class_names  # noqa: B018 (validates class_names early)

    @property
    def class_names(self) -> list[str]:
        """Names of the classes the masks hold (``["background", "person"]`` for person masks)."""
        if self.labels == "person":
            return list(PERSON_CLASSES)
        if self.format == "synthetic":
            fixed: tuple[str, ...] | None = PART_NAMES
        else:
            fixed = FORMAT_CLASSES.get(self.format)
        if fixed is not None:
            if self.user_class_names and list(self.user_class_names) != list(fixed):
                raise DataOptionError(
                    f"format {self.format!r} has the classes {list(fixed)}; mask_class_names {self.user_class_names} "
                    "differ. Drop mask_class_names or make them equal."
                )
            return list(fixed)
        return list(self.user_class_names or [])

    @property
    def num_classes(self) -> int:
        """Model output channels: 1 for person masks, else the number of classes."""
        return 1 if self.labels == "person" else len(self.class_names)

    # ----------------------------------------------------------------- datasets
    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            if self.format == "synthetic":
                self._setup_synthetic()
            else:
                self._setup_records()
        if stage == "predict" and self.predict_root is not None:
            root = Path(self.predict_root).expanduser()
            paths = [root] if root.is_file() else list_images(root) if root.is_dir() else []
            if not paths:
                raise PortraitDataError(f"predict_root {root} is not an image or a folder holding images.")
            self.predict_dataset = PredictFolderDataset(
                paths, root if root.is_dir() else root.parent, self.image_size, self.resize
            )

    def _setup_synthetic(self) -> None:
        datasets = {
            split: SyntheticPortraitDataset(
                size,
                seed=self.seed * 3 + offset,
                image_size=self.image_size,
                labels=self.labels,
                framing=self.synthetic_framing,  # type: ignore[arg-type]
                split=split,
            )
            for offset, (split, size) in enumerate(self.synthetic_sizes.items())
        }
        self.train_dataset, self.val_dataset, self.test_dataset = datasets["train"], datasets["val"], datasets["test"]

    def _setup_records(self) -> None:
        root = Path(self.root).expanduser()  # type: ignore[arg-type]
        records = get_indexer("portrait", self.format)(root)
        if self.splits:
            records = apply_split_manifest(records, root, self.splits)
            if not records:
                raise PortraitDataError(f"The split manifest {self.splits} lists none of the images under {root}.")
        # Every image and mask header before the first step: a zero-byte PNG or a missing mask fails now, all of
        # them in one message, not at the first batch that holds one.
        check_records(
            records,
            task="portrait",
            fmt=self.format,
            root=root,
            owner=type(self).__name__,
            masks=True,
            error=PortraitDataError,
        )
        by_split = assign_splits(records, self.val_fraction, self.test_fraction, self.seed)
        if not by_split["train"]:
            raise PortraitDataError(f"No training samples in {root} (format {self.format!r}).")
        binary = self.labels == "person"
        num_classes = len(self.class_names)

        def make(split: str) -> RecordsDataset:
            return RecordsDataset(by_split[split], self.image_size, num_classes, binary, self.resize)

        self.train_dataset, self.val_dataset, self.test_dataset = make("train"), make("val"), make("test")

    # ----------------------------------------------------------------- augmentation
    def build_augmentations(self) -> dict[str, nn.Module]:
        if not self.augment_train:
            return {}
        from moto_vision.isp import isp_preset

        camera = isp_preset(self.isp_preset, "srgb") if self.isp_preset != "none" else None  # type: ignore[arg-type]
        return {"train": SegmentationAugmentation(flip_permutation(self.class_names), photometric=camera)}

    def augment(self, batch: dict[str, Any], augmentation: nn.Module, split: str) -> dict[str, Any]:
        batch["image"], batch["mask"] = augmentation(batch["image"], batch["mask"])
        return batch

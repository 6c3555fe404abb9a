"""``SceneDataModule``: scene images with one label (multi-class) or several (multi-label).

The default is the embedded synthetic dataset (:mod:`moto_vision.data.scene.synthetic`), so the scene
recipes run offline; real data is one override away (plus the model's ``class_names`` when the classes
differ from the synthetic ones)::

    moto-vision fit --config recipes/scene.yaml --data.format image_folder --data.root /data/scenes

Real formats are read by the indexers of :mod:`moto_vision.data.scene.formats` (the same ones
``moto-vision data check`` uses). Records without a split are divided into train / val / test by
``val_fraction`` and ``test_fraction``, stratified by label and seeded; when a format gives train and
test but no validation split (Places365), the validation split is carved from train the same way.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import kornia.augmentation as K
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from moto_vision.data.base import BaseDataModule
from moto_vision.data.errors import DataOptionError
from moto_vision.data.options import refuse_ignored_options, require_format_for_root, with_defaults
from moto_vision.data.records import SampleRecord, apply_split_manifest, get_indexer
from moto_vision.data.scene.formats import SceneDataError, SceneImages, class_names_of, list_images
from moto_vision.data.scene.synthetic import SyntheticScenes
from moto_vision.data.validation import check_records
from moto_vision.heads.scene_taxonomy import SYNTHETIC_SCENES, resolve_class_names

__all__ = ["SceneDataModule", "assign_splits"]

SceneFormat = Literal["synthetic", "image_folder", "manifest", "places365"]
#: What the format-specific arguments (``None`` = not given) become where the format reads them.
DEFAULTS: dict[str, float | int] = {
    "val_fraction": 0.1,
    "test_fraction": 0.1,
    "synthetic_train_size": 1800,
    "synthetic_eval_size": 450,
}


class SceneDataModule(BaseDataModule):
    """Scene classification data: synthetic by default, or ``image_folder`` / ``manifest`` / ``places365``.

    Samples are ``{"image": (3, S, S) sRGB in [0, 1], "label": ...}`` (plus ``"path"`` for files on disk);
    ``"label"`` is a ``long`` class index, or a ``float`` multi-hot vector when ``multi_label`` is set.

    Args:
        root: dataset folder (or manifest file); unused by ``synthetic``.
        format: ``synthetic`` (embedded, no files), ``image_folder``, ``manifest`` or ``places365``.
        classes: label order: a list, ``"synthetic"``, ``"camera"`` or a text file with one name per
            line. ``None`` takes the classes found in the data (alphabetical, or the format's own order).
            The resulting :attr:`class_names` must match the model's ``class_names``. (Named differently
            from the model's argument because Lightning requires hyperparameters that the model and the
            datamodule share to be given identical values.)
        multi_label: multi-hot labels (several scenes per image) instead of one class per image.
        image_size: square size images are resized and centre-cropped to (keep equal to the model's).
        manifest: manifest file name inside ``root`` (format ``manifest``).
        splits: split-manifest folder (``train.txt`` / ``val.txt`` / ``test.txt`` from ``moto-vision data split``).
        val_fraction: real formats only: share of unsplit records for validation (and of train when a format has no
            val split; default 0.1).
        test_fraction: real formats only: share of unsplit records for testing (default 0.1).
        balanced_sampling: draw training samples with probability inversely proportional to their class
            frequency (for multi-label, their rarest label), so every class is seen equally often.
        crop_scale: smallest area share of the random resized crops of training images (``1.0``: no crops).
        flip: random horizontal flips of training images.
        isp_preset: camera-pipeline augmentation of training images (:func:`moto_vision.isp.isp_preset`,
            sRGB domain): ``none``, ``light``, ``default`` or ``heavy``.
        synthetic_train_size: ``synthetic`` only: number of training images (default 1800).
        synthetic_eval_size: ``synthetic`` only: number of validation images, and of test images (default 450).
        predict_root: folder of images for ``predict`` (recursively; the test split when unset).
        batch_size: samples per batch.
        num_workers: data-loading worker processes.
        seed: seed of the synthetic training set, the split assignment and the balanced sampler.

    Options a format does not read are refused (:mod:`moto_vision.data.options`), as is a ``root`` with the
    synthetic format.
    """

    def __init__(
        self,
        root: str | None = None,
        format: SceneFormat = "synthetic",
        classes: list[str] | str | None = None,
        multi_label: bool = False,
        image_size: int = 64,
        manifest: str | None = None,
        splits: str | None = None,
        val_fraction: float | None = None,
        test_fraction: float | None = None,
        balanced_sampling: bool = False,
        crop_scale: float = 0.5,
        flip: bool = True,
        isp_preset: Literal["none", "light", "default", "heavy"] = "default",
        synthetic_train_size: int | None = None,
        synthetic_eval_size: int | None = None,
        predict_root: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        files, synthetic = format != "synthetic", format == "synthetic"
        refuse_ignored_options(
            type(self).__name__,
            format,
            {
                "manifest": (manifest, format == "manifest"),
                "splits": (splits, files),
                "val_fraction": (val_fraction, files),
                "test_fraction": (test_fraction, files),
                "synthetic_train_size": (synthetic_train_size, synthetic),
                "synthetic_eval_size": (synthetic_eval_size, synthetic),
            },
            DEFAULTS,
        )
        require_format_for_root(type(self).__name__, "scene", root, format)
        if format != "synthetic" and root is None:
            raise DataOptionError(f"--data.root is required for the {format!r} format (a dataset folder or manifest).")
        fractions = with_defaults({"val_fraction": val_fraction, "test_fraction": test_fraction}, DEFAULTS)
        val_fraction, test_fraction = fractions["val_fraction"], fractions["test_fraction"]
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 1.0:
                raise DataOptionError(f"{name} must be in [0, 1), got {value}.")
        self.root = root
        self.format = format
        self.multi_label = multi_label
        self.image_size = image_size
        self.manifest = manifest
        self.splits = splits
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.balanced_sampling = balanced_sampling
        if not 0.0 < crop_scale <= 1.0:
            raise DataOptionError(f"crop_scale must be in (0, 1], got {crop_scale}.")
        self.crop_scale = crop_scale
        self.flip = flip
        self.isp_preset = isp_preset
        sizes = with_defaults(
            {"synthetic_train_size": synthetic_train_size, "synthetic_eval_size": synthetic_eval_size}, DEFAULTS
        )
        self.synthetic_train_size, self.synthetic_eval_size = (
            int(sizes["synthetic_train_size"]),
            int(sizes["synthetic_eval_size"]),
        )
        self.predict_root = predict_root
        self.class_names: list[str] | None = None
        if classes is not None:
            self.class_names = resolve_class_names(classes)
        elif format == "synthetic":
            self.class_names = list(SYNTHETIC_SCENES)
        self._records: dict[str, list[SampleRecord]] | None = None

    # ----------------------------------------------------------------- datasets
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_root is not None:
            self.predict_dataset = self._folder_dataset(self.predict_root)
            return
        if self.format == "synthetic":
            self._setup_synthetic()
        else:
            self._setup_records()
        if self.predict_root is not None:
            self.predict_dataset = self._folder_dataset(self.predict_root)

    def _setup_synthetic(self) -> None:
        if self.train_dataset is not None:
            return
        names = self.class_names or list(SYNTHETIC_SCENES)
        common = {"image_size": self.image_size, "multi_label": self.multi_label, "class_names": names}
        self.train_dataset = SyntheticScenes(self.synthetic_train_size, split="train", seed=self.seed, **common)
        self.val_dataset = SyntheticScenes(self.synthetic_eval_size, split="val", **common)
        self.test_dataset = SyntheticScenes(self.synthetic_eval_size, split="test", **common)

    def _setup_records(self) -> None:
        if self._records is not None:
            return
        options = {"manifest": self.manifest} if self.format == "manifest" else {}
        records = get_indexer("scene", self.format)(Path(self.root), **options)
        if self.splits is not None:
            records = apply_split_manifest(records, self._split_root(), self.splits)
        # Every record and image header before the first step, all problems in one message.
        check_records(
            records,
            task="scene",
            fmt=self.format,
            root=self.root,
            owner=type(self).__name__,
            classes=self.class_names,
            error=SceneDataError,
        )
        if self.class_names is None:
            self.class_names = class_names_of(records)
            if len(self.class_names) < 2:
                raise SceneDataError(
                    f"{self.root}: found {len(self.class_names)} class(es) {self.class_names}; scene detection needs "
                    "at least two."
                )
        self._records = assign_splits(records, self.val_fraction, self.test_fraction, self.seed)
        for split, records_ in self._records.items():
            if not records_:
                raise SceneDataError(
                    f"{self.root}: the {split} split is empty ({sum(map(len, self._records.values()))} images in all). "
                    "Add images, or change --data.val_fraction / --data.test_fraction / --data.splits."
                )
        datasets = {
            split: SceneImages(records_, self.class_names, self.image_size, multi_label=self.multi_label)
            for split, records_ in self._records.items()
        }
        self.train_dataset, self.val_dataset, self.test_dataset = datasets["train"], datasets["val"], datasets["test"]

    def _split_root(self) -> Path:
        root = Path(self.root)
        return root.parent if root.is_file() else root

    def _folder_dataset(self, folder: str) -> SceneImages:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise SceneDataError(f"--data.predict_root {path} is not a folder of images.")
        images = list_images(path)
        if not images:
            raise SceneDataError(f"--data.predict_root {path} holds no images.")
        records = [SampleRecord(image=image) for image in images]
        return SceneImages(records, self.class_names or [], self.image_size, with_labels=False)

    # ----------------------------------------------------------------- labels and sampling
    def train_label_indices(self) -> list[list[int]]:
        """Class indices of every training sample (no image decoding)."""
        dataset = self.train_dataset
        if dataset is None:
            raise RuntimeError("SceneDataModule.setup('fit') must run before reading training labels.")
        if isinstance(dataset, SyntheticScenes):
            index = {name: i for i, name in enumerate(dataset.class_names)}
            return [[index[name] for name in dataset.labels(i)] for i in range(len(dataset))]
        return [dataset.label_indices(i) for i in range(len(dataset))]

    def class_counts(self) -> torch.Tensor:
        """Number of training samples carrying each class, ``(K,)`` float."""
        counts = torch.zeros(len(self.class_names or []))
        for indices in self.train_label_indices():
            counts[indices] += 1
        return counts

    def train_dataloader(self) -> DataLoader:
        if not self.balanced_sampling:
            return super().train_dataloader()
        counts = self.class_counts().clamp(min=1)
        labels = self.train_label_indices()
        unlabelled = max(1, sum(1 for indices in labels if not indices))
        # Each sample is weighted by its rarest class, so rare classes are drawn as often as frequent ones.
        weights = torch.tensor([float((1.0 / counts[idx]).max()) if idx else 1.0 / unlabelled for idx in labels])
        sampler = WeightedRandomSampler(
            weights, num_samples=len(labels), replacement=True, generator=torch.Generator().manual_seed(self.seed)
        )
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=len(labels) > self.batch_size,
        )

    # ----------------------------------------------------------------- augmentation
    def build_augmentations(self) -> dict[str, nn.Module]:
        layers: list[nn.Module] = []
        if self.crop_scale < 1.0:
            size = (self.image_size, self.image_size)
            layers.append(K.RandomResizedCrop(size, scale=(self.crop_scale, 1.0)))
        if self.flip:
            layers.append(K.RandomHorizontalFlip())
        if self.isp_preset != "none":
            from moto_vision.isp import isp_preset

            # Photos from many phones: other lights, exposures, noise, vignetting, colour errors (sRGB in, sRGB out).
            layers.append(isp_preset(self.isp_preset, "srgb"))  # type: ignore[arg-type]
        return {"train": nn.Sequential(*layers)} if layers else {}


def assign_splits(
    records: Sequence[SampleRecord], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[SampleRecord]]:
    """Group records by split, dividing those without one and carving missing val / test splits from train.

    The division is stratified by each record's label set and reproducible from ``seed``.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.
    """
    splits: dict[str, list[SampleRecord]] = {"train": [], "val": [], "test": []}
    unassigned: list[SampleRecord] = []
    for record in records:
        if record.split in splits:
            splits[record.split].append(record)
        else:
            unassigned.append(record)
    for split, chosen in _stratified_take(unassigned, {"test": test_fraction, "val": val_fraction}, seed).items():
        splits[split] += chosen
    for split, fraction in (("val", val_fraction), ("test", test_fraction)):
        if not splits[split] and fraction > 0:
            taken = _stratified_take(splits["train"], {split: fraction}, seed + 1)
            splits[split] = taken[split]
            splits["train"] = taken["train"]
    return splits


def _stratified_take(
    records: Sequence[SampleRecord], fractions: dict[str, float], seed: int
) -> dict[str, list[SampleRecord]]:
    by_label: dict[tuple[str, ...], list[SampleRecord]] = defaultdict(list)
    for record in records:
        by_label[tuple(sorted(record.labels or []))].append(record)
    result: dict[str, list[SampleRecord]] = {split: [] for split in [*fractions, "train"]}
    rng = random.Random(seed)
    for key in sorted(by_label):
        group = sorted(by_label[key], key=lambda r: str(r.image))
        rng.shuffle(group)
        start = 0
        for split, fraction in fractions.items():
            count = int(round(len(group) * fraction))
            result[split] += group[start : start + count]
            start += count
        result["train"] += group[start:]
    return result

"""``AWBDataModule``: colour-constancy data (synthetic, photos, raw benchmarks) with label-aware augmentation.

Training batches are augmented on the device (``on_after_batch_transfer``), in this order:

1. spatial: horizontal flip and random resized crop (kornia), applied to the valid-pixel mask too;
2. *relighting*: with probability ``relight``, an image is divided by its own illuminant and multiplied by
   the illuminant of another image of the batch, whose label it takes. The new light is a real light of the
   same camera, so the illuminant distribution of the training set is kept (ISP's ``RandomIlluminant`` instead
   samples lights through random cameras);
3. an ISP preset (``moto_vision.isp.isp_preset(..., domain="linear")``: light, exposure, vignetting, noise),
   with the labels updated by the colour transform it applied (``isp.apply_with_illuminant``);
4. masked pixels and pixels that the augmentation clipped are zeroed, so augmentation never invents them
   (pixels that were at 1 already, clipped highlights a dataset keeps, stay at 1);
5. with ``max_normalize``, that share of the images is divided by its maximum (the held-out protocol's scaling).

Synthetic batches also carry each scene's camera (``"camera"``, its XYZ -> raw matrix); relighting and the ISP's
colour transforms change the raw space, so they update it too (``camera <- transform @ camera``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from moto_vision.data.awb.datasets import CapturePredictDataset, PhotoAWBDataset, RawAWBDataset
from moto_vision.data.awb.synthetic import CameraVariation, SyntheticAWBDataset
from moto_vision.data.base import BaseDataModule
from moto_vision.data.errors import DataOptionError
from moto_vision.data.options import refuse_ignored_options, require_format_for_root, with_defaults
from moto_vision.data.records import SampleRecord, apply_split_manifest, format_names, get_indexer
from moto_vision.data.validation import check_records

if TYPE_CHECKING:
    from moto_vision.isp.cameras import CameraPool

__all__ = ["AWB_FORMATS", "AWBDataModule", "camera_pool_from_spec"]

#: Formats that ship with moto-vision; more register with ``@register_format("awb", name)``.
AWB_FORMATS = ("synthetic", "photos", "gehler_shi", "nus8", "cube_plus", "simple_cube_pp", "dng", "raw_png")
#: Formats whose scenes are rendered through a camera pool (sized in draws; ``camera`` renders them for one sensor).
RENDERED_FORMATS = ("synthetic", "photos")
#: Built-in formats with cross-validation folds, and those whose test split is their own.
_FOLD_FORMATS = ("gehler_shi", "nus8", "cube_plus")
_OFFICIAL_SPLIT_FORMATS = (*_FOLD_FORMATS, "simple_cube_pp")
#: What the format-specific arguments (``None`` = not given) become where the format reads them.
DEFAULTS: dict[str, float | int] = {
    "val_fraction": 0.1,
    "test_fraction": 0.2,
    "train_size": 4096,
    "val_size": 512,
    "test_size": 512,
    "val_cameras": 0.1,
    "test_cameras": 0.2,
    "camera_seed": 0,
}
Batch = dict[str, Any]


class AWBSpatialAugmentation(nn.Module):
    """Flip and random resized crop of a batch and its valid-pixel mask (kornia)."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.35, 1.0)) -> None:
        super().__init__()
        from kornia.augmentation import AugmentationSequential, RandomHorizontalFlip, RandomResizedCrop

        self.augment = AugmentationSequential(
            RandomHorizontalFlip(p=0.5),
            RandomResizedCrop((size, size), scale=scale, ratio=(0.75, 1.333), p=1.0),
            data_keys=["input", "mask"],
        )

    def forward(self, image: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        out, mask = self.augment(image, valid[:, None].to(image.dtype))
        return out, mask[:, 0] > 0.5


def relight(
    image: Tensor, illuminant: Tensor, probability: float, camera: Tensor | None = None
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Swap lights within a batch: ``x / L_i * L_j`` with label ``L_j`` for a random permutation ``j``.

    The per-image brightness is kept (the gains have unit mean), so exposure statistics are unchanged. With
    ``camera`` (``(B, 3, 3)`` XYZ -> raw), the per-channel gains are a change of raw space, so the camera becomes
    ``diag(gains) @ camera`` and is returned as a third value.
    """
    b = image.shape[0]
    if b < 2 or probability <= 0:
        return (image, illuminant) if camera is None else (image, illuminant, camera)
    partner = torch.randperm(b, device=image.device)
    apply = torch.rand(b, device=image.device) < probability
    target = torch.where(apply[:, None], illuminant[partner], illuminant)
    gains = target / illuminant.clamp_min(1e-6)
    gains = gains / gains.mean(dim=1, keepdim=True)
    out = (image * gains[:, :, None, None]).clamp(0.0, 1.0)
    if camera is None:
        return out, target
    return out, target, gains[:, :, None].to(camera.dtype) * camera


def _hash_fraction(key: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) per key (splits must not change when files are added)."""
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _hash_split(
    records: list[SampleRecord], key: Any, fraction: float, seed: int
) -> tuple[list[SampleRecord], list[SampleRecord]]:
    """Split off about ``fraction`` of the records by a stable hash of their group (at least one if any)."""
    if fraction <= 0 or len(records) < 2:
        return [], list(records)
    scores = [_hash_fraction(key(r), seed) for r in records]
    chosen = {i for i, score in enumerate(scores) if score < fraction}
    if not chosen:
        chosen = {min(range(len(records)), key=scores.__getitem__)}
    return [r for i, r in enumerate(records) if i in chosen], [r for i, r in enumerate(records) if i not in chosen]


def camera_pool_from_spec(spec: str | Sequence[float]) -> CameraPool:
    """The one camera a ``--data.camera`` value names, as a :class:`~moto_vision.isp.cameras.CameraPool`.

    What :func:`~moto_vision.isp.cameras.camera_from_spec` takes (a pool camera's name, 9 numbers, a matrix or
    sensitivity file), or one of the sensor's DNGs: its calibrated colour matrix for D65
    (:func:`~moto_vision.data.raw.dng_camera_matrix`).
    """
    from moto_vision.isp.cameras import camera_from_spec

    if isinstance(spec, str) and Path(spec).suffix.lower() == ".dng":  # the sensor's own file says it
        from moto_vision.data.raw import dng_camera_matrix

        spec = dng_camera_matrix(Path(spec).expanduser())
    return camera_from_spec(spec)


class AWBDataModule(BaseDataModule):
    """Data for :class:`~moto_vision.tasks.AWBRegressor`.

    Args:
        root: dataset folder (``None`` for ``synthetic``).
        format: ``synthetic`` (rendered Mondrian scenes, no files needed), ``photos`` (any folder of sRGB photos,
            relit and seen through sampled cameras as the synthetic scenes are), a raw benchmark (``gehler_shi``,
            ``nus8``, ``cube_plus``, ``simple_cube_pp``), camera captures (``dng``: DNG files and a ground-truth CSV;
            ``raw_png``: what ``moto-vision data label-awb`` writes; both carry the phone's own AWB answer for the
            "Camera AWB" test row), or the name of your own raw format registered with
            ``@register_format("awb", name)`` (a string rather than a fixed choice for that reason).
        image_size: height and width of the images the model sees.
        fold: cross-validation test fold (0-based) of ``gehler_shi`` / ``nus8`` / ``cube_plus``; the other folds
            train. ``None`` trains on every image (test = validation split). Refused, when not 0, by the built-in
            formats without folds.
        num_folds: folds of ``nus8`` / ``cube_plus`` (Gehler-Shi uses its standard 3-fold file); refused, when not 3,
            by the other built-in formats.
        val_fraction: files only: share of the training images held out for validation (checkpoint selection;
            default 0.1).
        test_fraction: files only: share of images held out for testing where the format has neither an official
            split nor folds (``photos``, your own formats; default 0.2).
        splits: a split-manifest folder (``train.txt`` / ``val.txt`` / ``test.txt``) overriding folds and fractions.
        train_size: ``synthetic``: training scenes (default 4096); ``photos``: draws per epoch, each photo giving
            ``max(1, round(train_size / photos))`` of them (each its own camera and light).
        val_size: ``synthetic``: validation scenes (default 512); ``photos``: fixed draws, counted as for training.
        test_size: ``synthetic``: test scenes (default 512); ``photos``: fixed draws, counted as for training.
        camera: ``synthetic`` and ``photos``: render every scene through this one camera (training for one
            sensor): a pool camera's name, 9 numbers (its XYZ -> raw matrix, e.g. a DNG ``ColorMatrix2``), a path to
            a ``.json`` / ``.yaml`` file with that matrix or a ``.csv`` of spectral sensitivities
            (``wavelength,r,g,b``), or one of the sensor's DNGs (its calibrated colour matrix for D65). ``None``
            (default): a camera sampled per scene from the pool, camera-agnostic.
        val_cameras: ``synthetic`` and ``photos``, without ``camera``: share of the pool's cameras held out for
            validation (leave-cameras-out: training never sees them; checkpoints are selected on them).
        test_cameras: ``synthetic`` and ``photos``: share of the pool's cameras held out for the test split
            (disjoint from the validation ones).
        camera_seed: ``synthetic`` and ``photos``: seed of the leave-cameras-out split of the pool.
        augmentation: ISP preset applied to training batches (``none``, ``light``, ``default``, ``heavy``).
        relight: probability of swapping an image's light with another image's of the batch.
        max_normalize: share of training images divided by their maximum after augmentation, as the held-out
            real-raw protocol and ``benchmarks/awb_cross_camera.py`` preprocess every image: the brightest pixel then
            sits at 1, where the classical statistics take a pixel as clipped and leave it and its neighbours out, so
            training sees what such inputs look like (0, the default: none; docs/awb.md#max-normalised-training).
        spatial: random flips and resized crops of training batches.
        preload: decode / render every image in ``setup`` (bad files stop the run before training).
        predict_root: a camera raw file or a folder of them (searched recursively) for ``predict``; without it
            ``predict`` runs on the test split. :class:`~moto_vision.callbacks.AWBPredictionWriter` writes the
            illuminants and corrected previews.
        batch_size: images per batch.
        num_workers: data-loading workers.
        seed: seed of the synthetic scenes, splits and fixed photo draws.
    """

    def __init__(
        self,
        root: str | None = None,
        format: str = "synthetic",
        image_size: int = 64,
        fold: int | None = 0,
        num_folds: int = 3,
        val_fraction: float | None = None,
        test_fraction: float | None = None,
        splits: str | None = None,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        camera: str | list[float] | None = None,
        val_cameras: float = 0.1,
        test_cameras: float = 0.2,
        camera_seed: int = 0,
        augmentation: Literal["none", "light", "default", "heavy"] = "light",
        relight: float = 0.5,
        max_normalize: float = 0.0,
        spatial: bool = True,
        preload: bool = True,
        predict_root: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if format != "synthetic" and format not in format_names("awb"):
            raise DataOptionError(
                f"AWBDataModule: unknown format {format!r}; choose synthetic or one of {format_names('awb')} "
                "(or register your own with @register_format('awb', name) before building the datamodule)."
            )
        files = format != "synthetic"
        rendered = format in RENDERED_FORMATS
        # A split manifest replaces folds and fractions. fold and num_folds keep their defaults (None already means
        # "every image"): a value other than the default is refused by the built-in formats without folds.
        split_by_us, builtin = files and splits is None, format in AWB_FORMATS
        refuse_ignored_options(
            type(self).__name__,
            format if splits is None else f"{format} with --data.splits",
            {
                "splits": (splits, files),
                "val_fraction": (val_fraction, split_by_us),
                "test_fraction": (test_fraction, split_by_us and format not in _OFFICIAL_SPLIT_FORMATS),
                "fold": (None if fold == 0 else str(fold), split_by_us and (format in _FOLD_FORMATS or not builtin)),
                "num_folds": (
                    None if num_folds == 3 else num_folds,
                    split_by_us and (format in ("nus8", "cube_plus") or not builtin),
                ),
                "train_size": (train_size, rendered),
                "val_size": (val_size, rendered),
                "test_size": (test_size, rendered),
                "camera": (camera, rendered),
                "val_cameras": (val_cameras, rendered and camera is None),
                "test_cameras": (test_cameras, rendered and camera is None),
                "camera_seed": (camera_seed, rendered and camera is None),
            },
            DEFAULTS,
        )
        require_format_for_root(type(self).__name__, "awb", root, format)
        if format != "synthetic" and root is None:
            raise DataOptionError(f"AWBDataModule: format {format!r} reads files; pass --data.root /path/to/dataset.")
        if fold is not None and not 0 <= fold < num_folds:
            raise DataOptionError(f"AWBDataModule: fold {fold} is outside 0..{num_folds - 1}.")
        if not 0.0 <= max_normalize <= 1.0:
            raise DataOptionError(
                f"AWBDataModule: max_normalize {max_normalize} is a share of the training images; use 0 to 1."
            )
        fractions = with_defaults({"val_fraction": val_fraction, "test_fraction": test_fraction}, DEFAULTS)
        val_fraction, test_fraction = fractions["val_fraction"], fractions["test_fraction"]
        self.root = None if root is None else Path(root).expanduser()
        self.format = format
        self.image_size = image_size
        self.fold = fold
        self.num_folds = num_folds
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.splits = splits
        sizes = with_defaults({"train_size": train_size, "val_size": val_size, "test_size": test_size}, DEFAULTS)
        self.sizes = {split: int(sizes[f"{split}_size"]) for split in ("train", "val", "test")}
        self.camera = camera
        self.val_cameras = val_cameras
        self.test_cameras = test_cameras
        self.camera_seed = camera_seed
        self.camera_pools: dict[str, Any] = {}
        self.augmentation = augmentation
        self.relight = relight
        self.max_normalize = max_normalize
        self.spatial = spatial
        self.preload = preload
        self.predict_root = predict_root
        self.records: dict[str, list[SampleRecord]] = {}

    # ----------------------------------------------------------------- splits
    def index(self) -> list[SampleRecord]:
        """All records of the dataset (validated ground truth; images not decoded)."""
        assert self.root is not None
        options = {"num_folds": self.num_folds} if self.format in ("nus8", "cube_plus") else {}
        return get_indexer("awb", self.format)(self.root, **options)

    def split_records(self, records: list[SampleRecord]) -> dict[str, list[SampleRecord]]:
        """Assign records to train / val / test (manifest, official split, CV fold, or seeded fractions)."""
        assert self.root is not None
        if self.splits is not None:
            records = apply_split_manifest(records, self.root, self.splits)
            return {s: [r for r in records if r.split == s] for s in ("train", "val", "test")}

        def key(r: SampleRecord) -> str:
            return r.group or r.image.as_posix()

        if any(r.split for r in records):  # the layout has an official split (SimpleCube++ train/ and test/)
            test = [r for r in records if r.split == "test"]
            rest = [r for r in records if r.split != "test"]
        elif any("fold" in r.extra for r in records):  # cross-validation datasets (Gehler-Shi, NUS-8, Cube+)
            if self.fold is None:
                test, rest = [], records
            else:
                missing = [r for r in records if r.extra.get("fold") is None]
                if missing:
                    raise FileNotFoundError(
                        f"{self.root}: no cross-validation folds for {missing[0].image.name} and others (Gehler-Shi "
                        "needs threefoldCVsplit.mat with te_split in the root). Add the fold file, pass --data.splits "
                        "with a split manifest, or --data.fold null to train on every image."
                    )
                test = [r for r in records if r.extra["fold"] == self.fold]
                rest = [r for r in records if r.extra["fold"] != self.fold]
        else:
            test, rest = _hash_split(records, key, self.test_fraction, self.seed + 1)
        val, train = _hash_split(rest, key, self.val_fraction, self.seed)
        if not test:
            test = val  # fold=None: train on everything, report on the held-out validation images
        for split, chosen in (("train", train), ("val", val), ("test", test)):
            if not chosen:
                raise ValueError(
                    f"{self.root}: the {split} split of this {self.format} dataset is empty ({len(records)} images); "
                    "adjust --data.val_fraction / --data.test_fraction or pass --data.splits."
                )
        return {"train": train, "val": val, "test": test}

    # ----------------------------------------------------------------- datasets
    def setup(self, stage: str | None = None) -> None:
        """Build the three datasets (once) and decode / render the splits ``stage`` needs.

        ``fit`` reads train and val before the first step, so a bad file stops the run before training;
        ``test`` reads only the test split; ``predict`` with ``predict_root`` reads those captures instead.
        """
        if stage == "predict" and self.predict_root is not None:
            self.predict_dataset = self._predict_dataset(Path(self.predict_root).expanduser())
            return
        if self.train_dataset is None:
            self._build_datasets()
        if not self.preload:
            return
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        done: set[int] = set()
        for split in needed.get(stage or "", ("train", "val", "test")):
            dataset = getattr(self, f"{split}_dataset")
            if id(dataset) in done:
                continue
            done.add(id(dataset))
            if self.format == "synthetic":
                dataset.preload(description=f"Rendering {len(dataset)} synthetic {split} scenes")
            else:
                dataset.preload(f"Reading {self.format} {split} images")

    def _predict_dataset(self, root: Path) -> CapturePredictDataset:
        from moto_vision.data.raw import RAW_SUFFIXES, RawReadError, is_raw_file, read_raw_metadata

        if root.is_file():
            paths = [root]
        elif root.is_dir():
            paths = sorted(p for p in root.rglob("*") if p.is_file() and is_raw_file(p))
        else:
            raise FileNotFoundError(f"--data.predict_root {root} is neither a raw file nor a folder.")
        if not paths or not all(is_raw_file(p) for p in paths):
            suffixes = ", ".join(RAW_SUFFIXES)
            raise FileNotFoundError(f"--data.predict_root {root} holds no camera raw files ({suffixes}).")
        broken = []
        for path in paths:  # the headers, before the first batch: a bad file stops the run with its name
            try:
                read_raw_metadata(path)
            except RawReadError as error:
                broken.append(str(error))
        if broken:
            listed = "\n  ".join(broken[:10]) + ("\n  ..." if len(broken) > 10 else "")
            raise ValueError(f"{len(broken)} of {len(paths)} captures under {root} cannot be read:\n  {listed}")
        return CapturePredictDataset(paths, self.image_size)

    def _build_datasets(self) -> None:
        if self.format == "synthetic":
            self.camera_pools = self.synthetic_cameras()
            for offset, split in enumerate(("train", "val", "test")):
                dataset = SyntheticAWBDataset(
                    self.sizes[split],
                    self.image_size,
                    seed=self.seed * 10 + offset,
                    cameras=self.camera_pools[split],
                    variation=self.camera_variation(split),
                )
                setattr(self, f"{split}_dataset", dataset)
            return
        records = self.index()
        # Every ground truth and image header before the first step, all problems in one message.
        check_records(
            records,
            task="awb",
            fmt=self.format,
            root=self.root,
            owner=type(self).__name__,
            needs_target=self.format != "photos",
        )
        self.records = self.split_records(records)
        if self.format == "photos":
            self.camera_pools = self.synthetic_cameras()
        for offset, split in enumerate(("train", "val", "test")):
            records = self.records[split]
            if split == "test" and records is self.records["val"]:
                self.test_dataset = self.val_dataset  # fold=None: the validation images are the test images
                continue
            if self.format == "photos":
                dataset: Any = PhotoAWBDataset(
                    records,
                    self.image_size,
                    seed=self.seed + offset,
                    fixed=split != "train",
                    cameras=self.camera_pools[split],
                    variation=self.camera_variation(split),
                    draws_per_photo=max(1, round(self.sizes[split] / max(1, len(records)))),
                )
            else:
                dataset = RawAWBDataset(records, self.image_size)
            setattr(self, f"{split}_dataset", dataset)

    @property
    def rendered(self) -> bool:
        """Whether the scenes are rendered through a camera pool (:data:`RENDERED_FORMATS`), so ``camera`` applies."""
        return self.format in RENDERED_FORMATS

    def camera_variation(self, split: str) -> CameraVariation:
        """How the cameras of ``split`` vary around its pool: training only, and for one sensor only a little."""
        if split != "train":
            return CameraVariation.none()
        # One sensor: only unit-to-unit variation (a few nm, a few % of gain); a pool: imaginary cameras.
        return CameraVariation(0.0, 1.5, 0.05, 0.05) if self.camera is not None else CameraVariation()

    def synthetic_cameras(self) -> dict[str, Any]:
        """The camera pool of each split of the rendered data, synthetic or photos.

        Leave-cameras-out (``val_cameras``, ``test_cameras``) unless ``camera`` is set.
        """
        from moto_vision.isp.cameras import CameraPool

        if self.camera is not None:
            one = camera_pool_from_spec(self.camera)
            return {"train": one, "val": one, "test": one}
        pool = CameraPool.default()
        if self.val_cameras <= 0 and self.test_cameras <= 0:
            return {"train": pool, "val": pool, "test": pool}
        fractions = [f for f in (self.val_cameras, self.test_cameras) if f > 0]
        parts = pool.split(fractions, seed=self.camera_seed)
        train, held = parts[0], parts[1:]
        val = held[0] if self.val_cameras > 0 else train
        test = held[-1] if self.test_cameras > 0 else val
        return {"train": train, "val": val, "test": test}

    # ----------------------------------------------------------------- augmentation
    def build_augmentations(self) -> dict[str, nn.Module]:
        from moto_vision.isp import isp_preset

        modules: dict[str, nn.Module] = {"train_isp": isp_preset(self.augmentation, domain="linear")}
        if self.spatial:
            modules["train_spatial"] = AWBSpatialAugmentation(self.image_size)
        return modules

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        trainer = self.trainer if self._trainer_attached() else None
        if trainer is None or not trainer.training or not isinstance(batch, dict):
            return batch
        augmentations = self.augmentations
        with torch.no_grad():
            return self.augment_train_batch(batch, augmentations)

    def augment_train_batch(self, batch: Batch, augmentations: nn.ModuleDict) -> Batch:
        """Spatial, relighting and ISP augmentation of a training batch, labels updated (see module docstring)."""
        from moto_vision.isp import applied_color_transform, apply_with_illuminant

        image, illuminant = batch["image"], batch["illuminant"]
        valid = batch.get("valid")
        if valid is None:
            valid = image.amax(dim=1) > 0
        if "train_spatial" in augmentations:
            image, valid = augmentations["train_spatial"].to(image.device)(image, valid)
        # Images may keep clipped pixels at 1 (a plain raw frame has them): they stay clipped through relighting.
        at_one = (image >= 1.0) & valid[:, None]
        camera = batch.get("camera")
        if camera is None:
            image, illuminant = relight(image, illuminant, self.relight)
        else:
            image, illuminant, camera = relight(image, illuminant, self.relight, camera)
        isp = augmentations["train_isp"].to(image.device)
        if not isinstance(isp, nn.Identity):
            image, illuminant = apply_with_illuminant(isp, image, illuminant)
            if camera is not None:  # a colour transform of the raw image is a change of the camera's raw space
                transform = applied_color_transform(isp, batch_size=image.shape[0]).to(camera)
                camera = transform @ camera
        if at_one.any():
            image = torch.where(at_one, torch.ones_like(image), image)
        valid = valid & ((image < 1.0) | at_one).all(dim=1)
        image = image * valid[:, None]
        if self.max_normalize > 0:
            pick = torch.rand(image.shape[0], device=image.device) < self.max_normalize
            peak = image.flatten(1).amax(dim=1).clamp_min(1e-8)[:, None, None, None]
            image = torch.where(pick[:, None, None, None], image / peak, image)
        batch.update(image=image, illuminant=illuminant, valid=valid)
        if camera is not None:
            batch["camera"] = camera
        return batch

"""On-disk portrait and face-parsing datasets: indexers (registered formats) and file decoding.

Indexers only walk folders and read split lists; images and masks are decoded by
:func:`read_image` / :func:`read_mask` when a sample is loaded, so ``moto-vision data check`` and training
read exactly the same records. Registered ``portrait`` formats:

``mask_folder``
    ``images/`` + ``masks/`` with matching relative paths (any image extension; masks PNG), optionally
    one level of ``train/ val/ test/`` above them. Masks are 0/255 person masks, 0/1 masks, or class-id
    PNGs (grey or palette; 255 = ignore).
``matting``
    Image + alpha-matte folders, binarised at 0.5: P3M-10k (``train/blurred_image`` + ``train/mask``,
    ``validation/P3M-500-{P,NP}/{blurred,original}_image`` + ``mask``), PPM-100 (``image`` + ``matte``),
    EG1800 (``Images`` + ``Labels``, with ``eg1800_{train,val,test}.txt`` split lists when present).
``celebamask_hq``
    ``CelebA-HQ-img/{k}.jpg`` + per-part masks ``CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png``
    combined in the official order (:data:`CELEBAMASK_HQ_CLASSES`, later parts on top, as the dataset's
    ``g_mask.py``); the official split from ``CelebA-HQ-to-CelebA-mapping.txt`` when present.
``lapa``
    ``{train,val,test}/images/*.jpg`` + ``labels/*.png`` with the 11 LaPa classes (:data:`LAPA_CLASSES`).

Images are read with their EXIF orientation applied (phone photos are often stored sideways with a
rotation tag), and every error names the file and what to do about it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from moto_vision.data import images
from moto_vision.data.errors import DataError
from moto_vision.data.records import SampleRecord, register_format

__all__ = [
    "CELEBAMASK_HQ_CLASSES",
    "FORMAT_CLASSES",
    "IMAGE_EXTENSIONS",
    "LAPA_CLASSES",
    "PortraitDataError",
    "index_celebamask_hq",
    "index_lapa",
    "index_mask_folder",
    "index_matting",
    "list_images",
    "read_image",
    "read_mask",
]

IMAGE_EXTENSIONS: tuple[str, ...] = images.IMAGE_SUFFIXES

#: CelebAMask-HQ's 19 classes: background, then the part files in the official ``g_mask.py`` order.
CELEBAMASK_HQ_CLASSES: tuple[str, ...] = (
    "background",
    "skin",
    "nose",
    "eye_g",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "l_ear",
    "r_ear",
    "mouth",
    "u_lip",
    "l_lip",
    "hair",
    "hat",
    "ear_r",
    "neck_l",
    "neck",
    "cloth",
)

#: LaPa's 11 classes in label-id order.
LAPA_CLASSES: tuple[str, ...] = (
    "background",
    "skin",
    "left_eyebrow",
    "right_eyebrow",
    "left_eye",
    "right_eye",
    "nose",
    "upper_lip",
    "inner_mouth",
    "lower_lip",
    "hair",
)

#: Formats whose class list is fixed by the dataset.
FORMAT_CLASSES: dict[str, tuple[str, ...]] = {"celebamask_hq": CELEBAMASK_HQ_CLASSES, "lapa": LAPA_CLASSES}

MaskKind = Literal["auto", "alpha", "ids", "parts"]


class PortraitDataError(DataError):
    """A dataset file is missing, unreadable or inconsistent (the message names the file)."""


# ------------------------------------------------------------------------------------------- decoding
def read_image(path: str | Path) -> torch.Tensor:
    """Read an image as ``(3, H, W)`` float RGB in ``[0, 1]``, upright (:func:`moto_vision.data.images.read_image`).

    Raises:
        PortraitDataError: the file is missing, not an image, or its pixel data does not decode.
    """
    try:
        return images.read_image(path)
    except images.ImageReadError as error:
        hint = "Re-export the file or remove it from the dataset (or from the split manifest)."
        raise PortraitDataError(f"{error}. {hint}") from None


def _read_label_png(path: Path) -> tuple[np.ndarray, bool]:
    """Read a mask file as an integer ``(H, W)`` array of raw values, and whether it was a palette image.

    Palette PNGs give their indices (the class ids), as in Pascal VOC.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            mode = image.mode
            if mode in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L"):
                array = np.asarray(image if mode != "1" else image.convert("L"))
                if mode == "1":
                    array = (array > 0).astype(np.uint8)
            else:
                array = np.asarray(image.convert("RGBA") if mode in ("LA", "PA") else image.convert("RGB"))
    except FileNotFoundError:
        raise PortraitDataError(f"{path}: mask file not found.") from None
    except Exception as error:
        raise PortraitDataError(f"{path}: cannot read mask ({type(error).__name__}: {error}).") from error
    if array.ndim == 3:
        if mode in ("LA", "PA", "RGBA") and array.shape[2] == 4:
            raise PortraitDataError(
                f"{path}: mask has an alpha channel (mode {mode}); save masks as single-channel PNGs "
                "(grey values or a palette) with class ids or 0/255."
            )
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise PortraitDataError(
                f"{path}: colour mask (RGB with different channels). Convert it to class ids: a single-channel "
                "PNG, or a palette PNG whose indices are the class ids."
            )
        array = array[..., 0]
    return array.astype(np.int64), mode == "P"


def read_mask(record: SampleRecord, num_classes: int, *, binary: bool) -> torch.Tensor:
    """Decode a record's ground truth into a ``(H, W)`` long label map (255 = ignore).

    Args:
        record: a record from a portrait indexer (``extra["mask_kind"]`` says how to read it).
        num_classes: number of classes of the dataset's label ids (ignored for binary targets).
        binary: return a person mask (0 background, 1 person): any non-background class is the person.

    Raises:
        PortraitDataError: unreadable file, or a class id outside ``[0, num_classes)`` (255 is allowed).
    """
    kind: MaskKind = record.extra.get("mask_kind", "auto")
    if record.mask is None:
        raise PortraitDataError(f"{record.image}: the record has no mask.")
    if kind == "parts":
        ids = _combine_parts(record)
    else:
        raw, palette = _read_label_png(Path(record.mask))  # type: ignore[arg-type]
        ids = raw if palette else _decode_values(raw, kind, Path(record.mask), binary)  # type: ignore[arg-type]
    if binary:
        ids = np.where(ids == 255, 255, (ids > 0).astype(np.int64))
    elif kind != "parts":
        bad = np.unique(ids[(ids >= num_classes) & (ids != 255)])
        if bad.size:
            raise PortraitDataError(
                f"{record.mask}: class ids {bad[:10].tolist()} are outside 0..{num_classes - 1} (255 = ignore). "
                f"Check class_names ({num_classes} classes) or the mask encoding."
            )
    return torch.from_numpy(ids)


def _decode_values(raw: np.ndarray, kind: MaskKind, path: Path, binary: bool) -> np.ndarray:
    values = np.unique(raw)
    if kind == "alpha":
        # Mattes are binarised at 0.5: 0..255 alpha, or 0/1 labels (EG1800).
        return (raw >= 1).astype(np.int64) if values.max(initial=0) <= 1 else (raw >= 128).astype(np.int64)
    if kind == "ids" or not binary:
        return raw
    # "auto" person masks: 0/255 masks; class-id masks (small ids, 255 = ignore; any class but 0 is the
    # person); or anti-aliased grey masks, thresholded at half.
    if set(values.tolist()) <= {0, 255}:
        return (raw == 255).astype(np.int64)
    if values[values != 255].max(initial=0) < 64:
        return raw
    if values.max() <= 255:
        return (raw >= 128).astype(np.int64)
    raise PortraitDataError(f"{path}: person mask values {values[:8].tolist()} are not 0/255, 0/1 or 8-bit grey.")


def _combine_parts(record: SampleRecord) -> np.ndarray:
    parts = record.mask if isinstance(record.mask, list) else [record.mask]
    part_ids: Sequence[int] = record.extra.get("part_ids", [])
    if len(part_ids) != len(parts):
        raise PortraitDataError(f"{record.image}: {len(parts)} part masks but {len(part_ids)} part ids in the record.")
    ids: np.ndarray | None = None
    for part, class_id in zip(parts, part_ids):
        raw, _ = _read_label_png(Path(part))
        if ids is None:
            ids = np.zeros(raw.shape, dtype=np.int64)
        if raw.shape != ids.shape:
            raise PortraitDataError(f"{part}: part mask is {raw.shape[::-1]} but the others are {ids.shape[::-1]}.")
        ids[raw != 0] = class_id  # later parts on top, as the official g_mask.py
    if ids is None:
        raise PortraitDataError(
            f"{record.image}: no part masks found for this image (expected files like "
            f"CelebAMask-HQ-mask-anno/<folder>/{Path(record.image).stem.zfill(5)}_skin.png)."
        )
    return ids


# ------------------------------------------------------------------------------------------- indexers
def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden files skipped), sorted."""
    return images.list_image_files(folder)


def _stem_key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _pair_by_stem(images_dir: Path, masks_dir: Path) -> list[dict]:
    """``SampleRecord`` fields of each image under ``images_dir`` and the mask of the same relative path and stem.

    An image without a mask is kept, with a ``missing_mask`` problem: ``data check`` reports it with every other
    problem of the dataset, and training refuses it before its first step.
    """
    masks = {_stem_key(p, masks_dir): p for p in list_images(masks_dir)}
    pairs = []
    for image in list_images(images_dir):
        key = _stem_key(image, images_dir)
        mask = masks.get(key)
        problems = [] if mask else [("missing_mask", f"no mask {masks_dir.name}/{key}.* (same relative path, stem)")]
        pairs.append({"image": image, "mask": mask, "problems": problems})
    return pairs


_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}
_SPLIT_NAMES.update({"test": "test", "testing": "test"})


def _check_root(root: Path, layout: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PortraitDataError(f"Dataset root {root} does not exist or is not a folder. Expected: {layout}")
    return root


@register_format("portrait", "mask_folder")
def index_mask_folder(root: Path, images: str = "images", masks: str = "masks") -> list[SampleRecord]:
    """Index ``root/images`` + ``root/masks`` (or ``root/{train,val,test}/images`` + ``masks``)."""
    layout = f"{images}/ and {masks}/ folders with matching file stems (optionally under train/ val/ test/)"
    root = _check_root(root, layout)
    candidates: list[tuple[Path, str | None]] = [(root, None)]
    candidates += [(d, _SPLIT_NAMES[d.name.lower()]) for d in sorted(root.iterdir()) if d.name.lower() in _SPLIT_NAMES]
    records = []
    for folder, split in candidates:
        if (folder / images).is_dir() and (folder / masks).is_dir():
            for pair in _pair_by_stem(folder / images, folder / masks):
                records.append(SampleRecord(split=split, extra={"mask_kind": "auto"}, **pair))
    if not records:
        raise PortraitDataError(f"No image/mask pairs found under {root}. Expected {layout}.")
    return records


# (image folder, alpha folder) pairs of the matting datasets we know.
_MATTING_PAIRS: tuple[tuple[str, str], ...] = (
    ("blurred_image", "mask"),  # P3M-10k train, P3M-500-P
    ("original_image", "mask"),  # P3M-500-NP
    ("image", "matte"),  # PPM-100
    ("Images", "Labels"),  # EG1800
    ("image", "alpha"),
    ("images", "alphas"),
)


@register_format("portrait", "matting")
def index_matting(root: Path) -> list[SampleRecord]:
    """Index image + alpha-matte datasets (P3M-10k, PPM-100, EG1800 layouts); mattes are binarised at 0.5."""
    layout = "P3M-10k (train/blurred_image + train/mask, ...), PPM-100 (image + matte) or EG1800 (Images + Labels)"
    root = _check_root(root, layout)
    folders = [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
    split_lists = _eg1800_split_lists(root)
    records = []
    for folder in folders:
        for image_dir, alpha_dir in _MATTING_PAIRS:
            if not ((folder / image_dir).is_dir() and (folder / alpha_dir).is_dir()):
                continue
            split = _split_from_path(folder.relative_to(root))
            for pair in _pair_by_stem(folder / image_dir, folder / alpha_dir):
                record_split = split_lists.get(pair["image"].stem, split) if split_lists else split
                extra = {"mask_kind": "alpha", "layout": f"{image_dir}+{alpha_dir}"}
                records.append(SampleRecord(split=record_split, extra=extra, **pair))
    if not records:
        raise PortraitDataError(f"No image/matte folder pairs under {root}. Expected {layout}.")
    return records


def _split_from_path(relative: Path) -> str | None:
    parts = [part.lower() for part in relative.parts]
    if any(part.startswith("p3m-500") for part in parts):
        return "test"  # P3M-10k's two 500-image benchmarks (in its "validation" folder) are its test sets
    return next((_SPLIT_NAMES[part] for part in parts if part in _SPLIT_NAMES), None)


def _eg1800_split_lists(root: Path) -> dict[str, str]:
    """``stem -> split`` from EG1800's ``eg1800_{train,val,valid,test}.txt`` lists, when present."""
    splits: dict[str, str] = {}
    for path in sorted(root.glob("eg1800_*.txt")):
        name = path.stem.split("_", 1)[1].lower()
        if name not in _SPLIT_NAMES:
            continue
        for line in path.read_text().split():
            splits[Path(line.strip()).stem] = _SPLIT_NAMES[name]
    return splits


_PART_FILE = re.compile(r"^(\d+)_([a-z_]+)$")


@register_format("portrait", "celebamask_hq")
def index_celebamask_hq(root: Path) -> list[SampleRecord]:
    """Index CelebAMask-HQ: images, the per-part masks (official class order) and the official split."""
    layout = "CelebA-HQ-img/{k}.jpg and CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png"
    root = _check_root(root, layout)
    image_dir, anno_dir = root / "CelebA-HQ-img", root / "CelebAMask-HQ-mask-anno"
    if not image_dir.is_dir() or not anno_dir.is_dir():
        raise PortraitDataError(f"{root} is not a CelebAMask-HQ folder. Expected {layout}.")
    class_id = {name: i for i, name in enumerate(CELEBAMASK_HQ_CLASSES)}
    parts: dict[int, dict[str, Path]] = {}
    for path in anno_dir.glob("*/*.png"):
        match = _PART_FILE.match(path.stem)
        if match and match.group(2) in class_id:
            parts.setdefault(int(match.group(1)), {})[match.group(2)] = path
    splits = _celebamask_splits(root / "CelebA-HQ-to-CelebA-mapping.txt")
    records = []
    for image in sorted(image_dir.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem)):
        if not image.stem.isdigit():
            continue
        index = int(image.stem)
        found = parts.get(index, {})
        ordered = [name for name in CELEBAMASK_HQ_CLASSES[1:] if name in found]
        records.append(
            SampleRecord(
                image=image,
                split=splits.get(index),
                mask=[found[name] for name in ordered],
                extra={
                    "mask_kind": "parts",
                    "num_classes": len(CELEBAMASK_HQ_CLASSES),
                    "part_ids": [class_id[name] for name in ordered],
                    # Masks are annotated at 512x512 on the 1024x1024 images; images are resized to the masks.
                    "resize_image_to_mask": True,
                },
            )
        )
    if not records:
        raise PortraitDataError(f"No images in {image_dir}. Expected {layout}.")
    return records


def _celebamask_splits(mapping: Path) -> dict[int, str]:
    """CelebAMask-HQ's official split: CelebA's partition of each image's original CelebA index."""
    if not mapping.is_file():
        return {}
    splits = {}
    for line in mapping.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        hq_index, orig = int(fields[0]), int(fields[1])
        # CelebA's list_eval_partition: 0..162770 train, 162771..182637 val, the rest test (g_partition.py).
        splits[hq_index] = "train" if orig < 162771 else ("val" if orig < 182638 else "test")
    return splits


@register_format("portrait", "lapa")
def index_lapa(root: Path) -> list[SampleRecord]:
    """Index LaPa: ``{train,val,test}/images/*.jpg`` with ``labels/*.png`` (11 classes)."""
    layout = "{train,val,test}/images/*.jpg and {train,val,test}/labels/*.png"
    root = _check_root(root, layout)
    records = []
    for split in ("train", "val", "test"):
        folder = root / split
        if (folder / "images").is_dir() and (folder / "labels").is_dir():
            for pair in _pair_by_stem(folder / "images", folder / "labels"):
                extra = {"mask_kind": "ids", "num_classes": len(LAPA_CLASSES)}
                records.append(SampleRecord(split=split, extra=extra, **pair))
    if not records:
        raise PortraitDataError(f"No LaPa samples under {root}. Expected {layout}.")
    return records

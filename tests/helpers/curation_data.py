"""Generated datasets with known defects, for the data-curation tests.

Each dataset is a folder of images (16-bit PNGs for AWB, JPEGs otherwise; PNG masks for portrait) plus an
``index.json`` that the ``curation_test`` format (registered by :func:`register_test_formats`) turns into
``SampleRecord``s. :func:`make_dataset` writes a clean dataset and then injects the requested defects,
returning which file each defect should be reported on.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from moto_vision.data.records import _REGISTRY, SampleRecord

FORMAT = "curation_test"

DEFECTS: dict[str, tuple[str, ...]] = {
    "common": (
        "missing_file",
        "unreadable",
        "truncated",
        "exif_orientation",
        "duplicate",
        "near_duplicate",
        "leakage",
        "near_leakage",
        "group_leakage",
    ),
    "awb": ("bit_depth", "illuminant_nonfinite", "illuminant_nonpositive", "missing_illuminant"),
    "portrait": ("mask_size", "mask_mode", "missing_mask", "class_out_of_range"),
    "scene": ("unknown_label", "missing_label"),
}
#: The check code each defect must produce.
EXPECTED_CODE = {"near_leakage": "leakage"}
SCENE_CLASSES = ("beach", "food", "night", "snow")


def write_png16(path: Path, array: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint16 array as a 16-bit RGB PNG (Pillow cannot write 16-bit RGB)."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def pattern(seed: int, width: int = 96, height: int = 72) -> np.ndarray:
    """A smooth random colour pattern in [0, 1] (distinct seeds give perceptually distinct images)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC)).astype(np.float32) / 255
    return np.clip(smooth + rng.normal(0, 0.015, smooth.shape), 0, 1)


def _index_curation_test(root: Path) -> list[SampleRecord]:
    entries = json.loads((root / "index.json").read_text())
    records = []
    for entry in entries:
        mask = entry.get("mask")
        if isinstance(mask, list):
            mask = [root / m for m in mask]
        elif mask is not None:
            mask = root / mask
        illuminant = entry.get("illuminant")
        records.append(
            SampleRecord(
                image=root / entry["image"],
                split=entry.get("split"),
                mask=mask,
                labels=entry.get("labels"),
                illuminant=None if illuminant is None else tuple(float(v) for v in illuminant),
                group=entry.get("group"),
                extra=entry.get("extra", {}),
            )
        )
    return records


def register_test_formats() -> list[tuple[str, str]]:
    """Register ``curation_test`` for every task; returns the registry keys (to remove them afterwards)."""
    keys = [(task, FORMAT) for task in ("awb", "portrait", "scene")]
    for key in keys:
        _REGISTRY[key] = _index_curation_test
    return keys


def _split_of(i: int, n: int) -> str:
    return "test" if i >= n - 2 else "val" if i >= n - 4 else "train"


def _write_image(root: Path, task: str, name: str, rgb: np.ndarray, exif: Image.Exif | None = None) -> str:
    if task == "awb":
        rel = f"images/{name}.png"
        write_png16(root / rel, (rgb * 0.25 * 65535 + 2048).astype(np.uint16))  # linear raw: dark, black level 2048
    else:
        rel = f"images/{name}.jpg"
        Image.fromarray((rgb * 255).astype(np.uint8)).save(root / rel, quality=92, exif=exif or Image.Exif())
    return rel


def make_dataset(root: Path, task: str, n: int = 12, defects: Iterable[str] = ()) -> dict[str, str]:
    """Write a dataset of ``n`` clean samples to ``root`` and inject ``defects``.

    Returns:
        ``{defect: relative path the defect's issue must name}``.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    entries: list[dict[str, Any]] = []
    rng = np.random.default_rng(123)
    for i in range(n):
        rgb = pattern(i)
        entry: dict[str, Any] = {"image": _write_image(root, task, f"img{i:03d}", rgb), "split": _split_of(i, n)}
        entry["group"] = f"session{i}"
        if task == "awb":
            illuminant = rng.uniform(0.3, 1.0, 3)
            entry["illuminant"] = (illuminant / np.linalg.norm(illuminant)).tolist()
            entry["extra"] = {"black_level": 2048, "saturation": 65535 * 0.25 + 2048 + 1000}
        elif task == "portrait":
            mask = np.zeros(rgb.shape[:2], dtype=np.uint8)
            mask[10 + i % 5 : 50, 20 : 60 + i % 7] = 1
            mask[30:40, 30:40] = 2
            Image.fromarray(mask).save(root / f"masks/img{i:03d}.png")
            entry["mask"] = f"masks/img{i:03d}.png"
        else:
            entry["labels"] = [SCENE_CLASSES[i % len(SCENE_CLASSES)]]
            if i % 3 == 0:
                entry["labels"].append(SCENE_CLASSES[(i + 1) % len(SCENE_CLASSES)])
        entries.append(entry)
    found: dict[str, str] = {}
    by_name = {e["image"]: e for e in entries}
    train = [e for e in entries if e["split"] == "train"]
    for defect in defects:
        found[defect] = _inject(root, task, defect, entries, train, by_name)
    (root / "index.json").write_text(json.dumps(entries, indent=1))
    return found


def _inject(root: Path, task: str, defect: str, entries: list, train: list, by_name: dict) -> str:
    """Apply one defect; each uses its own training sample so that defects never overlap."""
    victim = train[list(DEFECTS["common"] + DEFECTS[task]).index(defect)]
    rel = victim["image"]
    path = root / rel
    if defect == "missing_file":
        path.unlink()
    elif defect == "unreadable":
        path.write_bytes(b"this is not an image\n")
    elif defect == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif defect == "exif_orientation":
        exif = Image.Exif()
        exif[0x0112] = 6
        if task == "awb":  # raw PNGs: give it the tag as a PNG eXIf chunk via Pillow (8-bit, hence also bit_depth)
            victim["extra"]["bit_depth"] = 8
            rel = rel.replace(".png", "_rot.png")
            Image.fromarray((pattern(900) * 255).astype(np.uint8)).save(root / rel, exif=exif)
            victim["image"] = rel
        else:
            Image.fromarray((pattern(900) * 255).astype(np.uint8)).save(path, quality=92, exif=exif)
        if task == "portrait":  # the portrait loader rotates the image: its mask is drawn on the rotated view
            mask = root / victim["mask"]
            Image.open(mask).transpose(Image.Transpose.ROTATE_270).save(mask)
    elif defect in ("duplicate", "near_duplicate", "leakage", "near_leakage"):
        copy = dict(victim, group=victim["group"] + "_copy")
        copy["image"] = rel.replace("img", f"{defect}_")
        if defect.startswith("near"):
            rgb = pattern(int(rel[-7:-4]))  # the same picture, resized and re-encoded
            small = Image.fromarray((rgb * 255).astype(np.uint8)).resize((88, 66), Image.Resampling.BILINEAR)
            if task == "awb":
                write_png16(root / copy["image"], (np.asarray(small) / 255 * 0.25 * 65535 + 2048).astype(np.uint16))
            else:
                small.save(root / copy["image"], quality=70)
            if task == "portrait":
                Image.fromarray(np.zeros((66, 88), np.uint8)).save(root / (copy["image"] + ".mask.png"))
                copy["mask"] = copy["image"] + ".mask.png"
        else:
            shutil.copy(path, root / copy["image"])
        copy["split"] = "test" if "leakage" in defect else victim["split"]
        entries.append(copy)
    elif defect == "group_leakage":
        other = next(e for e in entries if e["split"] == "test")
        other["group"] = victim["group"]
    elif defect == "bit_depth":
        Image.fromarray((pattern(901) * 255).astype(np.uint8)).save(path)
    elif defect == "illuminant_nonfinite":
        victim["illuminant"] = [float("nan"), 0.5, 0.5]
    elif defect == "illuminant_nonpositive":
        victim["illuminant"] = [0.7, 0.7, 0.0]
    elif defect == "missing_illuminant":
        victim.pop("illuminant")
    elif defect == "mask_size":
        mask = root / victim["mask"]
        Image.open(mask).resize((40, 30), Image.Resampling.NEAREST).save(mask)
        return victim["mask"]
    elif defect == "mask_mode":
        mask = root / victim["mask"]
        ids = np.asarray(Image.open(mask))
        palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], dtype=np.uint8)
        Image.fromarray(palette[ids]).save(mask)  # a colour-coded mask instead of class ids
        return victim["mask"]
    elif defect == "missing_mask":
        victim.pop("mask")
    elif defect == "class_out_of_range":
        mask = root / victim["mask"]
        array = np.array(Image.open(mask))
        array[0:5, 0:5] = 7
        Image.fromarray(array).save(mask)
        return victim["mask"]
    elif defect == "unknown_label":
        victim["labels"] = ["volcano"]
    elif defect == "missing_label":
        victim["labels"] = []
    else:
        raise ValueError(f"unknown defect {defect!r}")
    return rel


def all_defects(task: str) -> tuple[str, ...]:
    return DEFECTS["common"] + DEFECTS[task]


def remove_formats(keys: Iterable[tuple[str, str]]) -> None:
    for key in keys:
        _REGISTRY.pop(key, None)

"""Tiny on-disk copies of the portrait dataset layouts (mask folder, P3M-10k, PPM-100, EG1800, CelebAMask-HQ, LaPa).

Every image is a flat colour with a bright rectangle "person" whose box is also what the masks mark, so
tests can check that images and masks are paired and oriented correctly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

BOX = (4, 6, 20, 18)  # top, left, bottom, right of the "person" in a 24x32 (H x W) image


def person_image(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), rng.integers(0, 80, 3), dtype=np.uint8)
    top, left, bottom, right = BOX
    image[top:bottom, left:right] = (230, 200, 180)
    return image


def person_mask(height: int = 24, width: int = 32, value: int = 255) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    top, left, bottom, right = BOX
    mask[top:bottom, left:right] = value
    return mask


def save(array: np.ndarray, path: Path, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path) if mode is None else Image.fromarray(array).convert(mode).save(path)
    return path


def save_palette(ids: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.astype(np.uint8).tobytes())
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (768 - 12))
    image.save(path)
    return path


def make_mask_folder(root: Path, count: int = 6, splits: bool = False) -> Path:
    """``images/*.jpg`` + ``masks/*.png`` (0/255), or the same under ``train/`` and ``val/``."""
    for i in range(count):
        base = root / (("train" if i < count - 2 else "val") if splits else "")
        save(person_image(seed=i), base / "images" / f"img_{i:03d}.jpg")
        save(person_mask(), base / "masks" / f"img_{i:03d}.png")
    return root


def make_p3m(root: Path) -> Path:
    """P3M-10k: ``train/blurred_image`` + ``train/mask``; ``validation/P3M-500-{P,NP}``."""
    for i in range(3):
        save(person_image(seed=i), root / "train" / "blurred_image" / f"p_{i:04d}.jpg")
        save(person_mask(), root / "train" / "mask" / f"p_{i:04d}.png")
    save(person_image(seed=7), root / "validation" / "P3M-500-P" / "blurred_image" / "p_val0.jpg")
    save(person_mask(), root / "validation" / "P3M-500-P" / "mask" / "p_val0.png")
    save(person_image(seed=8), root / "validation" / "P3M-500-NP" / "original_image" / "np_val0.jpg")
    # An anti-aliased matte: values between 0 and 255 around the person.
    matte = person_mask().astype(np.float32)
    matte[BOX[0] - 1, :] = 100
    save(matte.astype(np.uint8), root / "validation" / "P3M-500-NP" / "mask" / "np_val0.png")
    return root


def make_ppm100(root: Path) -> Path:
    for i in range(2):
        save(person_image(seed=i), root / "image" / f"{i:04d}.jpg")
        save(person_mask(), root / "matte" / f"{i:04d}.png")
    return root


def make_eg1800(root: Path) -> Path:
    """EG1800: ``Images/*.png`` + ``Labels/*.png`` with 0/1 labels and split lists."""
    for i in range(1, 5):
        save(person_image(seed=i), root / "Images" / f"{i:05d}.png")
        save(person_mask(value=1), root / "Labels" / f"{i:05d}.png")
    (root / "eg1800_train.txt").write_text("00001.png\n00002.png\n00003.png\n")
    (root / "eg1800_test.txt").write_text("00004.png\n")
    return root


def make_celebamask_hq(root: Path) -> Path:
    """CelebAMask-HQ: 1024 px images (here 64), 512 px part masks (here 32) in folders of 2000 ids."""
    for k in (0, 1, 2001):
        save(person_image(64, 64, seed=k), root / "CelebA-HQ-img" / f"{k}.jpg")
        folder = root / "CelebAMask-HQ-mask-anno" / str(k // 2000)
        skin = np.zeros((32, 32), np.uint8)
        skin[4:28, 6:26] = 255
        hair = np.zeros((32, 32), np.uint8)
        hair[2:12, 4:28] = 255  # overlaps skin: hair comes later in the official order and wins
        nose = np.zeros((32, 32), np.uint8)
        nose[14:18, 14:18] = 255
        save(np.stack([skin] * 3, -1), folder / f"{k:05d}_skin.png")  # the official files are 3-channel
        save(hair, folder / f"{k:05d}_hair.png")
        save(nose, folder / f"{k:05d}_nose.png")
    header = "idx         orig_idx    orig_file\n"
    rows = ["0  100  000101.jpg", "1  170000  170001.jpg", "2001  190000  190001.jpg"]
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text(header + "\n".join(rows) + "\n")
    return root


def make_lapa(root: Path) -> Path:
    for split, count in (("train", 3), ("val", 1), ("test", 1)):
        for i in range(count):
            save(person_image(seed=i), root / split / "images" / f"{split}_{i}.jpg")
            ids = np.zeros((24, 32), np.uint8)
            ids[4:20, 6:18] = 1
            ids[4:8, 6:18] = 10
            ids[10:12, 8:10] = 4
            save(ids, root / split / "labels" / f"{split}_{i}.png")
            (root / split / "landmarks").mkdir(parents=True, exist_ok=True)
            (root / split / "landmarks" / f"{split}_{i}.txt").write_text("106\n")
    return root


def save_exif_rotated_jpeg(array: np.ndarray, path: Path, orientation: int = 6) -> Path:
    """Store ``array`` (as displayed) the way a phone does: pixels rotated, plus an EXIF orientation tag.

    Orientation 6 means "rotate 90 degrees clockwise to display", so the stored pixels are the displayed
    image rotated 90 degrees counter-clockwise; ``ImageOps.exif_transpose`` turns them back.
    """
    assert orientation == 6
    stored = np.rot90(array, k=1)  # counter-clockwise; displaying rotates it back clockwise
    image = Image.fromarray(np.ascontiguousarray(stored))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=exif.tobytes(), quality=95)
    return path

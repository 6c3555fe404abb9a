"""Tiny on-disk scene datasets in the layouts of the real formats (image_folder, manifest, Places365).

Images are 20x16 solid colours (one colour per class, a little noise), written as JPEG or PNG, so the
fixtures take milliseconds to write and decode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {
    "night": (10, 10, 30),
    "snow": (240, 240, 250),
    "sunset": (250, 120, 30),
    "food": (200, 60, 40),
    "portrait": (210, 170, 140),
    "text": (230, 230, 220),
}


def write_image(path: Path, label: str, seed: int = 0, suffix: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colour = np.array(COLOURS.get(label, (128, 128, 128)), dtype=np.float32)
    array = np.clip(colour + rng.normal(0, 6, size=(16, 20, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


def make_image_folder(root: Path, classes: Sequence[str], per_class: int, *, split_dirs: bool = False) -> Path:
    """``root/<class>/<n>.jpg``, or ``root/{train,val,test}/<class>/<n>.png`` with ``split_dirs``."""
    splits = ("train", "val", "test") if split_dirs else (None,)
    for split in splits:
        for c, name in enumerate(classes):
            for i in range(per_class):
                folder = root / split / name if split else root / name
                write_image(folder / f"{i:03d}{'.png' if split_dirs else '.jpg'}", name, seed=c * 100 + i)
    return root


def make_manifest(root: Path, rows: Sequence[tuple[str, Sequence[str], str | None]], *, kind: str = "csv") -> Path:
    """Images under ``root/images`` and ``root/manifest.csv`` (or ``.jsonl``) listing (name, labels, split)."""
    for i, (name, labels, _) in enumerate(rows):
        write_image(root / "images" / name, labels[0] if labels else "none", seed=i)
    if kind == "csv":
        lines = ["path,labels,split"]
        lines += [f"images/{name},{';'.join(labels)},{split or ''}" for name, labels, split in rows]
        path = root / "manifest.csv"
        path.write_text("\n".join(lines) + "\n")
    else:
        path = root / "manifest.jsonl"
        items = [{"path": f"images/{name}", "labels": list(labels), "split": split} for name, labels, split in rows]
        path.write_text("\n".join(json.dumps(item) for item in items) + "\n")
    return path


PLACES_CATEGORIES = ["/a/airfield", "/b/bedroom", "/s/snowfield", "/a/apartment_building/outdoor"]


def make_places365(root: Path, train_per_class: int = 4, val_per_class: int = 2) -> Path:
    """Places365-Standard layout: category list, train / val lists, ``data_256/`` and ``val_256/``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(PLACES_CATEGORIES)))
    train_lines, val_lines = [], []
    n = 0
    for index, category in enumerate(PLACES_CATEGORIES):
        for i in range(train_per_class):
            relative = f"{category}/{i + 1:08d}.jpg"
            write_image(root / "data_256" / relative.lstrip("/"), "snow" if index == 2 else "night", seed=n)
            train_lines.append(f"{relative} {index}")
            n += 1
        for _ in range(val_per_class):
            name = f"Places365_val_{n:08d}.jpg"
            write_image(root / "val_256" / name, "snow" if index == 2 else "night", seed=n)
            val_lines.append(f"{name} {index}")
            n += 1
    (root / "places365_train_standard.txt").write_text("\n".join(train_lines) + "\n")
    (root / "places365_val.txt").write_text("\n".join(val_lines) + "\n")
    return root

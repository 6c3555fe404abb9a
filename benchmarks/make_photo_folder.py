"""Generate a folder of photo-like 1-2 MP JPEGs for timing ``moto-vision data check`` / ``report``.

Layout ``OUT/<class>/<class>_<i>.jpg`` (an image-folder classification layout). Each image is a smooth random
colour field with film-grain texture, so JPEGs have realistic sizes (~0.3-0.7 MB) and distinct perceptual hashes.

    python benchmarks/make_photo_folder.py /tmp/photos10k --count 10000 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = ((1280, 960), (1440, 1080), (1600, 1200), (1200, 1200), (1920, 1080))
CLASSES = ("beach", "document", "food", "greenery", "night", "pet", "snow", "sunset", "portrait", "city")
_GRAIN = np.random.default_rng(0).normal(0, 7, (1300, 2100, 3)).astype(np.int16)


def _make(args: tuple[Path, int]) -> int:
    out, index = args
    rng = np.random.default_rng(index)
    width, height = SIZES[index % len(SIZES)]
    coarse = Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8))
    field = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC)).astype(np.int16)
    y, x = rng.integers(0, 1300 - height + 1), rng.integers(0, 2100 - width + 1)
    pixels = np.clip(field + _GRAIN[y : y + height, x : x + width], 0, 255).astype(np.uint8)
    label = CLASSES[index % len(CLASSES)]
    path = out / label / f"{label}_{index:05d}.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for label in CLASSES:
        (args.out / label).mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        sizes = pool.map(_make, [(args.out, i) for i in range(args.count)], chunksize=16)
    print(f"{args.count} JPEGs in {args.out}, {sum(sizes) / 1e9:.2f} GB, mean {np.mean(sizes) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

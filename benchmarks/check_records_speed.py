"""Speed of the checks a datamodule runs before its first step (record facts + image and mask headers, no decoding).

Writes ``--count`` 640 x 480 JPEGs (with EXIF) and PNG masks into ``--root`` (once), indexes them as ``mask_folder``
and times :func:`moto_vision.data.validation.check_records` in CPU and wall time. Run it twice: the second run reads
from the page cache, as a dataset being trained on is.

    python benchmarks/check_records_speed.py [--root /tmp/check_speed] [--count 2000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from moto_vision.data.portrait.formats import index_mask_folder
from moto_vision.data.validation import check_records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("/tmp/check_speed"))
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    images, masks = args.root / "images", args.root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    picture = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    mask = ((rng.random((480, 640)) > 0.5) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "Phone"
    for i in range(args.count):
        if not (images / f"{i:05d}.jpg").exists():
            Image.fromarray(picture).save(images / f"{i:05d}.jpg", quality=85, exif=exif)
            Image.fromarray(mask).save(masks / f"{i:05d}.png")
    cpu, wall = time.process_time(), time.perf_counter()
    records = index_mask_folder(args.root)[: args.count]
    check_records(records, task="portrait", fmt="mask_folder", root=args.root, owner="benchmark", masks=True)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{len(records)} samples: {cpu:.2f} s CPU ({cpu / len(records) * 1e3:.2f} ms per sample), {wall:.2f} s wall")


if __name__ == "__main__":
    main()

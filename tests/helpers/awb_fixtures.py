"""Tiny colour-constancy datasets that copy the real layouts (file names, ground-truth files, levels, masks).

Every raw image is a grey-world scene (neutral surfaces of varying lightness) lit by its ground-truth
illuminant, plus two traps that the official preprocessing must remove:

- a strongly coloured chart where the dataset's chart is (colour checker / SpyderCube), which must be masked;
- a block of clipped pixels of the wrong colour, which must be treated as saturated.

So Gray World on a correctly read image recovers the ground truth almost exactly, and any mistake in black
level, saturation or masking shows up as a large angular error.
"""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np

CHART_RGB = np.array([0.9, 0.05, 0.6])  # a magenta chart: far from any illuminant


def write_png16(path: Path, array: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint16 array as a 16-bit RGB PNG (pure Python: no OpenCV here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width, _ = array.shape
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def _illuminant(rng: np.random.Generator) -> np.ndarray:
    rgb = np.array([rng.uniform(0.3, 0.9), 1.0, rng.uniform(0.3, 0.9)])
    return rgb / np.linalg.norm(rgb)


def raw_scene(
    rng: np.random.Generator,
    shape: tuple[int, int],
    illuminant: np.ndarray,
    black: float,
    saturation: float,
    chart_box: tuple[int, int, int, int] | None = None,
    chart_polygon: list[tuple[float, float]] | None = None,
    clipped_box: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """A neutral scene under ``illuminant`` in raw counts, with a coloured chart and a clipped block."""
    height, width = shape
    lightness = rng.uniform(0.1, 0.7, size=(height // 4 + 1, width // 4 + 1)).repeat(4, 0).repeat(4, 1)
    signal = lightness[:height, :width, None] * illuminant[None, None] / illuminant.max()
    counts = black + signal * 0.8 * (saturation - black)
    chart = black + CHART_RGB * 0.8 * (saturation - black)
    if chart_box is not None:
        top, bottom, left, right = chart_box
        counts[top:bottom, left:right] = chart
    if chart_polygon is not None:
        from matplotlib.path import Path as PolygonPath

        ys, xs = np.mgrid[0:height, 0:width]
        inside = PolygonPath(chart_polygon).contains_points(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1))
        counts[inside.reshape(height, width)] = chart
    if clipped_box is not None:
        top, bottom, left, right = clipped_box
        counts[top:bottom, left:right] = [saturation + 10, black + 0.1 * (saturation - black), saturation + 10]
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


# ------------------------------------------------------------------------------------------------ Gehler-Shi
def make_gehler_shi(root: Path, n_1d: int = 3, n_5d: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Shi & Funt layout: images/*.png, coordinates/*_macbeth.txt, real_illum_568..mat, threefoldCVsplit.mat."""
    import scipy.io

    rng = np.random.default_rng(seed)
    names = [f"8D5U{5524 + i}" for i in range(n_1d)] + [f"IMG_{274 + i:04d}" for i in range(n_5d)]
    names.sort()
    shape = (48, 72)
    gts = []
    for name in names:
        black = 129 if name.startswith("IMG") else 0
        illuminant = _illuminant(rng)
        gts.append(illuminant * rng.uniform(0.2, 2.0))  # the .mat rows are not normalised
        # Corners clicked on a half-resolution preview, listed TL, TR, BL, BR as in the real files.
        ann_w, ann_h = shape[1] / 2, shape[0] / 2
        tl, tr, bl, br = (8, 4), (20, 5), (7, 13), (19, 14)
        coords = root / "coordinates" / f"{name}_macbeth.txt"
        coords.parent.mkdir(parents=True, exist_ok=True)
        patch_lines = "".join(f"{9 + k % 6} {6 + k // 6}\n" for k in range(24 * 4))
        coords.write_text(f"{ann_w:g} {ann_h:g}\n" + "".join(f"{x} {y}\n" for x, y in (tl, tr, bl, br)) + patch_lines)
        polygon = [(x * shape[1] / ann_w, y * shape[0] / ann_h) for x, y in (tl, tr, br, bl)]
        counts = raw_scene(rng, shape, illuminant, black, 3692, chart_polygon=polygon, clipped_box=(36, 44, 56, 66))
        write_png16(root / "images" / f"{name}.png", counts)
    scipy.io.savemat(root / "real_illum_568..mat", {"real_rgb": np.array(gts)})
    te_split = np.empty((1, 3), dtype=object)
    for fold in range(3):
        te_split[0, fold] = np.arange(fold + 1, len(names) + 1, 3, dtype=float)[None]
    tr_split = np.empty((1, 3), dtype=object)
    for fold in range(3):
        tr_split[0, fold] = np.array([i for i in range(1, len(names) + 1) if (i - 1) % 3 != fold], dtype=float)[None]
    scipy.io.savemat(root / "threefoldCVsplit.mat", {"te_split": te_split, "tr_split": tr_split})
    return {"names": np.array(names), "illuminants": np.array(gts)}


# ------------------------------------------------------------------------------------------------ NUS-8
def make_nus8(root: Path, cameras: tuple[str, ...] = ("Canon600D", "SonyA57"), n: int = 3, seed: int = 1) -> None:
    """NUS layout: <camera>/<camera>_gt.mat and <camera>/PNG/<camera>_0001.PNG ..."""
    import scipy.io

    rng = np.random.default_rng(seed)
    for camera in cameras:
        black, saturation = 2048.0, 15279.0
        gts, boxes, names = [], [], []
        for i in range(n):
            name = f"{camera}_{i + 1:04d}"
            illuminant = _illuminant(rng)
            box = [5 + i, 20 + i, 40, 60]  # y1, y2, x1, x2 (1-based, inclusive)
            counts = raw_scene(
                rng,
                (48, 72),
                illuminant,
                black,
                saturation,
                chart_box=(box[0] - 1, box[1], box[2] - 1, box[3]),
                clipped_box=(36, 44, 4, 14),
            )
            write_png16(root / camera / "PNG" / f"{name}.PNG", counts)
            gts.append(illuminant)
            boxes.append(box)
            names.append(name)
        image_names = np.empty((1, n), dtype=object)
        for i, name in enumerate(names):
            image_names[0, i] = name
        scipy.io.savemat(
            root / camera / f"{camera}_gt.mat",
            {
                "groundtruth_illuminants": np.array(gts),
                "darkness_level": black,
                "saturation_level": saturation,
                "CC_coords": np.array(boxes, dtype=float),
                "all_image_names": image_names,
            },
        )


# ------------------------------------------------------------------------------------------------ Cube+
def make_cube_plus(root: Path, n: int = 6, seed: int = 2) -> None:
    """Cube+ layout: cube+_gt.txt and PNG/1.PNG ... with black 2048, max - 2 saturation, SpyderCube corner."""
    rng = np.random.default_rng(seed)
    shape = (48, 72)  # 1728 x 2592 scaled down by 36: the cube corner starts at row 29.2, column 56.9
    lines = []
    for i in range(1, n + 1):
        illuminant = _illuminant(rng)
        counts = raw_scene(rng, shape, illuminant, 2048, 15000, chart_box=(30, 48, 57, 72), clipped_box=(2, 8, 2, 10))
        write_png16(root / "PNG" / f"{i}.PNG", counts)
        lines.append(" ".join(f"{v:.6f}" for v in illuminant / illuminant.sum()))
    (root / "cube+_gt.txt").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------ SimpleCube++
def make_simple_cube_pp(root: Path, n_train: int = 6, n_test: int = 3, seed: int = 3) -> None:
    """SimpleCube++ layout: {train,test}/gt.csv (image,r,g,b) and {train,test}/PNG/<dd_dddd>.png."""
    rng = np.random.default_rng(seed)
    shape = (43, 65)  # 432 x 648 scaled by 10: the cropped corner is the last 17 rows and 25 columns
    counter = 0
    for split, count in (("train", n_train), ("test", n_test)):
        rows = []
        for _ in range(count):
            counter += 1
            name = f"{counter // 100:02d}_{counter:04d}"
            illuminant = _illuminant(rng)
            counts = raw_scene(rng, shape, illuminant, 2048, 15000, clipped_box=(2, 8, 2, 10))
            counts[-17:, -25:] = 0  # the cropped-out SpyderCube
            write_png16(root / split / "PNG" / f"{name}.png", counts)
            rgb = illuminant / illuminant.sum()
            rows.append({"image": name, "r": rgb[0], "g": rgb[1], "b": rgb[2]})
        (root / split).mkdir(parents=True, exist_ok=True)
        with (root / split / "gt.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["image", "r", "g", "b"])
            writer.writeheader()
            writer.writerows(rows)


# ------------------------------------------------------------------------------------------------ photos
def make_photos(root: Path, n: int = 8, seed: int = 4) -> None:
    """A folder of ordinary sRGB photos (JPEG and PNG, different sizes, one sub-folder)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        size = (80 + 8 * i, 64)
        array = (rng.uniform(0.1, 0.9, size=(size[1] // 8, size[0] // 8, 3)).repeat(8, 0).repeat(8, 1) * 255).astype(
            np.uint8
        )
        folder = root / ("holiday" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".jpg" if i % 3 else ".png"
        Image.fromarray(array).save(folder / f"photo_{i:02d}{suffix}")

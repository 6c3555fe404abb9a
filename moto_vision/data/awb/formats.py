"""Colour-constancy datasets on disk: indexers (layout + ground truth, no decoding) and the raw reader.

Each indexer returns :class:`~moto_vision.data.records.SampleRecord` objects whose ``illuminant`` is the
dataset's ground truth as given and whose ``extra`` holds everything the official preprocessing needs:

- ``black_level``: subtracted from the raw values;
- ``saturation``: raw value at or above which a pixel is clipped, or ``None`` with ``saturation_margin``
  for datasets whose saturation is "the image maximum minus a margin" (Cube+, SimpleCube++);
- ``mask_polygons``: polygons in relative ``(x / W, y / H)`` coordinates (Gehler-Shi colour checkers);
- ``mask_boxes``: ``[top, bottom, left, right]`` boxes in absolute pixels (NUS-8 ``CC_coords``);
- ``mask_boxes_relative``: the same in fractions of the image size (Cube+ / SimpleCube++ SpyderCube corner);
- ``fold``: cross-validation fold (0-based) and ``camera``.

:func:`read_raw_record` applies exactly these facts, so the datamodules and ``moto-vision data`` tools read
the same thing. Facts and layouts per format are documented in ``docs/awb.md``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from moto_vision.data.errors import DataError, DataFileNotFoundError
from moto_vision.data.images import IMAGE_SUFFIXES
from moto_vision.data.records import SampleRecord, register_format

__all__ = [
    "PHOTO_SUFFIXES",
    "index_cube_plus",
    "index_gehler_shi",
    "index_nus8",
    "index_photos",
    "index_simple_cube_pp",
    "load_mat",
    "read_png16",
    "read_raw_record",
]

PHOTO_SUFFIXES = IMAGE_SUFFIXES

#: Gehler-Shi (Shi & Funt re-processing of Gehler et al. 2008): 12-bit PNGs.
GEHLER_SATURATION = 3692
GEHLER_BLACK_CANON_1D = 0  # images 1-86 (file names 8D5U*)
GEHLER_BLACK_CANON_5D = 129  # images 87-568 (file names IMG_*)
GEHLER_GT_FILES = ("real_illum_568..mat", "real_illum_568.mat", "ground_truth.mat", "gt.mat")
GEHLER_FOLD_FILES = ("threefoldCVsplit.mat", "folds.mat")

#: Cube+ (Banic & Loncaric): Canon 550D, 2592x1728 16-bit PNGs, black level 2048, saturated above max - 2,
#: SpyderCube in the bottom-right corner (rows >= 1050, columns >= 2050 at that resolution).
CUBE_BLACK = 2048
CUBE_SATURATION_MARGIN = 2
CUBE_SIZE = (1728, 2592)
CUBE_CUBE_BOX = (1050, 2050)

#: SimpleCube++ (Ershov et al. 2020): 648x432 PNGs, black level 2048, the bottom-right 175x250 region cropped out.
SIMPLE_CUBE_SIZE = (432, 648)
SIMPLE_CUBE_CROP = (175, 250)


# --------------------------------------------------------------------------------------------- helpers
def load_mat(path: Path) -> dict[str, Any]:
    """Read a MATLAB ``.mat`` file with cell arrays turned into lists (scipy; v7.3 HDF5 files are refused)."""
    import scipy.io

    try:
        return scipy.io.loadmat(str(path), simplify_cells=True)
    except NotImplementedError as error:
        raise DataError(
            f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; re-save it in MATLAB with "
            "save(..., '-v7') or convert it with h5py."
        ) from error
    except Exception as error:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: cannot read this .mat file ({error}).") from error


def _mat_key(mat: dict[str, Any], key: str, path: Path) -> Any:
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: variable {key!r} not found (the file holds {found}).")
    return mat[key]


def _check_illuminant(values: Sequence[float], where: str) -> tuple[float, float, float]:
    """One ground-truth illuminant as three numbers, kept as found.

    A NaN, infinite or non-positive value is a problem of that one sample: it stays in the record, so that
    ``data check`` lists every such row in one run and training refuses them all in one message
    (:func:`moto_vision.data.validation.record_problems`). Only a row that is not three numbers raises.
    """
    rgb = tuple(float(v) for v in values)
    if len(rgb) != 3:
        raise DataError(f"{where}: ground-truth illuminant must have 3 values (R, G, B), got {len(rgb)}.")
    return rgb  # type: ignore[return-value]


def _find_file(root: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        for candidate in (root / name, *root.glob(f"*/{name}")):
            if candidate.is_file():
                return candidate
    raise DataFileNotFoundError(f"{root}: no {what} found (looked for {', '.join(names)} in it and its sub-folders).")


def _images_in(folder: Path, suffixes: Sequence[str] = (".png",)) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _require_root(root: Path, name: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataFileNotFoundError(f"{name} dataset root {root} does not exist or is not a folder.")
    return root


# --------------------------------------------------------------------------------------------- Gehler-Shi
def _read_macbeth(path: Path) -> list[tuple[float, float]]:
    """Colour-checker polygon of a Shi & Funt ``*_macbeth.txt`` file, relative to the annotated image size.

    Line 1 is the width and height of the image the corners were clicked on (some at half resolution); lines
    2-5 are the checker corners in the order top-left, top-right, bottom-left, bottom-right, so the polygon
    visits them as 1, 2, 4, 3. Lines after that locate the 24 patches and are not needed to mask the chart.
    """
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        width, height = float(lines[0][0]), float(lines[0][1])
        corners = [(float(x) / width, float(y) / height) for x, y in (line[:2] for line in lines[1:5])]
    except (IndexError, ValueError, ZeroDivisionError) as error:
        raise DataError(
            f"{path}: not a colour-checker coordinates file (expected 'width height' then 4 'x y' corner lines)."
        ) from error
    if len(corners) != 4:
        raise DataError(f"{path}: expected 4 corner lines after the size line, found {len(corners)}.")
    return [corners[0], corners[1], corners[3], corners[2]]


def _gehler_folds(root: Path, count: int) -> list[int | None]:
    for name in GEHLER_FOLD_FILES:
        path = root / name
        if path.is_file():
            splits = _mat_key(load_mat(path), "te_split", path)
            folds: list[int | None] = [None] * count
            for fold, indices in enumerate(splits):
                for index in torch.as_tensor(indices).flatten().tolist():
                    if not 1 <= int(index) <= count:
                        raise DataError(f"{path}: te_split index {int(index)} is outside 1..{count}.")
                    folds[int(index) - 1] = fold
            return folds
    return [None] * count


@register_format("awb", "gehler_shi")
def index_gehler_shi(root: Path, **options: Any) -> list[SampleRecord]:
    """Index Shi & Funt's re-processed Gehler colour checker dataset (568 linear 12-bit PNGs).

    Layout::

        root/
          images/ (or png/)      8D5U5524.png ... (Canon 1D, black level 0), IMG_0274.png ... (Canon 5D, 129)
          coordinates/           <image stem>_macbeth.txt  (colour-checker corners, masked out)
          real_illum_568..mat    variable ``real_rgb`` (568, 3), rows in sorted file-name order
          threefoldCVsplit.mat   variable ``te_split``: 3 lists of 1-based test indices (the standard folds)

    Saturation is 3692 for both cameras.
    """
    root = _require_root(root, "Gehler-Shi")
    folder = next((root / d for d in ("images", "png", "PNG") if (root / d).is_dir()), root)
    images = _images_in(folder)
    if not images:
        raise DataFileNotFoundError(f"Gehler-Shi: no PNG images in {folder}.")
    gt_path = _find_file(root, GEHLER_GT_FILES, "ground-truth .mat file (variable real_rgb)")
    gt = torch.as_tensor(_mat_key(load_mat(gt_path), "real_rgb", gt_path), dtype=torch.float64).reshape(-1, 3)
    if len(gt) != len(images):
        raise DataError(
            f"{gt_path}: {len(gt)} ground-truth rows but {len(images)} PNG images in {folder}; the rows must match "
            "the images in sorted file-name order."
        )
    folds = _gehler_folds(root, len(images))
    records = []
    for index, (image, rgb) in enumerate(zip(images, gt.tolist())):
        coords = root / "coordinates" / f"{image.stem}_macbeth.txt"
        if not coords.is_file():
            raise DataFileNotFoundError(
                f"{coords}: colour-checker coordinates of {image.name} are missing; without them the checker "
                "would stay visible and leak the ground truth."
            )
        canon_5d = image.name.upper().startswith("IMG")
        records.append(
            SampleRecord(
                image=image,
                illuminant=_check_illuminant(rgb, f"{gt_path} row {index + 1} ({image.name})"),
                group=image.stem,
                extra={
                    "format": "gehler_shi",
                    "camera": "Canon5D" if canon_5d else "Canon1D",
                    "black_level": GEHLER_BLACK_CANON_5D if canon_5d else GEHLER_BLACK_CANON_1D,
                    "saturation": GEHLER_SATURATION,
                    "mask_polygons": [_read_macbeth(coords)],
                    "fold": folds[index],
                },
            )
        )
    return records


# --------------------------------------------------------------------------------------------- NUS-8
@register_format("awb", "nus8")
def index_nus8(root: Path, num_folds: int = 3, **options: Any) -> list[SampleRecord]:
    """Index the NUS 8-camera dataset (Cheng, Prasad & Brown 2014).

    Layout: one folder per camera (``Canon1DsMkIII``, ``Canon600D``, ``FujifilmXM1``, ``NikonD5200``,
    ``OlympusEPL6``, ``PanasonicGX1``, ``SamsungNX2000``, ``SonyA57``), each with ``<camera>_gt.mat`` and its PNG
    images anywhere below it (``PNG/<camera>_0001.PNG`` ...). The ``.mat`` holds ``groundtruth_illuminants``
    (N, 3), ``darkness_level`` (black level), ``saturation_level``, ``CC_coords`` (N, 4) = ``[y1, y2, x1, x2]``
    (1-based, inclusive) of the colour checker, which is masked, and ``all_image_names``. The dataset ships no
    folds: image ``i`` of each camera goes to fold ``i % num_folds``.
    """
    root = _require_root(root, "NUS-8")
    mats = sorted(root.rglob("*_gt.mat"))
    if not mats:
        raise DataFileNotFoundError(f"NUS-8: no <camera>_gt.mat file under {root}.")
    records = []
    for mat_path in mats:
        camera = mat_path.name[: -len("_gt.mat")]
        mat = load_mat(mat_path)
        gt = torch.as_tensor(_mat_key(mat, "groundtruth_illuminants", mat_path), dtype=torch.float64).reshape(-1, 3)
        black = float(torch.as_tensor(_mat_key(mat, "darkness_level", mat_path)).flatten()[0])
        saturation = float(torch.as_tensor(_mat_key(mat, "saturation_level", mat_path)).flatten()[0])
        boxes = torch.as_tensor(_mat_key(mat, "CC_coords", mat_path), dtype=torch.float64).reshape(-1, 4)
        available = {p.stem: p for p in _images_in(mat_path.parent)}
        if "all_image_names" in mat:
            names = [str(n).strip() for n in np.atleast_1d(np.asarray(mat["all_image_names"], dtype=object))]
        else:
            names = sorted(available)
        if not (len(names) == len(gt) == len(boxes)):
            raise DataError(
                f"{mat_path}: {len(names)} image names, {len(gt)} ground-truth rows and {len(boxes)} CC_coords rows; "
                "they must have one row per image."
            )
        for index, (name, rgb, box) in enumerate(zip(names, gt.tolist(), boxes.tolist())):
            stem = Path(name).stem
            if stem not in available:
                raise DataFileNotFoundError(
                    f"{mat_path}: image {name!r} (row {index + 1}) has no PNG under {mat_path.parent}."
                )
            y1, y2, x1, x2 = (int(round(v)) for v in box)
            records.append(
                SampleRecord(
                    image=available[stem],
                    illuminant=_check_illuminant(rgb, f"{mat_path} row {index + 1} ({name})"),
                    group=f"{camera}/{stem}",
                    extra={
                        "format": "nus8",
                        "camera": camera,
                        "black_level": black,
                        "saturation": saturation,
                        "mask_boxes": [[y1 - 1, y2, x1 - 1, x2]],
                        "fold": index % num_folds,
                    },
                )
            )
    return records


# --------------------------------------------------------------------------------------------- Cube+
def _cube_box() -> list[float]:
    return [CUBE_CUBE_BOX[0] / CUBE_SIZE[0], 1.0, CUBE_CUBE_BOX[1] / CUBE_SIZE[1], 1.0]


@register_format("awb", "cube_plus")
def index_cube_plus(root: Path, num_folds: int = 3, **options: Any) -> list[SampleRecord]:
    """Index Cube+ (Banic & Loncaric; 1707 Canon 550D images).

    Layout: ``cube+_gt.txt`` (one ``r g b`` line per image, in image-number order) and ``1.PNG`` ...
    ``1707.PNG`` anywhere below the root. Black level 2048; pixels at or above the image maximum minus 2 are
    saturated; the SpyderCube (rows >= 1050, columns >= 2050 of the 2592x1728 image) is masked. The dataset
    ships no folds: image ``i`` (1-based) goes to fold ``(i - 1) % num_folds``.
    """
    root = _require_root(root, "Cube+")
    gt_path = _find_file(root, ("cube+_gt.txt",), "cube+_gt.txt")
    images = {p.stem: p for p in _images_in(root) if p.stem.isdigit()}
    records = []
    for number, line in enumerate(gt_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{gt_path} line {number}"
        try:
            rgb = [float(v) for v in line.replace(",", " ").split()]
        except ValueError as error:
            raise DataError(f"{where}: expected three numbers 'r g b', got {line!r}.") from error
        image = images.get(str(number))
        if image is None:
            raise DataFileNotFoundError(f"{where}: image {number}.PNG is missing under {root}.")
        records.append(
            SampleRecord(
                image=image,
                illuminant=_check_illuminant(rgb, f"{where} ({image.name})"),
                group=str(number),
                extra={
                    "format": "cube_plus",
                    "camera": "Canon550D",
                    "black_level": CUBE_BLACK,
                    "saturation": None,
                    "saturation_margin": CUBE_SATURATION_MARGIN,
                    "mask_boxes_relative": [_cube_box()],
                    "fold": (number - 1) % num_folds,
                },
            )
        )
    if not records:
        raise DataError(f"{gt_path}: no ground-truth lines.")
    return records


# --------------------------------------------------------------------------------------------- SimpleCube++
@register_format("awb", "simple_cube_pp")
def index_simple_cube_pp(root: Path, **options: Any) -> list[SampleRecord]:
    """Index SimpleCube++ (Ershov et al. 2020; 2234 images, official train / test split).

    Layout: ``train/gt.csv``, ``train/PNG/<image>.png``, ``test/gt.csv``, ``test/PNG/<image>.png``; ``gt.csv`` has
    a header ``image,r,g,b`` (or ``image,mean_r,mean_g,mean_b``). Black level 2048, saturated at the image
    maximum minus 2 (as Cube+), the bottom-right 175x250 corner (the cropped SpyderCube) is masked.
    """
    root = _require_root(root, "SimpleCube++")
    records = []
    box = [1.0 - SIMPLE_CUBE_CROP[0] / SIMPLE_CUBE_SIZE[0], 1.0, 1.0 - SIMPLE_CUBE_CROP[1] / SIMPLE_CUBE_SIZE[1], 1.0]
    for split in ("train", "test"):
        gt_path = root / split / "gt.csv"
        if not gt_path.is_file():
            raise DataFileNotFoundError(f"SimpleCube++: {gt_path} is missing (expected train/ and test/ folders).")
        with gt_path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            columns = next(
                (c for c in (("r", "g", "b"), ("mean_r", "mean_g", "mean_b")) if set(c) <= set(fields)), None
            )
            if "image" not in fields or columns is None:
                raise DataError(
                    f"{gt_path}: expected columns image,r,g,b (or image,mean_r,mean_g,mean_b); got {fields}."
                )
            for line, row in enumerate(reader, start=2):
                image = root / split / "PNG" / f"{row['image']}.png"
                where = f"{gt_path} line {line} ({row['image']})"
                if not image.is_file():
                    raise DataFileNotFoundError(f"{where}: image {image} is missing.")
                try:
                    rgb = [float(row[c]) for c in columns]
                except (TypeError, ValueError) as error:
                    raise DataError(f"{where}: ground truth {[row.get(c) for c in columns]} is not numeric.") from error
                records.append(
                    SampleRecord(
                        image=image,
                        split=split,
                        illuminant=_check_illuminant(rgb, where),
                        group=row["image"],
                        extra={
                            "format": "simple_cube_pp",
                            "camera": "Canon550D/600D",
                            "black_level": CUBE_BLACK,
                            "saturation": None,
                            "saturation_margin": CUBE_SATURATION_MARGIN,
                            "mask_boxes_relative": [box],
                        },
                    )
                )
    return records


# --------------------------------------------------------------------------------------------- photos
@register_format("awb", "photos")
def index_photos(root: Path, **options: Any) -> list[SampleRecord]:
    """Index a folder (recursively) of ordinary white-balanced sRGB photos (JPEG, HEIC, PNG, WebP, BMP, TIFF).

    They carry no illuminant: :class:`~moto_vision.data.awb.datasets.PhotoAWBDataset` unprocesses each into
    linear camera raw under a sampled light (Brooks et al. 2019), which becomes its ground truth.
    """
    root = _require_root(root, "Photos")
    images = _images_in(root, PHOTO_SUFFIXES)
    if not images:
        raise DataFileNotFoundError(f"Photos: no images ({', '.join(PHOTO_SUFFIXES)}) under {root}.")
    return [SampleRecord(image=p, group=p.relative_to(root).as_posix(), extra={"format": "photos"}) for p in images]


# --------------------------------------------------------------------------------------------- reading
def read_png16(path: Path) -> Tensor:
    """Decode a 16-bit (or 8-bit) RGB PNG to a float ``(3, H, W)`` tensor of raw values (no scaling)."""
    from torchvision.io import ImageReadMode, decode_png, read_file

    try:
        data = decode_png(read_file(str(path)), ImageReadMode.UNCHANGED)
    except Exception as error:  # torchvision raises RuntimeError with libpng's message
        raise DataError(f"{path}: cannot decode this PNG ({error}); the file is corrupt or not a PNG.") from error
    if data.shape[0] != 3:
        raise DataError(f"{path}: expected an RGB (3-channel) raw PNG, got {data.shape[0]} channel(s).")
    return data.float()


def _valid_mask(record: SampleRecord, raw: Tensor) -> tuple[Tensor, float]:
    """Pixels that are neither masked nor saturated, and the saturation level used."""
    extra = record.extra
    _, height, width = raw.shape
    saturation = extra.get("saturation")
    if saturation is None:
        saturation = float(raw.max()) - float(extra.get("saturation_margin", 0))
    valid = (raw < saturation).all(dim=0)
    for top, bottom, left, right in extra.get("mask_boxes", []):
        valid[max(0, int(top)) : max(0, int(bottom)), max(0, int(left)) : max(0, int(right))] = False
    for top, bottom, left, right in extra.get("mask_boxes_relative", []):
        valid[round(top * height) : round(bottom * height), round(left * width) : round(right * width)] = False
    polygons = extra.get("mask_polygons", [])
    if polygons:
        from PIL import Image, ImageDraw

        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for polygon in polygons:
            draw.polygon([(x * width, y * height) for x, y in polygon], fill=1, outline=1)
        valid &= ~torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(height, width).bool()
    return valid, float(saturation)


def read_raw_record(record: SampleRecord) -> tuple[Tensor, Tensor]:
    """Decode a raw benchmark image with its dataset's official preprocessing.

    Subtracts the black level, scales the saturation level to 1, and marks saturated and masked pixels
    (colour checkers, SpyderCubes) invalid.

    Returns:
        ``(image, valid)``: float ``(3, H, W)`` linear camera RGB in ``[0, 1]`` with invalid pixels set to 0,
        and the bool ``(H, W)`` mask of valid pixels.
    """
    raw = read_png16(record.image)
    valid, saturation = _valid_mask(record, raw)
    black = float(record.extra.get("black_level", 0))
    if saturation <= black:
        raise DataError(f"{record.image}: saturation level {saturation} is not above the black level {black}.")
    image = ((raw - black) / (saturation - black)).clamp(0, 1) * valid
    return image, valid

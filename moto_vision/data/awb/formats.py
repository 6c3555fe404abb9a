"""Colour-constancy datasets on disk: indexers (layout + ground truth, no decoding) and the raw reader.

Each indexer returns :class:`~moto_vision.data.records.SampleRecord` objects whose ``illuminant`` is the
dataset's ground truth as given and whose ``extra`` holds everything the official preprocessing needs:

- ``black_level``: subtracted from the raw values;
- ``saturation``: raw value at or above which a pixel is clipped, or ``None`` with ``saturation_margin``
  for datasets whose saturation is "the image maximum minus a margin" (Cube+, SimpleCube++);
- ``mask_polygons``: polygons in relative ``(x / W, y / H)`` coordinates (Gehler-Shi colour checkers);
- ``mask_boxes``: ``[top, bottom, left, right]`` boxes in absolute pixels (NUS-8 ``CC_coords``);
- ``mask_boxes_relative``: the same in fractions of the image size (Cube+ / SimpleCube++ SpyderCube corner);
- ``fold``: cross-validation fold (0-based) and ``camera``;
- camera captures (``dng``, ``raw_png``): ``as_shot_neutral`` (the phone's own AWB answer), ``xyz_to_camera`` and
  ``calibration_cct`` (the DNG colour matrices, for previews and CCTs), ``camera_to_srgb``, ``iso``,
  ``exposure_time``, ``baseline_exposure`` and any extra column of the ground-truth file.

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
    "CAPTURE_GROUND_TRUTH",
    "PHOTO_SUFFIXES",
    "index_dng",
    "index_raw_png",
    "index_cube_plus",
    "index_gehler_shi",
    "index_nus8",
    "index_photos",
    "index_simple_cube_pp",
    "load_mat",
    "read_png16",
    "read_raw_record",
    "write_capture_ground_truth",
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


# --------------------------------------------------------------------------------------------- camera captures
#: Ground-truth file of the ``dng`` and ``raw_png`` formats (``moto-vision data label-awb`` writes it).
CAPTURE_GROUND_TRUTH = "ground_truth.csv"
#: Columns with a meaning; every other column becomes ``SampleRecord.extra[<column>]`` (a number where it parses).
_CAPTURE_COLUMNS = ("image", "r", "g", "b", "chart", "group", "split")
_CAMERA_COLUMNS = (
    "as_shot_r",
    "as_shot_g",
    "as_shot_b",
    "xyz_to_camera_1",
    "xyz_to_camera_2",
    "calibration_cct_1",
    "calibration_cct_2",
)


def _parse_polygons(text: str | None, where: str) -> list[list[tuple[float, float]]]:
    """``"x y x y x y x y; x y ..."`` (relative coordinates, one polygon per ``;``) -> polygons."""
    polygons = []
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        try:
            values = [float(v) for v in part.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"{where}: chart polygon {part.strip()!r} is not numbers 'x y x y ...'.") from None
        if len(values) < 6 or len(values) % 2:
            raise ValueError(f"{where}: chart polygon needs at least 3 'x y' points, got {len(values)} numbers.")
        if not all(-0.5 <= v <= 1.5 for v in values):
            raise ValueError(
                f"{where}: chart polygon {part.strip()!r} is not in relative coordinates (x / width, y / height)."
            )
        polygons.append(list(zip(values[0::2], values[1::2])))
    return polygons


def _format_polygons(polygons: Sequence[Sequence[Sequence[float]]]) -> str:
    return "; ".join(" ".join(f"{v:.5f}" for point in polygon for v in point) for polygon in polygons)


def _cell(value: str | None) -> Any:
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        return value.strip()
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def _numbers(text: str, count: int, where: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != count:
        raise ValueError(f"{where}: expected {count} numbers, got {text!r}.")
    return values


def _camera_columns(row: dict[str, str], where: str) -> dict[str, Any]:
    """The capture facts ``label-awb`` stores for a ``raw_png`` image (its DNG is not there to read them)."""
    extra: dict[str, Any] = {}
    if all(row.get(c, "").strip() for c in ("as_shot_r", "as_shot_g", "as_shot_b")):
        extra["as_shot_neutral"] = [float(row[c]) for c in ("as_shot_r", "as_shot_g", "as_shot_b")]
    if row.get("xyz_to_camera_1", "").strip():
        matrices = [_numbers(row[f"xyz_to_camera_{i}"], 9, f"{where} xyz_to_camera_{i}") for i in (1, 2)]
        ccts = [float(row.get(f"calibration_cct_{i}") or 6500.0) for i in (1, 2)]
        extra.update(xyz_to_camera=matrices, calibration_cct=ccts)
    return extra


def _dng_facts(path: Path) -> dict[str, Any]:
    """Capture facts of a DNG for its record; a file that cannot be read keeps the reason for the reader to raise."""
    from moto_vision.data.raw import RawReadError, read_raw_metadata

    try:
        metadata = read_raw_metadata(path)
    except RawReadError as error:
        return {"read_error": str(error)}
    extra: dict[str, Any] = {
        "camera": metadata.camera,
        "iso": metadata.iso,
        "exposure_time": metadata.exposure_time,
        "baseline_exposure": metadata.baseline_exposure,
    }
    neutral = metadata.neutral()
    if neutral is not None:
        extra["as_shot_neutral"] = list(neutral)
    matrices = metadata.xyz_to_camera()
    if matrices is not None:
        extra["xyz_to_camera"] = matrices[0].reshape(2, 9).tolist()
        extra["calibration_cct"] = matrices[1].tolist()
    return {k: v for k, v in extra.items() if v is not None}


def _add_camera_to_srgb(records: list[SampleRecord]) -> None:
    """``extra["camera_to_srgb"]`` at each record's ground truth, so reports give the light's CCT (DNG colour model)."""
    lit = [r for r in records if "xyz_to_camera" in r.extra and r.illuminant is not None]
    if not lit:
        return
    from moto_vision.isp.dng import camera_to_srgb_matrix

    matrices = torch.tensor([r.extra["xyz_to_camera"] for r in lit], dtype=torch.float64).view(-1, 2, 3, 3)
    ccts = torch.tensor([r.extra["calibration_cct"] for r in lit], dtype=torch.float64)
    neutral = torch.tensor([r.illuminant for r in lit], dtype=torch.float64)
    for record, matrix in zip(lit, camera_to_srgb_matrix(neutral, matrices, ccts, adapt=False)):
        record.extra["camera_to_srgb"] = [round(v, 8) for v in matrix.flatten().tolist()]


def _index_captures(root: Path, fmt: str, suffixes: Sequence[str], name: str) -> list[SampleRecord]:
    root = _require_root(root, name)
    gt_path = root / CAPTURE_GROUND_TRUTH
    if not gt_path.is_file():
        raise FileNotFoundError(
            f"{name}: {gt_path} is missing; it lists image,r,g,b per capture (write one with "
            "`moto-vision data label-awb CAPTURES --out DIR`, which also finds the colour checker)."
        )
    records = []
    with gt_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if not {"image", "r", "g", "b"} <= set(fields):
            raise ValueError(f"{gt_path}: expected at least the columns image,r,g,b; got {fields}.")
        for line, row in enumerate(reader, start=2):
            where = f"{gt_path} line {line} ({row.get('image')})"
            image = root / (row.get("image") or "").strip()
            if image.suffix.lower() not in suffixes:
                raise ValueError(f"{where}: the {fmt} format reads {', '.join(suffixes)} files, not {image.suffix!r}.")
            if not image.is_file():
                raise FileNotFoundError(f"{where}: image {image} is missing.")
            try:
                rgb = [float(row[c]) for c in ("r", "g", "b")]
            except (TypeError, ValueError):
                raise ValueError(f"{where}: ground truth {[row.get(c) for c in 'rgb']} is not numeric.") from None
            extra: dict[str, Any] = {"format": fmt}
            for column, value in row.items():
                if column not in _CAPTURE_COLUMNS and column not in _CAMERA_COLUMNS and column is not None:
                    parsed = _cell(value)
                    if parsed is not None:
                        extra[column] = parsed
            extra["mask_polygons"] = _parse_polygons(row.get("chart"), where)
            if fmt == "dng":
                extra.update(_dng_facts(image))
            else:
                extra.update(_camera_columns(row, where), black_level=0, saturation=RAW_PNG_INVALID)
            split = (row.get("split") or "").strip() or None
            records.append(
                SampleRecord(
                    image=image,
                    split=split,
                    illuminant=_check_illuminant(rgb, where),
                    group=(row.get("group") or "").strip() or image.relative_to(root).with_suffix("").as_posix(),
                    extra=extra,
                )
            )
    if not records:
        raise ValueError(f"{gt_path}: no ground-truth rows.")
    _add_camera_to_srgb(records)
    return records


@register_format("awb", "dng")
def index_dng(root: Path, **options: Any) -> list[SampleRecord]:
    """Index a folder of DNG captures with their ground truth (camera raw straight off the phone).

    Layout::

        root/
          ground_truth.csv     image,r,g,b[,chart][,group][,split][,any other column]
          **/*.dng             the captures ``image`` names (paths relative to root)

    ``r,g,b`` is the light's colour in the camera's raw space; ``chart`` the colour-checker polygon(s) to mask,
    ``x y x y ...`` in relative coordinates of the oriented image (several separated by ``;``). Each DNG is decoded
    by :func:`moto_vision.data.raw.read_raw` (black level per channel, white level, saturation, orientation, 2x2
    binning); its ``AsShotNeutral`` (the phone's own AWB) and colour matrices come with every sample, so ``test``
    scores the camera's AWB next to the model. Other columns (``light``, ``scene``, ...) land in ``extra`` for
    ``data report`` specs.
    """
    return _index_captures(root, "dng", (".dng",), "DNG captures")


#: Value of an invalid (saturated) pixel in a ``raw_png`` image; valid values stay below it.
RAW_PNG_INVALID = 65535


@register_format("awb", "raw_png")
def index_raw_png(root: Path, **options: Any) -> list[SampleRecord]:
    """Index moto-vision's own AWB layout: linear camera-RGB 16-bit PNGs with ground truth (``data label-awb``).

    Layout: ``ground_truth.csv`` as for ``dng`` and 16-bit RGB PNGs holding linear camera RGB with the black level
    subtracted and white at 65534; saturated pixels are 65535 in every channel. The capture facts a PNG cannot carry
    come as columns: ``camera``, ``as_shot_r/g/b`` (the phone's AWB), ``xyz_to_camera_1/2`` (9 numbers each, the DNG
    colour matrices with their ``calibration_cct_1/2``), ``iso``, ``exposure_time``, ``baseline_exposure``,
    ``cct``, ``duv``.
    """
    return _index_captures(root, "raw_png", (".png",), "raw_png dataset")


def write_capture_ground_truth(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write a ``ground_truth.csv`` of the ``dng`` / ``raw_png`` formats.

    Each row needs ``image`` (relative path) and ``illuminant`` (3 numbers); optional ``charts`` (polygons of
    relative points), ``as_shot_neutral``, ``xyz_to_camera`` (2 x 9), ``calibration_cct`` (2) and any scalar
    columns, which are written as they are.
    """
    columns: list[str] = ["image", "r", "g", "b", "chart"]
    lines = []
    for row in rows:
        line: dict[str, Any] = {"image": row["image"]}
        line.update(zip(("r", "g", "b"), (f"{float(v):.8g}" for v in row["illuminant"])))
        line["chart"] = _format_polygons(row.get("charts") or [])
        if row.get("as_shot_neutral") is not None:
            line.update(zip(("as_shot_r", "as_shot_g", "as_shot_b"), (f"{v:.6g}" for v in row["as_shot_neutral"])))
        if row.get("xyz_to_camera") is not None:
            for i, (matrix, cct) in enumerate(zip(row["xyz_to_camera"], row["calibration_cct"]), start=1):
                line[f"xyz_to_camera_{i}"] = " ".join(f"{v:.6g}" for v in matrix)
                line[f"calibration_cct_{i}"] = f"{cct:g}"
        for key, value in row.items():
            if key not in ("image", "illuminant", "charts", "as_shot_neutral", "xyz_to_camera", "calibration_cct"):
                line[key] = "" if value is None else value
        for key in line:
            if key not in columns:
                columns.append(key)
        lines.append(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(lines)
    return path


# --------------------------------------------------------------------------------------------- photos
@register_format("awb", "photos")
def index_photos(root: Path, **options: Any) -> list[SampleRecord]:
    """Index a folder (recursively) of ordinary white-balanced sRGB photos (JPEG, HEIC, PNG, WebP, BMP, TIFF).

    They carry no illuminant: :class:`~moto_vision.data.awb.datasets.PhotoAWBDataset` relights each with a light
    spectrum seen through a sampled camera (:mod:`moto_vision.data.awb.photo_scenes`), and that light's colour in
    the camera becomes its ground truth.
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


def _mask_regions(record: SampleRecord, valid: Tensor) -> Tensor:
    """``valid`` with the record's masked regions (charts, SpyderCubes) set to ``False``."""
    extra = record.extra
    height, width = valid.shape
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
    return valid


def _valid_mask(record: SampleRecord, raw: Tensor) -> tuple[Tensor, float]:
    """Pixels that are neither masked nor saturated, and the saturation level used."""
    saturation = record.extra.get("saturation")
    if saturation is None:
        saturation = float(raw.max()) - float(record.extra.get("saturation_margin", 0))
    return _mask_regions(record, (raw < saturation).all(dim=0)), float(saturation)


def read_raw_record(record: SampleRecord) -> tuple[Tensor, Tensor]:
    """Decode a raw benchmark image with its dataset's official preprocessing.

    Subtracts the black level, scales the saturation level to 1, and marks saturated and masked pixels
    (colour checkers, SpyderCubes) invalid. Camera raw files (DNG) are decoded by
    :func:`moto_vision.data.raw.read_raw` from their own black and white levels.

    Returns:
        ``(image, valid)``: float ``(3, H, W)`` linear camera RGB in ``[0, 1]`` with invalid pixels set to 0,
        and the bool ``(H, W)`` mask of valid pixels.
    """
    from moto_vision.data.raw import is_raw_file, read_raw

    if "read_error" in record.extra:
        raise ValueError(record.extra["read_error"])
    if is_raw_file(record.image):
        capture = read_raw(record.image)
        valid = _mask_regions(record, capture.valid)
        return capture.image.clamp(0, 1) * valid, valid
    raw = read_png16(record.image)
    valid, saturation = _valid_mask(record, raw)
    black = float(record.extra.get("black_level", 0))
    if saturation <= black:
        raise DataError(f"{record.image}: saturation level {saturation} is not above the black level {black}.")
    image = ((raw - black) / (saturation - black)).clamp(0, 1) * valid
    return image, valid

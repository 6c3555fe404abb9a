"""Camera raw captures (DNG and the other formats LibRaw reads) as linear camera RGB plus the metadata that matters.

:func:`read_raw` decodes a capture with `rawpy <https://pypi.org/project/rawpy/>`_ (LibRaw) into the DESIGN.md
contract: float ``(3, H, W)`` linear camera RGB with the black level of each CFA channel subtracted and the white
level at 1, saturated pixels marked invalid, the orientation applied. :func:`read_raw_metadata` reads the colour
facts of a DNG (``ColorMatrix1/2`` and their calibration illuminants, ``AsShotNeutral``, ISO, exposure, baseline
exposure, ...) from its TIFF tags with ``tifffile``, because LibRaw exposes only one colour matrix and no
calibration illuminants. Both need the ``capture`` extra (``pip install 'moto-vision[capture]'``).

The CFA is reduced to RGB by 2x2 binning by default (half size: R, mean of the two greens, B of each Bayer quad),
which keeps every value a plain average of raw photosites, so illuminant statistics are exact and no demosaicking
artefact creates colours; ``demosaic="ahd"`` (or another LibRaw algorithm) gives full resolution instead.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from moto_vision.data.errors import DataError, MissingExtraError

__all__ = [
    "RAW_SUFFIXES",
    "RawCapture",
    "RawMetadata",
    "RawReadError",
    "dng_camera_matrix",
    "is_raw_file",
    "read_raw",
    "read_raw_metadata",
    "require_capture",
]

#: File suffixes read as camera raw (LibRaw). DNG carries every colour fact in its tags; for the others the colour
#: matrix comes from LibRaw's built-in table (Adobe's D65 matrices) and the as-shot white balance from the maker notes.
RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw", ".3fr", ".iiq")

#: Default share of the range above black at which a photosite counts as saturated: sensors leave the linear regime
#: shortly before the white level, and lossy-compressed raws never quite reach it.
SATURATION = 0.98

_DEMOSAIC = {"linear": "LINEAR", "vng": "VNG", "ppg": "PPG", "ahd": "AHD", "dcb": "DCB", "dht": "DHT", "aahd": "AAHD"}

# TIFF/DNG tag codes read from IFD 0 (DNG 1.6 specification, chapter 6; TIFF/EP for the EXIF-like ones).
_TAGS = {
    "make": 271,
    "model": 272,
    "orientation": 274,
    "unique_model": 50708,
    "color_matrix_1": 50721,
    "color_matrix_2": 50722,
    "camera_calibration_1": 50723,
    "camera_calibration_2": 50724,
    "analog_balance": 50727,
    "as_shot_neutral": 50728,
    "as_shot_white_xy": 50729,
    "baseline_exposure": 50730,
    "calibration_illuminant_1": 50778,
    "calibration_illuminant_2": 50779,
    "forward_matrix_1": 50964,
    "forward_matrix_2": 50965,
}
_EXIF_TAGS = {"exposure_time": 33434, "f_number": 33437, "iso": 34855, "datetime": 36867}
_EXIF_NAMES = {
    "exposure_time": ("ExposureTime",),
    "f_number": ("FNumber",),
    "iso": ("ISOSpeedRatings", "PhotographicSensitivity"),
    "datetime": ("DateTimeOriginal",),
}


class RawReadError(DataError):
    """A raw file that cannot be read; ``code`` says why (``missing_file``, ``unreadable``, ``truncated``, ...)."""

    def __init__(self, path: str | Path, code: str, message: str) -> None:
        self.path = str(path)
        self.code = code
        self.detail = message
        super().__init__(f"{path}: {message}")

    def __reduce__(self) -> tuple:  # picklable across worker processes
        return type(self), (self.path, self.code, self.detail)


def require_capture(module: str) -> Any:
    """Import an optional dependency of the ``capture`` extra, or raise an ``ImportError`` that names the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = {"cv2": "opencv-contrib-python-headless", "pidng": "pidng"}.get(module, module)
        # MissingExtraError (an ImportError) so the command line prints it as one line, like a missing pillow-heif.
        raise MissingExtraError("Reading camera captures", package, "capture") from error


def is_raw_file(path: str | Path) -> bool:
    """Whether ``path`` has a camera-raw suffix (:data:`RAW_SUFFIXES`)."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


@dataclass
class RawMetadata:
    """What a capture says about itself. Matrices are 9 floats in row order; ``None`` where the file has no such tag.

    Attributes:
        path: the file.
        make: camera maker (TIFF ``Make``).
        model: camera model (TIFF ``Model``).
        unique_model: DNG ``UniqueCameraModel``.
        width: width of the decoded, oriented image at full resolution.
        height: its height.
        orientation: TIFF orientation code (1 = as stored; 6 = rotate 90 degrees clockwise to display, ...).
        cfa_pattern: the Bayer pattern as stored, e.g. ``"RGGB"`` (``None`` for non-Bayer sensors).
        black_level: black level of each CFA colour, in raw counts (R, G, B, second G).
        white_level: raw value of full scale.
        color_matrix_1: ``ColorMatrix1`` (XYZ -> camera at ``calibration_illuminant_1``).
        color_matrix_2: ``ColorMatrix2``.
        calibration_illuminant_1: EXIF ``LightSource`` code of ``color_matrix_1`` (17 = Standard light A, 21 = D65).
        calibration_illuminant_2: the same for ``color_matrix_2``.
        camera_calibration_1: ``CameraCalibration1`` (per-unit correction).
        camera_calibration_2: ``CameraCalibration2``.
        forward_matrix_1: ``ForwardMatrix1`` (white-balanced camera -> XYZ D50).
        forward_matrix_2: ``ForwardMatrix2``.
        analog_balance: ``AnalogBalance`` (3 gains).
        as_shot_neutral: ``AsShotNeutral``: the camera RGB of a neutral surface as the camera's own AWB saw it.
        as_shot_white_xy: ``AsShotWhiteXY`` (the same as a chromaticity, when the writer gave that instead).
        baseline_exposure: ``BaselineExposure`` in stops.
        iso: ISO speed.
        exposure_time: exposure time in seconds.
        f_number: aperture.
        datetime: ``DateTimeOriginal``.
    """

    path: str
    make: str | None = None
    model: str | None = None
    unique_model: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int = 1
    cfa_pattern: str | None = None
    black_level: tuple[float, ...] = ()
    white_level: float | None = None
    color_matrix_1: tuple[float, ...] | None = None
    color_matrix_2: tuple[float, ...] | None = None
    calibration_illuminant_1: int | None = None
    calibration_illuminant_2: int | None = None
    camera_calibration_1: tuple[float, ...] | None = None
    camera_calibration_2: tuple[float, ...] | None = None
    forward_matrix_1: tuple[float, ...] | None = None
    forward_matrix_2: tuple[float, ...] | None = None
    analog_balance: tuple[float, ...] | None = None
    as_shot_neutral: tuple[float, ...] | None = None
    as_shot_white_xy: tuple[float, ...] | None = None
    baseline_exposure: float | None = None
    iso: float | None = None
    exposure_time: float | None = None
    f_number: float | None = None
    datetime: str | None = None

    @property
    def camera(self) -> str:
        """``"Make Model"`` (the model alone when it already starts with the make), or the unique model name."""
        make, model = (self.make or "").strip(), (self.model or "").strip()
        if model.lower().startswith(make.lower()):
            make = ""
        name = f"{make} {model}".strip()
        return name or (self.unique_model or "unknown camera")

    @property
    def has_color_matrix(self) -> bool:
        """Whether the file carries at least one ``ColorMatrix``."""
        return self.color_matrix_1 is not None or self.color_matrix_2 is not None

    def xyz_to_camera(self) -> tuple[Tensor, Tensor] | None:
        """The two calibrated XYZ -> camera matrices and their illuminants' CCTs, as the DNG colour model uses them.

        Each is ``AnalogBalance @ CameraCalibration_i @ ColorMatrix_i`` (DNG specification, "Camera to XYZ"); a
        file with one matrix gives it twice. Interpolate between them with
        :func:`moto_vision.isp.interpolate_xyz_to_camera`.

        Returns:
            ``(matrices (2, 3, 3), ccts (2,))`` float64, or ``None`` without a ``ColorMatrix``.
        """
        from moto_vision.isp.dng import DEFAULT_CALIBRATION_CCT, LIGHT_SOURCE_CCT

        pairs = [
            (m, c, i)
            for m, c, i in (
                (self.color_matrix_1, self.camera_calibration_1, self.calibration_illuminant_1),
                (self.color_matrix_2, self.camera_calibration_2, self.calibration_illuminant_2),
            )
            if m is not None
        ]
        if not pairs:
            return None
        balance = torch.diag(torch.tensor(self.analog_balance or (1.0, 1.0, 1.0), dtype=torch.float64))
        matrices, ccts = [], []
        for matrix, calibration, illuminant in pairs:
            m = torch.tensor(matrix, dtype=torch.float64).view(3, 3)
            cc = torch.eye(3, dtype=torch.float64) if calibration is None else torch.tensor(calibration).double()
            matrices.append(balance @ cc.view(3, 3) @ m)
            ccts.append(LIGHT_SOURCE_CCT.get(int(illuminant or 0), DEFAULT_CALIBRATION_CCT))
        if len(matrices) == 1:
            matrices, ccts = matrices * 2, ccts * 2
        return torch.stack(matrices), torch.tensor(ccts, dtype=torch.float64)

    def neutral(self) -> tuple[float, float, float] | None:
        """The camera's as-shot neutral (camera RGB), from ``AsShotNeutral`` or converted from ``AsShotWhiteXY``."""
        if self.as_shot_neutral is not None and len(self.as_shot_neutral) >= 3:
            return tuple(float(v) for v in self.as_shot_neutral[:3])  # type: ignore[return-value]
        matrices = self.xyz_to_camera()
        if self.as_shot_white_xy is None or matrices is None:
            return None
        from moto_vision.isp.dng import xy_to_neutral

        neutral = xy_to_neutral(torch.tensor(self.as_shot_white_xy[:2], dtype=torch.float64), *matrices)
        return tuple(float(v) for v in neutral)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class RawCapture:
    """A decoded capture.

    Attributes:
        image: float ``(3, H, W)`` linear camera RGB, black level 0 and white level 1 (saturated pixels keep their
            clipped values; see ``valid``).
        valid: bool ``(H, W)``: no photosite behind the pixel reached the saturation level.
        metadata: the capture's :class:`RawMetadata`.
    """

    image: Tensor
    valid: Tensor
    metadata: RawMetadata = field(repr=False)


# ----------------------------------------------------------------------------------------------- metadata
def _numbers(tag: Any) -> list[float]:
    """A TIFF tag's values as floats; RATIONAL / SRATIONAL (types 5 and 10) come from tifffile as flat pairs."""
    value = tag.value
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    if int(tag.dtype) in (5, 10):
        return [n / d if d else float("nan") for n, d in zip(values[0::2], values[1::2])]
    return [float(v) for v in values]


def _exif_number(value: Any) -> float | None:
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and all(isinstance(v, int) for v in value):  # a rational as (numerator, denominator)
            return value[0] / value[1] if value[1] else None
        value = value[0] if value else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _check_complete(tif: Any, path: Path) -> None:
    """Raise ``truncated`` when an image's pixel data runs past the end of the file (an interrupted copy)."""
    size = tif.filehandle.size
    pages = list(tif.pages)
    for page in list(pages):
        try:
            pages.extend(page.pages or [])  # SubIFDs: where most DNG writers keep the raw image
        except Exception:  # noqa: BLE001 - a broken SubIFD is reported by LibRaw's decode
            pass
    for page in pages:
        ends = [o + n for o, n in zip(page.dataoffsets or (), page.databytecounts or ()) if n]
        if ends and max(ends) > size:
            raise RawReadError(
                path,
                "truncated",
                f"the file is {size} bytes but its image data runs to byte {max(ends)}: it is truncated (an "
                "interrupted copy or transfer?); copy it again from the phone",
            )


def dng_camera_matrix(path: str | Path, cct: float = 6504.0) -> list[float]:
    """A DNG's XYZ -> camera matrix for a light of ``cct`` (default D65), what ``--data.camera IMG.dng`` renders with.

    The calibrated matrices (``AnalogBalance @ CameraCalibration_i @ ColorMatrix_i``) interpolated in inverse CCT as
    the DNG colour model does (:func:`moto_vision.isp.interpolate_xyz_to_camera`): 9 numbers, row-major.

    Raises:
        RawReadError: the file is missing or unreadable.
        DataError: it has no ``ColorMatrix`` tag.
    """
    from moto_vision.isp.dng import interpolate_xyz_to_camera

    calibrated = read_raw_metadata(path).xyz_to_camera()
    if calibrated is None:
        raise DataError(
            f"{path}: no ColorMatrix1/2 tag, so it does not say how the sensor sees colour; give the sensor's XYZ -> "
            "raw matrix as 9 numbers, a .json / .yaml file or its spectral sensitivities (.csv) instead."
        )
    return [float(v) for v in interpolate_xyz_to_camera(*calibrated, cct).flatten()]


def read_raw_metadata(path: str | Path) -> RawMetadata:
    """Read a capture's colour facts and exposure from its TIFF/DNG tags, without decoding pixels.

    Non-TIFF raw formats (CR3, RAF, ...) have no readable tags here; their metadata comes from LibRaw in
    :func:`read_raw`. Raises :class:`RawReadError` for a missing, unreadable or truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise RawReadError(path, "missing_file", "the file does not exist")
    tifffile = require_capture("tifffile")
    metadata = RawMetadata(path=str(path))
    try:
        with tifffile.TiffFile(path) as tif:
            _check_complete(tif, path)
            tags = tif.pages[0].tags
            for name, code in _TAGS.items():
                tag = tags.get(code)
                if tag is None:
                    continue
                if name in ("make", "model", "unique_model"):
                    setattr(metadata, name, str(tag.value).strip("\x00 ").strip() or None)
                elif name in ("orientation", "calibration_illuminant_1", "calibration_illuminant_2"):
                    setattr(metadata, name, int(_numbers(tag)[0]))
                elif name == "baseline_exposure":
                    metadata.baseline_exposure = _numbers(tag)[0]
                else:
                    setattr(metadata, name, tuple(_numbers(tag)))
            exif = tags.get("ExifTag")
            exif_values = exif.value if exif is not None and isinstance(exif.value, dict) else {}
            for name, code in _EXIF_TAGS.items():
                tag = tags.get(code)  # TIFF/EP writers (and pidng) keep these in IFD 0
                value = (tag.value if name == "datetime" else _numbers(tag)[0]) if tag is not None else None
                for key in _EXIF_NAMES[name]:
                    if value is None and key in exif_values:
                        raw = exif_values[key]
                        value = str(raw).strip("\x00 ") if name == "datetime" else _exif_number(raw)
                setattr(metadata, name, value if name != "datetime" or value is None else str(value))
    except RawReadError:
        raise
    except Exception as error:  # noqa: BLE001 - tifffile raises several types for non-TIFF or damaged files
        if path.suffix.lower() == ".dng":
            raise RawReadError(
                path, "unreadable", f"not a readable DNG/TIFF file ({error}); re-export it or remove it"
            ) from error
    for name in ("color_matrix_1", "color_matrix_2", "forward_matrix_1", "forward_matrix_2"):
        value = getattr(metadata, name)
        if value is not None and len(value) != 9:  # 4-colour cameras store 4x3 matrices: keep the RGB rows
            setattr(metadata, name, tuple(value[:9]) if len(value) >= 9 else None)
    return metadata


# ----------------------------------------------------------------------------------------------- pixels
def _open(path: Path) -> Any:
    rawpy = require_capture("rawpy")
    try:
        return rawpy.imread(str(path))
    except rawpy.LibRawFileUnsupportedError as error:
        raise RawReadError(path, "unreadable", f"LibRaw does not recognise this as a raw file ({error})") from error
    except rawpy.LibRawIOError as error:
        raise RawReadError(
            path, "truncated", f"LibRaw hit the end of the file while reading it ({error}): truncated or corrupt"
        ) from error
    except rawpy.LibRawError as error:
        raise RawReadError(path, "unreadable", f"LibRaw cannot decode this file ({error})") from error


def _orient(array: np.ndarray, flip: int) -> np.ndarray:
    """Apply LibRaw's ``flip`` (TIFF orientation): bit 1 mirrors rows, bit 0 mirrors columns, bit 2 transposes."""
    if flip & 2:
        array = array[::-1]
    if flip & 1:
        array = array[:, ::-1]
    if flip & 4:
        array = np.swapaxes(array, 0, 1)
    return np.ascontiguousarray(array)


#: TIFF orientation code of each LibRaw flip value (dcraw maps TIFF 1..8 to flip 0,1,3,2,4,6,7,5).
_FLIP_TO_TIFF = {0: 1, 1: 2, 3: 3, 2: 4, 4: 5, 6: 6, 7: 7, 5: 8}


def _bin_bayer(raw: Any, saturation: float) -> tuple[np.ndarray, np.ndarray]:
    """2x2 binning of a Bayer mosaic into ``(H/2, W/2, 3)`` normalised camera RGB and its valid mask."""
    mosaic = raw.raw_image_visible
    colors = raw.raw_colors_visible
    h, w = mosaic.shape[0] // 2 * 2, mosaic.shape[1] // 2 * 2
    black = [float(b) for b in raw.black_level_per_channel]
    white = float(raw.white_level)
    desc = raw.color_desc.decode()
    out = np.zeros((h // 2, w // 2, 3), np.float32)
    counts = np.zeros(3, np.float32)
    saturated = np.zeros((h // 2, w // 2), bool)
    for dy in (0, 1):
        for dx in (0, 1):
            index = int(colors[dy, dx])
            channel = "RGB".index(desc[index]) if desc[index] in "RGB" else 1
            values = mosaic[dy:h:2, dx:w:2].astype(np.float32)
            b = black[index] if index < len(black) else black[0]
            span = max(white - b, 1.0)
            saturated |= values >= b + saturation * span
            out[..., channel] += (values - b) / span
            counts[channel] += 1
    return out / counts, ~saturated


def _postprocess(raw: Any, algorithm: str, half_size: bool, saturation: float) -> tuple[np.ndarray, np.ndarray]:
    """LibRaw's own reduction (demosaicking, or half size for non-Bayer sensors) in linear camera RGB."""
    rawpy = require_capture("rawpy")
    name = _DEMOSAIC.get(algorithm.lower())
    if name is None:
        raise ValueError(f"read_raw: unknown demosaic algorithm {algorithm!r}; choose one of {sorted(_DEMOSAIC)}.")
    rgb = raw.postprocess(
        demosaic_algorithm=getattr(rawpy.DemosaicAlgorithm, name),
        half_size=half_size,
        output_color=rawpy.ColorSpace.raw,
        gamma=(1, 1),
        no_auto_bright=True,
        use_camera_wb=False,
        use_auto_wb=False,
        user_wb=[1.0, 1.0, 1.0, 1.0],
        output_bps=16,
        user_flip=0,
        adjust_maximum_thr=0.0,  # keep the file's white level: LibRaw would otherwise lower it to the image maximum
    )
    image = rgb.astype(np.float32) / 65535.0
    valid = (image < saturation).all(axis=-1)
    if not half_size:
        # Demosaicking spreads a clipped photosite into its neighbours: widen the mask of raw clipped photosites.
        from scipy.ndimage import binary_dilation

        mosaic = raw.raw_image_visible
        colors = raw.raw_colors_visible
        black = np.asarray(raw.black_level_per_channel, np.float32)[colors]
        clipped = mosaic >= black + saturation * (float(raw.white_level) - black)
        clipped = binary_dilation(clipped, structure=np.ones((3, 3), bool))
        valid &= ~clipped[: valid.shape[0], : valid.shape[1]]
    return image, valid


def _libraw_metadata(raw: Any, metadata: RawMetadata) -> None:
    """Fill what the TIFF tags did not give (non-DNG raws) from LibRaw."""
    metadata.black_level = tuple(float(b) for b in raw.black_level_per_channel)
    metadata.white_level = float(raw.white_level)
    pattern = getattr(raw, "raw_pattern", None)
    if pattern is not None and np.asarray(pattern).shape == (2, 2):
        desc = raw.color_desc.decode()
        metadata.cfa_pattern = "".join(desc[int(i)] for i in np.asarray(pattern).flatten()).replace("G2", "G")
    if not metadata.has_color_matrix:
        matrix = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
        if np.abs(matrix).sum() > 0:  # LibRaw's table holds Adobe's D65 ColorMatrix of known cameras
            metadata.color_matrix_2 = tuple(matrix.flatten().tolist())
            metadata.calibration_illuminant_2 = 21
    if metadata.as_shot_neutral is None and metadata.as_shot_white_xy is None:
        gains = np.asarray(raw.camera_whitebalance, dtype=np.float64)[:3]
        if (gains > 0).all():
            metadata.as_shot_neutral = tuple((gains[1] / gains).tolist())


def read_raw(path: str | Path, demosaic: str | None = None, saturation: float = SATURATION) -> RawCapture:
    """Decode a camera raw file into linear camera RGB (see the module docstring).

    Args:
        path: a DNG or another raw file LibRaw reads.
        demosaic: ``None`` (default) bins each 2x2 Bayer quad into one RGB pixel (half size); a LibRaw algorithm
            name (``"ahd"``, ``"linear"``, ``"vng"``, ``"ppg"``, ``"dcb"``, ``"dht"``, ``"aahd"``) demosaicks to
            full resolution.
        saturation: share of the range above black at which a photosite counts as saturated.

    Returns:
        The :class:`RawCapture`; values are not clipped below 0 (sensor noise around black stays unbiased).

    Raises:
        RawReadError: the file is missing, not a raw file, truncated or corrupt (``code`` says which).
    """
    path = Path(path)
    metadata = read_raw_metadata(path)
    raw = _open(path)
    try:
        try:
            pattern = np.asarray(raw.raw_pattern)
            bayer = (
                raw.raw_type == require_capture("rawpy").RawType.Flat
                and pattern.shape == (2, 2)
                and sorted(raw.color_desc.decode()[int(i)] for i in pattern.flatten()) == ["B", "G", "G", "R"]
            )
            if demosaic is None and bayer:
                image, valid = _bin_bayer(raw, saturation)
            else:
                half = demosaic is None
                image, valid = _postprocess(raw, demosaic or "linear", half_size=half, saturation=saturation)
            _libraw_metadata(raw, metadata)
            flip = int(raw.sizes.flip)
        except RawReadError:
            raise
        except Exception as error:  # noqa: BLE001 - LibRaw reports damaged pixel data from unpack()
            code = "truncated" if "end of file" in str(error).lower() or "i/o" in str(error).lower() else "unreadable"
            raise RawReadError(path, code, f"the pixel data does not decode ({error})") from error
    finally:
        raw.close()
    image, valid = _orient(image, flip), _orient(valid, flip)
    metadata.orientation = _FLIP_TO_TIFF.get(flip, metadata.orientation)
    scale = 1 if demosaic is not None else 2
    metadata.height, metadata.width = image.shape[0] * scale, image.shape[1] * scale
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    return RawCapture(image=tensor, valid=torch.from_numpy(valid), metadata=metadata)

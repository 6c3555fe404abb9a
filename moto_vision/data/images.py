"""Image files to float RGB: the one decoder of every loader (scene, portrait, AWB ``photos``) and ``data check``.

Pillow opens nearly every file, but ``Image.convert("RGB")`` is not a correct decoder for all of them: it clips
16-bit grey (``I;16``) to white, keeps only the high byte of 16-bit RGB PNGs, drops alpha (showing whatever
colour the transparent pixels happen to hold), converts CMYK without its colour profile and ignores EXIF
orientation. :func:`decode_image` handles each case:

- 8-bit grey / RGB / palette: scaled by 255; grey is repeated to three channels;
- 16-bit grey (``I;16``, ``I;16B``, ``I;16L``, 16-bit ``I``) and 16-bit grey/RGB(A) PNGs (decoded by libpng
  through torchvision, keeping all 16 bits): scaled by 65535;
- 32-bit float (``F``): taken as ``[0, 1]`` and clipped;
- alpha (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa`` / ``La``, palette or RGB/grey PNGs with a
  transparent colour): composited over black, the colour moto-vision uses for padding and for masked pixels
  (AWB models read zeros as "no evidence");
- CMYK and RGB images with an embedded colour profile other than sRGB (Adobe RGB, Display P3): converted to
  sRGB through the profile with LittleCMS (Pillow's ``ImageCms``); CMYK without a profile gets Pillow's
  naive conversion;
- EXIF orientation: applied, so the pixels are what a photo viewer shows (phones store portrait shots
  sideways with a rotation tag);
- HEIC / HEIF (phone photos) through ``pillow-heif`` (the ``capture`` extra), registered on first use;
  libheif applies the file's own rotation, so HEIC reads upright like JPEG.

:func:`probe_image` reads only the header (size, mode, bit depth, orientation), for checks that must stay fast
on large datasets (the datamodules validate every file before training starts).
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from moto_vision.data.errors import DataError, MissingExtraError

__all__ = [
    "HEIF_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ImageInfo",
    "ImageReadError",
    "conversion_note",
    "decode_image",
    "list_image_files",
    "probe_image",
    "read_image",
]

HEIF_SUFFIXES: tuple[str, ...] = (".heic", ".heif", ".hif")
#: File suffixes the image-folder formats pick up (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", *HEIF_SUFFIXES)

EXIF_ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: ISO-BMFF brands of HEIF still images (the ``ftyp`` box); AVIF is left to Pillow's own plugin.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}


class ImageReadError(DataError):
    """An image file that cannot be read.

    Attributes:
        path: the file.
        code: ``missing_file``, ``unreadable`` (not an image, empty, broken header, unsupported mode) or
            ``truncated`` (the header opens, the pixel data does not decode); the codes of ``data check``.
        reason: what is wrong, without the path.
    """

    def __init__(self, path: str | Path, code: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.code, self.reason = str(path), code, reason


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header says.

    Attributes:
        width: stored width in pixels (before EXIF orientation).
        height: stored height.
        format: Pillow's format name (``"JPEG"``, ``"PNG"``, ``"HEIF"``, ...).
        mode: Pillow's mode (``"RGB"``, ``"I;16"``, ...); 16-bit RGB PNGs open as ``"RGB"``.
        bit_depth: bits per channel as stored (16 for 16-bit PNGs, 1 for bilevel images).
        channels: channels as stored, alpha included (palette images count as 3).
        label: a readable mode name (``"RGB 16-bit"``, ``"P"``, ``"L 16-bit"``).
        orientation: EXIF orientation, 1 (upright) to 8.
        has_alpha: the image has an alpha channel or a transparent colour.
    """

    width: int
    height: int
    format: str | None
    mode: str
    bit_depth: int
    channels: int
    label: str
    orientation: int = 1
    has_alpha: bool = False

    @property
    def oriented_size(self) -> tuple[int, int]:
        """``(width, height)`` after EXIF orientation, as the decoders return the image."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


# ----------------------------------------------------------------------------------------------- opening
def _looks_like_heif(path: Path, head: bytes) -> bool:
    return path.suffix.lower() in HEIF_SUFFIXES or (head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS)


@functools.cache
def _heif_available() -> bool:
    """Register pillow-heif's Pillow plugin once; ``False`` when it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(64)
    except FileNotFoundError:
        raise ImageReadError(path, "missing_file", "the file does not exist") from None
    except IsADirectoryError:
        raise ImageReadError(path, "unreadable", "is a folder, not an image file") from None
    except OSError as error:
        raise ImageReadError(path, "unreadable", f"cannot read the file ({error.strerror or error})") from None


def _open(path: Path, data: bytes | None) -> tuple[Any, bytes]:
    """Open ``path`` (or its bytes) with Pillow, lazily (no pixel decoding); returns the image and the file's head."""
    from PIL import Image, UnidentifiedImageError

    head = data[:64] if data is not None else _read_head(path)
    if _looks_like_heif(path, head) and not _heif_available():
        raise MissingExtraError(f"{path}: reading HEIC/HEIF images", "pillow-heif", "capture")
    source: str | BinaryIO = io.BytesIO(data) if data is not None else str(path)
    try:
        return Image.open(source), head
    except FileNotFoundError:
        raise ImageReadError(path, "missing_file", "the file does not exist") from None
    except UnidentifiedImageError:
        size = len(data) if data is not None else path.stat().st_size
        what = "an empty file (0 bytes)" if size == 0 else f"{size} bytes that are not an image Pillow can open"
        raise ImageReadError(path, "unreadable", f"{what}; re-export or remove it") from None
    except (OSError, ValueError, SyntaxError, struct.error) as error:
        reason = f"the image header is broken ({error}); re-export or remove it"
        raise ImageReadError(path, "unreadable", reason) from None


def _png_has_exif(path: Path, data: bytes | None) -> bool:
    """Whether a PNG holds an ``eXIf`` chunk (walks the chunk headers; Pillow would decode the pixels to know)."""
    handle: BinaryIO = io.BytesIO(data) if data is not None else path.open("rb")
    try:
        handle.seek(8)
        while True:
            header = handle.read(8)
            if len(header) < 8:
                return False
            length, kind = struct.unpack(">I4s", header)
            if kind == b"eXIf":
                return True
            if kind == b"IEND":
                return False
            handle.seek(length + 4, io.SEEK_CUR)
    finally:
        handle.close()


def _orientation(image: Any, path: Path, data: bytes | None) -> int:
    if image.format == "PNG" and "exif" not in image.info and not _png_has_exif(path, data):
        return 1
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels, if they decode, are upright as stored
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _depth(image: Any, head: bytes) -> tuple[int, int, str]:
    """``(bits per channel, channels, readable mode)`` from the header (Pillow hides 16-bit RGB PNGs as ``RGB``)."""
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        bits, colour_type = head[24], head[25]
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour_type, 0)
        name = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}.get(colour_type, "?")
        if colour_type == 3:
            return 8, 3, "P"
        return bits, channels, (name if bits == 8 else f"{name} {bits}-bit")
    mode = image.mode
    if mode.startswith("I;16"):
        return 16, 1, "L 16-bit"
    if mode in {"I", "F"}:
        return 32, 1, f"{mode} 32-bit"
    if mode == "1":
        return 1, 1, "1-bit"
    if mode == "P":
        return 8, 3, "P"
    bits = image.info.get("bit_depth", 8) if image.format == "HEIF" else 8
    tag = image.tag_v2.get(258) if hasattr(image, "tag_v2") else None  # TIFF BitsPerSample
    if tag:
        bits = int(tag[0] if isinstance(tag, tuple) else tag)
    bands = len(image.getbands())
    return int(bits), bands, mode if bits == 8 else f"{mode} {bits}-bit"


def _has_alpha(image: Any) -> bool:
    return "A" in image.getbands() or image.mode in {"RGBa", "La", "PA"} or "transparency" in image.info


def _info(image: Any, head: bytes, path: Path, data: bytes | None) -> ImageInfo:
    bits, channels, label = _depth(image, head)
    return ImageInfo(
        width=image.size[0],
        height=image.size[1],
        format=image.format,
        mode=image.mode,
        bit_depth=bits,
        channels=channels,
        label=label,
        orientation=_orientation(image, path, data),
        has_alpha=_has_alpha(image),
    )


def conversion_note(info: ImageInfo) -> str:
    """What :func:`decode_image` does with such a file, in a few words (for ``data check`` messages)."""
    if info.has_alpha:
        return "composites its alpha over black"
    if info.mode == "CMYK":
        return "converts CMYK to sRGB (through its colour profile when it has one)"
    if info.channels == 1:
        return f"scales its {info.bit_depth}-bit grey to [0, 1] and repeats it to RGB"
    if info.bit_depth > 8:
        return f"scales its {info.bit_depth}-bit values to [0, 1]"
    return "converts it to 8-bit RGB"


def probe_image(path: str | Path, data: bytes | None = None) -> ImageInfo:
    """Read an image file's header only (no pixel decoding).

    Args:
        path: the file (named in errors; read unless ``data`` is given).
        data: the file's bytes, when the caller has read them already.

    Raises:
        ImageReadError: missing, empty, not an image, or a broken header.
        MissingExtraError: a HEIC/HEIF file without ``pillow-heif`` installed.
    """
    path = Path(path)
    image, head = _open(path, data)
    with image:
        return _info(image, head, path, data)


# ----------------------------------------------------------------------------------------------- decoding
def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an ``(H, W, C)`` array, as ``PIL.ImageOps.exif_transpose`` does."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(array, -1)
    if orientation == 7:
        return np.rot90(array, 1)[::-1]
    if orientation == 8:
        return np.rot90(array, 1)
    return array


def _composite(array: np.ndarray) -> np.ndarray:
    """``(H, W, 1|2|3|4)`` in ``[0, 1]`` -> ``(H, W, 3)``: grey repeated, alpha composited over black."""
    channels = array.shape[-1]
    if channels in (2, 4):
        array = array[..., :-1] * array[..., -1:]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def _decode_png16(path: Path, data: bytes | None) -> np.ndarray:
    # Pillow keeps only the high byte of 16-bit RGB(A) PNGs; libpng (through torchvision) keeps all 16 bits.
    import torch
    from torchvision.io import ImageReadMode, decode_png

    raw = data if data is not None else path.read_bytes()
    tensor = decode_png(torch.frombuffer(bytearray(raw), dtype=torch.uint8), ImageReadMode.UNCHANGED)
    return tensor.permute(1, 2, 0).numpy().astype(np.float32) / 65535.0


@functools.lru_cache(maxsize=16)
def _srgb_transform(profile: bytes, mode: str) -> Any:
    from PIL import ImageCms

    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    description = ImageCms.getProfileDescription(source) or ""
    if "srgb" in description.lower().replace(" ", "") or "iec61966" in description.lower():
        return None  # already sRGB: nothing to do
    target = ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(source, target, mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL)


def _to_srgb(image: Any, path: Path) -> Any:
    """Convert an RGB or CMYK image with an embedded non-sRGB colour profile to sRGB (LittleCMS)."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in ("RGB", "CMYK"):
        return image
    from PIL import ImageCms

    try:
        transform = _srgb_transform(bytes(profile), image.mode)
    except (ImageCms.PyCMSError, OSError, ValueError) as error:
        warnings.warn(
            f"{path}: its embedded colour profile cannot be read ({error}); the pixels are taken as sRGB.",
            RuntimeWarning,
            stacklevel=3,
        )
        return image
    return image if transform is None else ImageCms.applyTransform(image, transform)


def _pixels(image: Any, info: ImageInfo, path: Path, data: bytes | None, reduce_to: int | None) -> np.ndarray:
    """Decode to ``(H, W, C)`` float32 in ``[0, 1]`` (C = 1..4, alpha last; orientation not yet applied)."""
    if info.format == "PNG" and info.bit_depth == 16:
        return _decode_png16(path, data)
    if reduce_to and info.format == "JPEG":
        # libjpeg decodes at 1/2 .. 1/8 scale directly, keeping both sides >= reduce_to: no more is needed.
        image.draft(image.mode if image.mode in ("RGB", "L", "CMYK") else "RGB", (reduce_to, reduce_to))
    image.load()
    mode = image.mode
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255.0
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.float32)[..., None] / 65535.0
    if mode == "I":  # 32-bit integer TIFFs (16-bit files open as I;16 or take the PNG path above)
        return np.clip(np.asarray(image).astype(np.float64) / (2**31 - 1), 0, 1).astype(np.float32)[..., None]
    if mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)[..., None]
    if info.has_alpha:
        return np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    if mode in ("RGB", "CMYK"):
        image = _to_srgb(image, path)
    if mode == "L":
        return np.asarray(image, dtype=np.float32)[..., None] / 255.0
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError as error:
            raise ImageReadError(path, "unreadable", f"mode {mode} cannot be converted to RGB ({error})") from None
    return np.asarray(image, dtype=np.float32) / 255.0


def decode_image(
    path: str | Path, data: bytes | None = None, *, reduce_to: int | None = None, orient: bool = True
) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` float32 RGB in ``[0, 1]`` (see the module docstring for each mode).

    Args:
        path: the file (named in errors; read unless ``data`` is given).
        data: the file's bytes, when the caller has read them already.
        reduce_to: the caller only needs about this many pixels on the short side: JPEGs are then decoded at
            a reduced scale (never below it). Other formats decode at full size.
        orient: apply the EXIF orientation.

    Raises:
        ImageReadError: missing, empty, not an image, broken header (``unreadable``), or pixel data that does not
            decode (``truncated``).
        MissingExtraError: a HEIC/HEIF file without ``pillow-heif`` installed.
    """
    path = Path(path)
    image, head = _open(path, data)
    with image:
        info = _info(image, head, path, data)
        try:
            array = _pixels(image, info, path, data, reduce_to)
        except ImageReadError:
            raise
        except Exception as error:  # noqa: BLE001 - any decoder failure means the pixel data is damaged
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ImageReadError(
                path, "truncated", f"the pixel data does not decode ({reason}); the file is truncated or corrupt"
            ) from None
    array = _composite(array)
    if orient:
        array = _orient(array, info.orientation)
    return np.ascontiguousarray(array, dtype=np.float32)


def read_image(path: str | Path, *, reduce_to: int | None = None) -> Any:
    """Read an image file as a ``(3, H, W)`` float32 tensor in ``[0, 1]``, upright (see :func:`decode_image`)."""
    import torch

    return torch.from_numpy(decode_image(path, reduce_to=reduce_to)).permute(2, 0, 1).contiguous()


def list_image_files(folder: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files under ``folder`` (recursively; hidden files skipped), sorted."""
    return sorted(
        path
        for path in Path(folder).rglob("*")
        if path.suffix.lower() in suffixes and not path.name.startswith(".") and path.is_file()
    )

"""One picture written in every image mode a dataset may hold, with the RGB each must decode to.

:func:`write_modes` saves the same small picture as 8-bit RGB, grey, 16-bit grey (``I;16`` PNG, big- and
little-endian TIFF), 16-bit RGB PNG, RGBA, LA, a palette with a transparent entry, CMYK, bilevel, an EXIF-rotated
PNG and a lossless HEIC; ``expected`` is what a correct decoder returns for each (alpha composited over black,
the rotation applied), as float ``(H, W, 3)`` in ``[0, 1]``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 32, 24


def picture() -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture with distinct colours, gradients and dark and bright areas."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([x * 255 // (WIDTH - 1), y * 255 // (HEIGHT - 1), (x + y) * 255 // (WIDTH + HEIGHT - 2)], axis=-1)
    rgb[4:10, 6:14] = (250, 30, 40)
    return rgb.astype(np.uint8)


def alpha() -> np.ndarray:
    """An ``(H, W)`` uint8 alpha: opaque left half, a ramp, a fully transparent corner."""
    a = np.full((HEIGHT, WIDTH), 255, dtype=np.uint8)
    a[:, WIDTH // 2 :] = np.linspace(255, 0, WIDTH - WIDTH // 2).round().astype(np.uint8)
    a[:6, :6] = 0
    return a


def _png(path: Path, array: np.ndarray, colour_type: int) -> None:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit RGB): colour type 0 grey, 2 RGB, 6 RGBA."""
    h, w = array.shape[:2]
    rows = array.reshape(h, -1).astype(">u2")
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def write_modes(folder: Path, *, heic: bool = True) -> dict[str, tuple[Path, np.ndarray]]:
    """Write the picture in every mode into ``folder``; returns ``{mode name: (file, expected RGB in [0, 1])}``."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb, a = picture(), alpha()
    grey = _grey(rgb)
    rgb_f, grey_f, a_f = rgb / 255.0, np.repeat(grey[..., None] / 255.0, 3, axis=-1), a[..., None] / 255.0
    out: dict[str, tuple[Path, np.ndarray]] = {}

    def save(name: str, image: Image.Image, expected: np.ndarray, suffix: str = ".png", **options) -> None:
        path = folder / f"{name}{suffix}"
        image.save(path, **options)
        out[name] = (path, expected)

    save("rgb", Image.fromarray(rgb), rgb_f)
    save("grey", Image.fromarray(grey), grey_f)
    grey16 = grey.astype(np.uint16) * 257  # the same grey levels, spread over 16 bits
    save("grey16_png", Image.frombytes("I;16", (WIDTH, HEIGHT), grey16.astype("<u2").tobytes()), grey_f)
    save("grey16be_tiff", Image.frombytes("I;16B", (WIDTH, HEIGHT), grey16.astype(">u2").tobytes()), grey_f, ".tiff")
    save("grey16le_tiff", Image.frombytes("I;16L", (WIDTH, HEIGHT), grey16.astype("<u2").tobytes()), grey_f, ".tiff")
    _png(folder / "rgb16.png", rgb.astype(np.uint16) * 257, 2)
    out["rgb16"] = (folder / "rgb16.png", rgb_f)
    rgba16 = np.concatenate([rgb, a[..., None]], axis=-1).astype(np.uint16) * 257
    _png(folder / "rgba16.png", rgba16, 6)
    out["rgba16"] = (folder / "rgba16.png", rgb_f * a_f)
    save("rgba", Image.fromarray(np.concatenate([rgb, a[..., None]], axis=-1), "RGBA"), rgb_f * a_f)
    save("la", Image.fromarray(np.stack([grey, a], axis=-1), "LA"), grey_f * a_f)
    # A palette image whose entry 0 is transparent; its pixels there must come out black, not the entry's colour.
    palette = Image.fromarray(rgb).quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    indices = np.asarray(palette).copy()
    indices[:6, :6] = 0
    palette = Image.fromarray(indices, "P")
    palette.putpalette(Image.fromarray(rgb).quantize(colors=64, method=Image.Quantize.MEDIANCUT).getpalette())
    colours = np.asarray(palette.convert("RGB")) / 255.0
    colours[indices == 0] = 0.0
    save("palette_transparent", palette, colours, transparency=0)
    # CMYK without a colour profile: Pillow's conversion from RGB is exactly invertible (K = 0).
    save("cmyk_tiff", Image.fromarray(rgb).convert("CMYK"), rgb_f, ".tiff")
    bilevel = Image.fromarray(rgb).convert("1", dither=Image.Dither.NONE)
    save("bilevel", bilevel, np.repeat(np.asarray(bilevel, dtype=np.float64)[..., None], 3, axis=-1))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    save("exif_rotated", Image.fromarray(rgb), np.rot90(rgb_f, -1), exif=exif.tobytes())
    if heic:
        import pillow_heif

        pillow_heif.register_heif_opener()
        # Lossless HEVC: quality -1 with 4:4:4 chroma and identity matrix coefficients keeps RGB exactly.
        save("heic", Image.fromarray(rgb), rgb_f, ".heic", quality=-1, chroma=444, matrix_coefficients=0)
        save("heic_rotated", Image.fromarray(rgb), np.rot90(rgb_f, -1), ".heic", quality=-1, chroma=444,
             matrix_coefficients=0, exif=exif.tobytes())  # fmt: skip
    return out

"""Decode and measure one sample at a time, in a process pool, keeping only a few numbers per sample.

:func:`scan_sample` runs in worker processes. It reads one image (and its masks), checks what can be checked
on that sample alone (readable, complete, bit depth, channels, EXIF orientation, mask size and values) and
returns a small :class:`SampleStats`: file hash, perceptual hash, size, exposure numbers, mask statistics.
No pixels leave the worker, so memory stays bounded however large the dataset is.

Exposure is measured on a working copy of at most a few hundred pixels on the long side (JPEGs are decoded
at reduced scale by libjpeg, which is what makes 10,000 photos take minutes, not hours). Linear raw images are
normalised with their black level and saturation, and gamma-encoded (sRGB curve) before measuring, so that
"dark" and "clipped" mean the same on every task. Camera raw files (DNG) are decoded by
:func:`moto_vision.data.raw.read_raw` (their own black and white levels, orientation applied) instead of Pillow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from moto_vision.data.curation.phash import THUMB_SIZE, phash
from moto_vision.data.images import ImageReadError, conversion_note, decode_image, probe_image
from moto_vision.data.validation import mask_size_problem

__all__ = ["HIST_BINS", "ScanJob", "SampleStats", "run_scan", "scan_sample"]

HIST_BINS = 64
WORK_SIZE = 256
CLIP_LEVEL = 0.98  # a channel at >= 98 % of its range counts as clipped


@dataclass
class ScanJob:
    """What a worker needs to scan one sample (plain values only: it is pickled to the worker)."""

    index: int
    image: str
    masks: tuple[str, ...] = ()
    bit_depth: int | None = 8
    channels: int | None = 3
    strict_mode: bool = False
    linear: bool = False
    black_level: float = 0.0
    saturation: float | None = None
    saturation_margin: float | None = None
    mask_kind: str = "none"
    mask_same_size: bool = True
    num_classes: int | None = None
    ignore_index: int = 255
    min_size: int = 64
    exif_applied: bool = False


@dataclass
class SampleStats:
    """The measurements of one sample. ``problems`` holds ``(severity, code, file, message)`` tuples."""

    index: int
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)
    sha256: str | None = None
    phash: int | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    bit_depth: int | None = None
    luminance: float | None = None
    clipped_fraction: float | None = None
    dark_fraction: float | None = None
    histogram: np.ndarray | None = None
    mask_area: float | None = None
    boundary_length: float | None = None
    class_fractions: dict[int, float] | None = None

    @property
    def decoded(self) -> bool:
        """Whether the image decoded (so its measurements exist)."""
        return self.luminance is not None

    def add(self, severity: str, code: str, path: str, message: str) -> None:
        self.problems.append((severity, code, path, message))


# ----------------------------------------------------------------------------------------------- image
def _reduce(array: np.ndarray, size: int) -> np.ndarray:
    """Block-average ``(H, W, C)`` down to about ``size`` px on the long side (integer factor)."""
    factor = max(1, max(array.shape[:2]) // size)
    if factor == 1:
        return array
    h, w = array.shape[0] // factor * factor, array.shape[1] // factor * factor
    blocks = array[:h, :w].reshape(h // factor, factor, w // factor, factor, -1)
    return blocks.mean(axis=(1, 3))


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    # The sRGB transfer curve in numpy (moto_vision.isp has the torch version for tensors).
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def _measure(rgb: np.ndarray, linear: bool, stats: SampleStats) -> None:
    """Exposure numbers and the perceptual hash of a normalised ``(h, w, 3)`` float image in ``[0, 1]``."""
    if linear:
        luma = _srgb_encode(0.25 * rgb[..., 0] + 0.5 * rgb[..., 1] + 0.25 * rgb[..., 2])
    else:
        luma = 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]
    stats.luminance = float(luma.mean())
    stats.clipped_fraction = float((rgb >= CLIP_LEVEL).any(axis=-1).mean())
    stats.dark_fraction = float((luma < 0.05).mean())
    histogram, _ = np.histogram(luma, bins=HIST_BINS, range=(0.0, 1.0))
    stats.histogram = (histogram / max(1, luma.size)).astype(np.float32)
    thumb = Image.fromarray(luma.astype(np.float32), mode="F").resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX)
    stats.phash = phash(np.asarray(thumb))


def _scan_raw(job: ScanJob, stats: SampleStats) -> None:
    """A camera raw file: read with LibRaw, measured like a linear image (its saturation marks clipped pixels)."""
    from moto_vision.data.raw import RawReadError, read_raw

    try:
        capture = read_raw(job.image)
    except RawReadError as error:
        code = error.code if error.code in ("missing_file", "truncated") else "unreadable"
        stats.add("error", code, job.image, error.detail)
        return
    except ImportError as error:
        stats.add("error", "unreadable", job.image, str(error))
        return
    stats.sha256 = hashlib.sha256(Path(job.image).read_bytes()).hexdigest()
    stats.width, stats.height = capture.metadata.width, capture.metadata.height
    stats.mode, stats.bit_depth = f"raw {capture.metadata.cfa_pattern or 'RGB'}", None
    if min(stats.width or 0, stats.height or 0) < job.min_size:
        stats.add("warning", "too_small", job.image, f"{stats.width}x{stats.height} px, below {job.min_size} px")
    rgb = capture.image.clamp(0, 1).permute(1, 2, 0).numpy()
    rgb = np.where(capture.valid.numpy()[..., None], rgb, 1.0)  # saturated pixels count as clipped
    _measure(_reduce(rgb, WORK_SIZE), True, stats)


def _scan_image(job: ScanJob, stats: SampleStats) -> None:
    path = job.image
    from moto_vision.data.raw import is_raw_file

    if is_raw_file(path):
        _scan_raw(job, stats)
        return
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        stats.add("error", "missing_file", path, "the index lists this image but the file does not exist")
        return
    except OSError as error:
        stats.add("error", "unreadable", path, f"cannot read the file ({error.strerror or error})")
        return
    stats.sha256 = hashlib.sha256(data).hexdigest()
    try:
        info = probe_image(path, data)
    except ImageReadError as error:
        stats.add("error", error.code, path, error.reason)
        return
    stats.width, stats.height = info.width, info.height
    stats.mode, stats.bit_depth = info.label, info.bit_depth
    severity = "error" if job.strict_mode else "warning"
    # Where the loader converts (sRGB formats), say what it does; raw AWB formats cannot use such files.
    note = "" if job.strict_mode else f"; the loader {conversion_note(info)}"
    if job.bit_depth is not None and info.bit_depth != job.bit_depth:
        message = f"{info.bit_depth}-bit {info.format} ({info.label}), the format expects {job.bit_depth}-bit"
        stats.add(severity, "bit_depth", path, message + note)
    if job.channels is not None and info.channels != job.channels:
        message = f"mode {info.label} ({info.channels} channels), the format expects {job.channels}"
        stats.add(severity, "mode", path, message + note)
    orientation = info.orientation
    if orientation != 1:
        if job.exif_applied:
            stats.width, stats.height = info.oriented_size  # the loader rotates: masks must match the rotated size
            stats.add(
                "warning",
                "exif_orientation",
                path,
                f"EXIF orientation {orientation}: this format's loader applies it, tools that ignore EXIF will see "
                "the image rotated; re-save with the rotation applied (PIL.ImageOps.exif_transpose) to be safe",
            )
        else:
            stats.add(
                "error",
                "exif_orientation",
                path,
                f"EXIF orientation {orientation}: viewers rotate it, training reads it unrotated (labels may not "
                "match); re-save with the rotation applied (PIL.ImageOps.exif_transpose) or strip the tag",
            )
    if min(info.width, info.height) < job.min_size:
        stats.add("warning", "too_small", path, f"{info.width}x{info.height} px, below {job.min_size} px")
    try:
        # The decoder every loader uses; JPEGs at reduced scale (the exposure needs no more than WORK_SIZE).
        rgb = decode_image(path, data, reduce_to=WORK_SIZE, orient=job.exif_applied)
    except ImageReadError as error:
        stats.add("error", error.code, path, error.reason)
        return
    if info.bit_depth > 8:
        # Black level and saturation are raw-data facts (in file units): they apply to high-bit-depth files only.
        full_scale = float(2 ** min(info.bit_depth, 16) - 1)
        saturation = job.saturation
        if saturation is None and job.saturation_margin is not None:
            saturation = float(rgb.max()) * full_scale - job.saturation_margin  # "image maximum minus a margin"
        rgb = _reduce(rgb, WORK_SIZE)
        black = job.black_level / full_scale
        white = 1.0 if saturation is None else saturation / full_scale
        rgb = np.clip((rgb - black) / max(white - black, 1e-9), 0.0, 1.0)
    else:
        rgb = _reduce(rgb, WORK_SIZE)
    _measure(rgb, job.linear, stats)


# ----------------------------------------------------------------------------------------------- masks
def _load_mask(path: str, stats: SampleStats) -> np.ndarray | None:
    try:
        mask = Image.open(path)
        mask.load()
    except FileNotFoundError:
        stats.add("error", "missing_file", path, "mask file does not exist")
        return None
    except Exception as error:  # noqa: BLE001
        stats.add("error", "mask_unreadable", path, f"mask does not decode ({error})")
        return None
    if len(mask.getbands()) == 1:
        return np.asarray(mask)
    array = np.asarray(mask)
    # Grey masks saved as RGB (CelebAMask-HQ's part files are) are fine; colours or an alpha channel are not.
    if (
        mask.mode == "RGB"
        and np.array_equal(array[..., 0], array[..., 1])
        and np.array_equal(array[..., 0], array[..., 2])
    ):
        return array[..., 0]
    what = "an alpha channel" if "A" in mask.mode else "different colour channels (a colour-coded mask)"
    stats.add("error", "mask_mode", path, f"mask mode {mask.mode} with {what}: save one channel of class ids (L or P)")
    return None


def _check_mask_size(job: ScanJob, path: str, mask: np.ndarray, stats: SampleStats) -> bool:
    if stats.width is None or stats.height is None:
        return True
    image_size, mask_size = (stats.width, stats.height), (mask.shape[1], mask.shape[0])
    why = mask_size_problem(image_size, mask_size, Path(job.image).name, same_size=job.mask_same_size)
    if why:
        stats.add("error", "mask_size", path, why)
    return why is None


def _boundary(labels: np.ndarray) -> float:
    """Label changes between 4-neighbours, in image perimeters (``2 * (H + W)`` pixels)."""
    edges = np.count_nonzero(labels[:, 1:] != labels[:, :-1]) + np.count_nonzero(labels[1:, :] != labels[:-1, :])
    return edges / (2.0 * (labels.shape[0] + labels.shape[1]))


def _scan_masks(job: ScanJob, stats: SampleStats) -> None:
    masks = []
    for path in job.masks:
        mask = _load_mask(path, stats)
        if mask is not None and _check_mask_size(job, path, mask, stats):
            masks.append((path, mask))
    if len(masks) != len(job.masks) or not masks:
        return
    kind = job.mask_kind
    if kind == "parts":
        foreground = np.zeros(masks[0][1].shape, dtype=bool)
        for _, mask in masks:
            if mask.shape != foreground.shape:
                return  # parts of different sizes were reported by the size check
            foreground |= mask > 0
        stats.mask_area = float(foreground.mean())
        stats.boundary_length = _boundary(foreground)
        return
    path, mask = masks[0]
    values, counts = np.unique(mask, return_counts=True)
    if kind == "matte":
        top = 65535.0 if mask.dtype == np.uint16 or values.max() > 255 else 255.0
        stats.mask_area = float(mask.mean() / top)
        stats.boundary_length = _boundary(mask >= top / 2)
        return
    if kind == "labels":
        if job.num_classes is not None:
            bad = [int(v) for v in values if v >= job.num_classes and v != job.ignore_index]
            if bad:
                shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
                stats.add(
                    "error",
                    "class_out_of_range",
                    path,
                    f"class ids {shown} outside 0..{job.num_classes - 1} (ignore index {job.ignore_index})",
                )
        valid = values != job.ignore_index
        total = max(1, int(counts[valid].sum()))
        stats.class_fractions = {int(v): int(c) / total for v, c in zip(values[valid], counts[valid])}
        stats.mask_area = float(counts[valid & (values != 0)].sum() / mask.size)
        stats.boundary_length = _boundary(mask)
        return
    # binary: 0 = background; foreground is 1 in 0/1 masks and 255 in 0/255 masks.
    odd = [int(v) for v in values if v not in (0, 1, 255)]
    if odd:
        stats.add(
            "warning",
            "mask_values",
            path,
            f"binary mask holds {len(odd)} values besides 0/1/255 (e.g. {odd[:5]}): anti-aliased or JPEG-compressed?",
        )
    foreground = mask >= (1 if values.max() <= 1 else 128)
    stats.mask_area = float(foreground.mean())
    stats.boundary_length = _boundary(foreground)


def scan_sample(job: ScanJob) -> SampleStats:
    """Check and measure one sample (runs in a worker process)."""
    stats = SampleStats(index=job.index)
    _scan_image(job, stats)
    if job.masks:
        _scan_masks(job, stats)
    return stats


def run_scan(
    jobs: Iterable[ScanJob], total: int, workers: int = 1, progress: bool = True, spawn: bool = False
) -> Iterator[SampleStats]:
    """Scan samples in ``workers`` processes, yielding stats in job order, with a progress bar on stderr.

    ``spawn`` starts fresh worker processes instead of forking (LibRaw, which decodes camera raw files, uses OpenMP,
    which is not safe in a forked child).
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="scanning", unit="img", disable=not progress, dynamic_ncols=True, mininterval=0.5)
    try:
        if workers <= 1:
            for job in jobs:
                yield scan_sample(job)
                bar.update()
            return
        import multiprocessing

        # fork: workers inherit the imported modules instead of re-importing torch (seconds each).
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() and not spawn else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for stats in pool.imap(scan_sample, jobs, chunksize=8):
                yield stats
                bar.update()
    finally:
        bar.close()

"""Datasets that decode AWB records into ``{"image", "illuminant", "valid"}`` samples.

- :class:`RawAWBDataset`: raw benchmark images with their official preprocessing (black level, saturation,
  masked charts), resized to a working size with a valid-pixel-weighted area filter, cached in memory.
- :class:`PhotoAWBDataset`: ordinary sRGB photos relit by a light spectrum and seen through a sampled camera
  (:mod:`moto_vision.data.awb.photo_scenes`); validation and test draws are fixed per sample.

Samples: ``image`` float ``(3, S, S)`` linear camera RGB in ``[0, 1]`` with invalid pixels zeroed,
``illuminant`` unit-norm ``(3,)``, ``valid`` bool ``(S, S)``. Camera captures (``dng``, ``raw_png``) add
:data:`CAPTURE_KEYS`: ``as_shot_neutral`` (unit-norm ``(3,)``, the phone's own AWB answer), ``camera_matrices``
(``(2, 3, 3)`` XYZ -> camera, the DNG colour matrices) and ``camera_matrix_cct`` (``(2,)`` their calibration CCTs);
NaN where a capture lacks the tag.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from moto_vision.data.awb.formats import read_raw_record
from moto_vision.data.images import read_image
from moto_vision.data.records import SampleRecord

if TYPE_CHECKING:
    from moto_vision.data.awb.synthetic import CameraVariation
    from moto_vision.isp.cameras import CameraPool

__all__ = [
    "CAPTURE_KEYS",
    "CapturePredictDataset",
    "PhotoAWBDataset",
    "RawAWBDataset",
    "capture_facts",
    "resize_with_mask",
]

#: Sample keys of camera captures (see the module docstring).
CAPTURE_KEYS = ("as_shot_neutral", "camera_matrices", "camera_matrix_cct")


def resize_with_mask(image: Tensor, valid: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Area-resize ``(3, H, W)`` to ``(3, size, size)`` averaging only valid pixels.

    A plain area filter would blend masked (zeroed) and clipped pixels into their neighbours and give them
    wrong colours; here each output pixel is the mean of the valid input pixels it covers, and is itself
    valid when at least half of them are.
    """
    weight = valid.to(image.dtype)[None]
    summed = F.interpolate((image * weight)[None], size=(size, size), mode="area")[0]
    coverage = F.interpolate(weight[None], size=(size, size), mode="area")[0, 0]
    out_valid = coverage >= 0.5
    out = summed / coverage.clamp_min(1e-6) * out_valid
    return out.clamp(0.0, 1.0), out_valid


def _unit(rgb: Sequence[float]) -> Tensor:
    t = torch.tensor(rgb, dtype=torch.float32)
    return t / t.norm()


def capture_facts(record: SampleRecord) -> dict[str, Tensor]:
    """The :data:`CAPTURE_KEYS` tensors of a capture record (NaN where the capture lacks the fact)."""
    extra = record.extra
    neutral = extra.get("as_shot_neutral")
    matrices = extra.get("xyz_to_camera")
    ccts = extra.get("calibration_cct")
    nan = float("nan")
    return {
        "as_shot_neutral": _unit(neutral) if neutral is not None else torch.full((3,), nan),
        "camera_matrices": torch.tensor(matrices, dtype=torch.float32).view(2, 3, 3)
        if matrices is not None
        else torch.full((2, 3, 3), nan),
        "camera_matrix_cct": torch.tensor(ccts, dtype=torch.float32) if ccts is not None else torch.full((2,), nan),
    }


def _progress(iterable: Sequence[Any], description: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return iterable
    return tqdm(iterable, desc=description, file=sys.stderr, leave=False, disable=len(iterable) < 16)


class RawAWBDataset(Dataset):
    """Raw colour-constancy images, preprocessed as their dataset's reference code does and resized.

    Records come from the ``gehler_shi``, ``nus8``, ``cube_plus`` or ``simple_cube_pp`` indexers.

    Args:
        records: indexed samples with ground-truth illuminants.
        image_size: output height and width (colour statistics do not depend on the aspect ratio).
        cache: keep decoded, resized samples in memory (a few KB each).
    """

    def __init__(self, records: Sequence[SampleRecord], image_size: int = 64, cache: bool = True) -> None:
        missing = [r.image for r in records if r.illuminant is None]
        if missing:
            raise ValueError(f"{missing[0]}: record has no ground-truth illuminant.")
        self.records = list(records)
        self.image_size = image_size
        self.cache = cache
        self._cache: dict[int, dict[str, Tensor]] = {}
        # Every sample of a batch must have the same keys: captures add theirs when any record is a capture.
        self.captures = any("as_shot_neutral" in r.extra or "xyz_to_camera" in r.extra for r in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> dict[str, Tensor]:
        """Decode and preprocess one record (errors name the file)."""
        record = self.records[index]
        image, valid = read_raw_record(record)
        if not bool(valid.any()):
            raise ValueError(
                f"{record.image}: no valid pixel left after black level, saturation and chart masking; check the "
                "black / saturation levels of this format."
            )
        image, valid = resize_with_mask(image, valid, self.image_size)
        sample = {"image": image, "illuminant": _unit(record.illuminant), "valid": valid}  # type: ignore[arg-type]
        if self.captures:
            sample.update(capture_facts(record))
        return sample

    def preload(self, description: str = "Reading raw images") -> None:
        """Decode every image now (with a progress bar), so a bad file stops the run before training."""
        for index in _progress(range(len(self)), description):
            self[index]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if index in self._cache:
            return self._cache[index]
        sample = self.load(index)
        if self.cache:
            self._cache[index] = sample
        return sample


def _read_photo(path: Any, size: int) -> Tensor:
    """Decode an sRGB photo, resize its short side to ``size`` and centre-crop to a square (float ``(3, S, S)``).

    Decoding is :func:`moto_vision.data.images.read_image` (every Pillow mode, 16-bit, alpha, EXIF orientation,
    HEIC); JPEGs are decoded at the smallest scale that keeps ``size`` pixels.
    """
    photo = read_image(path, reduce_to=size)
    height, width = photo.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        # Area-like (antialiased) when shrinking, bicubic when enlarging, as the photos' earlier PIL resize.
        mode = "bilinear" if scale < 1 else "bicubic"
        photo = F.interpolate(photo[None], size=(new_h, new_w), mode=mode, antialias=scale < 1, align_corners=False)[0]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return photo[:, top : top + size, left : left + size].clamp(0.0, 1.0).contiguous()


class PhotoAWBDataset(Dataset):
    """White-balanced sRGB photos relit by light spectra and seen through sampled cameras (``photos`` format).

    Every draw renders a (cached, resized) photo with :func:`~moto_vision.data.awb.photo_scenes.render_photo`: a
    camera of ``cameras``, a light spectrum, exposure, noise, clipping, maybe a masked chart; the light's colour in
    that camera is the ground truth and the camera's XYZ -> raw matrix travels as ``"camera"``. Each photo gives
    ``draws_per_photo`` samples per epoch; with ``fixed=True`` (validation, test) sample ``i`` is always the same draw,
    otherwise every access draws anew (from torch's global generator, so ``seed_everything`` repeats a run).

    Args:
        records: photo records (from the ``photos`` indexer).
        image_size: output height and width (short side resized, centre crop).
        seed: seed of the fixed draws.
        fixed: same camera, light and sensor draw per sample on every access.
        cameras: the camera pool (default: :meth:`CameraPool.default`, every pool camera).
        variation: camera variation around the pool (default: none; the training split passes the training
            variation).
        draws_per_photo: samples per photo and epoch (each its own camera and light).
    """

    def __init__(
        self,
        records: Sequence[SampleRecord],
        image_size: int = 64,
        seed: int = 0,
        fixed: bool = False,
        cameras: CameraPool | None = None,
        variation: CameraVariation | None = None,
        draws_per_photo: int = 1,
    ):
        from moto_vision.isp.cameras import CameraPool

        if draws_per_photo < 1:
            raise ValueError(f"PhotoAWBDataset: draws_per_photo must be at least 1, got {draws_per_photo}.")
        self.records = list(records)
        self.image_size = image_size
        self.seed = seed
        self.fixed = fixed
        self.cameras = cameras if cameras is not None else CameraPool.default()
        self.variation = variation
        self.draws_per_photo = int(draws_per_photo)
        self._photos: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.records) * self.draws_per_photo

    def photo(self, index: int) -> Tensor:
        """The cached sRGB photo ``(3, S, S)`` of record ``index``."""
        if index not in self._photos:
            self._photos[index] = _read_photo(self.records[index].image, self.image_size)
        return self._photos[index]

    def preload(self, description: str = "Reading photos") -> None:
        """Decode every photo now, so a bad file stops the run before training."""
        for index in _progress(range(len(self.records)), description):
            self.photo(index)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        from moto_vision.data.awb.photo_scenes import render_photo

        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} is outside 0..{len(self) - 1}")
        seed = self.seed * 1_000_003 + index if self.fixed else int(torch.randint(2**62, (1,)))
        generator = torch.Generator().manual_seed(seed)
        return render_photo(self.photo(index % len(self.records)), generator, self.cameras, self.variation)


class CapturePredictDataset(Dataset):
    """Camera raw captures without ground truth, for ``predict``: the model's input plus what a writer needs.

    Samples: ``image`` ``(3, S, S)`` and ``valid`` as for :class:`RawAWBDataset`, the :data:`CAPTURE_KEYS`
    tensors, and ``path`` (the file, as a string).

    Args:
        paths: raw files (see :data:`moto_vision.data.raw.RAW_SUFFIXES`).
        image_size: output height and width.
    """

    def __init__(self, paths: Sequence[Any], image_size: int = 64) -> None:
        self.paths = [str(p) for p in paths]
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from moto_vision.data.raw import read_raw

        capture = read_raw(self.paths[index])
        image, valid = resize_with_mask(capture.image.clamp(0, 1) * capture.valid, capture.valid, self.image_size)
        metadata = capture.metadata
        matrices = metadata.xyz_to_camera()
        extra: dict[str, Any] = {}
        if metadata.neutral() is not None:
            extra["as_shot_neutral"] = list(metadata.neutral() or ())
        if matrices is not None:
            extra.update(xyz_to_camera=matrices[0].reshape(2, 9).tolist(), calibration_cct=matrices[1].tolist())
        facts = capture_facts(SampleRecord(image=capture.metadata.path, extra=extra))  # type: ignore[arg-type]
        return {"image": image, "valid": valid, **facts, "path": self.paths[index]}

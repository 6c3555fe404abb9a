"""The sensor end of the camera: exposure, noise, colour filter array, optics, saturation, JPEG.

Pure, batched, differentiable functions on linear camera RGB ``(B, 3, H, W)`` (JPEG works on sRGB).
Random functions take a ``torch.Generator`` so draws are reproducible.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from kornia.color import CFA, raw_to_rgb, rgb_to_raw
from kornia.enhance import jpeg_codec_differentiable
from torch import Tensor

__all__ = [
    "BayerPattern",
    "add_sensor_noise",
    "adjust_exposure",
    "apply_lens_shading",
    "chromatic_aberration",
    "clip_highlights",
    "demosaic",
    "jpeg",
    "lens_shading_map",
    "mosaic",
    "random_noise_levels",
]

BayerPattern = Literal["RGGB", "GRBG", "BGGR", "GBRG"]
# kornia names patterns as OpenCV does, by the colour at pixel (1, 1): its CFA.BG is an RGGB sensor.
_KORNIA_CFA = {"RGGB": CFA.BG, "GRBG": CFA.GB, "BGGR": CFA.RG, "GBRG": CFA.GR}


def _per_image(value: Tensor | float, image: Tensor) -> Tensor:
    """Broadcast a scalar or a ``(B,)`` tensor against ``(B, C, H, W)``."""
    value = torch.as_tensor(value, device=image.device, dtype=image.dtype)
    return value.view(-1, 1, 1, 1) if value.ndim == 1 else value


def adjust_exposure(image: Tensor, ev: Tensor | float) -> Tensor:
    """Scale linear light by ``2 ** ev`` (exposure time / analogue or digital gain in stops).

    Args:
        image: ``(B, C, H, W)`` linear image.
        ev: exposure change in stops, a float or ``(B,)``.

    Returns:
        The scaled image (not clipped; see :func:`clip_highlights`).
    """
    return image * torch.exp2(_per_image(ev, image))


def clip_highlights(image: Tensor, white_level: Tensor | float = 1.0) -> Tensor:
    """Sensor saturation: clip linear values to ``[0, white_level]`` (the full-well / ADC limit).

    Args:
        image: ``(B, C, H, W)`` linear image.
        white_level: saturation level, a float or ``(B,)``.

    Returns:
        The clipped image.
    """
    if isinstance(white_level, Tensor):
        return torch.minimum(image.clamp_min(0.0), _per_image(white_level, image))
    return image.clamp(0.0, white_level)


def random_noise_levels(
    batch_size: int,
    *,
    shot_range: tuple[float, float] = (1e-4, 1.2e-2),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Sample shot and read noise levels with the log-linear relation of Brooks et al. (CVPR 2019).

    ``log(shot)`` is uniform over ``shot_range``; ``log(read) = 2.18 * log(shot) + 1.20 + N(0, 0.26^2)``, the
    relation Brooks et al. fit to the calibrated noise profiles of real cameras (their Fig. 2): brighter
    (low-ISO) captures have little shot noise and far less read noise.

    Args:
        batch_size: number of images.
        shot_range: range of the shot-noise factor (variance per unit signal); the default spans ISO ~100-6400
            of a phone sensor normalised to ``[0, 1]``.
        generator: random generator.
        device: output device.
        dtype: output dtype.

    Returns:
        ``(shot, read)``, each ``(batch_size,)``.
    """
    lo, hi = math.log(shot_range[0]), math.log(shot_range[1])
    log_shot = lo + (hi - lo) * torch.rand(batch_size, generator=generator)
    log_read = 2.18 * log_shot + 1.20 + 0.26 * torch.randn(batch_size, generator=generator)
    return log_shot.exp().to(device=device, dtype=dtype), log_read.exp().to(device=device, dtype=dtype)


def add_sensor_noise(
    image: Tensor,
    shot: Tensor | float,
    read: Tensor | float,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Add heteroscedastic Gaussian noise of variance ``shot * x + read`` (Poisson-Gaussian sensor model).

    Shot (photon) noise has a variance proportional to the signal; read noise is signal independent. The
    Gaussian approximation of the Poisson part is accurate above a few photons and keeps the operation
    differentiable. The variance is floored just above zero (slightly negative values come from colour-matrix
    overshoot, not from light).

    Args:
        image: ``(B, C, H, W)`` linear image.
        shot: shot-noise factor, a float or ``(B,)``.
        read: read-noise variance, a float or ``(B,)``.
        generator: random generator for the standard-normal field (ignored when ``noise`` is given). Must live
            on ``image``'s device.
        noise: optional precomputed standard-normal field of ``image``'s shape.

    Returns:
        The noisy image (not clipped).
    """
    if noise is None:
        noise = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
    std = torch.addcmul(_per_image(read, image), image, _per_image(shot, image)).clamp_min_(1e-10).sqrt_()
    return torch.addcmul(image, std, noise.to(image.dtype))


def mosaic(image: Tensor, pattern: BayerPattern = "RGGB") -> Tensor:
    """Sample a colour filter array: keep one colour per pixel in a 2x2 Bayer pattern (kornia ``rgb_to_raw``).

    Args:
        image: ``(B, 3, H, W)`` linear camera RGB, even ``H`` and ``W``.
        pattern: colours of the top-left 2x2 cell, row by row.

    Returns:
        ``(B, 1, H, W)`` Bayer mosaic.
    """
    return rgb_to_raw(image, _KORNIA_CFA[pattern])


def demosaic(raw: Tensor, pattern: BayerPattern = "RGGB") -> Tensor:
    """Bilinear demosaicking of a Bayer mosaic (kornia ``raw_to_rgb``), with its zipper and colour-fringe artefacts.

    Args:
        raw: ``(B, 1, H, W)`` mosaic, even ``H`` and ``W``.
        pattern: colours of the top-left 2x2 cell, row by row.

    Returns:
        ``(B, 3, H, W)`` RGB.
    """
    return raw_to_rgb(raw, _KORNIA_CFA[pattern])


def _radius_squared(height: int, width: int, device: torch.device | str | None, dtype: torch.dtype) -> Tensor:
    """Squared distance from the image centre, 1 at the corners (normalised by the half diagonal)."""
    ys = torch.linspace(-height / 2 + 0.5, height / 2 - 0.5, height, device=device, dtype=torch.float32)
    xs = torch.linspace(-width / 2 + 0.5, width / 2 - 0.5, width, device=device, dtype=torch.float32)
    r2 = (ys[:, None] ** 2 + xs[None, :] ** 2) / ((height / 2) ** 2 + (width / 2) ** 2)
    return r2.to(dtype)


def lens_shading_map(
    corner: Tensor | float,
    height: int,
    width: int,
    *,
    inverse: bool = False,
    gain: Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Relative illumination of a lens, per channel: ``1 / (1 + k r^2)^2`` (the cos^4 law of a thin lens).

    ``r`` is the distance from the optical centre (1 at the corners) and ``k`` is chosen so the corners receive
    ``corner`` times the light of the centre. Phone lenses commonly keep 30-60% in the corners; different values
    per channel model colour shading (the IR-cut filter passes less red at oblique angles).

    Args:
        corner: corner illumination in ``(0, 1]``: a float, ``(B,)`` or ``(B, 3)`` per channel.
        height: image height.
        width: image width.
        inverse: return the correction gain ``(1 + k r^2)^2`` (an ISP's lens-shading correction) instead.
        gain: optional ``(B, C)`` gains multiplied into an ``inverse`` map at no extra cost (e.g. white balance).
        device: device of the map.
        dtype: dtype of the map.

    Returns:
        ``(B, C, H, W)`` gain map (``(1, 1, H, W)`` for a float ``corner``).
    """
    corner = torch.as_tensor(corner, device=device, dtype=torch.float32)
    # float -> (1, 1, 1, 1); (B,) -> (B, 1, 1, 1); (B, C) -> (B, C, 1, 1)
    corner = corner.reshape(-1, 1, 1, 1) if corner.ndim <= 1 else corner[:, :, None, None]
    k = corner.clamp(1e-3, 1.0).rsqrt() - 1.0
    r2 = _radius_squared(height, width, device, torch.float32)
    if gain is not None:
        if not inverse:
            raise ValueError("lens_shading_map: gain is only supported with inverse=True")
        # g (1 + k r^2)^2 = (sqrt(g) + sqrt(g) k r^2)^2: the gain costs no pass over the map.
        root = gain.to(device=device, dtype=torch.float32).clamp_min(0.0).sqrt()[:, :, None, None]
        return torch.addcmul(root, root * k, r2).square_().to(dtype)
    correction = torch.addcmul(torch.ones((), device=r2.device), k, r2).square_()
    return (correction if inverse else correction.reciprocal_()).to(dtype)


def apply_lens_shading(image: Tensor, corner: Tensor | float) -> Tensor:
    """Darken the image towards the corners as a lens does (see :func:`lens_shading_map`).

    Args:
        image: ``(B, C, H, W)`` linear image.
        corner: corner illumination, a float, ``(B,)`` or ``(B, C)``.

    Returns:
        The shaded image.
    """
    return image * lens_shading_map(corner, image.shape[-2], image.shape[-1], device=image.device, dtype=image.dtype)


def chromatic_aberration(image: Tensor, scale: Tensor) -> Tensor:
    """Lateral chromatic aberration: red and blue images magnified slightly differently from green.

    The lens focuses each wavelength at a slightly different magnification, so red and blue edges shift radially
    (colour fringes growing towards the corners). Each of red and blue is resampled (bilinear) about the centre.

    Args:
        image: ``(B, 3, H, W)``.
        scale: ``(B, 2)`` relative magnification of red and blue versus green (e.g. ``0.002`` = 0.2% larger).

    Returns:
        ``(B, 3, H, W)`` with red and blue resampled; green untouched.
    """
    b, _, h, w = image.shape
    inv = 1.0 / (1.0 + scale.to(device=image.device, dtype=torch.float32).reshape(b * 2, 1, 1))
    # The sampling grid of a zoom about the centre, built by broadcasting (align_corners=False pixel centres).
    xs = torch.linspace(-1.0 + 1.0 / w, 1.0 - 1.0 / w, w, device=image.device)
    ys = torch.linspace(-1.0 + 1.0 / h, 1.0 - 1.0 / h, h, device=image.device)
    grid = torch.empty(b * 2, h, w, 2, device=image.device, dtype=torch.float32)
    grid[..., 0] = xs * inv
    grid[..., 1] = ys[:, None] * inv
    red_blue = image[:, 0::2].reshape(b * 2, 1, h, w)
    moved = F.grid_sample(red_blue, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    moved = moved.view(b, 2, h, w)
    return torch.stack([moved[:, 0], image[:, 1], moved[:, 1]], dim=1)


def jpeg(image: Tensor, quality: Tensor | float) -> Tensor:
    """JPEG compression artefacts through kornia's differentiable JPEG codec (``jpeg_codec_differentiable``).

    Args:
        image: ``(B, 3, H, W)`` sRGB in ``[0, 1]``.
        quality: JPEG quality 1-100, a float or ``(B,)``.

    Returns:
        The decoded image, ``(B, 3, H, W)`` in ``[0, 1]``.
    """
    q = torch.as_tensor(quality, device=image.device, dtype=image.dtype if image.is_floating_point() else None)
    return jpeg_codec_differentiable(image.clamp(0.0, 1.0), q.reshape(-1))

"""The sensor end of the camera: exposure, noise, colour filter array, optics, saturation, JPEG.

Pure, batched, differentiable functions on linear camera RGB ``(B, 3, H, W)`` (JPEG works on sRGB).
Random functions take a ``torch.Generator`` so draws are reproducible.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "add_sensor_noise",
    "adjust_exposure",
    "clip_highlights",
    "random_noise_levels",
]


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
    differentiable. Negative signal values count as zero for the variance.

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
    variance = torch.addcmul(_per_image(read, image), image.clamp_min(0.0), _per_image(shot, image))
    return torch.addcmul(image, variance.sqrt_(), noise.to(image.dtype))

"""Unprocess sRGB photos into linear camera raw and process raw back to sRGB (Brooks et al., CVPR 2019).

``unprocess`` inverts a simple but realistic camera ISP step by step (tone curve, sRGB gamma, colour
correction matrix, white balance) and lights the scene with a sampled illuminant; ``process`` is that ISP
run forward. The ``params`` dict records every sampled quantity, so AWB training gets the exact ground-truth
illuminant of each synthesised raw image and ``process(*unprocess(x))`` gives back ``x`` up to clipping.
"""

from __future__ import annotations

import torch
from torch import Tensor

from moto_vision.isp.color import (
    apply_color_matrix,
    camera_rgb_matrix,
    illuminant_to_gains,
    inverse_3x3,
    inverse_tone_curve,
    linear_to_srgb,
    planckian_xyz,
    random_xyz_to_camera,
    srgb_to_linear,
    tone_curve,
)

__all__ = ["CameraParams", "process", "sample_camera_params", "sample_illuminant", "unprocess"]

CameraParams = dict[str, Tensor]
"""Per-image camera parameters, all batched on dim 0:

- ``xyz2cam`` ``(B, 3, 3)``: the camera's native XYZ -> raw matrix.
- ``rgb2cam`` ``(B, 3, 3)``: linear sRGB -> white-balanced camera raw (rows sum to 1).
- ``ccm`` ``(B, 3, 3)``: camera raw -> linear sRGB, the ISP's colour correction matrix (inverse of ``rgb2cam``).
- ``cct`` ``(B,)``, ``tint`` ``(B,)``: the sampled light (kelvin, Duv).
- ``illuminant`` ``(B, 3)``: unit-norm raw colour of a grey surface under that light (``xyz2cam @ XYZ``),
  the AWB ground truth.
- ``gains`` ``(B, 3)``: green-preserving white-balance gains ``illuminant[g] / illuminant``.
- ``digital_gain`` ``(B,)``: extra gain ``max(illuminant) / illuminant[g] >= 1`` the ISP applies with the white
  balance: ``unprocess`` darkens by its inverse so that no channel of the raw image gets brighter than the
  sRGB input (warm light raises red above green).
"""


def sample_illuminant(
    batch_size: int,
    *,
    cct_range: tuple[float, float] = (2500.0, 10000.0),
    tint_range: tuple[float, float] = (-0.006, 0.012),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample light colours: CCT uniform in mired (perceptually even), Duv uniform.

    The default ranges cover tungsten and warm LED (2500-3500 K), fluorescent (about 4000 K, green tint up to
    +0.01), daylight and overcast sky (5000-7500 K) and shade (up to 10000 K), as in phone AWB datasets.

    Args:
        batch_size: number of lights.
        cct_range: CCT range in kelvin.
        tint_range: Duv range.
        generator: random generator.

    Returns:
        ``(cct, tint)``, each ``(batch_size,)`` float32 on the CPU.
    """
    lo, hi = 1e6 / max(cct_range), 1e6 / min(cct_range)
    u = torch.rand(2, batch_size, generator=generator)
    cct = 1e6 / (lo + (hi - lo) * u[0])
    tint = tint_range[0] + (tint_range[1] - tint_range[0]) * u[1]
    return cct, tint


def sample_camera_params(
    batch_size: int,
    *,
    cct_range: tuple[float, float] = (2500.0, 10000.0),
    tint_range: tuple[float, float] = (-0.006, 0.012),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> CameraParams:
    """Sample a camera (colour matrix) and a light for each image; see :data:`CameraParams`.

    Args:
        batch_size: number of images.
        cct_range: CCT range of the light in kelvin (see :func:`sample_illuminant`).
        tint_range: Duv range of the light.
        generator: random generator (on the CPU: parameters are tiny and sampled there).
        device: device of the returned tensors.

    Returns:
        The parameter dict, float32.
    """
    xyz2cam = random_xyz_to_camera(batch_size, generator=generator, dtype=torch.float64)
    rgb2cam = camera_rgb_matrix(xyz2cam)
    cct, tint = sample_illuminant(batch_size, cct_range=cct_range, tint_range=tint_range, generator=generator)
    # A grey surface under this light, seen through the camera's native (not white-balanced) spectral response:
    # green dominates, as in real raw data.
    light_cam = torch.einsum("bij,bj->bi", xyz2cam, planckian_xyz(cct.double(), tint.double())).clamp_min(1e-4)
    illuminant = light_cam / light_cam.norm(dim=-1, keepdim=True)
    params = {
        "xyz2cam": xyz2cam,
        "rgb2cam": rgb2cam,
        "ccm": inverse_3x3(rgb2cam),
        "cct": cct.double(),
        "tint": tint.double(),
        "illuminant": illuminant,
        "gains": illuminant_to_gains(illuminant),
        "digital_gain": illuminant.amax(dim=-1) / illuminant[:, 1],
    }
    return {k: v.to(device=device, dtype=torch.float32) for k, v in params.items()}


def _protect_highlights(camera: Tensor, inverse_gains: Tensor, threshold: float = 0.9) -> Tensor:
    """Apply inverse white-balance gains ``<= 1`` but fade them out towards white (Brooks et al.).

    A real sensor clips before white balance, so bright highlights of a processed photo were clipped raw values
    that white balance turned white. Dimming them with the inverse gains would create raw highlights that are
    coloured but unclipped; fading the gains to 1 above ``threshold`` grey keeps them saturated.
    """
    gray = camera.mean(dim=1, keepdim=True)
    mask = ((gray - threshold).clamp_min(0.0) / (1.0 - threshold)).square()
    g = inverse_gains[:, :, None, None]
    return camera * torch.maximum(mask + (1.0 - mask) * g, g)


def unprocess(
    srgb: Tensor,
    params: CameraParams | None = None,
    *,
    generator: torch.Generator | None = None,
    protect_highlights: bool = True,
) -> tuple[Tensor, CameraParams]:
    """Turn white-balanced sRGB photos into linear camera raw lit by a sampled light.

    Inverse tone curve, inverse sRGB gamma, sRGB -> camera matrix, then the inverse of the white balance the
    camera would apply (so grey surfaces take the colour ``params["illuminant"]``), darkened by
    ``1 / params["digital_gain"]`` and clipped to the sensor range ``[0, 1]``. Pixels saturated in raw
    (highlights, saturated colours outside the camera gamut) are where the round trip is not exact.

    Args:
        srgb: ``(B, 3, H, W)`` gamma-encoded sRGB in ``[0, 1]``.
        params: camera parameters to use (default: sampled with :func:`sample_camera_params`).
        generator: random generator for sampling ``params``.
        protect_highlights: fade the inverse gains out in highlights (see :func:`_protect_highlights`).

    Returns:
        ``(raw, params)``: ``(B, 3, H, W)`` linear camera RGB in ``[0, 1]`` and the parameters, on ``srgb``'s device.
    """
    if params is None:
        params = sample_camera_params(srgb.shape[0], generator=generator, device=srgb.device)
    linear = srgb_to_linear(inverse_tone_curve(srgb))
    inverse_gains = 1.0 / (params["gains"] * params["digital_gain"][:, None])
    if protect_highlights:
        raw = _protect_highlights(apply_color_matrix(linear, params["rgb2cam"]), inverse_gains.to(srgb.dtype))
    else:
        # Fold the gains into the matrix: one pass over the pixels.
        raw = apply_color_matrix(linear, inverse_gains[:, :, None] * params["rgb2cam"])
    return raw.clamp(0.0, 1.0), params


def process(raw: Tensor, params: CameraParams, *, tone: bool = True) -> Tensor:
    """Run the camera ISP forward: white balance, highlight clipping, colour correction, sRGB gamma, tone curve.

    Args:
        raw: ``(B, 3, H, W)`` linear camera RGB (demosaicked).
        params: camera parameters; uses ``gains``, ``digital_gain`` and ``ccm``.
        tone: apply the global tone curve after the gamma (as :func:`unprocess` assumes).

    Returns:
        ``(B, 3, H, W)`` sRGB in ``[0, 1]``.
    """
    gains = params["gains"] * params["digital_gain"][:, None]
    # Clip after white balance as an ISP does, so raw-saturated highlights turn white instead of magenta.
    balanced = (raw * gains.to(raw.dtype)[:, :, None, None]).clamp(0.0, 1.0)
    srgb = linear_to_srgb(apply_color_matrix(balanced, params["ccm"]).clamp(0.0, 1.0))
    return tone_curve(srgb) if tone else srgb.clamp(0.0, 1.0)

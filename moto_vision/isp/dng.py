"""The DNG colour model: camera RGB -> XYZ -> display sRGB from a capture's own colour matrices.

A DNG describes its camera with ``ColorMatrix1`` / ``ColorMatrix2`` (XYZ -> camera RGB) measured under two
calibration illuminants (usually Standard light A and D65). The DNG specification (1.6, chapter 6, "Mapping Camera
Color Space to CIE XYZ Space") says how to use them for a scene whose white is a given camera-RGB neutral:

1. find the white's chromaticity by iteration: guess ``xy``, interpolate the matrices for its CCT, map the neutral to
   XYZ with the inverse, take that ``xy``, repeat until it no longer moves (:func:`neutral_to_xy`);
2. interpolate the matrices *linearly in inverse CCT* between the two calibration illuminants, clamped outside them
   (:func:`interpolate_xyz_to_camera`);
3. camera -> XYZ is the inverse of that matrix; a chromatic adaptation (linear Bradford, as the DNG SDK uses) maps
   the scene white to the output white, here D65 for sRGB (:func:`camera_to_srgb_matrix`).

:func:`render_dng_preview` chains this with an exposure and the sRGB transfer and tone curves into a display image.
All functions are batched pure torch (any leading shape), computed in float64 where matrices are inverted.
Cross-checked against colour-hdri's implementation of the same specification in ``tests/test_raw.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from moto_vision.isp.color import SRGB_TO_XYZ, XYZ_TO_SRGB, apply_color_matrix, linear_to_srgb, tone_curve
from moto_vision.isp.color import xy_to_cct_duv as _xy_to_cct_duv

__all__ = [
    "BRADFORD",
    "DEFAULT_CALIBRATION_CCT",
    "LIGHT_SOURCE_CCT",
    "auto_exposure",
    "bradford_adaptation",
    "camera_to_srgb_matrix",
    "camera_to_xyz_matrix",
    "interpolate_xyz_to_camera",
    "neutral_to_xy",
    "render_dng_preview",
    "xy_to_neutral",
]

#: Correlated colour temperature (K) of each EXIF ``LightSource`` code a ``CalibrationIlluminant`` tag may hold, as the
#: Adobe DNG SDK assigns them (``dng_camera_profile::IlluminantToTemperature``; fluorescent classes take the middle of
#: their JIS range).
LIGHT_SOURCE_CCT: dict[int, float] = {
    1: 5500.0,  # daylight
    2: 4200.0,  # fluorescent
    3: 2850.0,  # tungsten (incandescent)
    4: 5500.0,  # flash
    9: 5500.0,  # fine weather
    10: 6500.0,  # cloudy weather
    11: 7500.0,  # shade
    12: 6400.0,  # daylight fluorescent (D 5700-7100 K)
    13: 5000.0,  # day white fluorescent (N 4600-5400 K)
    14: 4200.0,  # cool white fluorescent (W 3900-4500 K)
    15: 3450.0,  # white fluorescent (WW 3200-3700 K)
    16: 2925.0,  # warm white fluorescent (L 2600-3250 K)
    17: 2850.0,  # standard light A
    18: 5500.0,  # standard light B
    19: 6500.0,  # standard light C
    20: 5500.0,  # D55
    21: 6500.0,  # D65
    22: 7500.0,  # D75
    23: 5000.0,  # D50
    24: 3200.0,  # ISO studio tungsten
}
#: CCT assumed for an unknown (0) or "other" (255) calibration illuminant.
DEFAULT_CALIBRATION_CCT = 6500.0

#: Linear Bradford cone-response matrix (Lam 1985; the DNG SDK's chromatic adaptation).
BRADFORD = torch.tensor(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]], dtype=torch.float64
)
_D50_XY = (0.3457, 0.3585)
_D65_XYZ = SRGB_TO_XYZ.sum(dim=1)  # the white sRGB maps to (1, 1, 1): about (0.9505, 1, 1.089)


def _xy_to_xyz(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1].clamp_min(1e-9)
    return torch.stack([x / y, torch.ones_like(x), (1.0 - x - y) / y], dim=-1)


def _xyz_to_xy(xyz: Tensor) -> Tensor:
    return xyz[..., :2] / xyz.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def interpolate_xyz_to_camera(matrices: Tensor, ccts: Tensor, cct: Tensor | float) -> Tensor:
    """Interpolate two XYZ -> camera matrices for a light of CCT ``cct``, linearly in inverse CCT (DNG 1.2+ rule).

    Args:
        matrices: ``(..., 2, 3, 3)`` matrices for the two calibration illuminants.
        ccts: ``(..., 2)`` their CCTs in kelvin.
        cct: the light's CCT, broadcast against the leading shape.

    Returns:
        ``(..., 3, 3)``: the first matrix at or below the lower CCT, the second at or above the higher one.
    """
    matrices, ccts = matrices.double(), ccts.double().to(matrices.device)
    cct = torch.as_tensor(cct, dtype=torch.float64, device=matrices.device)
    inverse_1, inverse_2 = 1.0 / ccts[..., 0], 1.0 / ccts[..., 1]
    span = inverse_1 - inverse_2
    same = span.abs() < 1e-12
    weight = ((1.0 / cct - inverse_2) / torch.where(same, torch.ones_like(span), span)).clamp(0.0, 1.0)
    weight = torch.where(same, torch.ones_like(weight), weight)[..., None, None]
    return weight * matrices[..., 0, :, :] + (1.0 - weight) * matrices[..., 1, :, :]


def neutral_to_xy(neutral: Tensor, matrices: Tensor, ccts: Tensor, iterations: int = 30) -> Tensor:
    """CIE xy of the white whose camera RGB is ``neutral`` (DNG "Translating Camera Neutral Coordinates to xy").

    Args:
        neutral: ``(..., 3)`` camera RGB of a neutral surface (any scale), e.g. ``AsShotNeutral`` or an illuminant.
        matrices: ``(..., 2, 3, 3)`` XYZ -> camera matrices.
        ccts: ``(..., 2)`` their calibration CCTs.
        iterations: most fixed-point iterations; it stops once no ``xy`` moves by more than 1e-7 (a handful of
            steps for real matrices: the interpolation weight changes slowly with the CCT).

    Returns:
        ``(..., 2)`` float64 chromaticity.
    """
    neutral = neutral.double()
    xy = torch.tensor(_D50_XY, dtype=torch.float64, device=neutral.device).expand(*neutral.shape[:-1], 2)
    for _ in range(iterations):
        cct, _ = _xy_to_cct_duv(xy)
        matrix = interpolate_xyz_to_camera(matrices, ccts, cct)
        xyz = torch.linalg.solve(matrix, neutral[..., None])[..., 0]
        previous, xy = xy, _xyz_to_xy(xyz)
        if not bool(((xy - previous).abs() > 1e-7).any()):
            break
    return xy


def xy_to_neutral(xy: Tensor, matrices: Tensor, ccts: Tensor) -> Tensor:
    """Camera RGB of a white of chromaticity ``xy`` (e.g. from ``AsShotWhiteXY``), green = 1."""
    xy = xy.double()
    cct, _ = _xy_to_cct_duv(xy)
    neutral = (interpolate_xyz_to_camera(matrices, ccts, cct) @ _xy_to_xyz(xy)[..., None])[..., 0]
    return neutral / neutral[..., 1:2]


def bradford_adaptation(source_xyz: Tensor, target_xyz: Tensor) -> Tensor:
    """Linear Bradford chromatic adaptation matrix ``(..., 3, 3)`` taking white ``source_xyz`` to ``target_xyz``."""
    cone = BRADFORD.to(source_xyz.device)
    source = (cone @ source_xyz.double()[..., None])[..., 0]
    target = (cone @ target_xyz.double().to(source_xyz.device)[..., None])[..., 0]
    return torch.linalg.inv(cone) @ torch.diag_embed(target / source) @ cone


def camera_to_xyz_matrix(neutral: Tensor, matrices: Tensor, ccts: Tensor) -> tuple[Tensor, Tensor]:
    """Camera RGB -> XYZ of a scene whose white is ``neutral``, and that white's ``xy``.

    No chromatic adaptation: a camera value maps to the XYZ the camera saw (the illuminant keeps its colour).

    Returns:
        ``(matrix (..., 3, 3), xy (..., 2))`` float64.
    """
    xy = neutral_to_xy(neutral, matrices, ccts)
    cct, _ = _xy_to_cct_duv(xy)
    return torch.linalg.inv(interpolate_xyz_to_camera(matrices, ccts, cct)), xy


def camera_to_srgb_matrix(neutral: Tensor, matrices: Tensor, ccts: Tensor, adapt: bool = True) -> Tensor:
    """Camera RGB -> linear sRGB through the DNG colour model.

    Args:
        neutral: ``(..., 3)`` camera RGB of the scene white (the illuminant; any scale).
        matrices: ``(..., 2, 3, 3)`` XYZ -> camera matrices.
        ccts: ``(..., 2)`` their calibration CCTs.
        adapt: ``True``: white-balanced rendering, the scene white adapted to D65 (linear Bradford) and scaled so
            that ``neutral / neutral[1]`` becomes sRGB ``(1, 1, 1)`` (the green-preserving correction of the AWB
            contract). ``False``: colorimetric, no adaptation (the illuminant keeps its colour: used to find an
            illuminant's CCT).

    Returns:
        ``(..., 3, 3)`` float64.
    """
    to_xyz, xy = camera_to_xyz_matrix(neutral, matrices, ccts)
    if not adapt:
        return XYZ_TO_SRGB.to(to_xyz.device) @ to_xyz
    white = _xy_to_xyz(xy)
    matrix = XYZ_TO_SRGB.to(to_xyz.device) @ bradford_adaptation(white, _D65_XYZ) @ to_xyz
    grey = (matrix @ (neutral.double() / neutral.double()[..., 1:2])[..., None])[..., 0]
    return matrix / grey.mean(dim=-1)[..., None, None]


def auto_exposure(linear: Tensor, percentile: float = 0.97, level: float = 0.9) -> Tensor:
    """Per-image gain ``(B,)`` mapping the ``percentile`` of a linear ``(B, 3, H, W)`` image's values to ``level``."""
    top = torch.quantile(linear.flatten(1).float(), percentile, dim=1).clamp_min(1e-6)
    return level / top


def render_dng_preview(
    image: Tensor,
    neutral: Tensor,
    matrices: Tensor,
    ccts: Tensor,
    exposure: Tensor | float | None = None,
    tone: bool = True,
) -> Tensor:
    """Display sRGB ``(B, 3, H, W)`` in ``[0, 1]`` of linear camera RGB, white-balanced for ``neutral``.

    Camera RGB is mapped to linear sRGB by :func:`camera_to_srgb_matrix` (white balance, DNG camera -> XYZ, Bradford
    to D65, XYZ -> sRGB), scaled by the exposure, clipped, encoded with the sRGB curve and, with ``tone``, the
    global S-curve of :func:`~moto_vision.isp.tone_curve`. Images whose matrices are not finite (a capture without
    ``ColorMatrix``) are only white-balanced and shown as if camera RGB were sRGB.

    Args:
        image: ``(B, 3, H, W)`` linear camera RGB.
        neutral: ``(B, 3)`` camera RGB of the white to balance for (ground truth, prediction or ``AsShotNeutral``).
        matrices: ``(B, 2, 3, 3)`` XYZ -> camera matrices (see :meth:`~moto_vision.data.raw.RawMetadata.xyz_to_camera`).
        ccts: ``(B, 2)`` their calibration CCTs.
        exposure: gain on the linear sRGB values, a float or ``(B,)``; ``None`` picks one per image so that its 97th
            percentile sits at 0.9.
        tone: apply the S-shaped tone curve after the transfer curve.

    Returns:
        ``(B, 3, H, W)`` display sRGB in ``[0, 1]``, dtype of ``image``.
    """
    b = image.shape[0]
    neutral = neutral.double().to(image.device).clamp_min(1e-9)
    matrices, ccts = matrices.double().to(image.device), ccts.double().to(image.device)
    known = torch.isfinite(matrices).flatten(1).all(dim=1) & torch.isfinite(ccts).all(dim=1)
    safe = torch.where(known[:, None, None, None], matrices, torch.eye(3, dtype=torch.float64).expand(b, 2, 3, 3))
    matrix = camera_to_srgb_matrix(neutral, safe, torch.where(known[:, None], ccts, torch.full_like(ccts, 6500.0)))
    gains_only = torch.diag_embed(neutral[:, 1:2] / neutral)
    matrix = torch.where(known[:, None, None], matrix, gains_only)
    linear = apply_color_matrix(image.double(), matrix)
    if exposure is None:
        gain = auto_exposure(linear).double()
    else:
        gain = torch.as_tensor(exposure, dtype=torch.float64, device=image.device).expand(b)
    display = linear_to_srgb((linear * gain[:, None, None, None]).clamp(0.0, 1.0))
    if tone:
        display = tone_curve(display)
    return display.to(image.dtype if image.is_floating_point() else torch.float32)

"""Colour science of the camera pipeline: transfer curves, illuminants, white balance, colour matrices.

Everything here is a pure, batched, differentiable function of tensors. Images are ``(B, 3, H, W)``
(any leading shape works for the point-wise curves); illuminants are ``(..., 3)`` RGB vectors.
Curves with a steep or singular derivative are evaluated in float32 for float16/bfloat16 inputs and
cast back, so half-precision images stay accurate and gradients stay finite.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "CAMERA_XYZ_TO_RAW",
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
    "apply_color_matrix",
    "apply_gains",
    "camera_rgb_matrix",
    "cct_duv_to_xy",
    "illuminant_to_cct",
    "illuminant_to_gains",
    "inverse_3x3",
    "inverse_tone_curve",
    "linear_to_srgb",
    "planckian_illuminant",
    "planckian_xyz",
    "random_camera_matrix",
    "random_xyz_to_camera",
    "srgb_to_linear",
    "tone_curve",
    "update_illuminant",
    "xy_to_cct_duv",
]

# IEC 61966-2-1 (sRGB, D65 white) primaries.
SRGB_TO_XYZ = torch.tensor(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=torch.float64,
)
XYZ_TO_SRGB = torch.linalg.inv(SRGB_TO_XYZ)

# XYZ -> camera-raw matrices of four real cameras (Adobe DNG ``ColorMatrix`` values), the set Brooks et al.,
# "Unprocessing Images for Learned Raw Denoising" (CVPR 2019) sample convex combinations of.
CAMERA_XYZ_TO_RAW = torch.tensor(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
    ],
    dtype=torch.float64,
)

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _upcast(x: Tensor) -> Tensor:
    return x.float() if x.dtype in _HALF_DTYPES else x


def _scalar(value: float, like: Tensor) -> Tensor:
    """A 0-d tensor for ``torch.addcmul``'s constant operands: ``a + x * b`` in one pass over ``x``."""
    return torch.tensor(value, dtype=like.dtype, device=like.device)


# --------------------------------------------------------------------------------------------- transfer curves
def srgb_to_linear(image: Tensor) -> Tensor:
    """Decode the sRGB transfer curve (IEC 61966-2-1) to linear light.

    Values outside ``[0, 1]`` are not clipped: negatives follow the linear segment, values above 1 the power law.

    Args:
        image: gamma-encoded sRGB values, any shape.

    Returns:
        Linear values, same shape and dtype.
    """
    x = _upcast(image)
    # Written as power(max(x, c)) + (min(x, c) - c) / 12.92, the two pieces of the curve with in-place steps:
    # equal to the piecewise definition (the pieces meet at c), with fewer passes over memory than ``where``.
    power = torch.addcmul(_scalar(0.055 / 1.055, x), x.clamp_min(0.04045), _scalar(1.0 / 1.055, x)).pow_(2.4)
    return power.add_(x.clamp_max(0.04045).sub_(0.04045), alpha=1.0 / 12.92).to(image.dtype)


def linear_to_srgb(image: Tensor) -> Tensor:
    """Encode linear light with the sRGB transfer curve (IEC 61966-2-1); inverse of :func:`srgb_to_linear`.

    Args:
        image: linear values, any shape.

    Returns:
        Gamma-encoded values, same shape and dtype.
    """
    x = _upcast(image)
    power = torch.addcmul(_scalar(-0.055, x), x.clamp_min(0.0031308).pow_(1.0 / 2.4), _scalar(1.055, x))
    return power.add_(x.clamp_max(0.0031308).sub_(0.0031308), alpha=12.92).to(image.dtype)


def tone_curve(image: Tensor) -> Tensor:
    """Global S-shaped tone curve ``3x^2 - 2x^3`` (smoothstep) of a camera's photo finishing.

    Brooks et al. (CVPR 2019) fit this curve as the average global tone map of consumer cameras; it is
    applied after the sRGB gamma. Inputs are clipped to ``[0, 1]``, where the curve is monotonic.

    Args:
        image: gamma-encoded values, any shape.

    Returns:
        Tone-mapped values in ``[0, 1]``, same shape and dtype.
    """
    return _smoothstep(image.clamp(0.0, 1.0))


def _smoothstep(x: Tensor) -> Tensor:
    """``3x^2 - 2x^3`` without clipping, for callers whose values are already in ``[0, 1]``."""
    return torch.addcmul(_scalar(3.0, x), x, _scalar(-2.0, x)).mul_(x).mul_(x)


def inverse_tone_curve(image: Tensor) -> Tensor:
    """Invert :func:`tone_curve`: ``0.5 - sin(asin(1 - 2y) / 3)``.

    The derivative of ``asin`` is infinite at ``y = 0`` and ``y = 1``; inputs are clamped a hair inside
    ``[0, 1]`` so gradients stay finite (the value changes by less than 1e-6).

    Args:
        image: tone-mapped values, any shape.

    Returns:
        Values before the tone curve, in ``[0, 1]``, same shape and dtype.
    """
    y = _upcast(image).clamp(1e-7, 1.0 - 1e-7)
    return torch.rsub(torch.rsub(y, 1.0, alpha=2.0).asin_().mul_(1.0 / 3.0).sin_(), 0.5).to(image.dtype)


# ------------------------------------------------------------------------------------------------- illuminants
def _kim_locus_xy(cct: Tensor) -> tuple[Tensor, Tensor]:
    """CIE 1931 xy of the Planckian locus, Kim et al. (2002) cubic spline, valid 1667-25000 K (float64)."""
    t = cct.clamp(1667.0, 25000.0)
    r = 1e3 / t  # polynomials in 10^3/T
    x_low = -0.2661239 * r**3 - 0.2343589 * r**2 + 0.8776956 * r + 0.179910
    x_high = -3.0258469 * r**3 + 2.1070379 * r**2 + 0.2226347 * r + 0.240390
    x = torch.where(t <= 4000.0, x_low, x_high)
    y_1 = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    y_2 = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    y_3 = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    y = torch.where(t <= 2222.0, y_1, torch.where(t <= 4000.0, y_2, y_3))
    return x, y


def _xy_to_uv(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    d = -2.0 * x + 12.0 * y + 3.0
    return 4.0 * x / d, 6.0 * y / d


def _uv_to_xy(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    d = 2.0 * u - 8.0 * v + 4.0
    return 3.0 * u / d, 2.0 * v / d


def _locus_uv_and_normal(cct: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CIE 1960 uv on the locus and the unit normal pointing to positive Duv (above the locus, greenish)."""
    u, v = _xy_to_uv(*_kim_locus_xy(cct))
    # Central difference in mired (10^6/T), where the locus is smooth and evenly sampled.
    mired = 1e6 / cct
    step = 0.05
    u_a, v_a = _xy_to_uv(*_kim_locus_xy(1e6 / (mired - step)))
    u_b, v_b = _xy_to_uv(*_kim_locus_xy(1e6 / (mired + step)))
    du, dv = u_b - u_a, v_b - v_a  # tangent towards lower CCT (increasing mired): u grows
    norm = torch.sqrt(du**2 + dv**2)
    # Rotate the tangent +90 degrees: with u growing along the tangent, the normal has v growing (above the locus).
    return u, v, -dv / norm, du / norm


def cct_duv_to_xy(cct: Tensor | float, duv: Tensor | float = 0.0) -> Tensor:
    """CIE 1931 xy chromaticity of a correlated colour temperature and a distance off the Planckian locus.

    Args:
        cct: correlated colour temperature in kelvin, 1667-25000 (clamped), any shape.
        duv: signed distance from the locus in CIE 1960 uv (ANSI C78.377 ``Duv``), positive above the
            locus (greenish), negative below (pinkish); broadcast against ``cct``.

    Returns:
        ``(..., 2)`` float64 xy.
    """
    cct_t = torch.as_tensor(cct, dtype=torch.float64)
    duv_t = torch.as_tensor(duv, dtype=torch.float64, device=cct_t.device)
    u, v, nu, nv = _locus_uv_and_normal(cct_t)
    x, y = _uv_to_xy(u + duv_t * nu, v + duv_t * nv)
    return torch.stack([x, y], dim=-1)


def planckian_illuminant(
    cct: Tensor | float,
    tint: Tensor | float = 0.0,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Unit-norm linear-sRGB colour of a black-body light, optionally tinted off the Planckian locus.

    The locus is the Kim et al. (2002) cubic approximation of CIE 1931 xy (valid 1667-25000 K); the
    tint moves the chromaticity perpendicular to the locus in CIE 1960 uv by ``tint`` (Duv; daylight D65
    sits at about +0.0032, fluorescent tubes up to about +0.01). XYZ is converted with the sRGB (D65) matrix,
    so ``planckian_illuminant(6504, 0.0032)`` is close to ``(1, 1, 1) / sqrt(3)``.

    Very warm lights lie outside the sRGB gamut (negative blue): on the locus below about 1900 K, at Duv +0.01
    below about 2550 K. Their colour is clamped to a small positive blue so gains stay finite, and
    :func:`illuminant_to_cct` does not invert them exactly. (:func:`planckian_xyz` has no such limit; the
    camera-raw illuminants of :func:`~moto_vision.isp.sample_camera_params` use it.)

    Args:
        cct: colour temperature in kelvin, float or tensor of any shape (vectorised).
        tint: Duv offset, broadcast against ``cct``.
        dtype: output dtype (default: ``cct``'s floating dtype, else float32).
        device: output device (default: ``cct``'s device).

    Returns:
        ``(*cct.shape, 3)`` unit-norm RGB in linear sRGB.
    """
    if dtype is None:
        dtype = cct.dtype if isinstance(cct, Tensor) and cct.is_floating_point() else torch.float32
    if device is None:
        device = cct.device if isinstance(cct, Tensor) else "cpu"
    xyz = planckian_xyz(torch.as_tensor(cct, dtype=torch.float64).cpu(), torch.as_tensor(tint).double().cpu())
    rgb = (xyz @ XYZ_TO_SRGB.T).clamp_min(1e-4)
    rgb = rgb / rgb.norm(dim=-1, keepdim=True)
    return rgb.to(device=device, dtype=dtype)


def planckian_xyz(cct: Tensor | float, tint: Tensor | float = 0.0) -> Tensor:
    """CIE XYZ (``Y = 1``) of a black-body light with an optional Duv tint; see :func:`planckian_illuminant`.

    Args:
        cct: colour temperature in kelvin, any shape.
        tint: Duv offset, broadcast against ``cct``.

    Returns:
        ``(..., 3)`` float64 XYZ on ``cct``'s device.
    """
    xy = cct_duv_to_xy(cct, tint)
    x, y = xy[..., 0], xy[..., 1]
    return torch.stack([x / y, torch.ones_like(x), (1.0 - x - y) / y], dim=-1)


def xy_to_cct_duv(xy: Tensor, iterations: int = 4) -> tuple[Tensor, Tensor]:
    """Correlated colour temperature and Duv of CIE 1931 xy chromaticities (inverse of :func:`cct_duv_to_xy`).

    Finds the closest point of the (Kim et al. 2002) Planckian locus in CIE 1960 uv: a coarse search over
    1667-25000 K in mired, refined by Gauss-Newton steps along the locus.

    Args:
        xy: ``(..., 2)`` chromaticities.
        iterations: Gauss-Newton refinement steps.

    Returns:
        ``(cct, duv)``, each of shape ``xy.shape[:-1]``, float64.
    """
    xy = xy.double()
    u, v = _xy_to_uv(xy[..., 0], xy[..., 1])
    grid = torch.linspace(1e6 / 25000.0, 1e6 / 1667.0, 512, dtype=torch.float64, device=xy.device)
    gu, gv = _xy_to_uv(*_kim_locus_xy(1e6 / grid))
    dist = (u[..., None] - gu) ** 2 + (v[..., None] - gv) ** 2
    mired = grid[dist.argmin(dim=-1)]
    lo, hi = 1e6 / 25000.0, 1e6 / 1667.0
    for _ in range(iterations):
        lu, lv = _xy_to_uv(*_kim_locus_xy(1e6 / mired))
        # d(uv)/d(mired) by central difference; at the range ends one side is clamped, which only halves it.
        u_a, v_a = _xy_to_uv(*_kim_locus_xy(1e6 / (mired - 0.01)))
        u_b, v_b = _xy_to_uv(*_kim_locus_xy(1e6 / (mired + 0.01)))
        tu, tv = (u_b - u_a) / 0.02, (v_b - v_a) / 0.02
        step = ((u - lu) * tu + (v - lv) * tv) / (tu**2 + tv**2)
        mired = (mired + step).clamp(lo, hi)
    lu, lv, nu, nv = _locus_uv_and_normal(1e6 / mired)
    duv = (u - lu) * nu + (v - lv) * nv
    return 1e6 / mired, duv


def illuminant_to_cct(illuminant: Tensor) -> tuple[Tensor, Tensor]:
    """Correlated colour temperature (K) and Duv of linear-sRGB illuminant colours, for reporting.

    Inverse of :func:`planckian_illuminant` inside the sRGB gamut: exact on the locus; off it (``|Duv| <= 0.01``)
    within 0.1% in CCT and 1e-5 in Duv, the residue of the Kim et al. spline's kink at 4000 K. The scale of
    ``illuminant`` does not matter.

    Args:
        illuminant: ``(..., 3)`` linear-sRGB colours.

    Returns:
        ``(cct, duv)`` of shape ``illuminant.shape[:-1]``, in the input's floating dtype.
    """
    out_dtype = illuminant.dtype if illuminant.is_floating_point() else torch.float32
    xyz = illuminant.double() @ SRGB_TO_XYZ.to(illuminant.device).T
    xy = xyz[..., :2] / xyz.sum(dim=-1, keepdim=True)
    cct, duv = xy_to_cct_duv(xy)
    return cct.to(out_dtype), duv.to(out_dtype)


# --------------------------------------------------------------------------------------------- white balance
def illuminant_to_gains(illuminant: Tensor) -> Tensor:
    """Green-preserving von Kries white-balance gains ``illuminant[g] / illuminant``.

    Multiplying an image lit by ``illuminant`` by these gains (:func:`apply_gains`) makes grey surfaces grey
    and keeps the green channel: the correction ``x / illuminant * illuminant[:, 1:2]`` of the AWB contract.

    Args:
        illuminant: ``(..., 3)`` positive RGB.

    Returns:
        ``(..., 3)`` gains with green equal to 1.
    """
    return illuminant[..., 1:2] / illuminant.clamp_min(1e-8)


def apply_gains(image: Tensor, gains: Tensor) -> Tensor:
    """Multiply each channel of each image by its gain.

    Args:
        image: ``(B, 3, H, W)``.
        gains: ``(B, 3)`` per-image gains or ``(3,)`` for the whole batch.

    Returns:
        ``(B, 3, H, W)`` image times gains.
    """
    return image * gains.to(image.dtype)[..., :, None, None]


def update_illuminant(illuminant: Tensor, transform: Tensor) -> Tensor:
    """Ground-truth illuminant after a colour-linear change of the image (the label-aware AWB update).

    If an image lit by ``illuminant`` is multiplied per channel by gains ``g`` (or by a 3x3 matrix ``M``),
    a grey surface now has colour ``g * illuminant`` (``M @ illuminant``), which is therefore the new ground
    truth, renormalised to unit norm. This is the one way moto-vision updates AWB labels after
    :class:`~moto_vision.isp.RandomIlluminant`, :class:`~moto_vision.isp.RandomColorMatrix` or
    :func:`apply_gains`; see :func:`~moto_vision.isp.applied_color_transform` to collect the transform.

    Args:
        illuminant: ``(B, 3)`` ground-truth illuminants.
        transform: ``(B, 3)`` / ``(3,)`` per-channel gains, or ``(B, 3, 3)`` colour matrices (a ``(3, 3)``
            matrix is accepted for a single ``(3,)`` illuminant).

    Returns:
        ``(B, 3)`` unit-norm updated illuminants.
    """
    transform = transform.to(illuminant.dtype)
    # Per-channel gains have the illuminant's shape (or (3,)); anything with one more trailing axis is a matrix.
    if transform.ndim == illuminant.ndim + 1 or (transform.ndim == 2 and illuminant.ndim == 1):
        new = torch.einsum("...ij,...j->...i", transform, illuminant)
    else:
        new = illuminant * transform
    return new / new.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# ---------------------------------------------------------------------------------------------- colour matrices
def apply_color_matrix(image: Tensor, matrix: Tensor) -> Tensor:
    """Apply a 3x3 colour matrix to every pixel: ``out[:, i] = sum_j matrix[:, i, j] * image[:, j]``.

    One batched matrix multiply over the flattened pixels (a single pass over memory).

    Args:
        image: ``(B, 3, H, W)``.
        matrix: ``(B, 3, 3)`` per-image matrices or ``(3, 3)`` for the whole batch.

    Returns:
        ``(B, 3, H, W)`` transformed image, same dtype as ``image``.
    """
    b, c, h, w = image.shape
    matrix = matrix.to(image.dtype)
    if matrix.ndim == 2:
        matrix = matrix.expand(b, 3, 3)
    return torch.bmm(matrix, image.reshape(b, c, h * w)).view(b, c, h, w)


def random_xyz_to_camera(
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Sample XYZ -> camera-raw matrices: random convex mixes of :data:`CAMERA_XYZ_TO_RAW` (Brooks et al. 2019).

    The matrices keep the Adobe DNG scaling, so they give a camera's native (not white-balanced) raw response,
    where green dominates: e.g. a D65 grey is about ``(0.45, 1, 0.8)``.

    Args:
        batch_size: number of matrices.
        generator: random generator for reproducible draws (CPU).
        device: output device.
        dtype: output dtype.

    Returns:
        ``(batch_size, 3, 3)`` XYZ -> raw matrices.
    """
    weights = torch.rand(batch_size, len(CAMERA_XYZ_TO_RAW), 1, 1, generator=generator, dtype=torch.float64)
    xyz2cam = (weights * CAMERA_XYZ_TO_RAW).sum(1) / weights.sum(1)
    return xyz2cam.to(device=device, dtype=dtype)


def inverse_3x3(matrix: Tensor) -> Tensor:
    """Invert batched 3x3 matrices in closed form (adjugate / determinant).

    Much cheaper than ``torch.linalg.inv`` (a LAPACK call) for the small batches of colour matrices sampled per
    training step, and exact to rounding for the well-conditioned matrices of cameras.

    Args:
        matrix: ``(..., 3, 3)`` invertible matrices.

    Returns:
        ``(..., 3, 3)`` inverses.
    """
    a, b, c = matrix[..., 0, :], matrix[..., 1, :], matrix[..., 2, :]
    bc, ca, ab = torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)
    det = (a * bc).sum(-1)[..., None, None]
    return torch.stack([bc, ca, ab], dim=-1) / det


def camera_rgb_matrix(xyz_to_camera: Tensor) -> Tensor:
    """Linear sRGB -> white-balanced camera RGB matrix of a camera, rows normalised so white maps to white.

    Args:
        xyz_to_camera: ``(..., 3, 3)`` XYZ -> raw matrices.

    Returns:
        ``(..., 3, 3)`` sRGB -> camera matrices; the camera's colour correction matrix is their inverse.
    """
    rgb2cam = xyz_to_camera @ SRGB_TO_XYZ.to(xyz_to_camera)
    return rgb2cam / rgb2cam.sum(dim=-1, keepdim=True)


def random_camera_matrix(
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Sample realistic linear-sRGB -> camera matrices (Brooks et al., CVPR 2019).

    As in Brooks et al., "Unprocessing Images for Learned Raw Denoising": a random convex combination of real
    cameras' XYZ -> raw matrices (:func:`random_xyz_to_camera`), times the sRGB -> XYZ matrix, rows normalised
    to sum to 1 (:func:`camera_rgb_matrix`). The camera's colour correction matrix (raw -> sRGB, what an ISP
    applies after white balance) is its inverse.

    Args:
        batch_size: number of matrices.
        generator: random generator for reproducible draws (CPU).
        device: output device.
        dtype: output dtype.

    Returns:
        ``(batch_size, 3, 3)`` sRGB -> camera matrices.
    """
    xyz2cam = random_xyz_to_camera(batch_size, generator=generator, dtype=torch.float64)
    return camera_rgb_matrix(xyz2cam).to(device=device, dtype=dtype)

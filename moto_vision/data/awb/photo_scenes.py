"""White-balanced sRGB photos relit by a light spectrum and seen through a sampled camera (the ``photos`` format).

The same camera and light model as the synthetic Mondrians (:mod:`moto_vision.data.awb.synthetic`), with a real
photo as the scene:

- **Surfaces.** The photo is linearised (the inverse of the Brooks et al. tone curve, then the inverse sRGB curve,
  as :func:`moto_vision.isp.unprocess` does) and each pixel's linear sRGB colour is taken as a reflectance, upsampled
  to a spectrum with the Mallett & Yuksel (2019) basis. A white-balanced photo shows its scene as under a neutral
  light, so this is the scene's colours without its light.
- **Camera and light.** A camera of the split's pool (:class:`~moto_vision.isp.cameras.CameraPool`, varied by
  :class:`~moto_vision.data.awb.synthetic.CameraVariation`) and a light spectrum drawn as for the Mondrians
  (:func:`~moto_vision.data.awb.synthetic.sample_light_spectra`). Because the Mallett basis is linear in RGB, the
  spectral rendering of every pixel is one 3 x 3 matrix per image: ``sum_l basis(l)^T E(l) S(l)``. The ground truth
  is the camera's response to a perfect white under the light, ``sum_l S(l) E(l)`` (the basis sums to 1, so the
  photo's white renders exactly as the light).
- **Sensor.** Pixels the JPEG clipped (a channel at 255) were brighter than it could hold: they get 1-4 times its
  white. Then the Mondrians' sensor: an exposure that puts the 98th percentile of the brightest channel at 25-85% of
  the range, Poisson-Gaussian noise, clipping at 1 (clipped pixels zeroed and invalid in half the images, kept at 1
  in the others) and, in a share of the images, a zeroed rectangle like a masked colour chart.

Every draw is a function of its generator only, so validation and test draws are fixed per index.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from moto_vision.data.awb.synthetic import CameraVariation, MondrianConfig, sample_light_spectra
from moto_vision.isp import random_noise_levels
from moto_vision.isp.cameras import CameraPool
from moto_vision.isp.color import illuminant_to_gains, inverse_3x3, inverse_tone_curve, srgb_to_linear
from moto_vision.isp.spectral import fit_xyz_to_raw, spectral_data

__all__ = ["JPEG_CLIPPED", "pool_camera_params", "relit_srgb_to_raw", "render_photo"]

#: An sRGB value at or above this (in ``[0, 1]``) was clipped by the photo's encoder.
JPEG_CLIPPED = 254.5 / 255.0


def relit_srgb_to_raw(sensitivities: Tensor, spectra: Tensor) -> Tensor:
    """The ``(..., 3 raw, 3 sRGB)`` matrix that renders a white-balanced photo's linear sRGB under a light.

    Each colour is a reflectance upsampled with the Mallett & Yuksel basis, lit by ``spectra`` ``(..., L)`` and seen
    through ``sensitivities`` ``(..., L, 3)``: ``sum_l S(l) E(l) basis(l)^T``. The basis is linear in RGB, so this one
    matrix is the spectral render of every pixel; sRGB ``(1, 1, 1)`` (the basis sums to 1) renders as the camera's
    response to the light, ``sum_l S(l) E(l)``, unnormalised.
    """
    basis = spectral_data()["mallett_basis"]  # (L, 3): linear sRGB -> reflectance spectrum
    return torch.einsum("lr,...l,...lc->...cr", basis.to(spectra.dtype), spectra, sensitivities.to(spectra.dtype))


def pool_camera_params(
    n: int,
    generator: torch.Generator | None,
    cameras: CameraPool,
    variation: CameraVariation | None = None,
    config: MondrianConfig | None = None,
) -> dict[str, Tensor]:
    """Parameters for :func:`moto_vision.isp.unprocess`: cameras of ``cameras``, lights of the synthetic data.

    The multi-task data unprocesses its sRGB images (portraits, scenes) with these, so every head trains on the
    cameras and lights of the AWB data (and is tested on its held-out cameras) instead of the four camera matrices
    of Brooks et al. The keys and conventions are those of :data:`moto_vision.isp.CameraParams` with
    ``rgb2cam`` the spectral render :func:`relit_srgb_to_raw` with its rows scaled to sum to 1 (white stays white)
    and the light's colour in ``illuminant`` (its raw response, unit norm), ``gains`` and ``digital_gain``. The
    lights are spectra (daylight, black body, lamps, tinted, mixed), so there is no ``cct`` / ``tint``.

    Args:
        n: number of images.
        generator: CPU generator of the draws (``None``: the global one).
        cameras: the pool the cameras are drawn from.
        variation: how the cameras vary around the pool (default: none).
        config: the light statistics (default: :class:`MondrianConfig`'s).
    """
    config = config or MondrianConfig()
    variation = variation or CameraVariation.none()
    sensitivities, _ = cameras.sample(n, generator, **variation.as_kwargs())
    spectra = sample_light_spectra(generator, n, config)
    to_raw = relit_srgb_to_raw(sensitivities, spectra)  # (n, 3 raw, 3 sRGB), float64
    # A narrow-band lamp can miss a channel entirely (a sodium lamp's blue): a channel whose white is below 1e-4 of
    # the strongest one's is raised to that, as crosstalk, so every white balance gain stays finite.
    white = to_raw.sum(dim=-1)
    deficit = (1e-4 * white.amax(dim=-1, keepdim=True) - white).clamp_min(0.0)
    to_raw = to_raw + deficit[..., None] / 3
    white = to_raw.sum(dim=-1)
    illuminant = white / white.norm(dim=-1, keepdim=True)
    rgb2cam = to_raw / white[..., None]
    params = {
        "xyz2cam": fit_xyz_to_raw(sensitivities),
        "rgb2cam": rgb2cam,
        "ccm": inverse_3x3(rgb2cam),
        "illuminant": illuminant,
        "gains": illuminant_to_gains(illuminant),
        "digital_gain": illuminant.amax(dim=-1) / illuminant[:, 1],
    }
    return {key: value.float() for key, value in params.items()}


def render_photo(
    srgb: Tensor,
    generator: torch.Generator,
    cameras: CameraPool,
    variation: CameraVariation | None = None,
    config: MondrianConfig | None = None,
) -> dict[str, Tensor]:
    """Relight one white-balanced sRGB photo and capture it through a sampled camera (see the module docstring).

    Args:
        srgb: ``(3, H, W)`` gamma-encoded sRGB in ``[0, 1]``.
        generator: CPU generator; the draw (camera, light, exposure, noise, mask) is a function of it only.
        cameras: the pool the camera is drawn from.
        variation: how the camera varies around the pool (default: none, the pool's cameras as they are).
        config: light spectra, exposure, noise, clipping and mask statistics (default: :class:`MondrianConfig`'s).

    Returns:
        ``{"image": (3, H, W) linear raw in [0, 1] with invalid pixels zeroed, "illuminant": (3,) unit-norm camera RGB
        of the light, "valid": (H, W) bool, "camera": (3, 3) the camera's least-squares XYZ -> raw matrix}``.
    """
    config = config or MondrianConfig()
    variation = variation or CameraVariation.none()
    g = generator
    height, width = srgb.shape[-2:]
    sensitivity, _ = cameras.sample(1, g, **variation.as_kwargs())
    spectrum = sample_light_spectra(g, 1, config)[0]
    to_raw = relit_srgb_to_raw(sensitivity[0], spectrum)  # (3 raw, 3 sRGB)
    white = to_raw.sum(dim=-1)  # a perfect white (sRGB 1, 1, 1) under the light
    to_raw = (to_raw / white.norm()).float()

    linear = srgb_to_linear(inverse_tone_curve(srgb.float().clamp(0.0, 1.0)))
    headroom = math.exp(math.log(4.0) * float(torch.rand(1, generator=g)))
    clipped_in_photo = (srgb.amax(dim=0) >= JPEG_CLIPPED).float()
    linear = linear * (1.0 + (headroom - 1.0) * clipped_in_photo)
    scene = torch.einsum("cr,rhw->chw", to_raw, linear)

    level = torch.quantile(scene.amax(dim=0).flatten(), 0.98).clamp_min(1e-6)
    exposure = config.exposure_range[0] + (config.exposure_range[1] - config.exposure_range[0]) * float(
        torch.rand(1, generator=g)
    )
    raw = scene * (exposure / level)
    shot, read = random_noise_levels(1, shot_range=config.shot_range, generator=g)
    noise = torch.randn(3, height, width, generator=g)
    raw = raw + (read + shot * raw.clamp_min(0)).sqrt() * noise
    clipped = (raw >= 1.0).any(dim=0)
    keep_clipped = float(torch.rand(1, generator=g)) < config.keep_clipped_share
    valid = ~clipped if not keep_clipped else torch.ones(height, width, dtype=torch.bool)
    if float(torch.rand(1, generator=g)) < config.masked_share:  # a masked colour chart
        mh, mw = (0.15 + 0.25 * torch.rand(2, generator=g)).tolist()
        mh, mw = int(mh * height), int(mw * width)
        top = int(torch.randint(0, height - mh + 1, (1,), generator=g))
        left = int(torch.randint(0, width - mw + 1, (1,), generator=g))
        valid[top : top + mh, left : left + mw] = False
    image = raw.clamp(0.0, 1.0) * valid
    return {
        "image": image,
        "illuminant": (white / white.norm()).float(),
        "valid": valid,
        "camera": fit_xyz_to_raw(sensitivity)[0].float(),
    }

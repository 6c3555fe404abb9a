"""Synthetic colour-constancy scenes: spectral Mondrians under real light spectra, each seen by a sampled camera.

Land's Mondrian stimuli, rendered spectrally (``moto_vision.isp.spectral``) and made hard enough that Gray World
fails as it does on real photos:

- **Camera.** Every scene has its own camera (``moto_vision.isp.cameras``): sensitivities of a camera of the pool
  (fitted to real cameras' Adobe DNG matrices, or measured), for training mixed with a second pool camera
  (an imaginary camera between two real ones), shifted and rippled a little per channel and scaled by random
  channel gains. Validation and test scenes use pool cameras exactly as they are.
- **Surfaces.** A background and 3-10 overlapping rectangles, each with a reflectance *spectrum*: 40% are measured
  spectra (ColorChecker, CIE / NIST test samples, the AMPAS 190 patches) at a random lightness, the others a linear
  sRGB colour upsampled to a spectrum with the Mallett & Yuksel (2019) basis. Each scene has a dominant *theme*
  (foliage, sky, wood, a painted wall...) that the background and a quarter of the surfaces lean to, so the scene
  average is usually not grey; a quarter of the surfaces are near-neutral (white walls, paper, concrete, asphalt).
- **Texture and shading.** Smooth multiplicative texture per surface, fine chroma jitter, a global shading
  gradient (light fall-off).
- **Specular highlights.** In 70% of the scenes, a few Gaussian glints of the light's own colour (dichromatic
  model), some strong enough to clip.
- **Light.** A spectrum: CIE daylight (4000-15000 K), a black body (2000-7000 K) or one of 94 tabulated lamps (CIE
  FL / HP / LED series and measured fluorescent, LED, discharge and incandescent lamps), sometimes tinted by a smooth
  spectral filter (light through foliage or off a coloured wall: off the Planckian locus) or mixed with a second
  spectrum. In a share of the scenes a second light of another spectrum covers a minority of the frame. The ground
  truth is the main light's colour in the scene's camera, the camera's response to a perfect white under it.
- **Sensor.** An exposure that puts the brightest diffuse surfaces at 25-85% of the range, Poisson-Gaussian noise
  (``isp.random_noise_levels``) and clipping at 1. Clipped pixels are zeroed and marked invalid in half the scenes
  (as the raw benchmark readers do) and kept at 1 in the others (as a plain max-normalised raw image has them); a
  share of the scenes has a zeroed rectangle, like a masked colour chart.

Scene ``i`` of a dataset with seed ``s`` is always the same image (per-sample generators), whether it is
rendered alone or in a batch; batches render vectorised through ``__getitems__``. Each sample also carries its
camera's least-squares XYZ -> raw matrix (``"camera"``), the description a camera-aware model is given.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from moto_vision.isp import random_noise_levels
from moto_vision.isp.cameras import CameraPool
from moto_vision.isp.spectral import WAVELENGTHS, daylight_spd, fit_xyz_to_raw, planck_spd, spectral_data

__all__ = ["CameraVariation", "MondrianConfig", "SyntheticAWBDataset", "render_mondrians", "sample_light_spectra"]

# An orthonormal basis of the chroma plane (perpendicular to grey).
_CHROMA_BASIS = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]) / torch.tensor([[math.sqrt(2.0)], [math.sqrt(6.0)]])
_L = len(WAVELENGTHS)


class CameraVariation:
    """How training cameras vary around the pool (see :meth:`moto_vision.isp.cameras.CameraPool.sample`).

    Args:
        mix: probability of an imaginary camera between two pool cameras.
        shift_nm: standard deviation of the per-channel wavelength shift.
        ripple: amplitude of the smooth random factor on each curve (log scale).
        gains: half-range of the per-channel log gain.
    """

    def __init__(self, mix: float = 0.7, shift_nm: float = 4.0, ripple: float = 0.15, gains: float = 0.35) -> None:
        self.mix, self.shift_nm, self.ripple, self.gains = mix, shift_nm, ripple, gains

    @classmethod
    def none(cls) -> CameraVariation:
        """Pool cameras exactly as they are (validation, test)."""
        return cls(0.0, 0.0, 0.0, 0.0)

    def as_kwargs(self) -> dict[str, float]:
        return {"mix": self.mix, "shift_nm": self.shift_nm, "ripple": self.ripple, "gains": self.gains}


class MondrianConfig:
    """Scene statistics of :func:`render_mondrians` (defaults are those of the ``awb.yaml`` recipe).

    Args:
        surfaces: (min, max) number of rectangles on top of the background.
        neutral_share: probability that a surface is near-neutral.
        neutral_lightness: (min, max) mean reflectance of the near-neutral surfaces (white walls and paper are
            bright, asphalt and concrete are not).
        neutral_tint: amplitude (log scale) of the smooth spectral variation of near-neutral surfaces (real greys
            are not perfectly flat).
        theme_strength: (min, max) chroma of the scene's dominant colour on the background.
        theme_share: probability that a foreground surface leans to the theme colour.
        jitter: amplitude of the fine per-channel texture (chroma noise within a surface).
        measured_share: probability that a surface is a measured reflectance spectrum (else an upsampled colour).
        specular_share: probability that a scene has specular highlights.
        two_light_share: probability of a second light on part of the scene.
        light_kinds: probabilities of daylight, black-body and tabulated-lamp main lights.
        daylight_cct: CCT range of daylight (kelvin).
        planck_cct: temperature range of black-body lights (kelvin).
        tint_share: probability that a light passes a smooth spectral filter (off the Planckian locus).
        tint_strength: amplitude of that filter (log scale).
        mixed_share: probability that a light is a mixture of two spectra.
        exposure_range: (min, max) level of the brightest diffuse surfaces.
        shot_range: range of the shot-noise factor (``isp.random_noise_levels``).
        keep_clipped_share: probability that clipped pixels stay at 1 (else zeroed and marked invalid).
        masked_share: probability of a zeroed rectangle (a masked chart).
        supersample: render at this many times the size and area-average down (edges and small highlights mix as
            in a thumbnail of a large frame; clipping happens before the averaging, noise after).
        chroma_power: surface chroma is ``0.05 + 0.55 u^chroma_power`` (``u`` uniform): above 1, low chroma is
            more common, as in natural reflectances.
        bounded_chroma: bright surfaces cannot be very colourful (a reflectance is at most 1): the chroma of a
            surface of mean reflectance ``m > 0.5`` is scaled by ``2 (1 - m)``.
        bright_neutral_share: probability that a near-neutral surface is a bright white (mean reflectance 0.6-0.9:
            paper, paint, clouds), often the brightest thing in the scene.
        shadow_share: probability that part of the scene is in shadow: the main light is blocked there and a
            second light (skylight, 60%, or another spectrum) lights it at ``shadow_level`` of the main light.
        shadow_level: (min, max) brightness of the shadow light relative to the main light.
        illumination_range: maximum log-amplitude of a smooth random illumination field (light fall-off,
            shading of curved surfaces), for a real scene's dynamic range; 0 for none.
    """

    def __init__(
        self,
        surfaces: tuple[int, int] = (3, 10),
        neutral_share: float = 0.25,
        neutral_lightness: tuple[float, float] = (0.1, 0.8),
        neutral_tint: float = 0.03,
        theme_strength: tuple[float, float] = (0.15, 0.75),
        theme_share: float = 0.25,
        jitter: float = 0.03,
        measured_share: float = 0.4,
        specular_share: float = 0.7,
        two_light_share: float = 0.2,
        light_kinds: tuple[float, float, float] = (0.4, 0.3, 0.3),
        daylight_cct: tuple[float, float] = (4000.0, 15000.0),
        planck_cct: tuple[float, float] = (2000.0, 7000.0),
        tint_share: float = 0.3,
        tint_strength: float = 0.25,
        mixed_share: float = 0.15,
        exposure_range: tuple[float, float] = (0.25, 0.85),
        shot_range: tuple[float, float] = (1e-4, 6e-3),
        keep_clipped_share: float = 0.5,
        masked_share: float = 0.3,
        supersample: int = 1,
        chroma_power: float = 1.0,
        bounded_chroma: bool = False,
        bright_neutral_share: float = 0.0,
        shadow_share: float = 0.0,
        shadow_level: tuple[float, float] = (0.15, 0.5),
        illumination_range: float = 0.0,
    ) -> None:
        self.surfaces = surfaces
        self.neutral_share = neutral_share
        self.neutral_lightness = neutral_lightness
        self.neutral_tint = neutral_tint
        self.theme_strength = theme_strength
        self.theme_share = theme_share
        self.jitter = jitter
        self.measured_share = measured_share
        self.specular_share = specular_share
        self.two_light_share = two_light_share
        self.light_kinds = light_kinds
        self.daylight_cct = daylight_cct
        self.planck_cct = planck_cct
        self.tint_share = tint_share
        self.tint_strength = tint_strength
        self.mixed_share = mixed_share
        self.exposure_range = exposure_range
        self.shot_range = shot_range
        self.keep_clipped_share = keep_clipped_share
        self.masked_share = masked_share
        if supersample < 1:
            raise ValueError(f"MondrianConfig: supersample must be >= 1, got {supersample}.")
        self.supersample = int(supersample)
        self.chroma_power = chroma_power
        self.bounded_chroma = bounded_chroma
        self.bright_neutral_share = bright_neutral_share
        self.shadow_share = shadow_share
        self.shadow_level = shadow_level
        self.illumination_range = illumination_range


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def _chroma_direction(g: torch.Generator, n: int) -> Tensor:
    angle = _uniform(g, 0.0, 2 * math.pi, n)
    return torch.stack([angle.cos(), angle.sin()], dim=-1) @ _CHROMA_BASIS  # (n, 3), unit, perpendicular to grey


def _reflectance_rgb(lightness: Tensor, chroma: Tensor, direction: Tensor) -> Tensor:
    """Linear RGB reflectance of a given mean level, chroma and hue direction, kept in ``[0.01, 0.95]``."""
    rgb = lightness[:, None] * (1.0 + chroma[:, None] * direction * math.sqrt(3.0))
    return rgb.clamp(0.01, 0.95)


def _smooth_field(g: torch.Generator, size: int, cells: int) -> Tensor:
    """A smooth random field ``(size, size)`` with zero mean and unit-ish amplitude."""
    coarse = torch.randn(1, 1, cells, cells, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0]


def _smooth_spectral_factor(g: torch.Generator, n: int, strength: float) -> Tensor:
    """``(n, L)`` positive smooth factors ``exp(strength * random low-frequency curve)``."""
    t = torch.linspace(0.0, math.pi, _L, dtype=torch.float64)
    basis = torch.stack([torch.cos(k * t) for k in range(1, 4)])  # (3, L)
    return torch.exp(strength * torch.randn(n, 3, generator=g, dtype=torch.float64) @ basis)


def sample_light_spectra(g: torch.Generator, n: int, config: MondrianConfig) -> Tensor:
    """``(n, L)`` light spectra (peak 1): daylight, black body or a tabulated lamp, maybe tinted or mixed.

    The light model of the synthetic scenes (the module docstring), shared with the relit photos of
    :mod:`moto_vision.data.awb.photo_scenes`; ``config`` gives the shares and ranges (``light_kinds``,
    ``daylight_cct``, ``planck_cct``, ``mixed_share``, ``tint_share``, ``tint_strength``).
    """
    data = spectral_data()
    lamps = data["lights"]
    spectra = []
    for _ in range(n):
        parts = []
        for _ in range(2 if float(torch.rand(1, generator=g)) < config.mixed_share else 1):
            kind = int(torch.multinomial(torch.tensor(config.light_kinds), 1, generator=g))
            u = float(torch.rand(1, generator=g))
            if kind == 0:  # uniform in mired, as perceived colour differences are
                lo, hi = 1e6 / config.daylight_cct[1], 1e6 / config.daylight_cct[0]
                parts.append(daylight_spd(1e6 / (lo + (hi - lo) * u)))
            elif kind == 1:
                lo, hi = 1e6 / config.planck_cct[1], 1e6 / config.planck_cct[0]
                parts.append(planck_spd(1e6 / (lo + (hi - lo) * u)))
            else:
                parts.append(lamps[int(u * len(lamps))])
        spd = parts[0]
        if len(parts) == 2:  # e.g. daylight through a window on a tungsten-lit room
            share = 0.5 * float(torch.rand(1, generator=g))
            spd = (1 - share) * parts[0] + share * parts[1]
        if float(torch.rand(1, generator=g)) < config.tint_share:
            spd = spd * _smooth_spectral_factor(g, 1, config.tint_strength)[0]
        spectra.append(spd / spd.max())
    return torch.stack(spectra)


def _surface_spectra(
    g: torch.Generator, n: int, rgb: Tensor, neutral: Tensor, theme_index: Tensor, config: MondrianConfig
) -> Tensor:
    """``(n, L)`` reflectance spectra in ``[0, 1]``: measured spectra or upsampled ``rgb``, neutral ones kept flat."""
    data = spectral_data()
    measured = data["reflectances"]
    upsampled = rgb.double() @ data["mallett_basis"].T  # (n, L): the Mallett basis sums to 1 at every wavelength
    pick = measured[torch.randint(len(measured), (n,), generator=g)]
    # A measured spectrum at the drawn lightness: scale it so its mean matches, never above 1.
    level = rgb.double().mean(dim=1, keepdim=True)
    pick = (pick * level / pick.mean(dim=1, keepdim=True).clamp_min(1e-3)).clamp(0.0, 1.0)
    use_measured = (torch.rand(n, generator=g) < config.measured_share) & ~neutral
    spectra = torch.where(use_measured[:, None], pick, upsampled)
    # Theme: surfaces that lean to the theme mix their spectrum with the background's.
    leans = theme_index[:, None].double()
    spectra = (1 - 0.5 * leans) * spectra + 0.5 * leans * spectra[0:1]
    # Real greys are not perfectly flat: a few percent of smooth spectral variation.
    flat = level * _smooth_spectral_factor(g, n, config.neutral_tint)
    spectra = torch.where(neutral[:, None], flat, spectra)
    return spectra.clamp(0.0, 1.0)


def _scene_parameters(
    g: torch.Generator,
    size: int,
    config: MondrianConfig,
    max_surfaces: int,
    cameras: CameraPool,
    variation: CameraVariation,
    out_size: int | None = None,
) -> dict[str, Tensor]:
    """Sample everything random about one scene (CPU, per-scene generator).

    The scene is rendered at ``size`` and output at ``out_size`` (default ``size``; the noise is drawn there).
    """
    out_size = out_size or size
    k = int(torch.randint(config.surfaces[0], config.surfaces[1] + 1, (1,), generator=g))
    n = max_surfaces + 1  # slot 0 is the background; unused slots get empty rectangles
    theme = _chroma_direction(g, 1)[0]
    direction = _chroma_direction(g, n)
    leans = torch.rand(n, generator=g) < config.theme_share
    direction = torch.where(leans[:, None], F.normalize(direction + 1.5 * theme, dim=-1), direction)
    direction[0] = theme
    chroma = 0.05 + 0.55 * torch.rand(n, generator=g) ** config.chroma_power
    chroma[0] = _uniform(g, *config.theme_strength, 1)[0]
    neutral = torch.rand(n, generator=g) < config.neutral_share
    neutral[0] = False
    chroma = torch.where(neutral, _uniform(g, 0.0, 0.03, n), chroma)
    lightness = torch.exp(_uniform(g, math.log(0.06), math.log(0.8), n))
    lightness = torch.where(neutral, _uniform(g, *config.neutral_lightness, n), lightness)
    if config.bright_neutral_share > 0:
        bright = neutral & (torch.rand(n, generator=g) < config.bright_neutral_share)
        lightness = torch.where(bright, _uniform(g, 0.6, 0.9, n), lightness)
    if config.bounded_chroma:  # a bright surface reflects most of every wavelength: it cannot be very colourful
        chroma = chroma * (2.0 * (1.0 - lightness)).clamp(0.0, 1.0)
    rgb = _reflectance_rgb(lightness, chroma, direction)
    leans[0] = False
    reflectance = _surface_spectra(g, n, rgb, neutral, leans & ~neutral, config)

    # Rectangles in pixel coordinates: [top, bottom, left, right]; the background covers everything.
    h = _uniform(g, 0.15, 0.6, n) * size
    w = _uniform(g, 0.15, 0.6, n) * size
    top = _uniform(g, -0.1, 1.0, n) * size - h / 2
    left = _uniform(g, -0.1, 1.0, n) * size - w / 2
    boxes = torch.stack([top, top + h, left, left + w], dim=-1)
    boxes[0] = torch.tensor([-1.0, size + 1.0, -1.0, size + 1.0])
    boxes[k + 1 :] = 0.0

    texture_amp = _uniform(g, 0.0, 0.35, n)
    texture = _smooth_field(g, size, 6) + 0.5 * _smooth_field(g, size, 16)
    jitter = config.jitter * _smooth_field(g, size, 24).expand(3, size, size) * torch.randn(3, 1, 1, generator=g)

    # Shading: a linear fall-off across the frame.
    angle = float(_uniform(g, 0.0, 2 * math.pi, 1)[0])
    strength = float(_uniform(g, 0.0, 0.8, 1)[0])
    ys, xs = torch.meshgrid(torch.linspace(-0.5, 0.5, size), torch.linspace(-0.5, 0.5, size), indexing="ij")
    ramp = math.cos(angle) * xs + math.sin(angle) * ys
    shading = (1.0 + strength * ramp).clamp_min(0.2)

    # Specular glints: Gaussian blobs coloured by the light.
    specular = torch.zeros(size, size)
    if float(torch.rand(1, generator=g)) < config.specular_share:
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            cy, cx = (_uniform(g, 0.05, 0.95, 2) * size).tolist()
            sigma = float(_uniform(g, 0.8, 3.5, 1)[0]) * size / 64
            amp = float(torch.exp(_uniform(g, math.log(0.15), math.log(2.0), 1))[0])
            yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
            specular += amp * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))

    spd = sample_light_spectra(g, 2, config)
    two_lights = float(torch.rand(1, generator=g)) < config.two_light_share
    # The second light covers a soft half-plane that stays a minority of the frame.
    angle2 = float(_uniform(g, 0.0, 2 * math.pi, 1)[0])
    offset = float(_uniform(g, 0.1, 0.4, 1)[0])
    proj = math.cos(angle2) * xs + math.sin(angle2) * ys
    weight2 = torch.sigmoid((proj - offset) / 0.05) * float(_uniform(g, 0.3, 0.8, 1)[0]) if two_lights else None
    # Shadow: the main light is blocked over soft blobs, lit there by a dimmer second light (skylight outdoors).
    intensity = torch.ones(size, size)
    direct = torch.ones(size, size)
    if config.shadow_share > 0 and float(torch.rand(1, generator=g)) < config.shadow_share:
        shadow = torch.sigmoid((_smooth_field(g, size, 4) - float(_uniform(g, -0.3, 0.8, 1)[0])) / 0.1)
        level = float(_uniform(g, *config.shadow_level, 1)[0])
        if float(torch.rand(1, generator=g)) < 0.6:  # blue skylight, 9000-25000 K
            sky = 1e6 / float(_uniform(g, 1e6 / 25000.0, 1e6 / 9000.0, 1)[0])
            spd = torch.stack([spd[0], daylight_spd(sky) / daylight_spd(sky).max()])
        weight2, direct = shadow, 1.0 - shadow
        intensity = direct + shadow * level
    if config.illumination_range > 0:
        amplitude = float(_uniform(g, 0.0, config.illumination_range, 1)[0])
        intensity = intensity * torch.exp(amplitude * _smooth_field(g, size, 3))

    sensitivity, _ = cameras.sample(1, g, **variation.as_kwargs())
    shot, read = random_noise_levels(1, shot_range=config.shot_range, generator=g)
    mask = torch.ones(size, size, dtype=torch.bool)
    if float(torch.rand(1, generator=g)) < config.masked_share:
        mh, mw = (_uniform(g, 0.15, 0.4, 2) * size).tolist()
        my, mx = (_uniform(g, 0.0, 1.0, 2) * torch.tensor([size - mh, size - mw])).tolist()
        mask[int(my) : int(my + mh), int(mx) : int(mx + mw)] = False
    return {
        "reflectance": reflectance,
        "boxes": boxes,
        "texture": texture_amp[:, None, None] * texture,  # (n, H, W) per-surface texture
        "jitter": jitter,
        "shading": shading,
        "specular": specular,
        "spd": spd,
        "weight2": weight2 if weight2 is not None else torch.zeros(size, size),
        "sensitivity": sensitivity[0],
        "exposure": _uniform(g, *config.exposure_range, 1),
        "shot": shot,
        "read": read,
        "noise": torch.randn(3, out_size, out_size, generator=g),
        "intensity": intensity,
        "direct": direct,
        "keep_clipped": torch.rand(1, generator=g) < config.keep_clipped_share,
        "mask": mask,
    }


def render_mondrians(
    generators: list[torch.Generator],
    size: int,
    config: MondrianConfig | None = None,
    cameras: CameraPool | None = None,
    variation: CameraVariation | None = None,
) -> dict[str, Tensor]:
    """Render one scene per generator.

    Args:
        generators: one seeded CPU generator per scene (the scene is a function of its generator only).
        size: image height and width in pixels.
        config: scene statistics.
        cameras: the cameras scenes are drawn through (default: :meth:`CameraPool.default`).
        variation: how cameras vary around the pool (default: :class:`CameraVariation` ``()``, the training
            variation; ``CameraVariation.none()`` for pool cameras as they are).

    Returns:
        ``{"image": (B, 3, size, size) linear raw in [0, 1], "illuminant": (B, 3) unit-norm camera RGB of the main
        light, "valid": (B, size, size) bool, "camera": (B, 3, 3) the camera's least-squares XYZ -> raw matrix}``.
    """
    config = config or MondrianConfig()
    cameras = cameras or CameraPool.default()
    variation = variation or CameraVariation()
    max_surfaces = config.surfaces[1]
    out_size, size = size, size * config.supersample
    scenes = [_scene_parameters(g, size, config, max_surfaces, cameras, variation, out_size) for g in generators]
    batch = {key: torch.stack([s[key] for s in scenes]) for key in scenes[0]}
    b = len(scenes)

    # Painter's algorithm, vectorised: the topmost rectangle covering a pixel names its surface.
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    boxes = batch["boxes"]  # (B, n, 4)
    inside_y = (coords[None, None, :] >= boxes[..., 0:1]) & (coords[None, None, :] < boxes[..., 1:2])
    inside_x = (coords[None, None, :] >= boxes[..., 2:3]) & (coords[None, None, :] < boxes[..., 3:4])
    cover = inside_y[..., :, None] & inside_x[..., None, :]  # (B, n, H, W)
    order = torch.arange(cover.shape[1]).view(1, -1, 1, 1)
    label = torch.where(cover, order, torch.zeros_like(order)).amax(dim=1)  # (B, H, W)

    # Spectral image formation, per surface (cheap): raw colour of each surface under each light through the
    # scene's camera, each light's white scaled to unit norm so that the two lights are equally bright.
    sens, spd, refl = batch["sensitivity"], batch["spd"], batch["reflectance"]  # (B, L, 3), (B, 2, L), (B, n, L)
    white = torch.einsum("bkl,blc->bkc", spd, sens)  # (B, 2, 3): the lights in camera space
    white_norm = white.norm(dim=-1, keepdim=True)
    lights = (white / white_norm).float()
    colours = (torch.einsum("bnl,bkl,blc->bknc", refl, spd, sens) / white_norm[:, :, None]).float()  # (B, 2, n, 3)
    # Texture darkens or brightens a surface; a reflectance cannot exceed 1.
    peak = refl.amax(dim=-1).float().clamp_min(1e-3)  # (B, n)
    factor = torch.minimum(torch.exp(batch["texture"]), 1.0 / peak[:, :, None, None])  # (B, n, H, W)
    factor = torch.gather(factor, 1, label[:, None]).squeeze(1)  # (B, H, W)

    def paint(light: int) -> Tensor:
        per_pixel = torch.gather(colours[:, light], 1, label.flatten(1)[..., None].expand(-1, -1, 3))
        return per_pixel.transpose(1, 2).reshape(b, 3, size, size)

    weight2 = batch["weight2"][:, None]
    albedo_light = (1 - weight2) * paint(0) + weight2 * paint(1)
    light_map = (1 - weight2) * lights[:, 0, :, None, None] + weight2 * lights[:, 1, :, None, None]
    norm = light_map.norm(dim=1, keepdim=True)
    diffuse = albedo_light / norm * factor[:, None] * (1.0 + batch["jitter"]) * batch["shading"][:, None]
    diffuse = diffuse * batch["intensity"][:, None]
    light_map = light_map / norm

    level = torch.quantile(diffuse.amax(dim=1).flatten(1), 0.98, dim=1).clamp_min(1e-6)
    scale = (batch["exposure"][:, 0] / level)[:, None, None, None]
    # Glints reflect the light itself (interface reflection), on top of the diffuse level of the scene; there is no
    # glint of the main light in its shadow.
    glints = batch["specular"][:, None] * batch["direct"][:, None] * light_map * level[:, None, None, None]
    raw = scale * (diffuse + glints)
    variance = batch["read"].view(b, 1, 1, 1) + batch["shot"].view(b, 1, 1, 1) * raw.clamp_min(0)
    if config.supersample == 1:
        raw = raw + variance.sqrt() * batch["noise"]
    clipped = (raw >= 1.0).any(dim=1)
    valid = batch["mask"] & (batch["keep_clipped"].view(b, 1, 1) | ~clipped)
    image = raw.clamp(0.0, 1.0) * valid[:, None]
    if config.supersample > 1:
        # Area-average the valid sub-pixels (clipping happened per sub-pixel, as on the sensor); the noise of the
        # small image is the sensor's at its own pixel size.
        k = config.supersample
        share = F.avg_pool2d(valid[:, None].float(), k)
        image = F.avg_pool2d(image, k) / share.clamp_min(1e-6)
        valid = share[:, 0] >= 0.5
        variance = batch["read"].view(b, 1, 1, 1) + batch["shot"].view(b, 1, 1, 1) * image
        image = (image + variance.sqrt() * batch["noise"]).clamp(0.0, 1.0) * valid[:, None]
    return {
        "image": image,
        "illuminant": lights[:, 0],
        "valid": valid,
        "camera": fit_xyz_to_raw(sens).float(),
    }


class SyntheticAWBDataset(Dataset):
    """``length`` reproducible Mondrian scenes rendered on demand (see the module docstring).

    Args:
        length: number of scenes.
        image_size: height and width of the images.
        seed: scene ``i`` is rendered from ``seed`` and ``i`` only.
        config: scene statistics.
        cameras: the cameras to render through (default: every pool camera).
        variation: camera variation around the pool (default: the training variation; pass
            ``CameraVariation.none()`` for evaluation on the pool cameras themselves).
    """

    def __init__(
        self,
        length: int,
        image_size: int = 64,
        seed: int = 0,
        config: MondrianConfig | None = None,
        cameras: CameraPool | None = None,
        variation: CameraVariation | None = None,
    ) -> None:
        self.length = length
        self.image_size = image_size
        self.seed = seed
        self.config = config or MondrianConfig()
        self.cameras = cameras or CameraPool.default()
        self.variation = variation or CameraVariation()
        self._store: dict[str, Tensor] | None = None

    def __len__(self) -> int:
        return self.length

    def _render(self, indices: list[int]) -> dict[str, Tensor]:
        # One thread: reductions then sum in one fixed order, so a scene is bit-identical whatever the machine's
        # thread count (two runs of a recipe with one seed must see the same data; the ops are tiny anyway).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return render_mondrians(
                [self._generator(i) for i in indices], self.image_size, self.config, self.cameras, self.variation
            )
        finally:
            torch.set_num_threads(threads)

    def preload(self, chunk: int = 256, description: str = "Rendering synthetic scenes") -> None:
        """Render every scene once and keep them in memory (images as float16, ~24 KB each at 64 px).

        Training visits each scene many times; rendering costs a few milliseconds per scene, which on a laptop
        CPU would rival the training step itself.
        """
        if self._store is not None:
            return
        parts: dict[str, list[Tensor]] = {"image": [], "illuminant": [], "valid": [], "camera": []}
        from tqdm import tqdm

        starts = range(0, self.length, chunk)
        for start in tqdm(starts, desc=description, unit="chunk", leave=False, disable=len(starts) < 4):
            out = self._render(list(range(start, min(self.length, start + chunk))))
            for key in parts:
                parts[key].append(out[key].half() if key == "image" else out[key])
        self._store = {key: torch.cat(values) for key, values in parts.items()}

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + index)

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Render a list of scenes in one vectorised pass (used by the DataLoader for whole batches)."""
        for index in indices:
            if not 0 <= index < self.length:
                raise IndexError(f"scene {index} is outside 0..{self.length - 1}")
        if self._store is not None:
            rows = torch.as_tensor(indices)
            out = {key: value[rows] for key, value in self._store.items()}
            out["image"] = out["image"].float()
        else:
            out = self._render(list(indices))
        return [{key: value[j] for key, value in out.items()} for j in range(len(indices))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

"""Synthetic colour-constancy scenes: textured Mondrians under Planckian light, seen by one camera.

Land's Mondrian stimuli, made hard enough that Gray World fails as it does on real photos:

- **Surfaces.** A background and 3-10 overlapping rectangles. Each scene has a dominant *theme* colour
  (foliage, sky, wood, a painted wall...) that the background and a quarter of the surfaces lean to, so the
  scene average is usually not grey. A quarter of the surfaces are near-neutral (white walls, paper,
  concrete, asphalt), of any lightness.
  Reflectances are the surfaces' white-balanced linear sRGB colours, kept inside ``[0.01, 0.95]``.
- **Texture and shading.** Smooth multiplicative texture per surface, fine chroma jitter, and a global
  shading gradient (light fall-off), all achromatic except the jitter.
- **Specular highlights.** In 70% of the scenes, a few Gaussian glints whose colour is the illuminant's
  (dichromatic model), some strong enough to clip.
- **Light.** A Planckian illuminant with Duv tint (``isp.sample_illuminant``: 2500-10000 K, Duv -0.006..0.012);
  in a share of the scenes a second light of another colour covers a minority of the frame. The ground truth
  is the main light.
- **Camera.** One fixed camera (an XYZ -> raw matrix mixed from real cameras' DNG matrices, as the ISP does):
  raw = white-balanced camera RGB of the reflectance times the light's camera RGB (von Kries in camera
  space, the model ``isp.unprocess`` uses), an exposure that puts the brightest diffuse surfaces at 25-85% of
  the range, Poisson-Gaussian sensor noise (``isp.random_noise_levels``), and clipping at 1. Clipped pixels are
  zeroed and marked invalid, as the raw benchmark readers do with saturated pixels.

Scene ``i`` of a dataset with seed ``s`` is always the same image (per-sample generators), whether it is
rendered alone or in a batch; batches render vectorised through ``__getitems__``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from moto_vision.isp import (
    camera_rgb_matrix,
    planckian_xyz,
    random_noise_levels,
    random_xyz_to_camera,
    sample_illuminant,
)

__all__ = ["MondrianConfig", "SyntheticAWBDataset", "render_mondrians", "synthetic_camera"]

_GREY = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3.0)
# An orthonormal basis of the chroma plane (perpendicular to grey).
_CHROMA_BASIS = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]) / torch.tensor([[math.sqrt(2.0)], [math.sqrt(6.0)]])


class MondrianConfig:
    """Scene statistics of :func:`render_mondrians` (defaults are those of the ``awb.yaml`` recipe).

    Args:
        surfaces: (min, max) number of rectangles on top of the background.
        neutral_share: probability that a surface is near-neutral.
        neutral_lightness: (min, max) mean reflectance of the near-neutral surfaces (white walls and paper are
            bright, asphalt and concrete are not).
        theme_strength: (min, max) chroma of the scene's dominant colour on the background.
        theme_share: probability that a foreground surface leans to the theme colour.
        specular_share: probability that a scene has specular highlights.
        two_light_share: probability of a second light on part of the scene.
        cct_range: colour temperatures of the lights (kelvin).
        tint_range: Duv range of the lights.
        exposure_range: (min, max) level of the brightest diffuse surfaces.
        shot_range: range of the shot-noise factor (``isp.random_noise_levels``).
    """

    def __init__(
        self,
        surfaces: tuple[int, int] = (3, 10),
        neutral_share: float = 0.25,
        neutral_lightness: tuple[float, float] = (0.1, 0.8),
        theme_strength: tuple[float, float] = (0.15, 0.75),
        theme_share: float = 0.25,
        specular_share: float = 0.7,
        two_light_share: float = 0.2,
        cct_range: tuple[float, float] = (2500.0, 10000.0),
        tint_range: tuple[float, float] = (-0.006, 0.012),
        exposure_range: tuple[float, float] = (0.25, 0.85),
        shot_range: tuple[float, float] = (1e-4, 6e-3),
    ) -> None:
        self.surfaces = surfaces
        self.neutral_share = neutral_share
        self.neutral_lightness = neutral_lightness
        self.theme_strength = theme_strength
        self.theme_share = theme_share
        self.specular_share = specular_share
        self.two_light_share = two_light_share
        self.cct_range = cct_range
        self.tint_range = tint_range
        self.exposure_range = exposure_range
        self.shot_range = shot_range


def synthetic_camera(seed: int = 0) -> tuple[Tensor, Tensor]:
    """The synthetic dataset's camera: ``(xyz_to_raw, srgb_to_white_balanced_camera)``, both ``(3, 3)`` float64."""
    xyz2cam = random_xyz_to_camera(1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)[0]
    return xyz2cam, camera_rgb_matrix(xyz2cam)


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def _chroma_direction(g: torch.Generator, n: int) -> Tensor:
    angle = _uniform(g, 0.0, 2 * math.pi, n)
    return torch.stack([angle.cos(), angle.sin()], dim=-1) @ _CHROMA_BASIS  # (n, 3), unit, perpendicular to grey


def _reflectance(lightness: Tensor, chroma: Tensor, direction: Tensor) -> Tensor:
    """Linear RGB reflectance of a given mean level, chroma and hue direction, kept in ``[0.01, 0.95]``."""
    rgb = lightness[:, None] * (1.0 + chroma[:, None] * direction * math.sqrt(3.0))
    return rgb.clamp(0.01, 0.95)


def _smooth_field(g: torch.Generator, size: int, cells: int) -> Tensor:
    """A smooth random field ``(size, size)`` with zero mean and unit-ish amplitude."""
    coarse = torch.randn(1, 1, cells, cells, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0]


def _scene_parameters(g: torch.Generator, size: int, config: MondrianConfig, max_surfaces: int) -> dict[str, Tensor]:
    """Sample everything random about one scene (CPU, per-scene generator)."""
    k = int(torch.randint(config.surfaces[0], config.surfaces[1] + 1, (1,), generator=g))
    n = max_surfaces + 1  # slot 0 is the background; unused slots get empty rectangles
    theme = _chroma_direction(g, 1)[0]
    direction = _chroma_direction(g, n)
    leans = torch.rand(n, generator=g) < config.theme_share
    direction = torch.where(leans[:, None], F.normalize(direction + 1.5 * theme, dim=-1), direction)
    direction[0] = theme
    chroma = _uniform(g, 0.05, 0.6, n)
    chroma[0] = _uniform(g, *config.theme_strength, 1)[0]
    neutral = torch.rand(n, generator=g) < config.neutral_share
    neutral[0] = False
    chroma = torch.where(neutral, _uniform(g, 0.0, 0.03, n), chroma)
    lightness = torch.exp(_uniform(g, math.log(0.06), math.log(0.8), n))
    lightness = torch.where(neutral, _uniform(g, *config.neutral_lightness, n), lightness)
    reflectance = _reflectance(lightness, chroma, direction)

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
    jitter = 0.03 * _smooth_field(g, size, 24).expand(3, size, size) * torch.randn(3, 1, 1, generator=g)

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

    cct, tint = sample_illuminant(2, cct_range=config.cct_range, tint_range=config.tint_range, generator=g)
    two_lights = float(torch.rand(1, generator=g)) < config.two_light_share
    # The second light covers a soft half-plane that stays a minority of the frame.
    angle2 = float(_uniform(g, 0.0, 2 * math.pi, 1)[0])
    offset = float(_uniform(g, 0.1, 0.4, 1)[0])
    proj = math.cos(angle2) * xs + math.sin(angle2) * ys
    weight2 = torch.sigmoid((proj - offset) / 0.05) * float(_uniform(g, 0.3, 0.8, 1)[0]) if two_lights else None

    shot, read = random_noise_levels(1, shot_range=config.shot_range, generator=g)
    return {
        "reflectance": reflectance,
        "boxes": boxes,
        "texture": texture_amp[:, None, None] * texture,  # (n, H, W) per-surface texture
        "jitter": jitter,
        "shading": shading,
        "specular": specular,
        "cct": cct,
        "tint": tint,
        "weight2": weight2 if weight2 is not None else torch.zeros(size, size),
        "exposure": _uniform(g, *config.exposure_range, 1),
        "shot": shot,
        "read": read,
        "noise": torch.randn(3, size, size, generator=g),
    }


def render_mondrians(
    generators: list[torch.Generator],
    size: int,
    config: MondrianConfig | None = None,
    camera_seed: int = 0,
) -> dict[str, Tensor]:
    """Render one scene per generator.

    Args:
        generators: one seeded CPU generator per scene (the scene is a function of its generator only).
        size: image height and width in pixels.
        config: scene statistics.
        camera_seed: which fixed camera renders the scenes (see :func:`synthetic_camera`).

    Returns:
        ``{"image": (B, 3, size, size) linear raw in [0, 1], "illuminant": (B, 3) unit-norm camera RGB of the main
        light, "valid": (B, size, size) bool}``.
    """
    config = config or MondrianConfig()
    max_surfaces = config.surfaces[1]
    scenes = [_scene_parameters(g, size, config, max_surfaces) for g in generators]
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

    reflectance = torch.gather(batch["reflectance"], 1, label.flatten(1)[..., None].expand(-1, -1, 3))
    reflectance = reflectance.transpose(1, 2).reshape(b, 3, size, size)
    texture = torch.gather(batch["texture"], 1, label[:, None]).squeeze(1)  # (B, H, W)
    albedo = (reflectance * torch.exp(texture)[:, None] * (1.0 + batch["jitter"])).clamp(0.0, 1.0)

    xyz2cam, rgb2cam = synthetic_camera(camera_seed)
    white_balanced = torch.einsum("ij,bjhw->bihw", rgb2cam.float(), albedo)
    lights = torch.einsum("ij,bkj->bki", xyz2cam, planckian_xyz(batch["cct"].double(), batch["tint"].double()))
    lights = F.normalize(lights.clamp_min(1e-4), dim=-1).float()  # (B, 2, 3): main and second light
    weight2 = batch["weight2"][:, None]
    light_map = (1 - weight2) * lights[:, 0, :, None, None] + weight2 * lights[:, 1, :, None, None]
    light_map = light_map * torch.rsqrt(light_map.square().sum(dim=1, keepdim=True))

    diffuse = white_balanced * batch["shading"][:, None] * light_map
    level = torch.quantile(diffuse.amax(dim=1).flatten(1), 0.98, dim=1).clamp_min(1e-6)
    scale = (batch["exposure"][:, 0] / level)[:, None, None, None]
    # Glints reflect the light itself (interface reflection), on top of the diffuse level of the scene.
    raw = scale * (diffuse + batch["specular"][:, None] * light_map * level[:, None, None, None])
    variance = batch["read"].view(b, 1, 1, 1) + batch["shot"].view(b, 1, 1, 1) * raw.clamp_min(0)
    raw = raw + variance.sqrt() * batch["noise"]
    valid = (raw < 1.0).all(dim=1)
    image = raw.clamp(0.0, 1.0) * valid[:, None]
    return {"image": image, "illuminant": lights[:, 0], "valid": valid}


class SyntheticAWBDataset(Dataset):
    """``length`` reproducible Mondrian scenes rendered on demand (see the module docstring).

    Args:
        length: number of scenes.
        image_size: height and width of the images.
        seed: scene ``i`` is rendered from ``seed`` and ``i`` only.
        config: scene statistics.
        camera_seed: which fixed camera renders the scenes.
    """

    def __init__(
        self,
        length: int,
        image_size: int = 64,
        seed: int = 0,
        config: MondrianConfig | None = None,
        camera_seed: int = 0,
    ) -> None:
        self.length = length
        self.image_size = image_size
        self.seed = seed
        self.config = config or MondrianConfig()
        self.camera_seed = camera_seed
        self._store: dict[str, Tensor] | None = None

    def __len__(self) -> int:
        return self.length

    def preload(self, chunk: int = 256, description: str = "Rendering synthetic scenes") -> None:
        """Render every scene once and keep them in memory (images as float16, ~24 KB each at 64 px).

        Training visits each scene many times; rendering costs a few milliseconds per scene, which on a laptop
        CPU would rival the training step itself.
        """
        if self._store is not None:
            return
        parts: dict[str, list[Tensor]] = {"image": [], "illuminant": [], "valid": []}
        from tqdm import tqdm

        starts = range(0, self.length, chunk)
        for start in tqdm(starts, desc=description, unit="chunk", leave=False, disable=len(starts) < 4):
            indices = list(range(start, min(self.length, start + chunk)))
            out = render_mondrians(
                [self._generator(i) for i in indices], self.image_size, self.config, camera_seed=self.camera_seed
            )
            parts["image"].append(out["image"].half())
            parts["illuminant"].append(out["illuminant"])
            parts["valid"].append(out["valid"])
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
            image = self._store["image"][rows].float()
            illuminant, valid = self._store["illuminant"][rows], self._store["valid"][rows]
            return [{"image": image[j], "illuminant": illuminant[j], "valid": valid[j]} for j in range(len(indices))]
        out = render_mondrians(
            [self._generator(i) for i in indices], self.image_size, self.config, camera_seed=self.camera_seed
        )
        return [{key: value[j] for key, value in out.items()} for j in range(len(indices))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

"""Procedural portraits: the embedded default data of the portrait and face-parsing recipes.

Each sample is drawn from its own seed, so a dataset of ``n`` samples is identical on every machine and
every run: a head-and-shoulders figure (face ellipse with eyes, brows, nose, lips and ears; hair with an
irregular outline and flyaway strands; neck; clothing with a pattern) composited on a textured background
with distractor blobs in skin and hair colours, under a random illuminant colour, exposure and light
direction, with sensor-like noise. Every pixel carries a part label (:data:`PART_NAMES`); the binary person
mask is "any part but background".

Geometry is evaluated on the pixel grid as implicit shapes (ellipses, polar outlines), all in torch, so
one 256x256 sample renders in a few milliseconds and can be generated on the fly by the dataset.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["PART_NAMES", "Framing", "render_portrait"]

#: Part labels of synthetic portraits, CelebAMask-HQ's names for the same parts ("l_" = image left).
PART_NAMES: tuple[str, ...] = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "nose",
    "u_lip",
    "mouth",
    "l_lip",
    "hair",
    "neck",
    "cloth",
)
_ID = {name: i for i, name in enumerate(PART_NAMES)}

Framing = Literal["half_body", "face"]

_HAIR_COLOURS = torch.tensor(
    [
        [0.06, 0.05, 0.05],  # black
        [0.20, 0.12, 0.07],  # dark brown
        [0.42, 0.27, 0.14],  # brown
        [0.82, 0.66, 0.40],  # blonde
        [0.55, 0.22, 0.08],  # red
        [0.62, 0.62, 0.62],  # grey
    ]
)
_SKIN_LIGHT = torch.tensor([0.96, 0.80, 0.70])
_SKIN_DARK = torch.tensor([0.30, 0.19, 0.13])


class _Random:
    """Scalar draws from one ``torch.Generator`` (reproducible on every platform)."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(int(seed))

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.g))

    def chance(self, p: float) -> bool:
        return float(torch.rand((), generator=self.g)) < p

    def integer(self, lo: int, hi: int) -> int:
        """Uniform integer in ``[lo, hi]``."""
        return int(torch.randint(lo, hi + 1, (), generator=self.g))

    def colour(self, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(3, generator=self.g)

    def field(self, size: int, cells: int, channels: int = 1) -> torch.Tensor:
        """Smooth noise in ``[0, 1]``: a ``cells`` x ``cells`` random grid upsampled bilinearly."""
        grid = torch.rand(1, channels, cells, cells, generator=self.g)
        # Bilinear, not bicubic: several times cheaper on CPU and smooth enough for shading and textures.
        return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)[0]

    def noise(self, size: int, channels: int = 1) -> torch.Tensor:
        return torch.randn(channels, size, size, generator=self.g)


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(u, v)`` in ``[-1, 1]``, u to the right and v downwards."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    return u, v


def _ellipse(u: torch.Tensor, v: torch.Tensor, cu: float, cv: float, ru: float, rv: float) -> torch.Tensor:
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def _pattern(rng: _Random, u: torch.Tensor, v: torch.Tensor, size: int) -> torch.Tensor:
    """A clothing or wall texture: plain, stripes, checks or blotches, as a (3, H, W) colour image."""
    a, b = rng.colour(0.05, 0.95), rng.colour(0.05, 0.95)
    kind = rng.integer(0, 3)
    if kind == 0:
        t = rng.field(size, 3)
    elif kind == 1:
        angle, freq = rng.uniform(0, math.pi), rng.uniform(8, 40)
        t = (torch.sin(freq * (u * math.cos(angle) + v * math.sin(angle))) > 0).float()[None]
    elif kind == 2:
        freq = rng.uniform(6, 24)
        t = ((torch.sin(freq * u) > 0) ^ (torch.sin(freq * v) > 0)).float()[None]
    else:
        t = (rng.field(size, rng.integer(6, 14)) > 0.5).float()
    return a[:, None, None] * (1 - t) + b[:, None, None] * t


def _background(rng: _Random, u: torch.Tensor, v: torch.Tensor, size: int, skin: torch.Tensor) -> torch.Tensor:
    base = rng.field(size, rng.integer(2, 5), 3) * rng.uniform(0.4, 1.0) + rng.colour(0.0, 0.5)[:, None, None]
    if rng.chance(0.5):
        base = 0.5 * base + 0.5 * _pattern(rng, u, v, size)
    # Distractors: blobs and boxes, some in skin or hair colours so colour alone cannot segment the person.
    for _ in range(rng.integer(1, 6)):
        colour = skin if rng.chance(0.2) else (_HAIR_COLOURS[rng.integer(0, 5)] if rng.chance(0.2) else rng.colour())
        cu, cv = rng.uniform(-1.1, 1.1), rng.uniform(-1.1, 1.1)
        ru, rv = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
        shape = _ellipse(u, v, cu, cv, ru, rv) if rng.chance(0.5) else ((u - cu).abs() < ru) & ((v - cv).abs() < rv)
        base = torch.where(shape, colour[:, None, None] * (0.7 + 0.3 * rng.field(size, 4)), base)
    texture = 0.06 * rng.uniform(0.0, 1.0) * rng.noise(size)
    return (base + texture).clamp(0, 1)


def render_portrait(
    seed: int, size: int = 256, framing: Framing = "half_body", empty_probability: float = 0.04
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one synthetic portrait.

    Args:
        seed: the sample's seed; the same seed always gives the same sample.
        size: output height and width in pixels.
        framing: ``"half_body"`` (selfie / video-call framing, head 30-60 % of the height) or ``"face"``
            (close-up for face parsing; the head fills most of the frame).
        empty_probability: chance of a background-only frame (people leave the frame, too).

    Returns:
        ``(image, parts)``: image ``(3, size, size)`` float sRGB in ``[0, 1]``; parts ``(size, size)`` long
        with indices into :data:`PART_NAMES`.
    """
    rng = _Random(seed)
    u, v = _grid(size)
    tone = rng.uniform(0, 1)
    skin = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone
    skin = (skin * (1 + 0.08 * (rng.colour() - 0.5))).clamp(0, 1)
    image = _background(rng, u, v, size, skin)
    labels = torch.zeros(size, size, dtype=torch.long)

    if not rng.chance(empty_probability):
        _draw_person(rng, u, v, size, skin, image, labels, framing)

    image = _light_and_noise(rng, u, v, size, image)
    return image, labels


def _draw_person(
    rng: _Random,
    u: torch.Tensor,
    v: torch.Tensor,
    size: int,
    skin: torch.Tensor,
    image: torch.Tensor,
    labels: torch.Tensor,
    framing: Framing,
) -> None:
    """Paint a head-and-shoulders figure into ``image`` and ``labels`` (in place)."""
    if framing == "face":
        ry, cu, cv = rng.uniform(0.45, 0.62), rng.uniform(-0.15, 0.15), rng.uniform(-0.2, 0.05)
    else:
        ry, cu, cv = rng.uniform(0.17, 0.30), rng.uniform(-0.5, 0.5), rng.uniform(-0.45, 0.05)
    rx = ry * rng.uniform(0.70, 0.84)
    tilt = rng.uniform(-0.3, 0.3)

    # Clothing (image frame: shoulders stay roughly level when the head tilts).
    top = cv + ry * rng.uniform(1.5, 2.1)
    width = rx * rng.uniform(2.2, 3.4)
    shoulder_r = ry * rng.uniform(0.8, 1.3)
    torso_u = cu + rng.uniform(-0.3, 0.3) * rx
    torso = _ellipse(u, v, torso_u, top + shoulder_r, width, shoulder_r) | (
        (v >= top + shoulder_r) & ((u - torso_u).abs() <= width)
    )
    cloth = _pattern(rng, u, v, size) * (0.75 + 0.25 * rng.field(size, 5))
    image.copy_(torch.where(torso, cloth, image))
    labels.masked_fill_(torso, _ID["cloth"])

    # Everything else happens in a box around the head (hair, long hair and neck included), which is a
    # fraction of the frame for half-body framing: most of the rendering cost is per pixel.
    def to_pixel(coordinate: float) -> int:
        return min(size, max(0, int((coordinate + 1) / 2 * size)))

    y0, y1 = to_pixel(cv - 2.3 * ry), to_pixel(cv + 3.5 * ry)
    x0, x1 = to_pixel(cu - 2.5 * ry), to_pixel(cu + 2.5 * ry)
    if y1 <= y0 or x1 <= x0:
        return
    img, lab = image[:, y0:y1, x0:x1], labels[y0:y1, x0:x1]  # views: painting them paints the sample
    uc, vc, torso_c = u[y0:y1, x0:x1], v[y0:y1, x0:x1], torso[y0:y1, x0:x1]
    h, w = y1 - y0, x1 - x0

    def paint(region: torch.Tensor, colour: torch.Tensor, label: str) -> None:
        img.copy_(torch.where(region, colour if colour.ndim == 3 else colour[:, None, None], img))
        lab.masked_fill_(region, _ID[label])

    def field(cells: int) -> torch.Tensor:
        grid = torch.rand(1, 1, cells, cells, generator=rng.g)
        return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0]

    du, dv = uc - cu, vc - cv
    hu = (math.cos(tilt) * du + math.sin(tilt) * dv) / rx  # head frame: the face is the unit circle
    hv = (-math.sin(tilt) * du + math.cos(tilt) * dv) / ry
    rho = torch.sqrt(hu**2 + hv**2)
    phi = torch.atan2(hv, hu)
    light_u, light_v = rng.uniform(-1, 1), rng.uniform(-1, 0.5)
    shade = (1 - 0.22 * (hu * light_u + hv * light_v).clamp(-1.5, 1.5))[None]
    skin_c = skin[:, None, None]

    neck = (hu.abs() <= rng.uniform(0.38, 0.55)) & (hv >= 0) & (vc <= top + 0.6 * shoulder_r)
    if rng.chance(0.6):  # a collar or neckline cutting into the neck
        neck = neck & ~(_ellipse(uc, vc, torso_u, top + 0.2 * shoulder_r, width * 0.5, shoulder_r * 0.6) & torso_c)
    paint(neck & ~torso_c, skin_c * 0.82 * shade, "neck")

    # Hair outline in polar coordinates around the head: smooth lobes plus fine strand ripples.
    bald = rng.chance(0.08)
    hair_colour = (_HAIR_COLOURS[rng.integer(0, 5)] * rng.uniform(0.8, 1.2)).clamp(0, 1)
    outline = torch.full_like(phi, rng.uniform(1.07, 1.3))
    for _ in range(3):
        outline = outline + rng.uniform(0.0, 0.08) * torch.sin(rng.integer(2, 7) * phi + rng.uniform(0, 6.3))
    outline = outline + rng.uniform(0.005, 0.04) * torch.sin(rng.integer(25, 70) * phi + rng.uniform(0, 6.3))
    strands = 1 + 0.35 * torch.sin(rng.uniform(40, 90) * phi + 3 * field(6)[0])
    hair_texture = hair_colour[:, None, None] * (strands * (0.8 + 0.4 * field(8)[0]))[None]
    if not bald and rng.chance(0.45):  # long hair falling to the shoulders, in front of the clothes
        length = rng.uniform(1.2, 3.0)
        wave = 0.08 * torch.sin(rng.uniform(4, 10) * hv + rng.uniform(0, 6.3))
        side = (hu.abs() <= outline * 1.02 + 0.25 + wave) & (hu.abs() >= 0.55) & (hv >= 0) & (hv <= length + wave)
        paint(side, hair_texture, "hair")

    # Ears (skin), then the face.
    ear_v = rng.uniform(-0.05, 0.15)
    ears = ((hu.abs() - 1.0) / 0.16) ** 2 + ((hv - ear_v) / 0.26) ** 2 <= 1
    paint(ears, skin_c * 0.9 * shade, "skin")
    paint(rho <= 1.0, skin_c * shade * (0.93 + 0.1 * field(6)), "skin")

    if not bald:
        fringe = rng.uniform(-0.75, -0.3) + 0.12 * torch.sin(rng.uniform(3, 9) * hu + rng.uniform(0, 6.3))
        cap = (rho <= outline) & (hv < rng.uniform(0.0, 0.35))
        face_below_fringe = (rho <= 1.0) & (hv > fringe) & (hu.abs() < rng.uniform(0.8, 0.95))
        paint(cap & ~face_below_fringe, hair_texture, "hair")
        # Flyaway strands: thin arcs leaving the outline, one or two pixels wide (the hard edge cases).
        for _ in range(rng.integer(0, 6)):
            angle = rng.uniform(-math.pi * 0.95, -math.pi * 0.05)
            bend, reach = rng.uniform(-0.6, 0.6), rng.uniform(0.1, 0.45)
            thickness = rng.uniform(0.6, 1.6) * 2 / size / ry
            offset = (phi - angle - bend * (rho - outline)) * rho
            strand = (offset.abs() < thickness) & (rho > outline - 0.05) & (rho < outline + reach)
            paint(strand, hair_colour * 0.9, "hair")

    # Face parts in the head frame ("l_" parts on the image's left).
    ex, ey = rng.uniform(0.32, 0.42), rng.uniform(-0.12, 0.04)
    eye_ru, eye_rv = rng.uniform(0.14, 0.2), rng.uniform(0.06, 0.1)
    brow_dv, brow_ru, brow_rv = rng.uniform(0.14, 0.22), rng.uniform(0.17, 0.25), rng.uniform(0.03, 0.055)
    brow_colour = (hair_colour * 0.7 if not bald else skin * 0.5)[:, None, None]
    iris_colour = rng.colour(0.02, 0.3)
    sclera = torch.full((3,), rng.uniform(0.75, 0.92))
    for side, sign in (("l", -1.0), ("r", 1.0)):
        brow = _ellipse(hu, hv, sign * ex, ey - brow_dv, brow_ru, brow_rv)
        paint(brow & (rho <= 0.98), brow_colour * shade, f"{side}_brow")
        paint(_ellipse(hu, hv, sign * ex, ey, eye_ru, eye_rv), sclera, f"{side}_eye")
        iris = _ellipse(hu, hv, sign * ex + rng.uniform(-0.04, 0.04), ey, eye_rv * 0.9, eye_rv * 0.95)
        paint(iris & _ellipse(hu, hv, sign * ex, ey, eye_ru, eye_rv), iris_colour, f"{side}_eye")
    nose = _ellipse(hu, hv, 0.0, rng.uniform(0.12, 0.28), rng.uniform(0.08, 0.13), rng.uniform(0.1, 0.16))
    nose_shade = (0.78 + 0.3 * (1 - ((hu / 0.13) ** 2).clamp(0, 1)))[None] * shade
    paint(nose, skin_c * nose_shade, "nose")
    mouth_v, mouth_ru = rng.uniform(0.47, 0.6), rng.uniform(0.22, 0.32)
    lip_colour = (skin * torch.tensor([0.95, 0.55, 0.55]) + torch.tensor([0.12, 0.0, 0.02])).clamp(0, 1)
    lip_colour = lip_colour[:, None, None] * shade
    upper = _ellipse(hu, hv, 0.0, mouth_v, mouth_ru, rng.uniform(0.05, 0.08)) & (hv < mouth_v)
    lower = _ellipse(hu, hv, 0.0, mouth_v, mouth_ru * 0.9, rng.uniform(0.06, 0.1)) & (hv >= mouth_v)
    paint(upper, lip_colour * 0.9, "u_lip")
    paint(lower, lip_colour, "l_lip")
    if rng.chance(0.35):
        inner = _ellipse(hu, hv, 0.0, mouth_v, mouth_ru * 0.7, rng.uniform(0.015, 0.05))
        paint(inner, torch.tensor([0.25, 0.06, 0.06]), "mouth")


def _light_and_noise(rng: _Random, u: torch.Tensor, v: torch.Tensor, size: int, image: torch.Tensor) -> torch.Tensor:
    """Illuminant colour, exposure, a light gradient, a touch of blur and sensor-like noise."""
    warmth = rng.uniform(-1, 1)
    illuminant = torch.tensor([1 + 0.25 * warmth, 1.0, 1 - 0.25 * warmth]) * (1 + 0.1 * (rng.colour() - 0.5))
    angle = rng.uniform(0, 2 * math.pi)
    gradient = 1 + rng.uniform(0, 0.35) * (u * math.cos(angle) + v * math.sin(angle))
    image = image * illuminant[:, None, None] * gradient[None] * rng.uniform(0.55, 1.25)
    # Optics are never perfectly sharp: a light [w, 1-2w, w] blur makes edges span a pixel or two, as in photos.
    # Shifted slices, because small depthwise convolutions are far slower on CPU than these three adds.
    w = rng.uniform(0.05, 0.3)
    image = image.clone()
    image[:, 1:-1] = w * (image[:, :-2] + image[:, 2:]) + (1 - 2 * w) * image[:, 1:-1]
    image[:, :, 1:-1] = w * (image[:, :, :-2] + image[:, :, 2:]) + (1 - 2 * w) * image[:, :, 1:-1]
    # Shot-like noise (brighter pixels noisier) sharing one draw across channels: mostly luma noise, like a
    # phone's output after its own chroma denoising.
    noise = rng.uniform(0.003, 0.03) * rng.noise(size) * (1 + 0.2 * (rng.colour() - 0.5))[:, None, None]
    image = image + noise * torch.sqrt(image.clamp_min(0) + 0.01)
    return image.clamp(0, 1)

"""Procedural camera scenes: the embedded default dataset of the scene recipes.

It exists to run the pipeline (training, calibration, thresholds, export) offline in minutes, with
scene classes whose look is genuinely distinct, so that a model visibly learns. It is not a substitute
for real photographs: a model trained on it is useless on a phone. Train on real data
(``--data.format image_folder|manifest|places365``) for anything you ship.

Each image is built from layers, composited in linear light and returned gamma-encoded (sRGB), as the
scene models expect:

- an **environment**: ``landscape`` (sky, hills and a horizon), ``snow`` (white ground, pale sky,
  trees, flakes), ``sunset`` (warm gradient, low sun, dark ground), ``greenery`` (a frame full of
  leaves), ``indoor`` (wall, table and lamp light) or ``city`` (buildings with windows);
- optionally a **subject**: ``portrait`` (face, hair, shoulders), ``food`` (a plate with colourful
  items) or ``text`` (a printed page);
- optional **conditions**: ``night`` (exposure cut to a few percent, point lights, lit windows and
  sensor noise) and ``backlight`` (blown-out background and glow behind a dark silhouette).

In multi-class mode every image shows one class (:data:`SINGLE_CLASS_SPECS`); in multi-label mode the
layers are combined at random (portrait + night, snow + backlight + portrait, text + night, ...) and the
label is the set of classes present. Everything is drawn from ``torch.Generator`` seeds: the training
set follows the datamodule's ``seed``, while the validation and test sets use fixed seeds so their
numbers stay comparable between runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from moto_vision.heads.scene_taxonomy import SYNTHETIC_SCENES

__all__ = [
    "ENVIRONMENTS",
    "EVAL_SEEDS",
    "SUBJECTS",
    "SceneSpec",
    "SyntheticScenes",
    "render_scene",
    "sample_spec",
]

#: Environments; those that are also classes carry their own label.
ENVIRONMENTS: tuple[str, ...] = ("landscape", "snow", "sunset", "greenery", "indoor", "city")
_LABELLED_ENVIRONMENTS = {"landscape", "snow", "sunset", "greenery"}
SUBJECTS: tuple[str, ...] = ("portrait", "food", "text")

#: Fixed seeds of the validation and test sets (independent of the training seed).
EVAL_SEEDS: dict[str, int] = {"val": 1_000_003, "test": 2_000_003}


@dataclass(frozen=True)
class SceneSpec:
    """What one synthetic image shows.

    Attributes:
        environment: one of :data:`ENVIRONMENTS`.
        subject: one of :data:`SUBJECTS` or ``None``.
        night: dark exposure with point lights and noise.
        backlight: bright light source behind a dark subject.
        salience: how plainly the image shows its classes, in ``[0, 1]``: a small face in a landscape, a faint
            sunset, twilight rather than night, a weak backlight. Low salience makes classes overlap, so a
            model cannot be certain of every image and its calibration matters.
    """

    environment: str
    subject: str | None = None
    night: bool = False
    backlight: bool = False
    salience: float = 1.0

    @property
    def labels(self) -> tuple[str, ...]:
        """The scene classes present in the image."""
        labels = []
        if self.environment in _LABELLED_ENVIRONMENTS:
            labels.append(self.environment)
        if self.subject is not None:
            labels.append(self.subject)
        if self.night:
            labels.append("night")
        if self.backlight:
            labels.append("backlight")
        return tuple(labels)


#: Multi-class mode: the layers drawn for each single class (environments picked at random from the list).
#: Subjects and conditions appear over unlabelled or other environments, as in photos, where the label is
#: the scene that dominates (a portrait in a landscape is a portrait).
SINGLE_CLASS_SPECS: dict[str, tuple[tuple[str, ...], str | None, bool, bool]] = {
    "landscape": (("landscape",), None, False, False),
    "snow": (("snow",), None, False, False),
    "sunset": (("sunset",), None, False, False),
    "greenery": (("greenery",), None, False, False),
    "portrait": (("indoor", "indoor", "landscape", "city", "greenery"), "portrait", False, False),
    "food": (("indoor",), "food", False, False),
    "text": (("indoor", "city"), "text", False, False),
    "night": (("city", "indoor", "landscape"), None, True, False),
    "backlight": (("indoor", "city", "landscape"), "portrait", False, True),
}

#: Salience is drawn uniformly from this range.
SALIENCE_RANGE = (0.1, 1.0)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Integer in ``[low, high]`` inclusive."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _choice(g: torch.Generator, options: Sequence, weights: Sequence[float] | None = None):
    if weights is None:
        return options[_randint(g, 0, len(options) - 1)]
    index = int(torch.multinomial(torch.tensor(weights, dtype=torch.float32), 1, generator=g))
    return options[index]


def sample_spec(
    g: torch.Generator, *, multi_label: bool, class_names: Sequence[str], index: int | None = None
) -> SceneSpec:
    """Draw the layers of one image.

    Args:
        g: random generator.
        multi_label: combine layers at random (``True``) or show exactly one class (``False``).
        class_names: the classes in use (a subset of :data:`~moto_vision.heads.scene_taxonomy.SYNTHETIC_SCENES`);
            layers of other classes are never drawn, so labels always describe the image.
        index: in multi-class mode, the class is ``class_names[index % len(class_names)]`` (balanced);
            drawn at random when ``None``.
    """
    names = set(class_names)
    if not multi_label:
        name = class_names[index % len(class_names)] if index is not None else _choice(g, list(class_names))
        environments, subject, night, backlight = SINGLE_CLASS_SPECS[name]
        return SceneSpec(_choice(g, environments), subject, night, backlight, _uniform(g, *SALIENCE_RANGE))
    environments = [e for e in ENVIRONMENTS if e not in _LABELLED_ENVIRONMENTS or e in names]
    weights = [{"indoor": 1.5, "city": 1.0}.get(e, 1.5) for e in environments]
    environment = _choice(g, environments, weights)
    subjects = [s for s in SUBJECTS if s in names]
    subject = None
    if subjects and float(torch.rand((), generator=g)) < 0.65:
        subject = _choice(g, subjects)
    night = "night" in names and environment != "sunset" and float(torch.rand((), generator=g)) < 0.3
    backlight = (
        "backlight" in names and subject == "portrait" and not night and float(torch.rand((), generator=g)) < 0.45
    )
    return SceneSpec(environment, subject, night, backlight, _uniform(g, *SALIENCE_RANGE))


# --------------------------------------------------------------------------------------- drawing helpers
class _Canvas:
    """Normalised pixel coordinates (``y``, ``x`` in ``[0, 1]``) of a square image and soft shape masks."""

    def __init__(self, size: int) -> None:
        self.size = size
        axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        self.y, self.x = torch.meshgrid(axis, axis, indexing="ij")
        self.edge = 1.0 / size  # soft edges one pixel wide keep shapes anti-aliased at any size

    def ellipse(self, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> torch.Tensor:
        dy, dx = self.y - cy, self.x - cx
        if angle:
            c, s = math.cos(angle), math.sin(angle)
            dy, dx = c * dy - s * dx, s * dy + c * dx
        radius = torch.sqrt((dy / ry) ** 2 + (dx / rx) ** 2)
        return torch.sigmoid((1.0 - radius) * min(ry, rx) / self.edge * 2.0)

    def rect(self, top: float, left: float, bottom: float, right: float) -> torch.Tensor:
        k = 2.0 / self.edge
        return (
            torch.sigmoid((self.y - top) * k)
            * torch.sigmoid((bottom - self.y) * k)
            * torch.sigmoid((self.x - left) * k)
            * torch.sigmoid((right - self.x) * k)
        )

    def blob(self, cy: float, cx: float, sigma: float) -> torch.Tensor:
        return torch.exp(-((self.y - cy) ** 2 + (self.x - cx) ** 2) / (2 * sigma**2))

    def noise(self, g: torch.Generator, cells: int, channels: int = 1) -> torch.Tensor:
        """Smooth value noise in ``[0, 1]``: random ``cells x cells`` values upsampled bicubically."""
        low = torch.rand(1, channels, cells, cells, generator=g)
        return F.interpolate(low, size=(self.size, self.size), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def _colour(*rgb: float) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1)


def _jitter(g: torch.Generator, rgb: Sequence[float], amount: float) -> torch.Tensor:
    base = torch.tensor(rgb, dtype=torch.float32)
    return (base + amount * (torch.rand(3, generator=g) * 2 - 1)).clamp(0, 1).view(3, 1, 1)


def _over(base: torch.Tensor, layer: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return base * (1 - alpha) + layer * alpha


def _lerp(low: float, high: float, t: float) -> float:
    return low + (high - low) * t


def _to_linear(srgb: torch.Tensor) -> torch.Tensor:
    # Plain 2.2 gamma: the synthetic scenes need linear light for exposure and light sources, not colorimetry.
    return srgb.clamp(0, 1) ** 2.2


def _to_srgb(linear: torch.Tensor) -> torch.Tensor:
    return linear.clamp(0, 1) ** (1 / 2.2)


# --------------------------------------------------------------------------------------- environments
def _landscape(c: _Canvas, g: torch.Generator, s: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    horizon = _uniform(g, 0.38, 0.62)
    ridge = horizon + _uniform(g, 0.02, 0.08) * torch.sin(c.x * _uniform(g, 4, 12) + _uniform(g, 0, 6.3))
    ridge = ridge + 0.05 * (c.noise(g, 5)[0] - 0.5)
    top, bottom = _jitter(g, (0.18, 0.38, 0.82), 0.08), _jitter(g, (0.62, 0.8, 0.95), 0.05)
    sky = top + (bottom - top) * (c.y / horizon).clamp(0, 1)
    clouds = (c.noise(g, 6)[0] - _uniform(g, 0.5, 0.75)).clamp(min=0) * 3
    sky = _over(sky, _colour(0.97, 0.97, 0.98), clouds.clamp(0, 1))
    near, far = _jitter(g, (0.25, 0.5, 0.15), 0.08), _jitter(g, (0.35, 0.45, 0.3), 0.06)
    depth = ((c.y - ridge) / (1 - horizon)).clamp(0, 1)
    ground = far + (near - far) * depth
    ground = ground * (0.8 + 0.4 * c.noise(g, 16))
    image = _over(sky, ground, torch.sigmoid((c.y - ridge) / c.edge))
    # Low salience: hazy, warm late-afternoon light (closer to a sunset).
    haze = (1 - s) * _uniform(g, 0.2, 0.6)
    return (image * (1 - haze) + haze * _jitter(g, (0.85, 0.7, 0.5), 0.08)).clamp(0, 1), None


def _snow(c: _Canvas, g: torch.Generator, s: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    horizon = _uniform(g, 0.3, 0.55)
    ridge = horizon + 0.04 * torch.sin(c.x * _uniform(g, 3, 9) + _uniform(g, 0, 6.3))
    sky = _jitter(g, (0.78, 0.82, 0.88), 0.06) * (0.92 + 0.08 * c.noise(g, 4))
    ground = _jitter(g, (0.93, 0.95, 0.99), 0.03) * (0.82 + 0.18 * c.noise(g, 6))
    # Low salience: patchy snow over grass and earth.
    patches = (c.noise(g, 8)[0] < _lerp(0.55, 1.1, s)).float()
    ground = _over(_jitter(g, (0.35, 0.4, 0.25), 0.08), ground, patches)
    image = _over(sky, ground, torch.sigmoid((c.y - ridge) / c.edge))
    for _ in range(_randint(g, 1, 5)):  # dark tree trunks and crowns stand out against the snow
        x, height = _uniform(g, 0.05, 0.95), _uniform(g, 0.15, 0.35)
        base = horizon + _uniform(g, 0.0, 0.15)
        trunk = c.rect(base - height, x - 0.01, base, x + 0.01)
        crown = c.ellipse(base - height * 0.75, x, height * 0.45, height * 0.18)
        image = _over(image, _jitter(g, (0.12, 0.22, 0.15), 0.05), (trunk + crown).clamp(0, 1))
    flakes = torch.zeros_like(c.y)
    for _ in range(int(_randint(g, 20, 60) * s)):
        flakes = torch.maximum(flakes, c.blob(_uniform(g, 0, 1), _uniform(g, 0, 1), _uniform(g, 0.004, 0.01)))
    return _over(image, _colour(1.0, 1.0, 1.0), flakes), None


def _sunset(c: _Canvas, g: torch.Generator, s: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    horizon = _uniform(g, 0.5, 0.72)
    top, middle = _jitter(g, (0.3, 0.15, 0.42), 0.08), _jitter(g, (0.95, 0.45, 0.15), 0.06)
    low = _jitter(g, (1.0, 0.78, 0.3), 0.05)
    t = (c.y / horizon).clamp(0, 1)
    sky = torch.where(t < 0.6, top + (middle - top) * (t / 0.6), middle + (low - middle) * ((t - 0.6) / 0.4))
    sun_x, sun_r = _uniform(g, 0.2, 0.8), _uniform(g, 0.05, 0.1)
    sky = _over(sky, _colour(1.0, 0.93, 0.7), c.ellipse(horizon - sun_r * 0.4, sun_x, sun_r, sun_r) * s)
    sky = sky + 0.35 * s * c.blob(horizon, sun_x, 0.18) * _colour(1.0, 0.6, 0.2)
    # Low salience: the warm colours fade into an ordinary dusk sky.
    dusk = _jitter(g, (0.45, 0.5, 0.65), 0.08) + 0.15 * t
    sky = sky * (0.3 + 0.7 * s) + dusk * (0.7 - 0.7 * s)
    ridge = horizon + 0.03 * torch.sin(c.x * _uniform(g, 3, 10) + _uniform(g, 0, 6.3))
    if float(torch.rand((), generator=g)) < 0.5:  # dark land in silhouette
        ground = _jitter(g, (0.12, 0.06, 0.08), 0.04).expand(3, c.size, c.size)
    else:  # water reflecting the sky in horizontal streaks
        streaks = 0.5 + 0.5 * torch.sin(c.y * _uniform(g, 60, 120))
        ground = (low * 0.55 * streaks + _colour(0.15, 0.08, 0.12) * (1 - streaks)) * (1 - 0.5 * (c.y - horizon))
    return _over(sky.clamp(0, 1), ground, torch.sigmoid((c.y - ridge) / c.edge)), None


def _greenery(c: _Canvas, g: torch.Generator, s: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    image = _jitter(g, (0.08, 0.22, 0.06), 0.04) * (0.6 + 0.6 * c.noise(g, 8))
    for _ in range(int(_randint(g, 35, 70) * _lerp(0.5, 1.0, s))):
        size = _uniform(g, 0.04, 0.12)
        leaf = c.ellipse(_uniform(g, -0.05, 1.05), _uniform(g, -0.05, 1.05), size, size * 0.4, _uniform(g, 0, 3.2))
        green = _jitter(g, (0.25, _uniform(g, 0.45, 0.75), 0.12), 0.1)
        image = _over(image, green * (0.75 + 0.25 * c.y.flip(0)), leaf)
    # Low salience: a band of sky above the foliage (closer to a landscape).
    skyline = (1 - s) * _uniform(g, 0.2, 0.55) + 0.03 * torch.sin(c.x * _uniform(g, 5, 15))
    sky = _jitter(g, (0.5, 0.68, 0.9), 0.08)
    return _over(image, sky, torch.sigmoid((skyline - c.y) / c.edge)).clamp(0, 1), None


def _indoor(c: _Canvas, g: torch.Generator, s: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    grey = _uniform(g, 0.45, 0.8)
    wall = _jitter(g, (grey, grey * 0.97, grey * 0.92), 0.08)
    table_y = _uniform(g, 0.55, 0.8)
    table = _jitter(g, (0.55, 0.38, 0.22), 0.12) * (0.85 + 0.3 * c.noise(g, 12))
    image = _over(wall.expand(3, c.size, c.size), table, torch.sigmoid((c.y - table_y) / c.edge))
    lamp = c.blob(_uniform(g, 0.0, 0.4), _uniform(g, 0.0, 1.0), _uniform(g, 0.3, 0.6))
    return (image * (0.7 + 0.45 * lamp)).clamp(0, 1), None


def _city(c: _Canvas, g: torch.Generator, s: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    sky = _jitter(g, (0.45, 0.55, 0.7), 0.1) + 0.2 * c.y
    image = sky.clamp(0, 1).expand(3, c.size, c.size).clone()
    windows = torch.zeros_like(c.y)
    x = _uniform(g, -0.1, 0.05)
    while x < 1.0:
        width, top = _uniform(g, 0.12, 0.28), _uniform(g, 0.2, 0.6)
        building = c.rect(top, x, 1.05, x + width)
        image = _over(image, _jitter(g, (0.4, 0.38, 0.36), 0.12), building)
        pitch = _uniform(g, 0.05, 0.09)
        grid = (torch.sin((c.x - x) / pitch * math.pi) > 0.2) & (torch.sin((c.y - top) / pitch * math.pi) > 0.2)
        lit = (c.noise(g, 10)[0] > _uniform(g, 0.3, 0.6)).float()
        windows = torch.maximum(windows, grid.float() * building * lit)
        x += width + _uniform(g, 0.0, 0.04)
    image = _over(image, _colour(0.75, 0.8, 0.85), windows * 0.6)
    emissive = windows * _jitter(g, (1.0, 0.8, 0.45), 0.1)
    return image, emissive


_ENVIRONMENT_RENDERERS = {
    "landscape": _landscape,
    "snow": _snow,
    "sunset": _sunset,
    "greenery": _greenery,
    "indoor": _indoor,
    "city": _city,
}


# --------------------------------------------------------------------------------------- subjects
_SKIN = ((0.96, 0.8, 0.69), (0.87, 0.67, 0.52), (0.68, 0.48, 0.34), (0.45, 0.3, 0.21))
_HAIR = ((0.08, 0.06, 0.05), (0.3, 0.18, 0.1), (0.75, 0.6, 0.35), (0.55, 0.55, 0.55))
_FOOD = ((0.85, 0.15, 0.1), (0.95, 0.8, 0.2), (0.2, 0.6, 0.15), (0.45, 0.25, 0.1), (0.95, 0.5, 0.1), (0.95, 0.9, 0.75))


def _portrait(c: _Canvas, g: torch.Generator, s: float) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    ry = _uniform(g, 0.85, 1.0) * _lerp(0.07, 0.24, s)  # low salience: a small figure in the scene
    cy, cx = _uniform(g, 0.36, 0.46) + (0.24 - ry) * 0.8, _uniform(g, 0.3, 0.7)
    rx = ry * _uniform(g, 0.7, 0.82)
    skin = _jitter(g, _SKIN[_randint(g, 0, len(_SKIN) - 1)], 0.04)
    clothes = _jitter(g, (0.5, 0.5, 0.5), 0.45)
    shoulders = c.ellipse(cy + ry * 2.3, cx, ry * 1.3, rx * 2.9)
    neck = c.rect(cy + ry * 0.6, cx - rx * 0.35, cy + ry * 1.4, cx + rx * 0.35)
    hair = c.ellipse(cy - ry * 0.18, cx, ry * 1.05, rx * 1.12)
    face = c.ellipse(cy, cx, ry, rx)
    shading = 0.8 + 0.25 * (1 - ((c.x - cx + rx * 0.3) / (2 * rx)).abs().clamp(0, 1))
    image = clothes * shoulders
    image = _over(image, skin * 0.9, neck)
    image = _over(image, _jitter(g, _HAIR[_randint(g, 0, len(_HAIR) - 1)], 0.04), hair)
    image = _over(image, skin * shading, face)
    eyes = c.ellipse(cy - ry * 0.12, cx - rx * 0.38, ry * 0.08, rx * 0.14)
    eyes = eyes + c.ellipse(cy - ry * 0.12, cx + rx * 0.38, ry * 0.08, rx * 0.14)
    image = _over(image, _colour(0.1, 0.07, 0.06), eyes.clamp(0, 1))
    mouth = c.ellipse(cy + ry * 0.48, cx, ry * 0.07, rx * 0.32)
    image = _over(image, _jitter(g, (0.65, 0.25, 0.25), 0.08), mouth)
    alpha = torch.maximum(torch.maximum(shoulders, neck), torch.maximum(hair, face))
    return image.clamp(0, 1), alpha, (cy, cx)


def _food(c: _Canvas, g: torch.Generator, s: float) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    cy, cx = _uniform(g, 0.5, 0.6), _uniform(g, 0.42, 0.58)
    rx = _uniform(g, 0.85, 1.0) * _lerp(0.14, 0.42, s)
    ry = rx * _uniform(g, 0.65, 0.95)  # seen at an angle the plate is an ellipse
    plate = c.ellipse(cy, cx, ry, rx)
    rim = plate - c.ellipse(cy, cx, ry * 0.82, rx * 0.82)
    image = _jitter(g, (0.95, 0.95, 0.93), 0.03) * (1 - 0.12 * rim.clamp(0, 1))
    for _ in range(_randint(g, 3, 7)):
        angle, dist = _uniform(g, 0, 6.3), _uniform(g, 0.0, 0.55)
        y, x = cy + dist * ry * math.sin(angle), cx + dist * rx * math.cos(angle)
        size = _uniform(g, 0.05, 0.12)
        item = c.ellipse(y, x, size * _uniform(g, 0.6, 1.0), size, _uniform(g, 0, 3.2))
        colour = _jitter(g, _FOOD[_randint(g, 0, len(_FOOD) - 1)], 0.06) * (0.75 + 0.35 * c.noise(g, 14))
        image = _over(image, colour, item * plate)
    return image.clamp(0, 1), plate, (cy, cx)


def _text(c: _Canvas, g: torch.Generator, s: float) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    cy, cx = _uniform(g, 0.45, 0.55), _uniform(g, 0.45, 0.55)
    scale = _lerp(0.35, 1.0, s)  # low salience: a small, faint page
    half_h, half_w = _uniform(g, 0.32, 0.47) * scale, _uniform(g, 0.26, 0.42) * scale
    angle = _uniform(g, -0.15, 0.15)
    cos, sin = math.cos(angle), math.sin(angle)
    v = cos * (c.y - cy) - sin * (c.x - cx)  # page coordinates: rows along v, characters along u
    u = sin * (c.y - cy) + cos * (c.x - cx)
    k = 2.0 / c.edge
    page = torch.sigmoid((half_h - v.abs()) * k) * torch.sigmoid((half_w - u.abs()) * k)
    lines = _randint(g, 6, 11)
    chars = _randint(g, 14, 26)
    glyphs = torch.zeros(lines, chars, dtype=torch.bool)
    for row in range(lines):  # words of 2-7 characters separated by one space; the last line ends early
        col, end = 0, chars if row < lines - 1 else _randint(g, chars // 3, chars)
        while col < end:
            length = _randint(g, 2, 7)
            glyphs[row, col : min(col + length, end)] = True
            col += length + 1
    margin = 0.12
    row_f = (v + half_h * (1 - margin)) / (2 * half_h * (1 - margin)) * lines
    col_f = (u + half_w * (1 - margin)) / (2 * half_w * (1 - margin)) * chars
    inside = (row_f >= 0) & (row_f < lines) & (col_f >= 0) & (col_f < chars)
    row_i, col_i = row_f.clamp(0, lines - 1).long(), col_f.clamp(0, chars - 1).long()
    ink = glyphs[row_i, col_i] & inside & (row_f.frac() < 0.55) & (col_f.frac() < 0.8)
    paper = _jitter(g, (0.95, 0.94, 0.9), 0.04)
    ink_colour = _jitter(g, (0.1, 0.1, 0.15), 0.08) * s + _colour(0.6, 0.6, 0.6) * (1 - s)
    image = _over(paper.expand(3, c.size, c.size), ink_colour, ink.float())
    return image, page, (cy, cx)


_SUBJECT_RENDERERS = {"portrait": _portrait, "food": _food, "text": _text}


# --------------------------------------------------------------------------------------- conditions and assembly
def render_scene(spec: SceneSpec, size: int, g: torch.Generator) -> torch.Tensor:
    """Render one image of ``spec``.

    Args:
        spec: the layers to draw.
        size: output height and width in pixels.
        g: random generator (the same seed gives the same image).

    Returns:
        ``(3, size, size)`` gamma-encoded sRGB in ``[0, 1]``.
    """
    c = _Canvas(size)
    s = spec.salience
    image, emissive = _ENVIRONMENT_RENDERERS[spec.environment](c, g, s)
    linear = _to_linear(image)
    subject_centre = (0.4, 0.5)
    if spec.subject is not None:
        subject, alpha, subject_centre = _SUBJECT_RENDERERS[spec.subject](c, g, s)
        subject_linear = _to_linear(subject)
        if spec.backlight:
            # The light source sits behind the subject: the background blows out, the subject falls into
            # silhouette with a thin bright rim where light wraps around its edge.
            cy, cx = subject_centre
            glow = c.blob(cy - _uniform(g, 0.05, 0.25), cx + _uniform(g, -0.2, 0.2), _uniform(g, 0.2, 0.35))
            gain, flare = _uniform(g, 2.0, 3.5) * _lerp(0.5, 1.0, s), _uniform(g, 1.5, 3.0) * _lerp(0.15, 1.0, s)
            linear = linear * gain + flare * glow * _jitter(g, (1.0, 0.9, 0.7), 0.1)
            subject_linear = subject_linear * _uniform(g, 0.02, 0.07) * _lerp(8.0, 1.0, s)
            soft = F.avg_pool2d(alpha[None, None], 5, stride=1, padding=2, count_include_pad=False)[0, 0]
            rim = (alpha - soft).clamp(min=0) * 4
            subject_linear = subject_linear + rim * 0.6 * s
        linear = _over(linear, subject_linear, alpha)
    linear = linear * _uniform(g, 0.8, 1.2) * _jitter(g, (1.0, 1.0, 1.0), 0.06)  # exposure and tint variety
    if spec.night:
        # Low salience: twilight rather than deep night.
        linear = linear * _uniform(g, 0.01, 0.04) * _lerp(6.0, 1.0, s) * _colour(0.8, 0.9, 1.2)
        if emissive is not None:
            linear = linear + _to_linear(emissive) * _uniform(g, 0.3, 0.8)
        for _ in range(_randint(g, 3, 12)):  # street lamps and signs: a hot core with a glow around it
            y, x = _uniform(g, 0.05, 0.9), _uniform(g, 0.02, 0.98)
            colour = _jitter(g, _choice(g, [(1.0, 0.75, 0.4), (1.0, 1.0, 0.9), (0.9, 0.3, 0.2), (0.4, 0.7, 1.0)]), 0.1)
            core, glow = _uniform(g, 0.006, 0.015), _uniform(g, 0.03, 0.08)
            linear = linear + colour * (2.0 * c.blob(y, x, core) + _uniform(g, 0.05, 0.2) * c.blob(y, x, glow))
        # Short exposures at high gain: shot noise grows with the signal, read noise sets the floor.
        shot = torch.randn(3, size, size, generator=g) * (linear.clamp(0, 1) * 0.002).sqrt()
        read = torch.randn(1, size, size, generator=g) * _uniform(g, 0.002, 0.006)
        linear = linear + shot + read
    else:
        linear = linear + torch.randn(3, size, size, generator=g) * 0.003
    return _to_srgb(linear)


class SyntheticScenes(Dataset):
    """Procedurally rendered scene images with their labels (see the module docstring).

    Samples are ``{"image": (3, S, S) float sRGB in [0, 1], "label": ...}`` where the label is the class
    index (``long``) in multi-class mode and a multi-hot ``float`` vector of ``len(class_names)`` in
    multi-label mode.

    Args:
        size: number of images.
        split: ``"train"`` (seeded by ``seed``), ``"val"`` or ``"test"`` (fixed seeds).
        seed: seed of the training split.
        image_size: output height and width in pixels.
        multi_label: combine scene layers and return multi-hot labels.
        class_names: classes to render, a subset of
            :data:`~moto_vision.heads.scene_taxonomy.SYNTHETIC_SCENES` in the order of the label indices.
        cache: keep rendered images (as uint8) in memory so later epochs do not render again.
    """

    def __init__(
        self,
        size: int,
        *,
        split: str = "train",
        seed: int = 0,
        image_size: int = 64,
        multi_label: bool = False,
        class_names: Sequence[str] = SYNTHETIC_SCENES,
        cache: bool = True,
    ) -> None:
        unknown = sorted(set(class_names) - set(SYNTHETIC_SCENES))
        if unknown:
            raise ValueError(
                f"The synthetic scene dataset cannot render {unknown}; it renders {list(SYNTHETIC_SCENES)}. "
                "Pass a subset of those as class_names, or train on real data (--data.format image_folder|manifest)."
            )
        if size < 1:
            raise ValueError(f"Synthetic dataset size must be positive, got {size}.")
        self.size = size
        self.split = split
        self.split_seed = seed if split == "train" else EVAL_SEEDS.get(split, seed)
        self.image_size = image_size
        self.multi_label = multi_label
        self.class_names = list(class_names)
        self.cache = cache
        self._cached: dict[int, torch.Tensor] = {}
        self._specs = [self._spec(i) for i in range(size)]

    def _generator(self, index: int, stream: int) -> torch.Generator:
        # Separate streams for the spec and the pixels, so labels are known without rendering anything.
        return torch.Generator().manual_seed(((self.split_seed * 1_000_003 + index) * 2 + stream) % (2**63))

    def _spec(self, index: int) -> SceneSpec:
        return sample_spec(
            self._generator(index, 0), multi_label=self.multi_label, class_names=self.class_names, index=index
        )

    def spec(self, index: int) -> SceneSpec:
        """The layers of image ``index``."""
        return self._specs[index]

    def labels(self, index: int) -> list[str]:
        """The class names of image ``index`` (one in multi-class mode, zero or more in multi-label mode)."""
        labels = self._specs[index].labels
        if not self.multi_label:
            # A backlit portrait is one "backlight" image in multi-class mode; its single label names the class.
            return [self.class_names[index % len(self.class_names)]]
        return [name for name in labels if name in self.class_names]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index in self._cached:
            image = self._cached[index].float() / 255.0
        else:
            image = render_scene(self._specs[index], self.image_size, self._generator(index, 1))
            if self.cache:
                self._cached[index] = image.mul(255).round().to(torch.uint8)
                image = self._cached[index].float() / 255.0
        if self.multi_label:
            label = torch.zeros(len(self.class_names))
            for name in self.labels(index):
                label[self.class_names.index(name)] = 1.0
        else:
            label = torch.tensor(index % len(self.class_names))
        return {"image": image, "label": label}

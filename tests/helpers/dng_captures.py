"""Phone-like DNG captures with a colour checker whose ground truth is exact (tests and benchmarks/label_awb.py).

A capture is rendered spectrally: surfaces are measured ColorChecker reflectances (colour-science's
"ColorChecker N Ohta" spectra) and random mixtures of them, lit by a CIE daylight or black-body spectrum, seen
through the CIE 1931 observer and a known XYZ -> camera matrix (a Luther camera, so the DNG's ``ColorMatrix`` tags
describe it exactly). The ground-truth illuminant is the light's colour in that camera space. The chart is a
24-patch ColorChecker in the geometry of OpenCV's MCC24 model (patch 2.5, gap 0.25, 0.25 inside the patch box;
units below), warped into the scene by a homography, on a black card that extends :data:`CARD_MARGIN` units beyond
the patch box. The linear image is mosaicked (RGGB), given shot and read noise, a black level per CFA channel and a
12-bit white level, and written with pidng together with ``ColorMatrix1/2``, ``CalibrationIlluminant1/2``,
``AsShotNeutral``, ISO, exposure time, ``BaselineExposure`` and ``Orientation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

#: MCC24 patch box in chart units (OpenCV's CChartModel): 6 x 4 patches of 2.5 with 0.25 gaps and margins.
BOX = (16.75, 11.25)
PATCH, PITCH, INSET = 2.5, 2.75, 0.25
#: The black card around the patch box (same as label-awb's default mask margin, so a perfect mask is exact).
CARD_MARGIN = 1.0
BLACK_LEVELS = (254, 256, 256, 258)  # R, G(R row), G(B row), B in the RGGB quad: a per-channel black level
WHITE_LEVEL = 4095
#: A real camera's XYZ -> raw matrix (the first of moto_vision.isp.CAMERA_XYZ_TO_RAW, an Adobe DNG ColorMatrix).
CAMERA = np.array([[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]])


@lru_cache(maxsize=1)
def _spectra() -> tuple[np.ndarray, np.ndarray]:
    """CIE 1931 2-degree CMFs ``(N, 3)`` and the 24 ColorChecker reflectances ``(24, N)`` on a 10 nm grid."""
    import colour

    shape = colour.SpectralShape(380, 780, 10)
    cmfs = colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"].copy().align(shape).values
    chart = colour.SDS_COLOURCHECKERS["ColorChecker N Ohta"]
    reflectances = np.stack([sd.copy().align(shape).values for sd in chart.values()])
    return cmfs, reflectances


@lru_cache(maxsize=64)
def illuminant_spectrum(cct: float) -> np.ndarray:
    """CIE daylight at and above 4000 K, a black body below (relative power on the 10 nm grid)."""
    import colour

    shape = colour.SpectralShape(380, 780, 10)
    if cct >= 4000:
        sd = colour.sd_CIE_illuminant_D_series(colour.temperature.CCT_to_xy_CIE_D(cct))
    else:
        sd = colour.sd_blackbody(cct)
    values = sd.copy().align(shape).values
    return values / values.max()


def camera_rgb(reflectance: np.ndarray, cct: float) -> np.ndarray:
    """Camera RGB ``(..., 3)`` of reflectances ``(..., N)`` under a light of ``cct`` (white reflector -> its light)."""
    cmfs, _ = _spectra()
    return ((reflectance * illuminant_spectrum(cct)) @ cmfs) @ CAMERA.T


def light_rgb(cct: float) -> np.ndarray:
    """Unit-norm camera RGB of the light itself: the exact ground truth."""
    rgb = camera_rgb(np.ones(_spectra()[1].shape[1]), cct)
    return rgb / np.linalg.norm(rgb)


@dataclass
class CaptureSpec:
    """What to render. Sizes are in raw photosites of the *displayed* (oriented) image."""

    size: tuple[int, int] = (384, 512)  # height, width
    cct: float = 5000.0
    chart: bool = True
    chart_width: float = 0.4  # card width as a share of the image width
    chart_center: tuple[float, float] = (0.5, 0.5)  # x, y as shares of the image
    angle: float = 0.0  # in-plane rotation in degrees
    perspective: float = 0.0  # random corner jitter as a share of the card size
    upside_down: bool = False
    second_chart_cct: float | None = None  # a second chart lit by another light (mixed lighting)
    exposure: float = 0.6  # raw level of the white patch as a share of the range above black
    full_well: float = 6000.0  # electrons at full scale (ISO 100-like); shot noise grows as it shrinks
    read_noise: float = 2.0  # in raw counts
    blur: float = 0.0  # Gaussian blur sigma in photosites (defocus)
    orientation: int = 1  # TIFF orientation of the file: 1, 3, 6 or 8
    color_matrix: bool = True
    as_shot_error: float = 2.0  # degrees between the camera's AsShotNeutral and the truth
    iso: int = 200
    exposure_time: float = 1 / 60
    seed: int = 0


@dataclass
class Capture:
    """A written fixture: its file and its exact ground truth (in the oriented, half-size image frame)."""

    path: Path
    spec: CaptureSpec
    illuminant: np.ndarray
    as_shot_neutral: np.ndarray
    card: np.ndarray | None  # (4, 2) card corners, relative (x / W, y / H) of the oriented image
    cards: list[np.ndarray] = field(default_factory=list)


def _texture(patches: np.ndarray, frame: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The card as a float image at ``scale`` pixels per chart unit, and the homography source corners of the card."""
    w, h = BOX[0] + 2 * CARD_MARGIN, BOX[1] + 2 * CARD_MARGIN
    tex = np.empty((int(round(h * scale)), int(round(w * scale)), 3), np.float32)
    tex[:] = frame
    for i in range(24):
        row, col = divmod(i, 6)
        x0 = (CARD_MARGIN + INSET + col * PITCH) * scale
        y0 = (CARD_MARGIN + INSET + row * PITCH) * scale
        tex[int(round(y0)) : int(round(y0 + PATCH * scale)), int(round(x0)) : int(round(x0 + PATCH * scale))] = patches[
            i
        ]
    corners = np.float32([[0, 0], [tex.shape[1], 0], [tex.shape[1], tex.shape[0]], [0, tex.shape[0]]])
    return tex, corners


def _place_chart(
    rng: np.random.Generator, image: np.ndarray, spec: CaptureSpec, cct: float, center: tuple[float, float], norm: float
) -> np.ndarray:
    """Warp a lit chart into ``image`` (in place); returns its card corners in pixels ``(4, 2)``."""
    import cv2

    height, width = image.shape[:2]
    _, reflectances = _spectra()
    patches = camera_rgb(reflectances, cct) / norm
    frame = camera_rgb(reflectances[23] * 0.6, cct) / norm  # a black card a little darker than the black patch
    card_width = spec.chart_width * width
    scale = max(4.0, card_width / (BOX[0] + 2 * CARD_MARGIN) * 1.5)  # texture a bit finer than the target
    texture, source = _texture(patches, frame, scale)
    size = card_width / texture.shape[1]
    target = (source - source.mean(axis=0)) * size
    if spec.upside_down:
        target = target[[2, 3, 0, 1]]
    target = target * (1 + rng.uniform(-spec.perspective, spec.perspective, size=(4, 1)))
    a = np.radians(spec.angle)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    target = (target @ rotation.T + [center[0] * width, center[1] * height]).astype(np.float32)
    homography = cv2.getPerspectiveTransform(source, target)
    warped = cv2.warpPerspective(texture, homography, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpPerspective(np.ones(texture.shape[:2], np.float32), homography, (width, height))[..., None]
    image *= 1 - alpha
    image += warped * alpha
    return target


def render_scene(spec: CaptureSpec) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Linear camera RGB ``(H, W, 3)`` of the displayed scene (white reflector = 1), the truth, the card corners."""
    rng = np.random.default_rng(spec.seed)
    height, width = spec.size
    _, reflectances = _spectra()
    norm = float(camera_rgb(np.ones(reflectances.shape[1]), spec.cct).max())
    image = np.zeros((height, width, 3), np.float32)
    image[:] = camera_rgb(reflectances.mean(axis=0), spec.cct) / norm * 0.5
    mixes = rng.dirichlet(np.full(24, 0.3), size=48) @ reflectances
    colours = camera_rgb(mixes, spec.cct) / norm * rng.uniform(0.2, 0.95, size=(48, 1))
    for colour in colours:
        y, x = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(height // 10, height // 2), rng.integers(width // 10, width // 2)
        image[y : y + h, x : x + w] = colour
    yy, xx = np.mgrid[0:height, 0:width]
    shading = 1.0 - 0.25 * (((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2)  # vignetting
    image *= shading[..., None].astype(np.float32)
    cards = []
    if spec.chart:
        centers = [spec.chart_center]
        if spec.second_chart_cct is not None:
            centers = [(0.27, 0.5), (0.73, 0.5)]
        for i, center in enumerate(centers):
            cct = spec.cct if i == 0 else float(spec.second_chart_cct)  # type: ignore[arg-type]
            cards.append(_place_chart(rng, image, spec, cct, center, norm))
    if spec.blur > 0:
        import cv2

        image = cv2.GaussianBlur(image, (0, 0), spec.blur)
    return image, light_rgb(spec.cct), cards


def _stored(image: np.ndarray, orientation: int) -> np.ndarray:
    """The array as the sensor stores it, for a file whose ``Orientation`` tag rotates it to ``image`` on display."""
    turns = {1: 0, 3: 2, 6: 1, 8: -1}[orientation]  # TIFF 6: displayed = stored turned 90 degrees clockwise
    return np.ascontiguousarray(np.rot90(image, k=turns))


def mosaic_counts(linear: np.ndarray, spec: CaptureSpec, rng: np.random.Generator) -> np.ndarray:
    """RGGB mosaic of a linear image in 12-bit raw counts, with shot and read noise."""
    height, width = linear.shape[0] // 2 * 2, linear.shape[1] // 2 * 2
    linear = linear[:height, :width]
    cfa = np.empty((height, width), np.float64)
    cfa[0::2, 0::2] = linear[0::2, 0::2, 0]
    cfa[0::2, 1::2] = linear[0::2, 1::2, 1]
    cfa[1::2, 0::2] = linear[1::2, 0::2, 1]
    cfa[1::2, 1::2] = linear[1::2, 1::2, 2]
    black = np.empty_like(cfa)
    black[0::2, 0::2], black[0::2, 1::2], black[1::2, 0::2], black[1::2, 1::2] = BLACK_LEVELS
    span = WHITE_LEVEL - black
    signal = np.clip(cfa * spec.exposure, 0, None) * span
    electrons_per_count = spec.full_well / span
    noisy = rng.poisson(signal * electrons_per_count) / electrons_per_count
    noisy = noisy + rng.normal(0, spec.read_noise, size=noisy.shape)
    return np.clip(np.round(noisy + black), 0, WHITE_LEVEL).astype(np.uint16)


def _rationals(values: np.ndarray, denominator: int = 10000) -> list[list[int]]:
    return [[int(round(float(v) * denominator)), denominator] for v in np.ravel(values)]


def _rotate_angle(vector: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector ``degrees`` away from ``vector`` in a random direction."""
    axis = rng.normal(size=3)
    axis -= axis.dot(vector) * vector
    axis /= np.linalg.norm(axis)
    a = np.radians(degrees)
    return np.cos(a) * vector + np.sin(a) * axis


def write_dng(path: Path, counts: np.ndarray, spec: CaptureSpec, as_shot: np.ndarray) -> Path:
    """Write an RGGB mosaic with the DNG colour and exposure tags (pidng)."""
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation

    height, width = counts.shape
    tags = DNGTags()
    tags.set(Tag.ImageWidth, width)
    tags.set(Tag.ImageLength, height)
    tags.set(Tag.TileWidth, width)
    tags.set(Tag.TileLength, height)
    tags.set(Tag.Orientation, spec.orientation)
    tags.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    tags.set(Tag.SamplesPerPixel, 1)
    tags.set(Tag.BitsPerSample, 16)
    tags.set(Tag.CFARepeatPatternDim, [2, 2])
    tags.set(Tag.CFAPattern, CFAPattern.RGGB)
    tags.set(Tag.BlackLevelRepeatDim, [2, 2])
    tags.set(Tag.BlackLevel, list(BLACK_LEVELS))
    tags.set(Tag.WhiteLevel, WHITE_LEVEL)
    if spec.color_matrix:
        # A Luther camera: both calibration matrices are the camera's matrix, each normalised as the DNG
        # specification asks (the calibration illuminant's white maps to a maximum camera channel of 1).
        _, reflectances = _spectra()
        for tag, illuminant_tag, cct, code in (
            (Tag.ColorMatrix1, Tag.CalibrationIlluminant1, 2856.0, CalibrationIlluminant.Standard_Light_A),
            (Tag.ColorMatrix2, Tag.CalibrationIlluminant2, 6504.0, CalibrationIlluminant.D65),
        ):
            white = camera_rgb(np.ones(reflectances.shape[1]), cct)
            cmfs, _ = _spectra()
            luminance = float(illuminant_spectrum(cct) @ cmfs[:, 1])
            tags.set(tag, _rationals(CAMERA * luminance / white.max()))
            tags.set(illuminant_tag, code)
    tags.set(Tag.AsShotNeutral, _rationals(as_shot / as_shot[1]))
    tags.set(Tag.BaselineExposure, [[-50, 100]])
    tags.set(Tag.Make, "Moto")
    tags.set(Tag.Model, "Fixture Phone")
    tags.set(Tag.UniqueCameraModel, "Moto Fixture Phone")
    tags.set(Tag.ExposureTime, [[1, int(round(1 / spec.exposure_time))]])
    tags.set(Tag.PhotographicSensitivity, [spec.iso])
    tags.set(Tag.FNumber, [[18, 10]])
    tags.set(Tag.DNGVersion, DNGVersion.V1_4)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    writer.convert(counts, filename=str(path.with_suffix("")))
    return path


def make_capture(path: str | Path, spec: CaptureSpec | None = None) -> Capture:
    """Render, mosaic and write one capture; returns its ground truth (card corners relative to the oriented image)."""
    spec = spec or CaptureSpec()
    path = Path(path)
    rng = np.random.default_rng(spec.seed + 7919)
    image, truth, cards = render_scene(spec)
    counts = mosaic_counts(_stored(image, spec.orientation), spec, rng)
    as_shot = _rotate_angle(truth, spec.as_shot_error, rng) if spec.as_shot_error else truth
    write_dng(path, counts, spec, as_shot)
    height, width = spec.size
    relative = [card / [width, height] for card in cards]
    return Capture(
        path=path,
        spec=spec,
        illuminant=truth,
        as_shot_neutral=as_shot / np.linalg.norm(as_shot),
        card=relative[0] if relative else None,
        cards=relative,
    )


def patch_area_corners(capture: Capture, index: int = 0) -> np.ndarray:
    """``(4, 2)`` outer corners of the 24-patch area in pixels of the full-resolution oriented image (override form)."""
    import cv2

    height, width = capture.spec.size
    card = (capture.cards[index] * [width, height]).astype(np.float32)
    w, h = BOX[0] + 2 * CARD_MARGIN, BOX[1] + 2 * CARD_MARGIN
    homography = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), card)
    lo, hi_x, hi_y = CARD_MARGIN + INSET, w - CARD_MARGIN - INSET, h - CARD_MARGIN - INSET
    area = np.float32([[lo, lo], [hi_x, lo], [hi_x, hi_y], [lo, hi_y]])
    return cv2.perspectiveTransform(area[None], homography)[0]


def make_dng(root: str | Path, n: int = 3, size: tuple[int, int] = (192, 256)) -> list[Capture]:
    """A small ``dng``-format dataset: ``n`` captures and their ``ground_truth.csv`` (with the chart polygons)."""
    from moto_vision.data.awb.formats import CAPTURE_GROUND_TRUTH, write_capture_ground_truth

    root = Path(root)
    captures, rows = [], []
    for i in range(n):
        spec = CaptureSpec(size=size, seed=200 + i, cct=2800.0 + 1500.0 * i, angle=5.0 * i, chart_width=0.4)
        capture = make_capture(root / f"IMG_{i:04d}.dng", spec)
        captures.append(capture)
        rows.append({"image": capture.path.name, "illuminant": capture.illuminant, "charts": [capture.card.tolist()]})
    write_capture_ground_truth(root / CAPTURE_GROUND_TRUTH, rows)
    return captures


def make_raw_png(root: str | Path, n: int = 3) -> dict:
    """A small ``raw_png`` dataset, written by ``label-awb`` from ``n`` generated captures beside ``root``."""
    from moto_vision.data.curation.label_awb import label_awb

    root = Path(root)
    captures = root.parent / f"{root.name}_captures"
    for i in range(n):
        spec = CaptureSpec(size=(384, 512), seed=300 + i, cct=3000.0 + 1500.0 * i, angle=-4.0 * i)
        make_capture(captures / f"IMG_{i:04d}.dng", spec)
    return label_awb(captures, root, workers=1, contact_sheet=False, progress=False)

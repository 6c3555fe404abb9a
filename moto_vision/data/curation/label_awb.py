"""``moto-vision data label-awb``: from a folder of raw captures with a colour checker to a labelled AWB dataset.

For each capture (DNG, or another raw format LibRaw reads) under ``ROOT``:

1. decode it to linear camera RGB (:func:`moto_vision.data.raw.read_raw`: black level per channel, white level,
   saturated pixels marked, orientation applied, 2x2 binning);
2. find the 24-patch ColorChecker with OpenCV's ``mcc`` detector (``opencv-contrib-python-headless``) on an 8-bit
   rendering balanced by the phone's own ``AsShotNeutral`` (the detector matches patch colours to find the chart's
   orientation), or take its corners from the override file;
3. sample the centre of each patch in the *linear* image; the illuminant is the sum of the unsaturated, bright
   enough achromatic patches (white and neutral 8 to 3.5; the black patch is left out: flare and noise dominate
   it), which must agree with each other (a shadow or a second light across the chart makes them disagree);
4. record the chart's polygon (the patch box widened by ``mask_margin`` chart units to cover the card) as the mask.

The output folder is a dataset in the ``raw_png`` format (``images/*.png`` + ``ground_truth.csv``) that
``AWBDataModule``, ``data check``, ``data report`` and ``data split`` read as they are, plus ``labels.json`` (every
patch, every number), ``failures.json`` / ``failures.csv`` (one reason per file), ``overrides_template.yaml`` (the
misses, ready for corners to be filled in and passed back with ``--overrides``) and ``contact_sheet*.png`` for a
person to review. Nothing is written into ``ROOT``.

Why OpenCV's ``mcc`` rather than ``colour-checker-detection``: it is one compiled function with no model download,
it reports the chart's orientation from the patch colours (so an upside-down chart still gives the right grey row),
it is already a dependency of the capture extra, and on the generated benchmark set it finds charts of 20% of the
image width and more nearly always (``benchmarks/label_awb.py``, ``docs/benchmarks.md``). The chart geometry,
detection and refinement live in :mod:`moto_vision.data.curation.colour_checker`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moto_vision.data.curation.colour_checker import (
    ACHROMATIC_PATCHES,
    box_from_patch_corners,
    box_homography,
    detect_charts,
    model_corners,
    patch_quads,
    plausible_box,
    refine_box,
    sample_patches,
    transform,
)

__all__ = [
    "FAILURES",
    "LabelOptions",
    "LabelResult",
    "label_awb",
    "label_capture",
    "load_overrides",
]

#: Failure codes, one per file, with what they mean.
FAILURES: dict[str, str] = {
    "missing_file": "the file disappeared while labelling",
    "unreadable": "not a raw file LibRaw can decode (wrong format, corrupt)",
    "truncated": "the file is shorter than its own header says (an interrupted copy)",
    "missing_color_matrix": "no ColorMatrix tag: the ground truth cannot be placed on the CCT axis nor previewed",
    "no_chart": "the colour-checker detector found no chart (add its corners to the override file)",
    "chart_cut": "the chart runs over the image border",
    "chart_clipped": "too few unsaturated grey patches (the chart is overexposed)",
    "patches_too_dark": "too few grey patches above the noise floor (the chart is underexposed or in shadow)",
    "patches_disagree": "the grey patches point at different lights (a shadow, flare or a second light on the chart)",
    "charts_disagree": "two charts in the frame see different lights (mixed lighting)",
    "excluded": "excluded in the override file",
    "error": "an unexpected error (the message says which); please report it",
}


@dataclass(frozen=True)
class LabelOptions:
    """How captures are labelled (the ``label-awb`` options).

    Attributes:
        mask_margin: chart units (a patch is 2.5) the mask extends beyond the patch box, to cover the card.
        min_level: a grey patch darker than this share of the white level (green channel) is too dark to use.
        max_clipped: share of saturated pixels above which a patch counts as clipped.
        min_patches: grey patches a chart needs to give a label.
        max_patch_spread: largest angle (degrees) between a used grey patch and the chart's estimate.
        max_chart_disagreement: largest angle (degrees) between the estimates of two charts in one frame.
        max_charts: charts to look for per frame (2 finds mixed-light setups with a chart per light).
        detect_size: long side (pixels) of the image the detector sees.
        sample: share of each patch side sampled around its centre (the rest guards against corner error).
        saturation: share of the range above black at which a raw photosite counts as saturated.
        max_size: long side of the written PNGs (``None``: the half-size raw image as it is).
        refine: refit the detector's box to the measured patch centres (:func:`refine_box`).
    """

    mask_margin: float = 1.0
    min_level: float = 0.01
    max_clipped: float = 0.001
    min_patches: int = 2
    max_patch_spread: float = 3.0
    max_chart_disagreement: float = 2.0
    max_charts: int = 2
    detect_size: int = 1200
    sample: float = 0.5
    saturation: float = 0.98
    max_size: int | None = None
    refine: bool = True


@dataclass
class Chart:
    """One chart found in a capture (pixel coordinates of the oriented, half-size image; polygon relative)."""

    box: list[list[float]]
    polygon: list[list[float]]
    source: str
    cost: float | None = None
    patches: list[list[float]] | None = None
    grey_status: dict[str, str] = field(default_factory=dict)
    illuminant: list[float] | None = None
    spread: float | None = None
    code: str | None = None
    reason: str = ""


@dataclass
class LabelResult:
    """The outcome for one capture; ``code`` is ``None`` when it was labelled."""

    image: str
    code: str | None = None
    reason: str = ""
    illuminant: list[float] | None = None
    cct: float | None = None
    duv: float | None = None
    camera_error: float | None = None
    output: str | None = None
    charts: list[Chart] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    size: tuple[int, int] | None = None
    seconds: float = 0.0
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.code is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("thumbnails")
        return data


class LabelFailure(Exception):
    """Internal: stops labelling one capture with a failure code."""

    def __init__(self, code: str, reason: str) -> None:
        self.code, self.reason = code, reason
        super().__init__(reason)


def _one_per_chart(charts: list[Chart]) -> list[Chart]:
    """Keep one of the detections that overlap (the detector can report one chart twice, once misplaced).

    Of overlapping detections the one that gave a label with the most consistent grey patches wins, else the
    detector's best fit.
    """

    def centre_and_size(chart: Chart) -> tuple[np.ndarray, float]:
        box = np.asarray(chart.box)
        return box.mean(axis=0), float(np.linalg.norm(box[2] - box[0]))

    ranked = sorted(
        charts, key=lambda c: (c.illuminant is None, c.spread if c.spread is not None else math.inf, c.cost or 0.0)
    )
    kept: list[Chart] = []
    for chart in ranked:
        centre, size = centre_and_size(chart)
        if all(np.linalg.norm(centre - centre_and_size(k)[0]) > 0.5 * min(size, centre_and_size(k)[1]) for k in kept):
            kept.append(chart)
    return kept


# ------------------------------------------------------------------------------------------------ estimation
def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _unit(np.asarray(a, np.float64)), _unit(np.asarray(b, np.float64))
    return math.degrees(math.atan2(float(np.linalg.norm(np.cross(a, b))), float(a @ b)))


def _measure_chart(chart: Chart, image: np.ndarray, valid: np.ndarray, options: LabelOptions) -> None:
    """Sample the patches of ``chart`` and estimate its illuminant (or set its failure ``code``)."""
    height, width = image.shape[:2]
    box = np.asarray(chart.box, np.float64)
    homography = box_homography(box)
    quads = patch_quads(homography, options.sample)
    if quads.min() < 0 or quads[..., 0].max() >= width - 1 or quads[..., 1].max() >= height - 1:
        chart.code, chart.reason = "chart_cut", "the chart's patches run over the image border"
        return
    means, clipped, counts = sample_patches(image, valid, quads)
    chart.patches = np.round(means, 7).tolist()
    used, n_clipped, n_dark = [], 0, 0
    names = ("white", "neutral 8", "neutral 6.5", "neutral 5", "neutral 3.5")
    for name, index in zip(names, ACHROMATIC_PATCHES):
        if counts[index] < 4:
            status = "too_small"
        elif clipped[index] > options.max_clipped:
            status, n_clipped = "clipped", n_clipped + 1
        elif means[index, 1] < options.min_level:
            status, n_dark = "dark", n_dark + 1
        else:
            status = "used"
            used.append(means[index])
        chart.grey_status[name] = status
    if len(used) < options.min_patches:
        if n_clipped >= n_dark:
            chart.code = "chart_clipped"
            chart.reason = f"{n_clipped} of {len(names)} grey patches are saturated, {len(used)} usable"
        else:
            chart.code = "patches_too_dark"
            chart.reason = (
                f"{n_dark} of {len(names)} grey patches are below {options.min_level:g} of the white level, "
                f"{len(used)} usable; expose the chart brighter"
            )
        return
    if any(float(np.min(u)) <= 0 for u in used):
        chart.code, chart.reason = "patches_too_dark", "a grey patch has a channel at or below black"
        return
    estimate = np.sum(used, axis=0)
    chart.spread = max(_angle(u, estimate) for u in used)
    if chart.spread > options.max_patch_spread:
        chart.code = "patches_disagree"
        chart.reason = (
            f"the grey patches differ by up to {chart.spread:.1f} deg from their mean (limit "
            f"{options.max_patch_spread:g}): uneven light on the chart?"
        )
        return
    chart.illuminant = _unit(estimate).tolist()


def _chart(box: np.ndarray, source: str, cost: float | None, size: tuple[int, int], options: LabelOptions) -> Chart:
    height, width = size
    polygon = transform(box_homography(box), model_corners(options.mask_margin)) / [width, height]
    polygon = np.round(polygon.astype(np.float64), 6).tolist()
    return Chart(box=np.round(box, 3).tolist(), polygon=polygon, source=source, cost=cost)


# ------------------------------------------------------------------------------------------------ one capture
def _illuminant_cct(illuminant: np.ndarray, matrices: Any) -> tuple[float, float]:
    import torch

    from moto_vision.isp import illuminant_to_cct
    from moto_vision.isp.dng import camera_to_srgb_matrix

    neutral = torch.tensor(illuminant, dtype=torch.float64)
    srgb = camera_to_srgb_matrix(neutral, matrices[0], matrices[1], adapt=False) @ neutral
    cct, duv = illuminant_to_cct(srgb.clamp_min(1e-9))
    return float(cct), float(duv)


def _write_png(path: Path, image: np.ndarray, valid: np.ndarray, max_size: int | None) -> tuple[int, int]:
    """16-bit PNG of linear camera RGB: white level at 65534, saturated pixels 65535 (the ``raw_png`` format)."""
    import cv2

    from moto_vision.data.awb.formats import RAW_PNG_INVALID

    height, width = image.shape[:2]
    if max_size is not None and max(height, width) > max_size:
        scale = max_size / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        weight = valid.astype(np.float32)
        summed = cv2.resize(np.clip(image, 0, 1) * weight[..., None], size, interpolation=cv2.INTER_AREA)
        coverage = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        valid = coverage >= 0.5
        image = summed / np.maximum(coverage, 1e-6)[..., None]
    counts = np.round(np.clip(image, 0, 1) * (RAW_PNG_INVALID - 1)).astype(np.uint16)
    counts[~valid] = RAW_PNG_INVALID
    path.parent.mkdir(parents=True, exist_ok=True)
    # zlib level 1: 30% faster than level 3 on 16-bit raw data for files 0.5% larger (measured on a 3 MP image).
    if not cv2.imwrite(str(path), np.ascontiguousarray(counts[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"cannot write {path}")
    return counts.shape[0], counts.shape[1]


def _thumbnails(
    image: np.ndarray, neutral: np.ndarray | None, illuminant: np.ndarray | None, matrices: Any, size: int
) -> dict[str, np.ndarray]:
    """8-bit previews for the contact sheet: as the camera balanced it, and corrected with the label."""
    import cv2
    import torch

    from moto_vision.isp import render_dng_preview

    height, width = image.shape[:2]
    scale = size / max(height, width)
    small = cv2.resize(np.clip(image, 0, None), (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    batch = torch.from_numpy(small).permute(2, 0, 1)[None].float()
    if matrices is None:
        mats, ccts = torch.full((1, 2, 3, 3), float("nan")), torch.full((1, 2), float("nan"))
    else:
        mats, ccts = matrices[0][None], matrices[1][None]
    out = {}
    for name, white in (("as_shot", neutral if neutral is not None else np.ones(3)), ("corrected", illuminant)):
        if white is None:  # no label: nothing to correct with
            continue
        preview = render_dng_preview(batch, torch.tensor(np.asarray(white))[None].float(), mats, ccts)
        out[name] = (preview[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return out


def label_capture(
    path: str | Path,
    root: str | Path,
    out: str | Path | None,
    options: LabelOptions = LabelOptions(),
    override: dict[str, Any] | None = None,
    thumbnail: int = 0,
) -> LabelResult:
    """Label one capture (see the module docstring); never raises for bad data, the result says what went wrong.

    Args:
        path: the raw file.
        root: the capture folder (names in the result are relative to it).
        out: output folder; the PNG goes to ``out/images/<relative path>.png`` (``None``: write nothing).
        options: thresholds and sizes.
        override: this file's entry of the override file (``{"corners": [...]}`` or ``{"exclude": reason}``).
        thumbnail: long side of the contact-sheet previews (0: none).

    Returns:
        The :class:`LabelResult`.
    """
    start = time.perf_counter()
    path, root = Path(path), Path(root)
    result = LabelResult(image=path.relative_to(root).as_posix())
    capture = None
    matrices = None
    neutral = None
    try:
        if override is not None and override.get("exclude"):
            raise LabelFailure("excluded", str(override["exclude"]))
        from moto_vision.data.raw import RawReadError, read_raw

        try:
            capture = read_raw(path, saturation=options.saturation)
        except RawReadError as error:
            raise LabelFailure(error.code if error.code in FAILURES else "unreadable", error.detail) from None
        metadata = capture.metadata
        result.metadata = metadata.to_dict()
        image = capture.image.permute(1, 2, 0).numpy()
        valid = capture.valid.numpy()
        result.size = (int(image.shape[0]), int(image.shape[1]))
        found_neutral = metadata.neutral()
        neutral = None if found_neutral is None else np.asarray(found_neutral, np.float64)
        matrices = metadata.xyz_to_camera()
        if matrices is None:
            raise LabelFailure(
                "missing_color_matrix",
                "the file has no ColorMatrix1/ColorMatrix2 tag, so the label's CCT and the previews cannot be "
                "computed; convert it with Adobe DNG Converter or a raw tool that writes the camera profile",
            )
        if override is not None and override.get("corners") is not None:
            scale = image.shape[1] / float(metadata.width or image.shape[1] * 2)
            charts = []
            for corners in override["corners"]:
                box = box_from_patch_corners(np.asarray(corners, np.float64) * scale)
                charts.append(_chart(box, "override", None, result.size, options))
        else:
            found = detect_charts(image, neutral, options.max_charts, options.detect_size)
            if not found:
                raise LabelFailure("no_chart", "no colour checker found; give its corners in the override file")
            boxes = [(refine_box(image, box) if options.refine else box, cost) for box, cost in found]
            charts = [_chart(box, "detector", cost, result.size, options) for box, cost in boxes if plausible_box(box)]
            if not charts:
                reason = "the detector's outline is not a plausible chart; give its corners in the override file"
                raise LabelFailure("no_chart", reason)
        for chart in charts:
            _measure_chart(chart, image, valid, options)
        # Every chart found is masked (a clipped second chart must not leak into training); labelled ones first.
        charts = _one_per_chart(charts)
        result.charts = charts
        good = [c for c in charts if c.illuminant is not None]
        if not good:
            raise LabelFailure(charts[0].code or "no_chart", charts[0].reason)
        if len(good) > 1:
            worst = max(_angle(a.illuminant, b.illuminant) for a in good for b in good)  # type: ignore[arg-type]
            if worst > options.max_chart_disagreement:
                raise LabelFailure(
                    "charts_disagree",
                    f"{len(good)} charts differ by {worst:.1f} deg (limit {options.max_chart_disagreement:g}): "
                    "mixed lighting; the scene has no single illuminant",
                )
        illuminant = _unit(np.sum([c.illuminant for c in good], axis=0))
        result.illuminant = illuminant.tolist()
        result.cct, result.duv = _illuminant_cct(illuminant, matrices)
        if neutral is not None:
            result.camera_error = _angle(neutral, illuminant)
        if out is not None:
            relative = Path(result.image).with_suffix(".png")
            _write_png(Path(out) / "images" / relative, image, valid, options.max_size)
            result.output = (Path("images") / relative).as_posix()
    except LabelFailure as failure:
        result.code, result.reason = failure.code, failure.reason
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the run; the message names it
        result.code, result.reason = "error", f"{type(error).__name__}: {error}"
    if thumbnail and capture is not None:
        try:
            illuminant_arr = None if result.illuminant is None else np.asarray(result.illuminant)
            image = capture.image.permute(1, 2, 0).numpy()
            result.thumbnails = _thumbnails(image, neutral, illuminant_arr, matrices, thumbnail)
        except Exception:  # noqa: BLE001 - a preview problem must not lose the label
            result.thumbnails = {}
    result.seconds = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------------------ overrides
def load_overrides(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read an override file (YAML or JSON) keyed by the capture's path relative to ``ROOT``.

    Each entry is ``{"corners": [[x, y], [x, y], [x, y], [x, y]]}`` (one chart) or a list of such corner lists
    (several charts): the outer corners of the 24-patch area in pixels of the full-resolution image as a viewer
    shows it (orientation applied), starting at the corner of the "dark skin" patch and going clockwise with the
    chart upright; or ``{"exclude": "reason"}`` to leave a capture out.
    """
    if path is None:
        return {}
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the override file ({error}).") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of image path -> {{corners: ...}} or {{exclude: reason}}.")
    overrides = {}
    for name, entry in data.items():
        where = f"{path}: entry {name!r}"
        if not isinstance(entry, dict) or not ({"corners", "exclude"} & set(entry)):
            raise ValueError(f"{where}: expected {{corners: [[x, y] x 4]}} or {{exclude: reason}}, got {entry!r}.")
        corners = entry.get("corners")
        if corners is not None:
            array = np.asarray(corners, dtype=np.float64)
            if array.shape == (4, 2):
                array = array[None]
            if array.ndim != 3 or array.shape[1:] != (4, 2) or not np.all(np.isfinite(array)):
                raise ValueError(f"{where}: corners must be 4 [x, y] points (or a list of such lists), got {corners}.")
            if not array.any():
                continue  # a template entry nobody filled in
            x, y = array[..., 0], array[..., 1]
            area = 0.5 * np.abs((x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1))
            if (area < 100).any():
                raise ValueError(f"{where}: the corners {corners} enclose no area; give the patch area's 4 corners.")
            entry = {**entry, "corners": array.tolist()}
        overrides[str(name)] = entry
    return overrides


# ------------------------------------------------------------------------------------------------ the run
def find_captures(root: Path) -> list[Path]:
    """Raw files under ``root`` (recursively), sorted."""
    from moto_vision.data.raw import is_raw_file

    return sorted(p for p in root.rglob("*") if p.is_file() and is_raw_file(p))


def _check_folders(root: Path, out: Path, overwrite: bool) -> None:
    root_r, out_r = root.resolve(), out.resolve()
    if out_r == root_r or root_r in out_r.parents:
        raise ValueError(
            f"--out {out} is inside the capture folder {root}: label-awb never writes into ROOT; "
            "choose a folder outside it."
        )
    if out_r in root_r.parents:
        raise ValueError(f"--out {out} contains the capture folder {root}; choose a folder beside it, not above it.")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"--out {out} is not empty; choose a new folder or pass --overwrite (label-awb then replaces only "
            "the files it writes)."
        )


def _run(
    jobs: list[tuple[Path, dict[str, Any] | None]],
    root: Path,
    out: Path,
    options: LabelOptions,
    workers: int,
    thumbnail: int,
    progress: bool,
) -> Iterator[LabelResult]:
    import torch
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="label-awb", unit="capture", disable=not progress, dynamic_ncols=True)
    threads = torch.get_num_threads()
    # Captures run in parallel processes; within one, the tensors are small enough that extra threads only spin.
    torch.set_num_threads(1)
    try:
        if workers <= 1 or len(jobs) < 2:
            for path, override in jobs:
                yield label_capture(path, root, out, options, override, thumbnail)
                bar.update()
            return
        import multiprocessing

        # Workers fork from a fresh server process, not from this one: LibRaw and torch use OpenMP, which is not safe
        # in a child forked after the parent ran OpenMP work. The server imports the heavy modules once.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, "moto_vision.data.raw", "moto_vision.isp", "cv2", "rawpy"])
        arguments = [(path, root, out, options, override, thumbnail) for path, override in jobs]
        with context.Pool(workers) as pool:
            for result in pool.imap(_label_star, arguments):
                yield result
                bar.update()
    finally:
        bar.close()
        torch.set_num_threads(threads)


def _label_star(arguments: tuple) -> LabelResult:
    return label_capture(*arguments)


def _merge_metadata(path: Path | None) -> dict[str, dict[str, Any]]:
    """Per-capture columns from a CSV with an ``image`` column (light type, indoor/outdoor, session, ...)."""
    if path is None:
        return {}
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        if "image" not in (reader.fieldnames or []):
            raise ValueError(f"{path}: the metadata CSV needs an 'image' column (paths relative to ROOT).")
        return {row["image"]: {k: v for k, v in row.items() if k != "image" and v not in (None, "")} for row in reader}


def _ground_truth_rows(results: Sequence[LabelResult], extra: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from moto_vision.data.raw import RawMetadata

    rows = []
    for result in results:
        if not result.ok or result.output is None:
            continue
        metadata = RawMetadata(**{k: tuple(v) if isinstance(v, list) else v for k, v in result.metadata.items()})
        matrices = metadata.xyz_to_camera()
        assert matrices is not None
        row: dict[str, Any] = {
            "image": result.output,
            "illuminant": result.illuminant,
            "charts": [chart.polygon for chart in result.charts],
            "as_shot_neutral": metadata.neutral(),
            "xyz_to_camera": matrices[0].reshape(2, 9).tolist(),
            "calibration_cct": matrices[1].tolist(),
            "group": Path(result.image).with_suffix("").as_posix(),
            "source": result.image,
            "camera": metadata.camera,
            "iso": metadata.iso,
            "exposure_time": metadata.exposure_time,
            "baseline_exposure": metadata.baseline_exposure,
            "cct": None if result.cct is None else round(result.cct, 1),
            "duv": None if result.duv is None else round(result.duv, 5),
            "chart_source": result.charts[0].source if result.charts else None,
        }
        row.update(extra.get(result.image, {}))
        rows.append(row)
    return rows


def _write_failures(out: Path, failures: Sequence[LabelResult]) -> None:
    records = [{"image": r.image, "code": r.code, "reason": r.reason} for r in failures]
    (out / "failures.json").write_text(json.dumps(records, indent=1) + "\n")
    with (out / "failures.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "code", "reason"])
        writer.writeheader()
        writer.writerows(records)
    lines = [
        "# label-awb overrides: give the chart corners of the captures the detector missed, then run again with",
        "#   moto-vision data label-awb ROOT --out DIR --overrides THIS_FILE --overwrite",
        "# corners: outer corners of the 24-patch area, pixels of the full-resolution image as a viewer shows it,",
        "# starting at the 'dark skin' patch and going clockwise with the chart upright. Several charts: a list of",
        "# such lists. Or `exclude: reason` to leave a capture out. Entries left at [[0, 0], ...] are ignored.",
    ]
    for record in records:
        lines.append(f"# {record['code']}: {record['reason']}")
        lines.append(f"{json.dumps(record['image'])}:")
        lines.append("  corners: [[0, 0], [0, 0], [0, 0], [0, 0]]")
    (out / "overrides_template.yaml").write_text("\n".join(lines) + "\n")


def label_awb(
    root: str | Path,
    out: str | Path,
    options: LabelOptions = LabelOptions(),
    overrides: str | Path | None = None,
    metadata: str | Path | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    contact_sheet: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Label every raw capture under ``root`` and write the dataset to ``out`` (see the module docstring).

    Args:
        root: capture folder (read only).
        out: output folder (created; must be empty unless ``overwrite``).
        options: thresholds and sizes.
        overrides: YAML/JSON override file (:func:`load_overrides`).
        metadata: CSV with an ``image`` column whose other columns (``light``, ``scene``, ``group``, ...) are added
            to the ground truth, for ``data report`` specs and ``data split`` groups.
        overwrite: write into a non-empty ``out`` (replacing label-awb's own files only).
        workers: processes (default: one per 8 captures, at most the CPU count).
        contact_sheet: draw the contact sheet PNGs.
        progress: show a progress bar.

    Returns:
        A summary: counts, failures per code, the files written, seconds.
    """
    from moto_vision.data.awb.formats import CAPTURE_GROUND_TRUTH, write_capture_ground_truth

    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"capture folder {root} does not exist or is not a folder.")
    _check_folders(root, out, overwrite)
    override_map = load_overrides(overrides)
    extra = _merge_metadata(Path(metadata) if metadata else None)
    captures = find_captures(root)
    if not captures:
        from moto_vision.data.raw import RAW_SUFFIXES

        raise FileNotFoundError(f"no raw captures ({', '.join(RAW_SUFFIXES)}) under {root}.")
    names = {p.relative_to(root).as_posix() for p in captures}
    stems: dict[str, str] = {}
    for name in sorted(names):
        other = stems.setdefault(str(Path(name).with_suffix("")), name)
        if other != name:
            raise ValueError(
                f"{root}: {other} and {name} would both be written as {Path(name).with_suffix('.png')}; "
                "keep one raw file per shot (move the other out of ROOT)."
            )
    unknown = sorted(set(override_map) - names)
    if unknown:
        raise ValueError(f"{overrides}: entries {unknown[:5]} name no capture under {root} (paths relative to ROOT).")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(p, override_map.get(p.relative_to(root).as_posix())) for p in captures]
    # Starting worker processes costs seconds (each imports torch): by default one per 8 captures, up to the cores.
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) if workers else len(jobs) // 8))
    results = list(_run(jobs, root, out, options, workers, 192 if contact_sheet else 0, progress))
    seconds = time.perf_counter() - started
    labelled = [r for r in results if r.ok]
    failures = [r for r in results if not r.ok]
    rows = _ground_truth_rows(labelled, extra)
    if rows:
        write_capture_ground_truth(out / CAPTURE_GROUND_TRUTH, rows)
    _write_failures(out, failures)
    summary = {
        "root": str(root),
        "out": str(out),
        "captures": len(results),
        "labelled": len(labelled),
        "failed": len(failures),
        "failures": {code: n for code in FAILURES if (n := sum(r.code == code for r in failures))},
        "seconds": round(seconds, 2),
        "captures_per_second": round(len(results) / seconds, 3) if seconds > 0 else None,
        "workers": workers,
        "options": asdict(options),
    }
    details = {"summary": summary, "captures": [r.to_dict() for r in results]}
    (out / "labels.json").write_text(json.dumps(details, indent=1) + "\n")
    if contact_sheet:
        from moto_vision.data.curation.contact_sheet import write_contact_sheets

        summary["contact_sheets"] = [str(p) for p in write_contact_sheets(results, out, sample=options.sample)]
    return summary


def main_summary(summary: dict[str, Any]) -> str:
    """The lines ``label-awb`` prints at the end."""
    lines = [
        f"{summary['captures']} captures: {summary['labelled']} labelled, {summary['failed']} failed "
        f"in {summary['seconds']:.1f} s ({summary['captures_per_second']} captures/s, {summary['workers']} worker(s))"
    ]
    for code, count in summary["failures"].items():
        lines.append(f"  {count} x {code}: {FAILURES[code]}")
    out = Path(summary["out"])
    lines.append(f"dataset (format raw_png): {out / 'ground_truth.csv'} and {out / 'images'}")
    lines.append(f"review: {', '.join(summary.get('contact_sheets', [])) or '(no contact sheet)'}")
    if summary["failed"]:
        lines.append(f"failures: {out / 'failures.csv'}; fill in {out / 'overrides_template.yaml'} and run again")
    if summary["labelled"]:
        lines.append(f"train on it: lightning fit --config recipes/awb.yaml --data.format raw_png --data.root {out}")
    else:
        lines.append("nothing was labelled, so there is nothing to train on yet: see the failures above")
    return "\n".join(lines)

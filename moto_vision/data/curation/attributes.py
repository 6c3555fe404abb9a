"""Per-sample attributes (the columns that reports, collection specs and splits talk about).

:func:`sample_table` turns a :class:`~moto_vision.data.curation.checks.DatasetScan` into one row per sample:

=================== =========================================================================================
``path``            image path relative to the dataset root
``split``, ``group`` the record's split and capture group
``class``           list of class names: scene labels; portrait class ids present in a label mask; AWB: empty
``width``, ``height``, ``megapixels``, ``aspect_ratio`` (width / height)
``luminance``       mean luma on the display (gamma-encoded) scale, 0..1
``clipped_fraction`` share of pixels with a channel at >= 98 % of its range; ``dark_fraction``: luma < 0.05
``dark``, ``clipped`` the image counts as dark (luminance below the threshold) / clipped (clipped share above it)
``mask_area``       foreground share of the mask (portrait)
``boundary_length`` label boundary length in image perimeters, ``2 * (H + W)`` pixels (portrait)
``cct``, ``tint``   correlated colour temperature (K) and Duv of the ground-truth illuminant (AWB)
``extra.<key>``     every scalar in ``SampleRecord.extra`` (camera, session, ...)
=================== =========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from moto_vision.data.curation.checks import DatasetScan

__all__ = [
    "CATEGORICAL",
    "DARK_LUMINANCE",
    "CLIPPED_SHARE",
    "NUMERIC",
    "illuminant_cct_tint",
    "sample_table",
    "value_of",
]

DARK_LUMINANCE = 0.10  # mean display luma below this: a dark image (about 25/255)
CLIPPED_SHARE = 0.02  # more than 2 % clipped pixels: a clipped image

NUMERIC = (
    "width",
    "height",
    "megapixels",
    "aspect_ratio",
    "luminance",
    "clipped_fraction",
    "dark_fraction",
    "mask_area",
    "boundary_length",
    "cct",
    "tint",
)
CATEGORICAL = ("class", "split", "group", "dark", "clipped")


def illuminant_cct_tint(illuminants: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CCT (K) and tint (Duv) of camera-RGB illuminants ``(N, 3)``, via ``moto_vision.isp.illuminant_to_cct``."""
    import torch

    from moto_vision.isp import illuminant_to_cct

    rgb = torch.as_tensor(np.asarray(illuminants, dtype=np.float32)).reshape(-1, 3)
    result = illuminant_to_cct(rgb)
    cct, tint = result if isinstance(result, tuple) else (result, torch.full_like(result, float("nan")))
    return cct.detach().double().numpy().reshape(-1), tint.detach().double().numpy().reshape(-1)


def _to_srgb(record: Any) -> np.ndarray:
    """The record's illuminant in linear sRGB: through ``extra["camera_to_srgb"]`` (3x3) when the indexer gives it."""
    rgb = np.asarray(record.illuminant, dtype=np.float64)
    matrix = record.extra.get("camera_to_srgb")
    if matrix is not None:
        rgb = np.clip(np.asarray(matrix, dtype=np.float64).reshape(3, 3) @ rgb, 1e-6, None)
    return rgb


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def sample_table(
    scan: DatasetScan, dark_luminance: float = DARK_LUMINANCE, clipped_share: float = CLIPPED_SHARE
) -> list[dict[str, Any]]:
    """One dict of attributes per sample of ``scan`` (see the module docstring for the keys)."""
    records, stats = scan.records, scan.stats
    cct = tint = None
    if scan.task == "awb":
        valid = [
            i
            for i, r in enumerate(records)
            if r.illuminant is not None and all(math.isfinite(float(v)) and float(v) > 0 for v in r.illuminant)
        ]
        cct = np.full(len(records), np.nan)
        tint = np.full(len(records), np.nan)
        if valid:
            values = np.array([_to_srgb(records[i]) for i in valid], dtype=np.float64)
            cct[valid], tint[valid] = illuminant_cct_tint(values / values.sum(axis=1, keepdims=True))
    names = scan.rules.classes
    rows = []
    for i, (record, s) in enumerate(zip(records, stats)):
        if scan.task == "scene":
            classes = list(record.labels or [])
        elif record.extra.get("part_ids") is not None:  # per-part mask files: the parts present are the classes
            classes = [
                str(names[c]) if names is not None and c < len(names) else str(c) for c in record.extra["part_ids"]
            ]
        elif s.class_fractions is not None:
            class_names = record.extra.get("class_names") or names
            classes = [
                str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)
                for c in sorted(s.class_fractions)
                if s.class_fractions[c] > 0
            ]
        else:
            classes = []
        row: dict[str, Any] = {
            "path": scan.relpath(i),
            "split": record.split,
            "group": scan.groups[i],
            "class": classes,
            "width": s.width,
            "height": s.height,
            "megapixels": None if s.width is None else s.width * s.height / 1e6,
            "aspect_ratio": None if s.width is None else s.width / s.height,
            "luminance": s.luminance,
            "clipped_fraction": s.clipped_fraction,
            "dark_fraction": s.dark_fraction,
            "dark": None if s.luminance is None else s.luminance < dark_luminance,
            "clipped": None if s.clipped_fraction is None else s.clipped_fraction > clipped_share,
            "mask_area": s.mask_area,
            "boundary_length": s.boundary_length,
            "cct": None if cct is None or not math.isfinite(cct[i]) else float(cct[i]),
            "tint": None if tint is None or not math.isfinite(tint[i]) else float(tint[i]),
        }
        if record.illuminant is not None:
            row["illuminant"] = [float(v) for v in record.illuminant]
        for key, value in record.extra.items():
            if _scalar(value):
                row[f"extra.{key}"] = value
        rows.append(row)
    return rows


def value_of(row: dict[str, Any], attribute: str) -> Any:
    """The value of ``attribute`` in a row (``None`` when the sample lacks it)."""
    return row.get(attribute)


def numeric_values(rows: Sequence[dict[str, Any]], attribute: str) -> np.ndarray:
    """The finite numeric values of ``attribute`` over ``rows``."""
    values = [row.get(attribute) for row in rows]
    return np.array(
        [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    )

"""``moto-vision data report``: coverage statistics and plots, written as ``report.md`` + PNGs + ``report.json``.

The report is made to be read in a minute: what the checks found, the verdict on each requirement of a
collection spec, then the counts per class and split, image sizes, exposure, and the task's own view (AWB:
illuminants as CCT and tint on the Planckian locus; portrait: mask area and boundary length; scene: label
co-occurrence). ``samples.csv`` holds the per-sample attributes for a spreadsheet.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moto_vision.data.curation.attributes import CLIPPED_SHARE, DARK_LUMINANCE, numeric_values, sample_table
from moto_vision.data.curation.checks import CHECKS, DatasetScan
from moto_vision.data.curation.scan import HIST_BINS
from moto_vision.data.curation.spec import CollectionSpec, evaluate_spec
from moto_vision.data.curation.split import DEFAULT_CCT_BINS, cct_bin_labels

__all__ = ["build_report", "write_report"]


def _split_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    present = {row["split"] or "none" for row in rows}
    return [s for s in ("train", "val", "test", "none") if s in present] + sorted(
        present - {"train", "val", "test", "none"}
    )


def _quantiles(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    q = np.quantile(values, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {"min": float(q[0]), "p5": float(q[1]), "median": float(q[2]), "p95": float(q[3]), "max": float(q[4])}


def _count_table(rows: Sequence[dict[str, Any]], key: str, splits: Sequence[str]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(splits, 0))
    for row in rows:
        value = row.get(key)
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                table[str(v)][row["split"] or "none"] += 1
    return {k: table[k] for k in sorted(table)}


def build_report(
    scan: DatasetScan,
    spec: CollectionSpec | None = None,
    dark_luminance: float = DARK_LUMINANCE,
    clipped_share: float = CLIPPED_SHARE,
    cct_bins: Sequence[float] = DEFAULT_CCT_BINS,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The report's numbers (``report.json``) and the per-sample table."""
    rows = sample_table(scan, dark_luminance, clipped_share)
    splits = _split_names(rows)
    decoded = [row for row in rows if row["luminance"] is not None]
    report: dict[str, Any] = {
        "dataset": {"root": str(scan.root), "task": scan.task, "format": scan.format, "samples": len(rows)},
        "checks": scan.to_dict(),
        "splits": {s: sum(1 for row in rows if (row["split"] or "none") == s) for s in splits},
        "classes": _count_table(rows, "class", splits),
        "groups": len({row["group"] for row in rows if row["group"] is not None}),
    }
    sizes = Counter(f"{row['width']}x{row['height']}" for row in decoded)
    report["sizes"] = {
        "most_common": dict(sizes.most_common(10)),
        "distinct": len(sizes),
        "megapixels": _quantiles(numeric_values(decoded, "megapixels")),
        "aspect_ratio": _quantiles(numeric_values(decoded, "aspect_ratio")),
    }
    histogram = scan.histogram
    report["exposure"] = {
        "dark_threshold": dark_luminance,
        "clipped_threshold": clipped_share,
        "dark_images": sum(1 for row in decoded if row["dark"]),
        "clipped_images": sum(1 for row in decoded if row["clipped"]),
        "dark_share": (sum(1 for row in decoded if row["dark"]) / len(decoded)) if decoded else None,
        "clipped_share": (sum(1 for row in decoded if row["clipped"]) / len(decoded)) if decoded else None,
        "luminance": _quantiles(numeric_values(decoded, "luminance")),
        "histogram": (histogram / max(1, len(decoded))).round(6).tolist(),
    }
    if scan.task == "awb":
        cct = numeric_values(rows, "cct")
        for row, label in zip(rows, cct_bin_labels([row["cct"] for row in rows], cct_bins)):
            row["cct_bin"] = label
        report["awb"] = {
            "cct": _quantiles(cct),
            "tint": _quantiles(numeric_values(rows, "tint")),
            "cct_bins": _count_table(rows, "cct_bin", splits),
            "note": "CCT/Duv treat the illuminant as linear sRGB (moto_vision.isp.illuminant_to_cct)",
        }
    if scan.task == "portrait":
        report["portrait"] = {
            "mask_area": _quantiles(numeric_values(rows, "mask_area")),
            "boundary_length": _quantiles(numeric_values(rows, "boundary_length")),
            "empty_masks": sum(1 for row in rows if row["mask_area"] == 0),
        }
    if scan.task == "scene":
        names = sorted({c for row in rows for c in row["class"]} | set(scan.rules.classes or ()))
        index = {c: i for i, c in enumerate(names)}
        matrix = np.zeros((len(names), len(names)), dtype=int)
        for row in rows:
            ids = sorted({index[c] for c in row["class"]})
            for a in ids:
                for b in ids:
                    matrix[a, b] += 1
        pairs = [
            (names[a], names[b], int(matrix[a, b]))
            for a in range(len(names))
            for b in range(a + 1, len(names))
            if matrix[a, b]
        ]
        report["scene"] = {
            "classes": names,
            "cooccurrence": matrix.tolist(),
            "labels_per_image": _quantiles(np.array([len(row["class"]) for row in rows], dtype=float)),
            "top_pairs": sorted(pairs, key=lambda p: -p[2])[:10],
        }
    if spec is not None:
        verdicts = evaluate_spec(spec, rows, scan.leaks)
        report["spec"] = {
            "source": spec.source,
            "name": spec.name,
            "met": all(v.met for v in verdicts),
            "verdicts": [v.to_dict() for v in verdicts],
        }
    return report, rows


# ----------------------------------------------------------------------------------------------- plots
def _figure(width: float = 10, height: float = 3.6, cols: int = 2) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(1, cols, squeeze=False)[0]


def _plot_counts(table: dict[str, dict[str, int]], title: str, path: Path, limit: int = 40) -> bool:
    if not table:
        return False
    classes = sorted(table, key=lambda c: -sum(table[c].values()))[:limit]
    splits = list(next(iter(table.values())))
    figure, (axis,) = _figure(max(6.0, 0.3 * len(classes) + 2), 3.6, 1)
    bottom = np.zeros(len(classes))
    for split in splits:
        values = np.array([table[c][split] for c in classes], dtype=float)
        axis.bar(range(len(classes)), values, bottom=bottom, label=split if split != "none" else "no split")
        bottom += values
    axis.set_xticks(range(len(classes)), classes, rotation=60 if len(classes) > 6 else 0, ha="right", fontsize=8)
    axis.set_ylabel("samples")
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=110)
    return True


def _plot_sizes(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    decoded = [row for row in rows if row["width"] is not None]
    if not decoded:
        return False
    figure, (left, right) = _figure()
    left.scatter([r["width"] for r in decoded], [r["height"] for r in decoded], s=6, alpha=0.4)
    left.set_xlabel("width (px)")
    left.set_ylabel("height (px)")
    left.set_title("image sizes")
    right.hist([r["aspect_ratio"] for r in decoded], bins=40)
    right.set_xlabel("aspect ratio (width / height)")
    right.set_ylabel("images")
    right.set_title("aspect ratios")
    figure.savefig(path, dpi=110)
    return True


def _plot_exposure(report: dict[str, Any], rows: Sequence[dict[str, Any]], path: Path) -> bool:
    exposure = report["exposure"]
    luminance = numeric_values(rows, "luminance")
    if luminance.size == 0:
        return False
    figure, (left, right) = _figure()
    centres = (np.arange(HIST_BINS) + 0.5) / HIST_BINS
    left.bar(centres, exposure["histogram"], width=1 / HIST_BINS)
    left.set_xlabel("luma (display scale)")
    left.set_ylabel("share of pixels")
    left.set_title("pixel luminance, all images")
    right.hist(luminance, bins=40, range=(0, 1))
    right.axvline(exposure["dark_threshold"], color="k", linestyle="--", linewidth=1)
    right.set_xlabel("mean luma per image")
    right.set_ylabel("images")
    right.set_title(f"dark {exposure['dark_share']:.1%}, clipped {exposure['clipped_share']:.1%}")
    figure.savefig(path, dpi=110)
    return True


def _plot_illuminants(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    import torch

    from moto_vision.isp import planckian_illuminant

    lit = [row for row in rows if row.get("illuminant") is not None and row["cct"] is not None]
    if not lit:
        return False
    figure, (left, right) = _figure(11, 4.2)
    rgb = np.array([row["illuminant"] for row in lit])
    chroma = rgb / rgb.sum(axis=1, keepdims=True)
    kelvin = np.geomspace(1900, 15000, 200)
    locus = planckian_illuminant(torch.tensor(kelvin)).numpy()
    locus = locus / locus.sum(axis=1, keepdims=True)
    left.plot(locus[:, 0], locus[:, 2], color="k", linewidth=1, label="Planckian locus")
    for k in (2000, 2500, 3000, 4000, 5000, 6500, 10000):
        point = planckian_illuminant(float(k)).numpy()
        point = point / point.sum()
        left.annotate(f"{k}K", (point[0], point[2]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        left.plot(point[0], point[2], "k.", markersize=4)
    points = left.scatter(chroma[:, 0], chroma[:, 2], c=[row["cct"] for row in lit], cmap="coolwarm_r", s=8, alpha=0.7)
    figure.colorbar(points, ax=left, label="CCT (K)")
    left.set_xlabel("r = R / (R+G+B)")
    left.set_ylabel("b = B / (R+G+B)")
    left.set_title("ground-truth illuminants")
    left.legend(fontsize=8)
    right.scatter([row["cct"] for row in lit], [row["tint"] for row in lit], s=8, alpha=0.6)
    right.axhline(0, color="k", linewidth=1)
    right.set_xscale("log")
    right.set_xlabel("CCT (K)")
    right.set_ylabel("tint (Duv; + green, - magenta)")
    right.set_title("CCT and tint")
    figure.savefig(path, dpi=110)
    return True


def _plot_masks(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    area, boundary = numeric_values(rows, "mask_area"), numeric_values(rows, "boundary_length")
    if area.size == 0:
        return False
    figure, (left, right) = _figure()
    left.hist(area, bins=40, range=(0, 1))
    left.set_xlabel("mask area (share of the image)")
    left.set_ylabel("images")
    left.set_title("foreground area")
    right.hist(boundary, bins=40)
    right.set_xlabel("boundary length (image perimeters)")
    right.set_title("mask boundary length")
    figure.savefig(path, dpi=110)
    return True


def _plot_cooccurrence(report: dict[str, Any], path: Path, limit: int = 40) -> bool:
    scene = report["scene"]
    names, matrix = scene["classes"][:limit], np.array(scene["cooccurrence"])[:limit, :limit]
    if not names:
        return False
    size = min(12.0, 2.5 + 0.3 * len(names))
    figure, (axis,) = _figure(size, size * 0.85, 1)
    image = axis.imshow(matrix, cmap="viridis")
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.set_title("label co-occurrence (diagonal: images per label)")
    figure.colorbar(image, ax=axis)
    figure.savefig(path, dpi=110)
    return True


# ----------------------------------------------------------------------------------------------- markdown
def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _q(stats: dict[str, float] | None, digits: int = 3) -> str:
    if not stats:
        return "n/a"
    return ", ".join(f"{k} {v:.{digits}g}" for k, v in stats.items())


def _markdown(report: dict[str, Any], figures: dict[str, str]) -> str:
    data, checks = report["dataset"], report["checks"]
    lines = [
        f"# Dataset report: {Path(data['root']).name}",
        "",
        f"`{data['root']}` read as task **{data['task']}**, format **{data['format']}**: "
        f"**{data['samples']}** samples, {report['groups']} capture groups. "
        f"Scanned in {checks['seconds']:.1f} s with {checks['workers']} worker(s).",
        "",
        "## Checks",
        "",
    ]
    if not checks["issues"]:
        lines.append("No problems found.")
    else:
        counts = f"{_plural(checks['errors'], 'error')}, {_plural(checks['warnings'], 'warning')}"
        lines.append(f"**{counts}** (every one is listed in report.json).")
        lines.append("")
        rows = []
        for severity in ("error", "warning"):
            for code, n in checks["summary"][severity].items():
                example = next(i for i in checks["issues"] if i["code"] == code and i["severity"] == severity)
                rows.append([severity, f"`{code}`", n, CHECKS[code][1], f"`{example['path']}`: {example['message']}"])
        lines += _table(["severity", "check", "count", "meaning", "first case"], rows)
    if "spec" in report:
        spec = report["spec"]
        verdict = "all requirements met" if spec["met"] else "**requirements not met**"
        lines += [
            "",
            f"## Collection spec: {spec['name'] or spec['source']}",
            "",
            f"`{spec['source']}`: {verdict}.",
            "",
        ]
        lines += _table(
            ["requirement", "expected", "observed", "verdict"],
            [
                [v["requirement"], v["expected"], v["observed"], "met" if v["met"] else "**UNMET**"]
                for v in spec["verdicts"]
            ],
        )
    splits = list(report["splits"])
    lines += ["", "## Samples per split", ""]
    lines += _table(["split", "samples"], [[s, n] for s, n in report["splits"].items()])
    if report["classes"]:
        lines += ["", "## Samples per class and split", ""]
        lines += _table(
            ["class", *splits, "total"], [[c, *v.values(), sum(v.values())] for c, v in report["classes"].items()]
        )
    if "classes" in figures:
        lines += ["", f"![classes]({figures['classes']})"]
    sizes = report["sizes"]
    lines += [
        "",
        "## Image sizes",
        "",
        f"{sizes['distinct']} distinct sizes; most common: "
        + ", ".join(f"{k} ({v})" for k, v in sizes["most_common"].items())
        + ".",
        "",
        f"- megapixels: {_q(sizes['megapixels'])}",
        f"- aspect ratio: {_q(sizes['aspect_ratio'])}",
    ]
    if "sizes" in figures:
        lines += ["", f"![sizes]({figures['sizes']})"]
    exposure = report["exposure"]
    if exposure["luminance"]:
        lines += [
            "",
            "## Exposure",
            "",
            f"Mean luma per image (display scale, 0-1): {_q(exposure['luminance'])}.",
            f"Dark images (mean luma < {exposure['dark_threshold']:g}): {exposure['dark_images']} "
            f"({exposure['dark_share']:.1%}); clipped images (> {exposure['clipped_threshold']:.0%} of pixels at "
            f"the top of the range): {exposure['clipped_images']} ({exposure['clipped_share']:.1%}).",
        ]
        if "exposure" in figures:
            lines += ["", f"![exposure]({figures['exposure']})"]
    if "awb" in report:
        awb = report["awb"]
        lines += ["", "## Illuminants", "", f"- CCT (K): {_q(awb['cct'], 4)}", f"- tint (Duv): {_q(awb['tint'], 2)}"]
        lines += [f"- {awb['note']}.", ""]
        lines += _table(
            ["CCT bin", *splits, "total"], [[c, *v.values(), sum(v.values())] for c, v in awb["cct_bins"].items()]
        )
        if "illuminants" in figures:
            lines += ["", f"![illuminants]({figures['illuminants']})"]
    if "portrait" in report:
        portrait = report["portrait"]
        lines += [
            "",
            "## Masks",
            "",
            f"- foreground area (share of the image): {_q(portrait['mask_area'])}",
            f"- boundary length (image perimeters): {_q(portrait['boundary_length'])}",
            f"- empty masks: {portrait['empty_masks']}",
        ]
        if "masks" in figures:
            lines += ["", f"![masks]({figures['masks']})"]
    if "scene" in report:
        scene = report["scene"]
        lines += ["", "## Labels", "", f"Labels per image: {_q(scene['labels_per_image'])}."]
        if scene["top_pairs"]:
            lines += ["", "Most frequent label pairs:", ""]
            lines += _table(["label", "label", "images"], scene["top_pairs"])
        if "cooccurrence" in figures:
            lines += ["", f"![co-occurrence]({figures['cooccurrence']})"]
    lines += [
        "",
        "Per-sample attributes: [samples.csv](samples.csv). Machine-readable numbers: [report.json](report.json).",
        "",
    ]
    return "\n".join(lines)


def _write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_report(
    scan: DatasetScan, out_dir: str | Path, spec: CollectionSpec | None = None, **options: Any
) -> tuple[Path, dict[str, Any]]:
    """Write ``report.md``, ``report.json``, ``samples.csv`` and the PNG plots into ``out_dir``.

    Returns:
        The path of ``report.md`` and the report's numbers.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report, rows = build_report(scan, spec, **options)
    figures: dict[str, str] = {}
    plots = {
        "classes": lambda p: _plot_counts(report["classes"], "samples per class", p),
        "sizes": lambda p: _plot_sizes(rows, p),
        "exposure": lambda p: _plot_exposure(report, rows, p),
    }
    if scan.task == "awb":
        plots["classes"] = lambda p: _plot_counts(report["awb"]["cct_bins"], "samples per CCT bin", p)
        plots["illuminants"] = lambda p: _plot_illuminants(rows, p)
    if scan.task == "portrait":
        plots["masks"] = lambda p: _plot_masks(rows, p)
    if scan.task == "scene":
        plots["cooccurrence"] = lambda p: _plot_cooccurrence(report, p)
    for name, plot in plots.items():
        if plot(out / f"{name}.png"):
            figures[name] = f"{name}.png"
    (out / "report.json").write_text(json.dumps(_jsonable(report), indent=1) + "\n")
    _write_csv(rows, out / "samples.csv")
    markdown = out / "report.md"
    markdown.write_text(_markdown(report, figures))
    return markdown, report

"""Benchmark ``moto-vision data label-awb`` on generated DNG captures with an exact ground truth.

Two measurements, written to docs/benchmarks.md:

- ``--mode throughput``: captures per second on this CPU for 12 MP-class DNGs (4000 x 3000 photosites, 12-bit,
  RGGB), with 1 worker and with ``--workers`` processes, contact sheet included;
- ``--mode accuracy``: detection rate and ground-truth error on a set with varied chart pose (rotation, perspective,
  upside down), chart size, defocus blur, sensor noise, light (CCT) and file orientation, plus scenes without a
  chart (false detections). Captures are 3 MP-class (2000 x 1500) by default to keep the set quick to generate.

The captures come from tests/helpers/dng_captures.py (ColorChecker spectra under CIE lights through a known camera
matrix), so the ground truth and the chart corners are known exactly. Run from the repository root::

    python benchmarks/label_awb.py --mode throughput --count 8 --workers 2
    python benchmarks/label_awb.py --mode accuracy --count 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moto_vision.data.curation.label_awb import LabelOptions, label_awb  # noqa: E402
from tests.helpers.dng_captures import CaptureSpec, make_capture  # noqa: E402


def _random_spec(rng: np.random.Generator, size: tuple[int, int], seed: int, chart: bool) -> CaptureSpec:
    return CaptureSpec(
        size=size,
        seed=seed,
        cct=float(rng.uniform(2300, 9000)),
        chart=chart,
        chart_width=float(rng.uniform(0.12, 0.5)),
        chart_center=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))),
        angle=float(rng.uniform(-30, 30)),
        perspective=float(rng.uniform(0, 0.15)),
        upside_down=bool(rng.random() < 0.2),
        exposure=float(rng.uniform(0.25, 0.85)),
        full_well=float(np.exp(rng.uniform(np.log(300), np.log(8000)))),
        read_noise=float(rng.uniform(1, 6)),
        blur=float(rng.choice([0.0, 0.0, 1.0, 2.0, 3.0])) * size[1] / 2000,
        orientation=int(rng.choice([1, 1, 6, 8, 3])),
        as_shot_error=float(rng.uniform(0.5, 6)),
    )


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values)
    return {
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


def throughput(args: argparse.Namespace, work: Path) -> dict:
    rng = np.random.default_rng(args.seed)
    root = work / "captures"
    start = time.perf_counter()
    for i in range(args.count):
        spec = _random_spec(rng, (3000, 4000), args.seed + i, chart=True)
        make_capture(root / f"IMG_{i:04d}.dng", spec)
    generated = time.perf_counter() - start
    results = {"count": args.count, "size": "4000x3000 photosites (12.0 MP), 12-bit RGGB", "generate_s": generated}
    for workers in sorted({1, args.workers}):
        cpu = os.times()
        summary = label_awb(root, work / f"out_{workers}", LabelOptions(), workers=workers, progress=False)
        after = os.times()
        cpu_s = (after.user - cpu.user) + (after.children_user - cpu.children_user)
        cpu_s += (after.system - cpu.system) + (after.children_system - cpu.children_system)
        results[f"workers_{workers}"] = {
            "seconds": summary["seconds"],
            "captures_per_second": summary["captures_per_second"],
            "labelled": summary["labelled"],
        }
        if workers == 1:  # worker processes fork from a server process whose CPU time this process cannot see
            results["workers_1"]["cpu_seconds_per_capture"] = cpu_s / args.count
    return results


def accuracy(args: argparse.Namespace, work: Path) -> dict:
    rng = np.random.default_rng(args.seed)
    root = work / "captures"
    truth = {}
    for i in range(args.count):
        chart = rng.random() >= args.no_chart
        spec = _random_spec(rng, (1500, 2000), args.seed + i, chart=chart)
        capture = make_capture(root / f"IMG_{i:04d}.dng", spec)
        truth[capture.path.name] = capture
    summary = label_awb(root, work / "out", LabelOptions(), workers=args.workers, progress=False)
    labels = {c["image"]: c for c in json.loads((work / "out" / "labels.json").read_text())["captures"]}
    errors, corners, camera, failures = [], [], [], {}
    extra_charts = 0
    by_blur: dict[str, list[int]] = {}
    by_size: dict[str, list[int]] = {}
    with_chart = [n for n, c in truth.items() if c.card is not None]
    false_detections = sum(1 for n, c in truth.items() if c.card is None and labels[n]["code"] is None)
    for name in with_chart:
        label, capture = labels[name], truth[name]
        ok = label["code"] is None
        blur = f"{capture.spec.blur * 2000 / capture.spec.size[1]:.0f} px"
        by_blur.setdefault(blur, []).append(ok)
        width = capture.spec.chart_width
        band = "12-20%" if width < 0.2 else "20-30%" if width < 0.3 else "30-50%"
        by_size.setdefault(band, []).append(ok)
        if not ok:
            failures[label["code"]] = failures.get(label["code"], 0) + 1
            continue
        errors.append(_angle(np.asarray(label["illuminant"]), capture.illuminant))
        camera.append(_angle(capture.as_shot_neutral, capture.illuminant))
        height, width_px = label["size"]
        card = capture.card * [width_px, height]
        found = [float(np.abs(np.asarray(c["polygon"]) * [width_px, height] - card).max()) for c in label["charts"]]
        corners.append(min(found))  # the mask polygon of the chart, whichever of the charts found it is
        extra_charts += len(found) - 1
    return {
        "count": args.count,
        "with_chart": len(with_chart),
        "size": "2000x1500 photosites (3.0 MP), labelled at half size 1000x750",
        "detection_rate": sum(labels[n]["code"] is None for n in with_chart) / max(1, len(with_chart)),
        "false_detections": false_detections,
        "extra_charts_in_labelled": extra_charts,
        "without_chart": args.count - len(with_chart),
        "failures": failures,
        "gt_error_deg": _stats(errors),
        "mask_corner_error_px": _stats(corners),
        "camera_awb_error_deg": _stats(camera),
        "detection_by_blur": {k: float(np.mean(v)) for k, v in sorted(by_blur.items())},
        "detection_by_chart_width": {k: float(np.mean(v)) for k, v in sorted(by_size.items())},
        "seconds": summary["seconds"],
        "captures_per_second": summary["captures_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["throughput", "accuracy"], required=True)
    parser.add_argument("--count", type=int, default=None, help="captures (8 for throughput, 200 for accuracy)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-chart", type=float, default=0.1, help="share of accuracy scenes without a chart")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder for the generated captures (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    args.count = args.count or (8 if args.mode == "throughput" else 200)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        results = (throughput if args.mode == "throughput" else accuracy)(args, work)
    results["load_average"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

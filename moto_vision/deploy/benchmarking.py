"""Size, latency and task metric of one model in every format and precision (``moto-vision benchmark``).

Every format is exported, reloaded in its own runtime, checked against PyTorch and scored with the
task's metrics on the test split of the task's datamodule, then timed at batch 1 with a stated number
of CPU threads after a warm-up. The report is written as Markdown (for people), CSV and JSON.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from moto_vision.deploy.artifact import write_json_atomic
from moto_vision.deploy.parity import evaluate, headline_metric
from moto_vision.deploy.runtime import Predictor, load
from moto_vision.deploy.session import ExportSession
from moto_vision.deploy.source import batch_inputs

__all__ = ["BenchmarkReport", "BenchmarkRow", "benchmark", "measure_latency"]

DEFAULT_FORMATS = ("pytorch", "executorch", "onnx")
DEFAULT_PRECISIONS = ("fp32", "int8")


@dataclass
class BenchmarkRow:
    """One format x precision of one model.

    Attributes:
        model: the model's name in the table (backbone or checkpoint name).
        format: ``pytorch`` (eager reference), ``executorch``, ``onnx`` or ``tflite``.
        precision: ``fp32`` or ``int8``.
        status: ``verified``, ``exported``, ``failed`` or ``unavailable``.
        size_mb: artifact size in MB (10^6 bytes); for ``pytorch`` the fp32 weights.
        latency_p50_ms: median latency of one batch-1 call.
        latency_p90_ms: 90th percentile latency.
        metric: name of the headline task metric (``test_accuracy``...).
        metric_value: its value on the test split.
        max_abs_diff: largest output difference from PyTorch fp32.
        params_m: parameters (millions), from the fused PyTorch graph.
        macs_m: multiply-accumulates (millions) per image.
        metrics: every scalar metric on the test split.
        note: error or caveat.
    """

    model: str
    format: str
    precision: str
    status: str
    size_mb: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    metric: str | None = None
    metric_value: float | None = None
    max_abs_diff: float | None = None
    params_m: float | None = None
    macs_m: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class BenchmarkReport:
    """Rows plus the conditions they were measured under."""

    rows: list[BenchmarkRow]
    conditions: dict[str, Any]

    def to_markdown(self) -> str:
        """A Markdown table with a line stating how latency was measured."""
        c = self.conditions
        extra = list(c.get("report_metrics") or [])  # a task's further headline metrics (one per head)
        lines = [
            f"Latency: batch 1, {c['input']}, {c['threads']} CPU thread(s), {c['warmup']} warm-up + {c['runs']} timed "
            f"runs, p50 / p90 in ms, on {c['machine']}. Metric on the test split ({c.get('test_images', '?')} images).",
            "",
            "| model | format | precision | status | size (MB) | p50 (ms) | p90 (ms) | metric | value | "
            + "".join(f"{name} | " for name in extra)
            + "max abs diff |",
            "|---|---|---|---|---:|---:|---:|---|---:|" + "---:|" * len(extra) + "---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.model} | {r.format} | {r.precision} | {r.status} | {_fmt(r.size_mb, 3)} | "
                f"{_fmt(r.latency_p50_ms, 2)} | {_fmt(r.latency_p90_ms, 2)} | {r.metric or ''} | "
                f"{_fmt(r.metric_value, 4)} | "
                + "".join(f"{_fmt(r.metrics.get(name), 4)} | " for name in extra)
                + f"{_fmt(r.max_abs_diff, 2, sci=True)} |"
            )
        notes = [f"- {r.model} {r.format} {r.precision}: {r.note}" for r in self.rows if r.note]
        if c.get("metrics_note"):
            notes.insert(0, f"- {c['metrics_note']}")
        if notes:
            lines += ["", "Notes:", *notes]
        return "\n".join(lines) + "\n"

    def write(self, directory: str | os.PathLike[str], stem: str = "benchmark") -> dict[str, Path]:
        """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {kind: directory / f"{stem}.{kind}" for kind in ("md", "csv", "json")}
        paths["md"].write_text(self.to_markdown())
        columns = [f for f in BenchmarkRow.__dataclass_fields__ if f != "metrics"]
        with paths["csv"].open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: v for k, v in asdict(row).items() if k in columns})
        write_json_atomic(paths["json"], {"conditions": self.conditions, "rows": [asdict(r) for r in self.rows]})
        return paths


def _fmt(value: float | None, digits: int, sci: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}e}" if sci else f"{value:.{digits}f}"


def measure_latency(
    predictor: Predictor | Any,
    image: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    warmup: int = 10,
    runs: int = 50,
) -> tuple[float, float]:
    """Median and 90th-percentile wall time (ms) of ``predictor(image)`` after ``warmup`` untimed calls.

    ``image`` is the input, or a tuple of every input of a graph that takes more than the image.
    """
    inputs = image if isinstance(image, tuple) else (image,)
    for _ in range(warmup):
        predictor(*inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor(*inputs)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return statistics.median(times), p90


def machine_description() -> str:
    """CPU model and core count, for the conditions line of a report."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} logical CPUs, {platform.system()})"


def benchmark(
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    session: ExportSession | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    precisions: Sequence[str] = DEFAULT_PRECISIONS,
    threads: int = 1,
    warmup: int = 10,
    runs: int = 50,
    output: str | os.PathLike[str] = "benchmark",
    model_name: str | None = None,
    task_class: str | None = None,
    data_config: str | os.PathLike[str] | None = None,
    allow_classes: Sequence[str | type] = (),
    max_batches: int | None = None,
    write: bool = True,
    progress: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> BenchmarkReport:
    """Export, verify, score and time one model in every requested format and precision.

    Args:
        checkpoint: a task ``.ckpt`` (or pass ``session``).
        session: an :class:`ExportSession` to reuse (its datamodule supplies the test split).
        formats: any of ``pytorch`` (the eager fp32 reference), ``executorch``, ``onnx``, ``tflite``.
        precisions: ``fp32`` and / or ``int8`` (``pytorch`` is fp32 only).
        threads: CPU threads every runtime is given.
        warmup: untimed calls before timing.
        runs: timed calls.
        output: directory for the artifacts (``artifacts/``) and the report files.
        model_name: the name in the table (default: the backbone).
        task_class: task class for checkpoints that do not record it.
        data_config: recipe YAML to build the datamodule from, instead of the checkpoint's record.
        allow_classes: classes besides moto-vision's own that the checkpoint may name (``--allow-class``).
        max_batches: limit the test split to this many batches (default: all).
        write: write ``benchmark.md/.csv/.json`` into ``output``.
        progress: print one line per row as it is measured.
        options: exporter options per format (``{"onnx": {"opset_version": 18}}``).
    """
    if session is None:
        if checkpoint is None:
            raise ValueError("benchmark needs a checkpoint or an ExportSession.")
        session = ExportSession.from_checkpoint(
            checkpoint,
            task_class=task_class,
            data_config=data_config,
            allow_classes=allow_classes,
            parity_batches=max_batches,
        )
    output = Path(output)
    task = session.task
    name = model_name or str(session.facts.get("backbone") or session.facts.get("task") or "model")
    metric_name = headline_metric(task)
    batches = session.test_batches()
    inputs = tuple(t[:1].float().contiguous() for t in batch_inputs(batches[0], session.inputs))
    image = inputs[0]
    from moto_vision.deploy.profile import count_macs, count_parameters

    params_m = count_parameters(session.module) / 1e6
    macs_m = count_macs(session.module, tuple(session.inputs.values())) / 1e6
    rows: list[BenchmarkRow] = []

    def add(row: BenchmarkRow) -> None:
        row.params_m, row.macs_m = round(params_m, 4), round(macs_m, 3)
        rows.append(row)
        if progress:
            print(
                f"  {row.model:<24} {row.format:<10} {row.precision:<5} {row.status:<11} "
                f"p50 {_fmt(row.latency_p50_ms, 2):>8} ms  {row.metric}={_fmt(row.metric_value, 4)}"
                + (f"  ({row.note[:120]})" if row.note else ""),
                flush=True,
            )

    for format in formats:
        if format == "pytorch":
            reference = session.reference
            reference.threads = threads
            metrics = evaluate(task, reference, batches, inputs=session.inputs) if session.can_score else {}
            p50, p90 = measure_latency(reference, inputs, warmup=warmup, runs=runs)
            weight_bytes = sum(t.numel() * t.element_size() for t in session.module.state_dict().values())
            add(
                BenchmarkRow(
                    name,
                    "pytorch",
                    "fp32",
                    "verified",
                    weight_bytes / 1e6,
                    p50,
                    p90,
                    metric_name,
                    metrics.get(metric_name),
                    0.0,
                    metrics=metrics,
                    note="eager PyTorch, fused graph; size = fp32 weights",
                )
            )
            continue
        for precision in precisions:
            result = session.export(
                format,
                precision,
                output / "artifacts",
                overwrite=True,
                threads=threads,
                options=options,
            )
            row = BenchmarkRow(name, format, precision, result.status, note=result.error or "")
            if result.path is not None:
                row.size_mb = result.size_bytes / 1e6
            if result.parity is not None:
                metrics = result.parity.candidate_metrics if session.can_score else {}
                row.metrics, row.metric, row.metric_value = metrics, metric_name, metrics.get(metric_name)
                row.max_abs_diff = result.parity.max_abs_diff
            if result.status in ("verified", "exported") and result.path is not None:
                try:
                    predictor = load(result.path, threads=threads)
                    row.latency_p50_ms, row.latency_p90_ms = measure_latency(
                        predictor, inputs, warmup=warmup, runs=runs
                    )
                except Exception as error:  # a runtime that loads but cannot run is a failed row, not a crash
                    row.status, row.note = "failed", f"timing failed: {type(error).__name__}: {error}"
            add(row)
    conditions = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_description(),
        "threads": threads,
        "warmup": warmup,
        "runs": runs,
        "batch": 1,
        "input": "x".join(str(s) for s in image.shape),
        "test_images": sum(int(b["image"].shape[0]) for b in batches) if session.has_ground_truth else 0,
        "checkpoint": str(session.info.path) if session.info else None,
        "metrics_note": session.score_note,
        # Tasks with several heads name one headline metric per head (``report_metrics``): a column each.
        "report_metrics": [f"test_{name}" for name in getattr(task, "report_metrics", ())],
        "versions": _versions(),
    }
    report = BenchmarkReport(rows, conditions)
    if write:
        report.write(output)
    return report


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("moto-vision", "torch", "executorch", "onnxruntime", "litert-torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def load_report(path: str | os.PathLike[str]) -> BenchmarkReport:
    """Read a ``benchmark.json`` written by :meth:`BenchmarkReport.write`."""
    data = json.loads(Path(path).read_text())
    return BenchmarkReport([BenchmarkRow(**row) for row in data["rows"]], data["conditions"])

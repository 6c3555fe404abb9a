"""Backbone sweep: train (or take) one model per backbone, benchmark each, plot the accuracy-latency front.

``moto-vision benchmark --recipe recipes/scene.yaml --backbones a,b,c --epochs 3`` trains each backbone
with the task's own recipe (LightningCLI ``fit``, with ``--model.init_args.backbone`` overridden), then
benchmarks every checkpoint and draws the Pareto front: the models no other model beats on both
latency and the task metric. A team picks the best model under its phone's latency budget from it.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto_vision.deploy.benchmarking import BenchmarkReport, BenchmarkRow, benchmark

__all__ = ["SweepResult", "pareto_front", "plot_pareto", "sweep", "train_backbone"]


@dataclass
class SweepResult:
    """All benchmark rows of a sweep, the front and the files written."""

    report: BenchmarkReport
    front: list[BenchmarkRow]
    higher_is_better: bool
    files: dict[str, Path]


def pareto_front(rows: Sequence[BenchmarkRow], higher_is_better: bool = True) -> list[BenchmarkRow]:
    """Rows not dominated by another row (as fast or faster and as good or better, one strictly), by latency."""
    points = [r for r in rows if r.latency_p50_ms is not None and r.metric_value is not None]

    def better_or_equal(a: float, b: float) -> bool:
        return a >= b if higher_is_better else a <= b

    front = []
    for row in points:
        dominated = any(
            other is not row
            and other.latency_p50_ms <= row.latency_p50_ms  # type: ignore[operator]
            and better_or_equal(other.metric_value, row.metric_value)  # type: ignore[arg-type]
            and (other.latency_p50_ms < row.latency_p50_ms or other.metric_value != row.metric_value)  # type: ignore[operator]
            for other in points
        )
        if not dominated:
            front.append(row)
    return sorted(front, key=lambda r: r.latency_p50_ms)  # type: ignore[arg-type, return-value]


def plot_pareto(
    rows: Sequence[BenchmarkRow], front: Sequence[BenchmarkRow], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Latency vs metric: colour = model, marker = format and precision; the front is a dashed step, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    path = Path(path)
    points = [r for r in rows if r.latency_p50_ms is not None and r.metric_value is not None]
    models = list(dict.fromkeys(r.model for r in points))
    kinds = list(dict.fromkeys(f"{r.format} {r.precision}" for r in points))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    markers = {k: "osD^vPX*"[i % 8] for i, k in enumerate(kinds)}
    figure, axes = plt.subplots(figsize=(10, 5.2), dpi=120)
    for r in points:
        axes.scatter(
            r.latency_p50_ms,
            r.metric_value,
            color=colours[r.model],
            marker=markers[f"{r.format} {r.precision}"],
            s=46,
            zorder=3,
            edgecolors="black",
            linewidths=0.4,
        )
    if front:
        axes.step(
            [r.latency_p50_ms for r in front],
            [r.metric_value for r in front],
            where="post",
            color="black",
            linestyle="--",
            linewidth=1,
            zorder=2,
        )
        for r in front:
            axes.annotate(
                f"{r.model}\n{r.format} {r.precision}",
                (r.latency_p50_ms, r.metric_value),
                fontsize=7,
                xytext=(6, 5),
                textcoords="offset points",
            )
    model_legend = axes.legend(
        handles=[Line2D([], [], marker="o", linestyle="", color=colours[m], label=m) for m in models],
        title="model",
        fontsize=7,
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    axes.add_artist(model_legend)
    kind_handles = [Line2D([], [], marker=markers[k], linestyle="", color="grey", label=k) for k in kinds]
    kind_handles.append(Line2D([], [], linestyle="--", color="black", label="Pareto front"))
    axes.legend(
        handles=kind_handles, title="format", fontsize=7, title_fontsize=8, loc="lower left", bbox_to_anchor=(1.01, 0.0)
    )
    metric = next((r.metric for r in rows if r.metric), "metric")
    axes.set_xlabel("latency p50 (ms, batch 1)")
    axes.set_ylabel(f"{metric} (test split)")
    axes.set_title(title or "Accuracy-latency trade-off")
    axes.grid(True, alpha=0.3)
    axes.margins(y=0.15)
    figure.tight_layout()
    figure.subplots_adjust(right=0.74)  # room for the two legends beside the axes
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def train_backbone(
    config: str | os.PathLike[str],
    backbone: str,
    root: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    fit_args: Sequence[str] | str = (),
) -> Path:
    """Train the recipe ``config`` with ``backbone`` through ``moto-vision fit``; return the best checkpoint."""
    from moto_vision.cli import main

    root = Path(root)
    args = [
        "fit",
        "--config",
        str(config),
        f"--model.init_args.backbone={backbone}",
        f"--trainer.default_root_dir={root}",
    ]
    if epochs is not None:
        args.append(f"--trainer.max_epochs={epochs}")
    args += shlex.split(fit_args) if isinstance(fit_args, str) else list(fit_args)
    code = main(args)
    if code != 0:
        raise RuntimeError(f"Training {backbone} with {config} failed (exit code {code}); command: {shlex.join(args)}")
    for pattern in ("best*.ckpt", "last*.ckpt", "*.ckpt"):
        found = sorted(root.rglob(pattern), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    raise FileNotFoundError(f"Training {backbone} wrote no checkpoint under {root}; does the recipe save one?")


def sweep(
    *,
    backbones: Sequence[str] = (),
    checkpoints: Sequence[str | os.PathLike[str]] = (),
    config: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
    fit_args: Sequence[str] | str = (),
    output: str | os.PathLike[str] = "benchmark",
    formats: Sequence[str] = ("executorch",),
    precisions: Sequence[str] = ("fp32", "int8"),
    threads: int = 1,
    warmup: int = 10,
    runs: int = 50,
    max_batches: int | None = None,
    progress: bool = False,
    allow_classes: Sequence[str | type] = (),
    **benchmark_kwargs: Any,
) -> SweepResult:
    """Benchmark several backbones and plot their accuracy-latency Pareto front.

    Args:
        backbones: timm names to train with ``config`` (one ``fit`` each).
        checkpoints: trained checkpoints to take as they are (named by their backbone).
        config: the task's recipe YAML (needed with ``backbones``).
        epochs: override the recipe's ``trainer.max_epochs`` (short sweeps).
        fit_args: extra ``moto-vision fit`` arguments for every training run.
        output: directory for runs, artifacts, ``sweep.md/.csv/.json`` and ``pareto.png``.
        formats: formats per model, as in :func:`~moto_vision.deploy.benchmarking.benchmark`.
        precisions: precisions per format.
        threads: CPU threads per runtime.
        warmup: untimed runs before timing.
        runs: timed runs.
        max_batches: limit the test split to this many batches.
        progress: print each row as it is measured.
        allow_classes: classes besides moto-vision's own that the checkpoints may name (``--allow-class``).
        **benchmark_kwargs: passed on to :func:`~moto_vision.deploy.benchmarking.benchmark`.
    """
    if backbones and config is None:
        raise ValueError("A backbone sweep trains each backbone: pass the task's recipe (`--config recipes/x.yaml`).")
    if not backbones and not checkpoints:
        raise ValueError("Nothing to sweep: pass backbones (with a recipe) and / or checkpoints.")
    output = Path(output)
    trained: list[tuple[str, Path]] = []
    for backbone in backbones:
        if progress:
            print(f"Training {backbone} with {config} ...", flush=True)
        trained.append(
            (backbone, train_backbone(config, backbone, output / "runs" / backbone, epochs=epochs, fit_args=fit_args))
        )
    for checkpoint in checkpoints:
        trained.append(("", Path(checkpoint)))
    rows: list[BenchmarkRow] = []
    conditions: dict[str, Any] = {}
    higher_is_better = True
    names_seen: set[str] = set()
    for backbone, checkpoint in trained:
        if progress:
            print(f"Benchmarking {checkpoint} ...", flush=True)
        from moto_vision.deploy.session import ExportSession

        session = ExportSession.from_checkpoint(checkpoint, parity_batches=max_batches, allow_classes=allow_classes)
        higher_is_better = getattr(session.task, "monitor_mode", "max") == "max"
        name = backbone or str(session.facts.get("backbone") or checkpoint.stem)
        if name in names_seen:
            name = f"{name} ({checkpoint.parent.name}/{checkpoint.name})"
        names_seen.add(name)
        report = benchmark(
            session=session,
            formats=formats,
            precisions=precisions,
            threads=threads,
            warmup=warmup,
            runs=runs,
            output=output / "models" / _safe(name),
            model_name=name,
            write=True,
            progress=progress,
            **benchmark_kwargs,
        )
        rows += report.rows
        conditions = {**report.conditions, "checkpoint": None}
    conditions["checkpoints"] = {name: str(path) for name, path in trained}
    report = BenchmarkReport(rows, conditions)
    front = pareto_front(rows, higher_is_better)
    files = report.write(output, stem="sweep")
    direction = "higher" if higher_is_better else "lower"
    files["png"] = plot_pareto(
        rows, front, output / "pareto.png", title=f"Accuracy-latency trade-off ({direction} metric is better)"
    )
    with files["md"].open("a") as stream:
        stream.write(
            "\nPareto front (fastest first): "
            + ", ".join(f"{r.model} {r.format} {r.precision}" for r in front)
            + "\n\n![Pareto front](pareto.png)\n"
        )
    return SweepResult(report, front, higher_is_better, files)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

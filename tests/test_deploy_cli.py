"""`moto-vision export` and `moto-vision benchmark` end to end on the toy task, plus the Pareto front."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from moto_vision.cli import main  # noqa: E402
from moto_vision.deploy.benchmarking import BenchmarkRow  # noqa: E402
from moto_vision.deploy.cli import benchmark_main, export_main  # noqa: E402
from moto_vision.deploy.pareto import pareto_front  # noqa: E402
from tests.helpers.deploy import make_checkpoint  # noqa: E402
from tests.helpers.toy import ToyClassifier, ToyDataModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[Path]:
    directory = tmp_path_factory.mktemp("cli")
    return [
        make_checkpoint(ToyClassifier(backbone=name), ToyDataModule(), directory / f"{name}.ckpt", steps=2)
        for name in ("test_efficientnet", "test_resnet")
    ]


@pytest.mark.parametrize("command", ["export", "benchmark", "profile", "backbones"])
def test_help_explains_the_command(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert f"moto-vision {command}" in text and "examples:" in text


def test_export_cli_int8_reports_before_and_after(checkpoints, tmp_path, capsys):
    code = export_main(
        ["--ckpt", str(checkpoints[0]), "--format", "onnx", "--quantize", "int8", "--output", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert (tmp_path / "toy_fp32.onnx").is_file() and (tmp_path / "toy_int8.onnx").is_file()
    assert "| onnx | fp32 |" in out and "| onnx | int8 |" in out and "test_accuracy" in out
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert set(meta["artifacts"]) == {"toy_fp32.onnx", "toy_int8.onnx"}


def test_export_cli_missing_exporter_and_bad_checkpoint(checkpoints, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litert_torch" else real(name))
    assert export_main(["--ckpt", str(checkpoints[0]), "--format", "tflite", "--output", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "unavailable" in out and "litert-torch" in out
    assert export_main(["--ckpt", str(tmp_path / "missing.ckpt"), "--output", str(tmp_path)]) == 1
    assert "Checkpoint not found" in capsys.readouterr().err


def test_benchmark_cli_one_row_per_format_and_precision(checkpoints, tmp_path):
    args = ["--ckpt", str(checkpoints[0]), "--formats", "pytorch,onnx", "--precisions", "fp32,int8"]
    assert benchmark_main([*args, "--runs", "3", "--warmup", "1", "--output", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "benchmark.json").read_text())
    rows = {(r["format"], r["precision"]): r for r in data["rows"]}
    assert set(rows) == {("pytorch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    for row in rows.values():
        assert row["status"] == "verified", row["note"]
        assert row["latency_p90_ms"] >= row["latency_p50_ms"] > 0 and row["size_mb"] > 0
        assert row["metric"] == "test_accuracy" and 0.0 <= row["metric_value"] <= 1.0
    assert rows["onnx", "fp32"]["metric_value"] == pytest.approx(rows["pytorch", "fp32"]["metric_value"])
    assert rows["onnx", "int8"]["size_mb"] < rows["onnx", "fp32"]["size_mb"]
    assert data["conditions"]["threads"] == 1 and data["conditions"]["test_images"] == 30
    assert "1 CPU thread(s), 1 warm-up + 3 timed runs" in (tmp_path / "benchmark.md").read_text()
    with (tmp_path / "benchmark.csv").open() as stream:
        assert len(list(csv.DictReader(stream))) == 3


def test_sweep_over_checkpoints_plots_pareto_front(checkpoints, tmp_path):
    ckpts = ",".join(str(c) for c in checkpoints)
    code = benchmark_main(
        ["--ckpts", ckpts, "--formats", "pytorch", "--runs", "2", "--warmup", "1", "--output", str(tmp_path)]
    )
    assert code == 0
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"test_efficientnet", "test_resnet"}
    assert "Pareto front (fastest first):" in (tmp_path / "sweep.md").read_text()


@pytest.mark.slow
def test_sweep_trains_backbones_with_the_recipe_and_takes_checkpoints(checkpoints, tmp_path):
    args = ["--recipe", str(ROOT / "tests/toy_recipe.yaml"), "--backbones", "test_efficientnet"]
    args += ["--ckpts", str(checkpoints[1])]  # a trained model can join the sweep as it is
    fit_args = "--trainer.enable_progress_bar=false --trainer.logger=false --trainer.limit_train_batches=3"
    args += ["--epochs", "1", "--fit-args", fit_args + " --trainer.limit_val_batches=2"]
    args += ["--formats", "pytorch", "--runs", "2", "--warmup", "1", "--output", str(tmp_path)]
    assert benchmark_main(args) == 0
    assert list((tmp_path / "runs" / "test_efficientnet").rglob("best*.ckpt"))
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["test_efficientnet", "test_resnet"]
    assert (tmp_path / "pareto.png").is_file()


def test_run_directory_resolves_to_its_newest_best_checkpoint(checkpoints, tmp_path):
    import os
    import shutil

    from moto_vision.deploy.source import resolve_checkpoint

    for version, source in enumerate(checkpoints):
        target = tmp_path / f"lightning_logs/version_{version}/checkpoints/best.ckpt"
        target.parent.mkdir(parents=True)
        shutil.copy(source, target)
        os.utime(target, (1_000_000 + version, 1_000_000 + version))
    assert resolve_checkpoint(tmp_path) == tmp_path / "lightning_logs/version_1/checkpoints/best.ckpt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No best"):
        resolve_checkpoint(tmp_path / "empty")


def _row(model: str, latency: float, value: float) -> BenchmarkRow:
    return BenchmarkRow(model, "executorch", "fp32", "verified", latency_p50_ms=latency, metric_value=value)


def test_pareto_front_keeps_only_undominated_models():
    rows = [_row("fast", 1.0, 0.70), _row("slow_worse", 3.0, 0.65), _row("mid", 2.0, 0.80), _row("best", 4.0, 0.90)]
    assert [r.model for r in pareto_front(rows, higher_is_better=True)] == ["fast", "mid", "best"]
    # For an error metric (AWB angular error) lower is better and the front flips.
    errors = [_row("fast", 1.0, 3.0), _row("slow_worse", 3.0, 3.5), _row("mid", 2.0, 2.5)]
    assert [r.model for r in pareto_front(errors, higher_is_better=False)] == ["fast", "mid"]

"""Export -> reload -> parity for ExecuTorch and ONNX (fp32 and int8), metadata, runtime wrappers, failures.

Exports are slow, so every artifact is made once per module and shared by the tests that inspect it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("executorch")
pytest.importorskip("onnxruntime")

from moto_vision.deploy import ExportSession, load, read_metadata  # noqa: E402
from moto_vision.deploy.artifact import atomic_output, file_sha256, read_embedded_metadata  # noqa: E402
from moto_vision.deploy.formats import FORMATS  # noqa: E402
from moto_vision.deploy.source import load_task, prepare_inference_module  # noqa: E402
from tests.helpers.deploy import make_checkpoint  # noqa: E402
from tests.helpers.toy import ToyClassifier, ToyDataModule  # noqa: E402
from tests.helpers.toy_dense import ToyDenseMultiHead, ToySquaresDataModule  # noqa: E402

CLASS_NAMES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("toy")
    task = ToyClassifier(class_names=CLASS_NAMES)
    return make_checkpoint(task, ToyDataModule(batch_size=8), directory / "toy.ckpt", steps=3)


@pytest.fixture(scope="module")
def toy_session(toy_checkpoint) -> ExportSession:
    return ExportSession.from_checkpoint(toy_checkpoint, image_size=32, calibration_images=16)


@pytest.fixture(scope="module")
def toy_exports(toy_session, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("toy_export")
    # ExecuTorch int8 (the slowest export) is covered on the dense toy task below.
    pairs = (("executorch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"))
    return {(format, precision): toy_session.export(format, precision, out) for format, precision in pairs}


# --------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("format", ["executorch", "onnx"])
def test_fp32_export_is_verified_against_pytorch(toy_exports, format):
    result = toy_exports[format, "fp32"]
    assert result.status == "verified", result.error
    assert result.path.is_file() and result.path.suffix == FORMATS[format].suffix
    parity = result.parity
    assert parity.passed is True and parity.images == 30  # the whole toy test split
    assert parity.max_abs_diff <= 1e-4
    # Same outputs, so the same metric from the same task metric code.
    assert parity.candidate_metrics["test_accuracy"] == pytest.approx(parity.reference_metrics["test_accuracy"])


def test_int8_export_is_smaller_still_runs_and_reports_metric(toy_exports, toy_session):
    fp32, int8 = toy_exports["onnx", "fp32"], toy_exports["onnx", "int8"]
    assert int8.status == "verified", int8.error
    assert int8.size_bytes < 0.8 * fp32.size_bytes
    assert "quantization" in int8.info and int8.info["calibration_images"] == 16
    assert int8.parity.passed is None  # int8 is judged by its metric, not by fp32 tolerances
    assert set(int8.parity.candidate_metrics) >= {"test_accuracy", "test_loss"}
    # Quantized, so outputs move, but stay close to the float model on this tiny net.
    assert 0 < int8.parity.max_abs_diff < 0.5
    model = load(int8.path)
    images = toy_session.test_batches()[0]["image"]  # a batch of 8 in one call: ONNX keeps a dynamic batch axis
    outputs = model(images)
    assert outputs.shape == (images.shape[0], 3) and torch.isfinite(outputs).all()


def test_onnx_uses_dynamo_exporter_with_dynamic_batch(toy_exports):
    info = toy_exports["onnx", "fp32"].info
    assert info["exporter"] == "torch.onnx.export dynamo (dynamic batch)" and "fallback_reason" not in info


def test_executorch_graph_is_delegated_to_xnnpack(toy_exports):
    info = toy_exports["executorch", "fp32"].info
    assert info["delegated_ops"] > 10 * info["non_delegated_ops"]


# --------------------------------------------------------------------------------------------- metadata
def test_metadata_round_trip(toy_exports, toy_checkpoint):
    sha = file_sha256(toy_checkpoint)
    for (format, precision), result in toy_exports.items():
        meta = read_metadata(result.path)
        assert meta["task"] == "toy" and meta["class_names"] == CLASS_NAMES
        assert meta["format"] == format and meta["precision"] == precision and meta["status"] == "verified"
        assert meta["input_size"] == [32, 32] and meta["color_domain"] == "srgb"
        assert meta["input"]["range"] == [0.0, 1.0]
        assert meta["checkpoint"] == {"file": "toy.ckpt", "sha256": sha}
        assert meta["parity"]["images"] == 30
        assert meta["task_class"] == "tests.helpers.toy.ToyClassifier"
        # The file carries the model facts itself (ONNX metadata_props, ExecuTorch constant method).
        embedded = read_embedded_metadata(result.path)
        assert embedded["class_names"] == CLASS_NAMES and embedded["checkpoint"]["sha256"] == sha
        assert embedded["precision"] == precision
    sidecar = json.loads((result.path.parent / "metadata.json").read_text())
    assert set(sidecar["artifacts"]) == {r.path.name for r in toy_exports.values()}


def test_onnx_metadata_props_are_readable_with_plain_onnx(toy_exports):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(toy_exports["onnx", "fp32"].path)).metadata_props}
    assert props["task"] == "toy" and json.loads(props["class_names"]) == CLASS_NAMES


# --------------------------------------------------------------------------------------------- runtime wrappers
@pytest.mark.parametrize("format", ["executorch", "onnx"])
def test_predictor_has_the_task_call(toy_exports, toy_checkpoint, format):
    task, _ = load_task(toy_checkpoint)
    model = load(toy_exports[format, "fp32"].path, threads=1)
    images = torch.rand(5, 3, 32, 32)  # batch 5: .pte runs per image, .onnx has a dynamic batch axis
    with torch.no_grad():
        expected = task(images)
    assert torch.allclose(model(images), expected, atol=1e-4)
    assert model.metadata["class_names"] == CLASS_NAMES
    with pytest.raises(ValueError, match="exported for 32x32"):
        model(torch.rand(1, 3, 48, 48))


def test_checkpoint_predictor_matches_task(toy_checkpoint):
    task, _ = load_task(toy_checkpoint)
    model = load(toy_checkpoint, image_size=32)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(images), task(images))
    assert model.format == "pytorch"


# --------------------------------------------------------------------------------------------- dict outputs, dense
@pytest.fixture(scope="module")
def dense_exports(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("dense")
    checkpoint = make_checkpoint(ToyDenseMultiHead(), ToySquaresDataModule(), directory / "dense.ckpt", steps=2)
    session = ExportSession.from_checkpoint(checkpoint, calibration_images=8)
    return {
        "executorch_int8": session.export("executorch", "int8", directory / "out"),
        "onnx": session.export("onnx", "fp32", directory / "out"),
        "onnx_int8": session.export("onnx", "int8", directory / "out"),
    }


@pytest.mark.parametrize("key", ["executorch_int8", "onnx", "onnx_int8"])
def test_dense_dict_outputs_round_trip(dense_exports, key):
    result = dense_exports[key]
    assert result.status == "verified", result.error
    parity = result.parity
    if key == "onnx":
        assert parity.passed and parity.max_abs_diff <= 1e-4
        assert parity.candidate_metrics["test_iou"] == pytest.approx(parity.reference_metrics["test_iou"])
    else:
        assert 0.0 <= parity.candidate_metrics["test_iou"] <= 1.0 and parity.max_abs_diff < 0.5
        assert result.size_bytes < 0.8 * dense_exports["onnx"].size_bytes  # ONNX and .pte fp32 are about equal
        assert result.info["calibration_images"] == 8 and "quantization" in result.info
    model = load(result.path)
    assert model.metadata["outputs"] == ["mask", "label"]
    outputs = model(torch.rand(2, 3, 32, 32))
    assert set(outputs) == {"mask", "label"}
    assert outputs["mask"].shape == (2, 3, 32, 32) and outputs["label"].shape == (2, 3)


# --------------------------------------------------------------------------------------------- fusing, failures
def test_reparameterisable_backbone_is_fused_before_export():
    task = ToyClassifier(backbone="mobileone_s0").eval()
    example = torch.rand(1, 3, 32, 32)
    module = prepare_inference_module(task, example)
    fused = [m for m in module.modules() if type(m).__name__ == "MobileOneBlock"]
    assert fused and all(m.reparam_conv is not None for m in fused)
    assert all(m.reparam_conv is None for m in task.modules() if type(m).__name__ == "MobileOneBlock")
    with torch.no_grad():
        assert torch.allclose(module(example), task(example), atol=1e-4)


class _DataDependent(ToyClassifier):
    """Python control flow on tensor values: torch.export cannot capture it."""

    def forward(self, x):
        logits = super().forward(x)
        return logits if float(logits.sum()) > 0 else -logits


def test_failed_export_leaves_no_file(tmp_path):
    session = ExportSession(_DataDependent().eval(), image_size=32)
    result = session.export("executorch", "fp32", tmp_path)
    assert result.status == "failed" and "export failed" in result.error
    assert result.path is None
    assert os.listdir(tmp_path) == []  # no artifact, no partial temporary file, no metadata


def test_atomic_output_removes_partial_file(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_bytes(b"half a model")
        raise RuntimeError("exporter crashed")
    assert os.listdir(tmp_path) == []


def test_existing_artifact_is_not_overwritten_without_asking(toy_exports, toy_session):
    path = toy_exports["onnx", "fp32"].path
    before = path.stat().st_mtime_ns
    result = toy_session.export("onnx", "fp32", path.parent)
    assert result.status == "failed" and "--overwrite" in result.error
    assert path.stat().st_mtime_ns == before


def test_missing_optional_exporter_says_how_to_install(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litert_torch" else real(name))
    session = ExportSession(ToyClassifier().eval(), image_size=32)
    result = session.export("tflite", "fp32", tmp_path)
    assert result.status == "unavailable"
    assert "pip install 'moto-vision[litert]'" in result.error and "typing-extensions" in result.error
    assert os.listdir(tmp_path) == []


def test_int8_without_datamodule_explains_how_to_calibrate(tmp_path):
    session = ExportSession(ToyClassifier().eval(), image_size=32)
    result = session.export("onnx", "int8", tmp_path)
    assert result.status == "failed" and "--data-config" in result.error
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not FORMATS["tflite"].missing() == [], reason="litert-torch not installed (optional extra)")
def test_tflite_export_round_trip(toy_session, tmp_path):
    for precision in ("fp32", "int8"):
        result = toy_session.export("tflite", precision, tmp_path)
        assert result.status == "verified", result.error
    assert (tmp_path / "toy_int8.tflite").stat().st_size < (tmp_path / "toy_fp32.tflite").stat().st_size


def test_second_model_into_the_same_directory_is_refused(toy_exports, tmp_path):
    other = ExportSession(ToyClassifier(class_names=CLASS_NAMES).eval(), image_size=32)
    other.facts["checkpoint"] = {"file": "other.ckpt", "sha256": "0" * 64}
    directory = toy_exports["onnx", "fp32"].path.parent
    result = other.export("onnx", "fp32", directory, name="other")
    assert result.status == "failed" and "another checkpoint" in result.error
    assert not (directory / "other.onnx").exists()


def test_fp32_tolerance_scales_with_the_outputs_magnitude():
    from moto_vision.deploy.parity import check_parity

    class Task:
        target_key = "label"

    batches = [{"image": torch.linspace(-1, 1, 40).reshape(2, 20)}]

    def reference(x):
        return {"small": x, "large": 20 * x}

    def run(small_error: float, large_error: float):
        def candidate(x):
            return {"small": x + small_error, "large": 20 * x + large_error}

        return check_parity(Task(), reference, candidate, batches, score=False)

    # 4e-4 on outputs of magnitude 20 is 2e-5 of their scale: float32 noise, passes.
    report = run(0.0, 4e-4)
    assert report.passed and report.max_abs_diff == pytest.approx(4e-4, rel=1e-2)
    assert report.max_scaled_diff == pytest.approx(2e-5, rel=1e-2)
    assert not run(0.0, 4e-3).passed  # 2e-4 of the scale
    assert not run(2e-4, 0.0).passed  # outputs up to 1 keep the absolute 1e-4


def test_benchmark_table_has_a_column_per_reported_metric():
    from moto_vision.deploy.benchmarking import BenchmarkReport, BenchmarkRow

    conditions = {"input": "1x3x8x8", "threads": 1, "warmup": 1, "runs": 2, "machine": "test", "test_images": 4}
    row = BenchmarkRow("m", "onnx", "fp32", "verified", metric="test_loss", metric_value=0.5)
    row.metrics = {"test_loss": 0.5, "test_awb_recovery_median": 2.1, "test_portrait_iou": 0.81}
    plain = BenchmarkReport([row], conditions).to_markdown()
    assert "test_portrait_iou" not in plain
    table = BenchmarkReport([row], conditions | {"report_metrics": ["test_awb_recovery_median", "test_portrait_iou"]})
    lines = [line for line in table.to_markdown().splitlines() if line.startswith("|")]
    assert "| test_awb_recovery_median | test_portrait_iou |" in lines[0]
    assert len({line.count("|") for line in lines}) == 1  # header, rule and rows have the same columns
    assert "| 2.1000 | 0.8100 |" in lines[2]

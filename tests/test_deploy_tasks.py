"""Export -> reload -> parity on tiny models of every moto-vision task, multi-task included.

Each task gets a tiny timm backbone, 32 px inputs and a small synthetic datamodule; its checkpoint goes through
the generic path (task class and datamodule from the checkpoint's own record) to ExecuTorch and ONNX fp32,
and ONNX int8 (the cheap int8 path; ExecuTorch int8 is covered on the toy task).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("executorch")
pytest.importorskip("onnxruntime")

import moto_vision  # noqa: E402
from moto_vision.deploy import ExportSession, load  # noqa: E402
from moto_vision.deploy.quantize import float_only_classes, onnx_nodes_of_classes  # noqa: E402
from tests.helpers.deploy import make_checkpoint  # noqa: E402

SIZE = 32


def _classes(task: str, datamodule: str) -> tuple[Any, Any]:
    # A renamed or removed task must fail here, never turn into a silent skip.
    tasks, data = importlib.import_module("moto_vision.tasks"), importlib.import_module("moto_vision.data")
    missing = [name for name, module in ((task, tasks), (datamodule, data)) if not hasattr(module, name)]
    if missing:
        pytest.fail(f"{missing} no longer exported by moto_vision.tasks / moto_vision.data; update CASES here.")
    return getattr(tasks, task), getattr(data, datamodule)


def _scene() -> tuple[Any, Any]:
    task, data = _classes("SceneClassifier", "SceneDataModule")
    return (
        task(backbone="test_efficientnet", image_size=SIZE),
        data(image_size=SIZE, synthetic_train_size=16, synthetic_eval_size=8, batch_size=8),
    )


def _awb() -> tuple[Any, Any]:
    task, data = _classes("AWBRegressor", "AWBDataModule")
    return (
        task(  # the recipe's head: feature-blind classical votes, relative to each other, alone in the exported graph
            backbone="test_efficientnet",
            image_size=SIZE,
            baselines=[],
            classical_votes=True,
            vote_chromaticity="relative",
            local_votes="training",
            vote_features=False,
        ),
        data(image_size=SIZE, train_size=16, val_size=8, test_size=16, batch_size=8),
    )


def _portrait() -> tuple[Any, Any]:
    task, data = _classes("PortraitSegmenter", "PortraitDataModule")
    return (
        task(backbone="test_efficientnet", image_size=SIZE),
        data(image_size=SIZE, synthetic_train_size=16, synthetic_val_size=8, synthetic_test_size=8, batch_size=8),
    )


def _multitask() -> tuple[Any, Any]:
    task, data = _classes("MultiTaskPerception", "MultiTaskDataModule")
    return (
        task(backbone="test_efficientnet", image_size=SIZE),
        data(
            image_size=SIZE,
            awb={"train_size": 16, "val_size": 8, "test_size": 8},
            portrait={"synthetic_train_size": 16, "synthetic_val_size": 8, "synthetic_test_size": 8},
            scene={"synthetic_train_size": 16, "synthetic_eval_size": 8},
            batch_size=8,
        ),
    )


#: name -> builder of a tiny (task, datamodule) pair.
CASES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "awb": _awb,
    "multitask": _multitask,
    "portrait": _portrait,
    "scene": _scene,
}


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory) -> dict[str, Any]:
    task, datamodule = CASES[request.param]()
    directory = tmp_path_factory.mktemp(request.param)
    checkpoint = make_checkpoint(task, datamodule, directory / "model.ckpt", steps=2)
    session = ExportSession.from_checkpoint(checkpoint, calibration_images=8, parity_batches=2)
    pairs = [("executorch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")]
    if request.param == "awb":  # float-only classical statistics inside an int8 graph: the mixed-precision case
        pairs.append(("executorch", "int8"))
    results = {(format, precision): session.export(format, precision, directory / "out") for format, precision in pairs}
    return {"name": request.param, "session": session, "results": results}


def test_executorch_int8_lowers_a_graph_with_float_only_modules(exported):
    if ("executorch", "int8") not in exported["results"]:
        pytest.skip("exported for the AWB model (classical votes) only")
    result = exported["results"]["executorch", "int8"]
    assert result.status == "verified", result.error


def test_fp32_exports_match_pytorch(exported):
    for (format, precision), result in exported["results"].items():
        if precision != "fp32":
            continue
        assert result.status == "verified", f"{exported['name']} {format}: {result.error}"
        parity = result.parity
        assert parity.passed and parity.max_abs_diff <= 1e-4
        if parity.max_angle_deg is not None:  # AWB: illuminant estimates agree to 1e-3 degrees
            assert parity.max_angle_deg <= 1e-3
        metric = parity.metric
        if not exported["session"].can_score:  # post-processing in the graph without outputs_from_export()
            assert exported["session"].score_note and not parity.candidate_metrics
            continue
        assert metric in parity.candidate_metrics, f"headline metric {metric} not computed"
        assert parity.candidate_metrics[metric] == pytest.approx(parity.reference_metrics[metric], abs=1e-4)


def test_int8_onnx_is_smaller_and_scored(exported):
    int8, fp32 = exported["results"]["onnx", "int8"], exported["results"]["onnx", "fp32"]
    assert int8.status == "verified", int8.error
    import onnx

    def weight_bytes(path: Any) -> int:  # the initializers: what int8 shrinks (the AWB graph's are 1.4 k numbers)
        return sum(len(t.raw_data) or t.ByteSize() for t in onnx.load(str(path)).graph.initializer)

    assert weight_bytes(int8.path) < weight_bytes(fp32.path)
    if exported["session"].can_score:
        assert int8.parity.metric in int8.parity.candidate_metrics
    float_only = float_only_classes(exported["session"].task)
    if exported["name"] == "awb":
        assert [cls.__name__ for cls in float_only] == ["ClassicalEstimates"]
    if float_only:  # modules marked float-only run in float in the QDQ graph: no input comes from a DequantizeLinear
        graph = onnx.load(str(int8.path)).graph
        dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        fp32_names = set(onnx_nodes_of_classes(fp32.path, float_only))
        kept = [n for n in graph.node if n.name in fp32_names]
        # Constants too: the quantizer gets the float-only nodes' own copies of constants shared with quantized ones.
        bad = [(n.name, n.op_type, sorted(set(n.input) & dequantized)) for n in kept if set(n.input) & dequantized]
        assert kept and not bad, bad


def test_onnx_files_carry_no_stack_traces_or_local_paths(exported):
    """The exporter's per-node debug metadata (stack traces with this checkout's paths) stays out of the files; the
    module classes that int8 quantization reads stay in."""
    import onnx

    from moto_vision.deploy.exporters import DEBUG_NODE_METADATA

    checkout = str(Path(moto_vision.__file__).resolve().parent.parent).encode()
    for precision in ("fp32", "int8"):
        path = exported["results"]["onnx", precision].path
        keys = {p.key for n in onnx.load(str(path)).graph.node for p in n.metadata_props}
        assert not keys & set(DEBUG_NODE_METADATA) and checkout not in Path(path).read_bytes(), (precision, keys)
        if precision == "fp32":
            assert "pkg.torch.onnx.class_hierarchy" in keys


def test_predictors_have_the_task_call_and_metadata(exported):
    session = exported["session"]
    images = session.test_batches()[0]["image"][:2]
    expected = session.reference(images)  # the task's export graph, run by PyTorch
    if session.scoreable and not hasattr(session.task, "outputs_from_export"):
        with torch.no_grad():  # no post-processing in the graph: the artifact answers exactly like task(images)
            forward = session.task(images)
        for key in expected if isinstance(expected, dict) else [None]:
            ours, theirs = (expected, forward) if key is None else (expected[key], forward[key])
            assert torch.allclose(ours, theirs, atol=1e-4)
    facts = session.task.export_metadata()
    for format in ("executorch", "onnx"):
        model = load(exported["results"][format, "fp32"].path)
        outputs = model(images)
        if isinstance(expected, dict):
            assert set(outputs) == set(expected)
            for key in expected:
                assert torch.allclose(outputs[key], expected[key], atol=1e-4)
        else:
            assert torch.allclose(outputs, expected, atol=1e-4)
        for key in ("task", "color_domain", "class_names"):
            if key in facts:
                assert model.metadata[key] == facts[key]
        assert model.metadata["input_size"] == [SIZE, SIZE]


def test_pt2e_int8_leaves_every_op_of_a_float_only_module_unquantized():
    """No op of a float-only module reads a dequantized value (the quantizer annotates some ops, e.g. cat, regardless
    of module filters: ExecuTorch int8 AWB 7.3 -> 9.2 degrees mean with one cat there, measured)."""
    pytest.importorskip("executorch")
    from moto_vision.deploy.quantize import quantize_pt2e

    task, _ = _awb()
    module = task.eval().export_module().eval()
    images = [(torch.rand(1, 3, SIZE, SIZE),) for _ in range(2)]
    graph = quantize_pt2e(module, images[0], images)
    float_only = {cls.__name__ for cls in float_only_classes(task)}

    def in_float_only(node: torch.fx.Node) -> bool:
        stack = node.meta.get("nn_module_stack", {}).values()
        return any(str(getattr(c, "__name__", c)).rsplit(".", 1)[-1] in float_only for _, c in stack)

    readers = [
        user.name
        for node in graph.graph.nodes
        if "dequantize_per_tensor" in str(node.target)
        for user in node.users
        if in_float_only(user)
    ]
    assert float_only and any(in_float_only(n) for n in graph.graph.nodes) and not readers, readers

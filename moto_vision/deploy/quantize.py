"""Post-training int8 quantization, calibrated on real batches.

- ExecuTorch: PT2E (``torch.export`` -> ``prepare_pt2e`` -> calibrate -> ``convert_pt2e``) from torchao
  (``torchao.quantization.pt2e``; the ``torch.ao.quantization`` path is deprecated) with ExecuTorch's
  ``XNNPACKQuantizer``, which is built on torchao's quantizer API: int8 per-channel symmetric weights and
  int8 activations, static scales. The converted graph is lowered to XNNPACK like a float one.
- ONNX: ONNX Runtime static quantization in QDQ format (per-channel int8 weights, uint8 activations,
  MinMax calibration), after ORT's ``quant_pre_process`` (shape inference and graph optimisation).
- LiteRT: PT2E with litert-torch's own ``PT2EQuantizer`` (see :mod:`moto_vision.deploy.exporters`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "FLOAT_ONLY",
    "calibration_inputs",
    "float_only_classes",
    "onnx_nodes_of_classes",
    "quantize_onnx_static",
    "quantize_pt2e",
]

#: The attribute a module class sets (``True``) to stay in float in int8 exports: its numbers do not survive 8 bits
#: (e.g. the AWB head's classical estimates: maxima, 6th powers and ratios of raw pixel values).
FLOAT_ONLY = "float_only_in_int8"

#: ONNX ops left in float by the int8 pass (ORT quantizes every registered op type by default). Their outputs are
#: probabilities: with 8-bit outputs every score below 1/510 becomes 0, which breaks calibrated scores and any
#: log-likelihood computed from them (measured on the scene model: test loss 0.53 -> 2.85, top-1 unchanged),
#: for no speed-up worth having on a (B, K) or a final mask tensor. ExecuTorch's XNNPACKQuantizer leaves them in
#: float too.
_ONNX_FLOAT_OPS = frozenset({"Softmax", "Sigmoid"})


def float_only_classes(module: nn.Module) -> list[type[nn.Module]]:
    """The classes of ``module``'s submodules that must stay in float in an int8 export (:data:`FLOAT_ONLY`)."""
    return sorted({type(m) for m in module.modules() if getattr(m, FLOAT_ONLY, False)}, key=lambda c: c.__qualname__)


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def calibration_inputs(
    batches: Iterable[dict[str, Any]],
    max_images: int,
    examples: Mapping[str, torch.Tensor] | None = None,
) -> list[tuple[torch.Tensor, ...]]:
    """Up to ``max_images`` calibration samples (batch 1 each) from datamodule batches, one tuple per graph call.

    Args:
        batches: datamodule batches.
        max_images: how many samples.
        examples: the export graph's inputs by name (the image first); a batch supplies each input under its name
            (see :func:`~moto_vision.deploy.source.batch_inputs`). ``None``: the image only.
    """
    from moto_vision.deploy.source import batch_inputs

    examples = examples or {"image": torch.empty(0)}
    samples: list[tuple[torch.Tensor, ...]] = []
    for batch in batches:
        inputs = batch_inputs(batch, examples)
        for i in range(inputs[0].shape[0]):
            samples.append(tuple(t[i : i + 1].float().contiguous() for t in inputs))
            if len(samples) >= max_images:
                return samples
    return samples


@torch.no_grad()
def quantize_pt2e(
    module: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    calibration: Sequence[torch.Tensor | tuple[torch.Tensor, ...]],
    quantizer: Any | None = None,
    *,
    fold_quantize: bool = True,
) -> torch.fx.GraphModule:
    """Quantize ``module`` to int8 with PT2E, calibrated on ``calibration`` images (batch 1 each).

    Args:
        module: the float inference module.
        example: the export input(s) (their shapes fix the graph's input shapes).
        calibration: samples shaped like ``example`` (a tensor or a tuple per call).
        quantizer: a torchao PT2E quantizer; ExecuTorch's ``XNNPACKQuantizer`` (per-channel symmetric) by default.
        fold_quantize: fold weight quantization into int8 constants (litert-torch wants them unfolded).

    Returns:
        The converted graph module, ready for ``torch.export`` and lowering.
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calibration:
        raise ValueError("int8 quantization needs calibration images; none were given.")
    if quantizer is None:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        for cls in float_only_classes(module):
            quantizer.set_module_type(cls, None)
    example = _as_tuple(example)
    graph = torch.export.export(module, example).module()
    prepared = prepare_pt2e(graph, quantizer)
    for sample in calibration:
        prepared(*(t.to(e.dtype) for t, e in zip(_as_tuple(sample), example)))
    return move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=fold_quantize))


def quantize_onnx_static(
    fp32_path: Path,
    int8_path: Path,
    calibration: Sequence[torch.Tensor | tuple[torch.Tensor, ...]],
    input_names: Sequence[str] = ("image",),
    *,
    per_channel: bool = True,
    float_classes: Sequence[type] = (),
) -> list[str]:
    """Quantize an fp32 ONNX model to int8 QDQ with ONNX Runtime, calibrated on ``calibration`` samples.

    Args:
        fp32_path: the float model.
        int8_path: where to write the quantized one.
        calibration: samples (a tensor or a tuple of the graph's inputs each).
        input_names: the graph's input names, in the order of a sample's tensors.
        per_channel: per-channel weight scales.
        float_classes: module classes whose nodes stay in float (:func:`float_only_classes`), found through the
            class hierarchy the dynamo exporter records in each node's metadata.

    Returns:
        Notes about the run (e.g. a skipped pre-processing step).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("int8 quantization needs calibration images; none were given.")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._images = iter(calibration)

        def get_next(self) -> dict[str, Any] | None:
            sample = next(self._images, None)
            if sample is None:
                return None
            return {name: t.numpy() for name, t in zip(input_names, _as_tuple(sample))}

    notes: list[str] = []
    source = fp32_path
    prepared = int8_path.with_name(int8_path.name + ".pre.onnx")
    try:
        quant_pre_process(str(fp32_path), str(prepared))
        source = prepared
    except Exception as error:  # ORT's symbolic shape inference does not know every op
        notes.append(f"ORT quant_pre_process skipped ({type(error).__name__}: {error}); quantized the raw graph.")
    excluded = onnx_nodes_of_classes(source, float_classes)
    if float_classes and not excluded:
        notes.append("no node carries its module classes (TorchScript export?): every node was quantized.")
    if excluded and _unshare_constants(source, prepared, set(excluded)):
        source = prepared
    try:
        quantize_static(
            str(source),
            str(int8_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - _ONNX_FLOAT_OPS),
            nodes_to_exclude=excluded,
        )
    finally:
        prepared.unlink(missing_ok=True)
    return notes


def _unshare_constants(source: Path, target: Path, float_nodes: set[str]) -> bool:
    """Give the float-only nodes their own copy of every constant they share with a quantized node.

    The dynamo exporter stores an equal scalar once (e.g. the ``1e30`` of :func:`moto_vision.models.ops.step` in a
    quantized and a float-only module); ONNX Runtime's quantizer then quantizes it for the quantized consumer and
    feeds the float-only one its ``DequantizeLinear`` too. Writes ``target`` and returns whether anything changed.
    """
    import onnx

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    consumers: dict[str, set[bool]] = {}  # initializer -> whether its consumers are float-only
    for node in graph.node:
        for name in node.input:
            if name in initializers:
                consumers.setdefault(name, set()).add(node.name in float_nodes)
    shared = sorted(name for name, kinds in consumers.items() if kinds == {True, False})
    if not shared:
        return False
    for name in shared:
        copy = onnx.TensorProto()
        copy.CopyFrom(initializers[name])
        copy.name = f"{name}__float"
        graph.initializer.append(copy)
    renamed = {name: f"{name}__float" for name in shared}
    for node in graph.node:
        if node.name in float_nodes:
            node.input[:] = [renamed.get(i, i) for i in node.input]
    onnx.save(model, str(target))
    return True


def onnx_nodes_of_classes(path: Path, classes: Sequence[type]) -> list[str]:
    """Names of the ONNX nodes exported from a module of one of ``classes`` (dynamo exporter metadata)."""
    if not classes:
        return []
    import onnx

    wanted = {_qualified_name(cls) for cls in classes}
    names = []
    for node in onnx.load(str(path)).graph.node:
        hierarchy = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.class_hierarchy"), "")
        if any(f"'{name}'" in hierarchy for name in wanted):
            names.append(node.name)
    return names


def _as_tuple(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)

"""One exporter per phone format (the table of formats is :data:`moto_vision.deploy.formats.FORMATS`).

Every exporter has the same call: the prepared :class:`~moto_vision.deploy.source.InferenceModule`, its example
inputs (a tuple, batch 1, the image first), the target path and the model facts to embed, then ``precision``,
``calibration`` (one tuple of inputs per sample), ``input_names``, ``output_names`` and the format's own options
(``FORMATS[name].options``). It writes the artifact atomically and returns what it did (exporter used, fallbacks
and their reasons, quantization scheme).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from moto_vision.deploy.artifact import EMBEDDED_METADATA_KEY, PTE_METADATA_METHOD, atomic_output
from moto_vision.deploy.formats import FORMATS
from moto_vision.deploy.quantize import float_only_classes, quantize_onnx_static, quantize_pt2e

__all__ = ["export_executorch", "export_onnx", "export_tflite", "lower_executorch"]

Inputs = tuple[torch.Tensor, ...]


# --------------------------------------------------------------------------------------------- ExecuTorch
def export_executorch(
    module: torch.nn.Module,
    inputs: Inputs,
    path: Path,
    facts: dict[str, Any],
    *,
    precision: str = "fp32",
    calibration: Sequence[Inputs] | None = None,
    input_names: Sequence[str] = ("image",),
    output_names: Sequence[str] = ("output",),
) -> dict[str, Any]:
    """``torch.export`` -> ``to_edge_transform_and_lower`` (XNNPACK) -> ``.pte``; int8 via PT2E first."""
    FORMATS["executorch"].check()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    graph: torch.nn.Module = module
    info: dict[str, Any] = {"exporter": "torch.export + to_edge_transform_and_lower (XnnpackPartitioner)"}
    if precision == "int8":
        graph = quantize_pt2e(module, inputs, calibration or [])
        info["quantization"] = FORMATS["executorch"].int8
    constant_methods = {PTE_METADATA_METHOD: json.dumps(facts)}
    edge = lower_executorch(graph, inputs, [XnnpackPartitioner()], constant_methods, merge_common=precision != "int8")
    buffer = edge.to_executorch().buffer
    if precision == "int8" and (error := _smoke_run(buffer, inputs)) is not None:
        # ExecuTorch 1.5.1: with one mixed partitioner, an int8 conv whose output feeds an op XNNPACK lacks (AWB's
        # softplus) hands that output over in the wrong layout at run time ("Failed to resize output tensor for
        # XNNExecutor"). Lowering the quantized partitions first avoids it, at the cost of more partitions and
        # layout copies between them, so it is only the fallback.
        from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType

        quantized_first = [XnnpackPartitioner(config_precisions=ConfigPrecisionType.STATIC_QUANT), XnnpackPartitioner()]
        edge = lower_executorch(graph, inputs, quantized_first, constant_methods, merge_common=False)
        buffer = edge.to_executorch().buffer
        info["exporter"] += ", quantized partitions lowered first"
        info["fallback_reason"] = [f"one XnnpackPartitioner: the program fails at run time ({error})"]
    info.update(_delegation(edge))
    with atomic_output(path) as temporary:
        temporary.write_bytes(buffer)
    return info


def lower_executorch(
    module: torch.nn.Module,
    inputs: Inputs,
    partitioners: Sequence[Any] | None = None,
    constant_methods: dict[str, Any] | None = None,
    *,
    merge_common: bool = True,
) -> Any:
    """``torch.export`` of ``module``, then ExecuTorch's edge lowering with ``partitioners`` (default: XNNPACK).

    Identical computations are merged first (torch.fx's common-subexpression elimination, which the edge lowering
    does not run): a multi-task graph's normalisation and AWB head take the same block mean of the image
    (:func:`moto_vision.models.ops.blockwise_mean`), and without it ExecuTorch computes it twice (0.09 ms of a
    256 x 256 graph, measured). ONNX Runtime eliminates common subexpressions by itself. ``merge_common=False``
    skips it: on a PT2E int8 graph the merged quantize / dequantize nodes make XNNPACK partitions depend on each other
    in a cycle ("Invalid partition, found dependency cycles", ExecuTorch 1.5.1, the AWB recipe's model). Returns the
    ``EdgeProgramManager`` (``.to_executorch().buffer`` is the ``.pte``).
    """
    from executorch.exir import to_edge_transform_and_lower
    from torch.fx.passes.dialect.common.cse_pass import CSEPass

    if partitioners is None:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners = [XnnpackPartitioner()]
    program = torch.export.export(module, inputs)
    return to_edge_transform_and_lower(
        program,
        transform_passes=[CSEPass()] if merge_common else [],
        partitioner=list(partitioners),
        constant_methods=constant_methods,
    )


def _smoke_run(buffer: bytes, inputs: Inputs) -> str | None:
    """Run a lowered program once in the ExecuTorch runtime; the error message if it fails, else ``None``."""
    from executorch.runtime import Runtime

    try:
        Runtime.get().load_program(buffer).load_method("forward").execute(list(inputs))
    except Exception as error:  # the runtime raises RuntimeError with an error code
        return f"{type(error).__name__}: {error}"
    return None


def _delegation(edge: Any) -> dict[str, Any]:
    """How much of the graph runs in XNNPACK (the rest falls back to ExecuTorch's portable CPU kernels)."""
    try:
        from executorch.devtools.backend_debug import get_delegation_info

        summary = get_delegation_info(edge.exported_program().graph_module)
        return {"delegated_ops": summary.num_delegated_nodes, "non_delegated_ops": summary.num_non_delegated_nodes}
    except Exception:  # diagnostics only; never fail an export over them
        return {}


# --------------------------------------------------------------------------------------------- ONNX
def export_onnx(
    module: torch.nn.Module,
    inputs: Inputs,
    path: Path,
    facts: dict[str, Any],
    *,
    precision: str = "fp32",
    calibration: Sequence[Inputs] | None = None,
    input_names: Sequence[str] = ("image",),
    output_names: Sequence[str] = ("output",),
    dynamic_batch: bool = True,
    opset_version: int | None = None,
) -> dict[str, Any]:
    """ONNX with the dynamo exporter (batch axis dynamic), falling back to the TorchScript exporter.

    The fallback is recorded with the dynamo exporter's error so the user knows which path made the file. int8
    runs ONNX Runtime static QDQ quantization on the fp32 graph.

    Args:
        module: the inference module.
        inputs: its example inputs (batch 1).
        path: the file to write.
        facts: model facts, embedded as ``metadata_props``.
        precision: ``fp32`` or ``int8``.
        calibration: int8 calibration samples (one input tuple each).
        input_names: the graph's input names.
        output_names: the graph's output names.
        dynamic_batch: give every input and output a batch axis of any size (else batch 1).
        opset_version: the ONNX opset (``None``: the exporter's default).
    """
    FORMATS["onnx"].check()
    import onnx

    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="moto-onnx-", dir=path.parent) as work:
        fp32 = Path(work) / "fp32.onnx"
        names = (list(input_names), list(output_names))
        info.update(_onnx_fp32(module, inputs, fp32, names, dynamic_batch=dynamic_batch, opset_version=opset_version))
        source = fp32
        if precision == "int8":
            int8 = Path(work) / "int8.onnx"
            notes = quantize_onnx_static(
                fp32, int8, calibration or [], input_names=list(input_names), float_classes=float_only_classes(module)
            )
            info["quantization"] = FORMATS["onnx"].int8
            info["fp32_size_bytes"] = fp32.stat().st_size
            if notes:
                info["notes"] = notes
            source = int8
        model = onnx.load(str(source))
        _strip_debug_metadata(model)
        _set_metadata_props(model, facts)
        with atomic_output(path) as temporary:
            onnx.save(model, str(temporary))
    return info


def _onnx_fp32(
    module: torch.nn.Module,
    inputs: Inputs,
    path: Path,
    names: tuple[list[str], list[str]],
    *,
    dynamic_batch: bool,
    opset_version: int | None,
) -> dict[str, Any]:
    input_names, output_names = names
    batch = torch.export.Dim("batch", min=1, max=1024)
    # InferenceModule.forward(*inputs): dynamic shapes mirror that one variadic argument.
    dynamic_shapes = (tuple({0: batch} for _ in inputs),)
    axes = {name: {0: "batch"} for name in (*input_names, *output_names)}
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("dynamo (batch 1)", {"dynamo": True}),
        ("torchscript", {"dynamo": False}),
    ]
    if dynamic_batch:
        attempts.insert(0, ("dynamo (dynamic batch)", {"dynamo": True, "dynamic_shapes": dynamic_shapes}))
        attempts[-1] = ("torchscript", {"dynamo": False, "dynamic_axes": axes})
    if opset_version is not None:
        attempts = [(label, {**options, "opset_version": opset_version}) for label, options in attempts]
    errors: list[str] = []
    for label, options in attempts:
        try:
            _onnx_attempt(module, inputs, path, names, options)
        except Exception as error:  # each exporter fails in its own ways; record why and try the next
            errors.append(f"{label}: {type(error).__name__}: {str(error).strip().splitlines()[0][:300]}")
            path.unlink(missing_ok=True)
            continue
        info: dict[str, Any] = {"exporter": f"torch.onnx.export {label}"}
        if errors:
            info["fallback_reason"] = errors
        return info
    raise RuntimeError("Every ONNX exporter failed:\n  " + "\n  ".join(errors))


def _onnx_attempt(
    module: torch.nn.Module, inputs: Inputs, path: Path, names: tuple[list[str], list[str]], options: dict[str, Any]
) -> None:
    import warnings

    input_names, output_names = names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if options.get("dynamo"):
            program = torch.onnx.export(
                module,
                inputs,
                input_names=input_names,
                output_names=output_names,
                verbose=False,
                optimize=True,
                **options,
            )
            program.save(str(path))
        else:
            torch.onnx.export(module, inputs, str(path), input_names=input_names, output_names=output_names, **options)


#: Per-node ``metadata_props`` of the dynamo exporter that the shipped file drops: the Python stack trace of every
#: node (it holds the build machine's file paths), its FX node and scope names. Most of a small model's file (the
#: recipe's AWB graph in ``moto-vision benchmark``: 254 KB with them, 68 KB without, measured).
#: ``pkg.torch.onnx.class_hierarchy`` stays: it names module classes only, and int8 quantization finds the
#: float-only modules' nodes by it.
DEBUG_NODE_METADATA = (
    "pkg.torch.onnx.stack_trace",
    "pkg.torch.onnx.fx_node",
    "pkg.torch.onnx.name_scopes",
    "namespace",
)


def _strip_debug_metadata(model: Any) -> None:
    """Remove :data:`DEBUG_NODE_METADATA` from every node (subgraphs and local functions included)."""

    def nodes(graph: Any) -> Iterator[Any]:
        for node in graph.node:
            yield node
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    yield from nodes(attribute.g)
                for sub in attribute.graphs:
                    yield from nodes(sub)

    every = [*nodes(model.graph), *(n for function in model.functions for n in nodes(function))]
    for node in every:
        keep = [p for p in node.metadata_props if p.key not in DEBUG_NODE_METADATA]
        if len(keep) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(keep)


def _set_metadata_props(model: Any, facts: dict[str, Any]) -> None:
    """Embed the model facts: the full JSON under ``moto_vision`` plus a few flat keys that viewers show."""
    props = {EMBEDDED_METADATA_KEY: json.dumps(facts)}
    for key in ("task", "color_domain", "image_size", "class_names", "moto_vision_version"):
        if facts.get(key) is not None:
            value = facts[key]
            props[key] = value if isinstance(value, str) else json.dumps(value)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value


# --------------------------------------------------------------------------------------------- LiteRT
def export_tflite(
    module: torch.nn.Module,
    inputs: Inputs,
    path: Path,
    facts: dict[str, Any],
    *,
    precision: str = "fp32",
    calibration: Sequence[Inputs] | None = None,
    input_names: Sequence[str] = ("image",),
    output_names: Sequence[str] = ("output",),
) -> dict[str, Any]:
    """LiteRT ``.tflite`` through ``litert_torch.convert``; int8 via PT2E with litert-torch's quantizer.

    LiteRT flatbuffers have no free-form metadata field that litert-torch writes, so the facts live in the
    ``metadata.json`` beside the file only.
    """
    FORMATS["tflite"].check()
    import litert_torch

    info: dict[str, Any] = {"exporter": f"litert_torch.convert ({getattr(litert_torch, '__version__', '?')})"}
    kwargs: dict[str, Any] = {}
    graph: torch.nn.Module = module
    if precision == "int8":
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig

        quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        graph = quantize_pt2e(module, inputs, calibration or [], quantizer=quantizer, fold_quantize=False)
        kwargs["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
        info["quantization"] = FORMATS["tflite"].int8
    edge_model = litert_torch.convert(graph, inputs, **kwargs)
    with atomic_output(path) as temporary:
        edge_model.export(str(temporary))
    return info

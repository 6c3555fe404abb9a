"""Run exported models in their own runtimes with the same call as the task.

``moto_vision.deploy.load(path)`` returns a :class:`Predictor`: call it with a float ``(B, 3, H, W)``
image tensor in ``[0, 1]`` (the same input the task takes) and get the task's output back as torch
tensors (a dict for tasks that return one), so exported models are scored with the same metrics::

    from moto_vision.deploy import load

    model = load("export/scene_int8.pte")
    logits = model(images)              # (B, K), like SceneClassifier(images)
    print(model.metadata["class_names"])

Artifacts are exported for batch 1 (what a phone runs); larger batches are run image by image unless the
artifact has a dynamic batch axis (our ONNX exports do).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from moto_vision.deploy.artifact import read_metadata
from moto_vision.deploy.formats import format_for_path

__all__ = ["ExecuTorchPredictor", "OnnxPredictor", "Predictor", "TFLitePredictor", "TorchPredictor", "load"]


class Predictor:
    """An exported model, callable like the task it came from.

    Attributes:
        path: the artifact file.
        format: ``"executorch"``, ``"onnx"``, ``"tflite"`` or ``"pytorch"``.
        metadata: model facts and this artifact's export record (``{}`` if none was found).
        input_size: the ``(H, W)`` the artifact was exported for.
        dynamic_batch: whether the artifact takes any batch size in one call.
        threads: CPU threads the runtime was asked to use (``None``: the runtime's default).
    """

    format = "unknown"

    def __init__(self, path: Path, metadata: dict[str, Any], threads: int | None) -> None:
        self.path = path
        self.metadata = metadata
        self.threads = threads
        self.input_size: tuple[int, int] = (0, 0)
        self.dynamic_batch = False

    # -- subclasses implement
    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Run one call of the runtime on contiguous float32 inputs (the image first); returns the flat outputs."""
        raise NotImplementedError

    # -- shared
    @property
    def input_names(self) -> list[str]:
        return [entry["name"] for entry in self.metadata.get("inputs") or [{"name": "image"}]]

    @property
    def output_names(self) -> list[str]:
        return list(self.metadata.get("outputs") or ["output"])

    @property
    def output_structure(self) -> str:
        return str(self.metadata.get("output_structure") or "tensor")

    def __call__(self, images: torch.Tensor, *extra: torch.Tensor, **named: torch.Tensor) -> Any:
        """Predict on ``images`` ``(B, 3, H, W)`` in ``[0, 1]``; returns what the task's forward returns.

        A model exported with further inputs (``metadata["inputs"]``) takes them after the images, positionally or
        by name, each with the same batch size.
        """
        if images.ndim != 4:
            raise ValueError(f"{self.path.name}: expected images (B, 3, H, W), got shape {tuple(images.shape)}.")
        if tuple(images.shape[-2:]) != tuple(self.input_size):
            raise ValueError(
                f"{self.path.name} was exported for {self.input_size[0]}x{self.input_size[1]} inputs, got "
                f"{images.shape[-2]}x{images.shape[-1]}. Resize the images (the task's datamodule does) or re-export "
                "with `moto-vision export --image-size`."
            )
        names = self.input_names[1:]
        unknown = sorted(set(named) - set(names))
        if unknown or len(extra) + len(named) != len(names):
            raise ValueError(
                f"{self.path.name} takes the images and {names or 'no further inputs'}; got {len(extra)} more "
                f"positional and {sorted(named)} named inputs."
            )
        values = [*extra, *(named[n] for n in names[len(extra) :])]
        inputs = [t.detach().to("cpu", torch.float32).contiguous() for t in (images, *values)]
        if self.dynamic_batch or images.shape[0] == 1:
            outputs = self.run(*inputs)
        else:
            per_image = [self.run(*(t[i : i + 1].contiguous() for t in inputs)) for i in range(images.shape[0])]
            outputs = [torch.cat(parts) for parts in zip(*per_image)]
        return self._structure(outputs)

    def _structure(self, outputs: list[torch.Tensor]) -> Any:
        if self.output_structure == "dict":
            return dict(zip(self.output_names, outputs))
        if self.output_structure == "tuple":
            return tuple(outputs)
        return outputs[0]

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, input={self.input_size}, threads={self.threads})"


class ExecuTorchPredictor(Predictor):
    """A ``.pte`` program run with ``executorch.runtime`` (XNNPACK kernels are built into the Python wheel)."""

    format = "executorch"

    def __init__(self, path: Path, metadata: dict[str, Any], threads: int | None = None) -> None:
        super().__init__(path, metadata, threads)
        from executorch.runtime import Runtime

        if threads:
            # XNNPACK's thread pool is process-wide in the Python bindings.
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(threads))
        program = Runtime.get().load_program(path)
        method = program.load_method("forward")
        if method is None:
            raise ValueError(f"{path} has no 'forward' method; is it an ExecuTorch model program?")
        self._program, self._method = program, method
        shape = tuple(program.metadata("forward").input_tensor_meta(0).sizes())
        self.input_size = (int(shape[-2]), int(shape[-1]))
        self.dynamic_batch = False

    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        # Outputs may live in the program's planned memory, which the next call reuses: copy them out.
        return [output.clone() for output in self._method.execute(list(inputs))]


class OnnxPredictor(Predictor):
    """An ``.onnx`` model run with ONNX Runtime's CPU execution provider."""

    format = "onnx"

    def __init__(self, path: Path, metadata: dict[str, Any], threads: int | None = None) -> None:
        super().__init__(path, metadata, threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model_inputs = self._session.get_inputs()
        self._input_names = [i.name for i in model_inputs]
        shape = model_inputs[0].shape
        self.input_size = (int(shape[-2]), int(shape[-1]))
        self.dynamic_batch = not isinstance(shape[0], int)

    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        feed = {name: t.numpy() for name, t in zip(self._input_names, inputs)}
        return [torch.from_numpy(out) for out in self._session.run(None, feed)]


class TFLitePredictor(Predictor):
    """A ``.tflite`` model run with the LiteRT interpreter (``ai_edge_litert``)."""

    format = "tflite"

    def __init__(self, path: Path, metadata: dict[str, Any], threads: int | None = None) -> None:
        super().__init__(path, metadata, threads)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                f"Running {path.name} needs the LiteRT interpreter (`pip install ai-edge-litert`, installed with "
                "litert-torch)."
            ) from error
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
        self._runner = self._interpreter.get_signature_runner()
        # litert-torch names the signature's inputs args_0, args_1, ... in call order.
        details = self._runner.get_input_details()
        self._inputs = [(name, details[name]) for name in sorted(details, key=_natural)]
        self._outputs = self._runner.get_output_details()
        shape = self._inputs[0][1]["shape"]
        self.input_size = (int(shape[-2]), int(shape[-1]))
        self.dynamic_batch = False

    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        feed = {name: _quantize(t.numpy(), detail) for (name, detail), t in zip(self._inputs, inputs)}
        outputs = self._runner(**feed)
        # litert-torch names outputs output_0, output_1, ... in the order the module returned them.
        keys = sorted(outputs, key=_natural)
        return [torch.from_numpy(_dequantize(outputs[key], self._outputs.get(key, {})).copy()) for key in keys]


def _natural(key: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _quantize(array: Any, detail: dict[str, Any]) -> Any:
    """Fully integer LiteRT models take int8 / uint8 inputs: scale with the tensor's own (scale, zero point)."""
    import numpy as np

    dtype = detail.get("dtype", np.float32)
    if not np.issubdtype(dtype, np.integer):
        return array.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(array / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(array: Any, detail: dict[str, Any]) -> Any:
    import numpy as np

    if not np.issubdtype(array.dtype, np.integer) or not detail.get("quantization"):
        return array
    scale, zero_point = detail["quantization"]
    return ((array.astype(np.float32) - zero_point) * scale).astype(np.float32)


class TorchPredictor(Predictor):
    """The fused PyTorch inference graph of a checkpoint, run eagerly (the reference for every format)."""

    format = "pytorch"

    def __init__(self, module: torch.nn.Module, path: Path, metadata: dict[str, Any], threads: int | None = None):
        super().__init__(path, metadata, threads)
        self.module = module.eval()
        size = metadata.get("input_size") or [metadata.get("image_size")] * 2
        self.input_size = (int(size[0]), int(size[1]))
        self.dynamic_batch = True

    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), _torch_threads(self.threads):
            outputs = self.module(*inputs)
        return [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if not threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def load(
    path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    task_class: str | type | None = None,
    image_size: int | None = None,
    allow_classes: Sequence[str | type] = (),
) -> Predictor:
    """Load an exported model (``.pte``, ``.onnx``, ``.tflite``) or a checkpoint (``.ckpt``) as a predictor.

    Args:
        path: the artifact; its ``metadata.json`` (or embedded metadata) supplies class names and output layout.
        threads: CPU threads for the runtime (``None``: the runtime's default).
        task_class: for ``.ckpt`` files that do not record their task class.
        image_size: for ``.ckpt`` files of tasks without an ``image_size`` hyperparameter.
        allow_classes: for ``.ckpt`` files: classes besides moto-vision's own tasks that the checkpoint may name
            (a checkpoint is untrusted data; see :func:`~moto_vision.deploy.source.load_task`).

    Returns:
        A :class:`Predictor`; ``predictor(images)`` returns what the task's ``forward`` returns.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No exported model at {path}.")
    if path.suffix.lower() == ".ckpt":
        return _load_checkpoint(path, threads, task_class, image_size, allow_classes)
    return format_for_path(path).load(path, read_metadata(path), threads=threads)


def _load_checkpoint(
    path: Path,
    threads: int | None,
    task_class: str | type | None,
    image_size: int | None,
    allow_classes: Sequence[str | type],
) -> TorchPredictor:
    from moto_vision.deploy.source import export_inputs, image_size_of, load_task, model_facts, prepare_inference_module

    task, info = load_task(path, task_class, allow_classes=allow_classes)
    inputs = export_inputs(task, image_size_of(task, override=image_size))
    module = prepare_inference_module(task, inputs)
    return TorchPredictor(module, path, model_facts(task, info, module, inputs), threads=threads)

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
    def run(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Run one call of the runtime on a contiguous float32 batch; returns the flat outputs."""
        raise NotImplementedError

    # -- shared
    @property
    def output_names(self) -> list[str]:
        return list(self.metadata.get("outputs") or ["output"])

    @property
    def output_structure(self) -> str:
        return str(self.metadata.get("output_structure") or "tensor")

    def __call__(self, images: torch.Tensor) -> Any:
        """Predict on ``images`` ``(B, 3, H, W)`` in ``[0, 1]``; returns what the task's forward returns."""
        if images.ndim != 4:
            raise ValueError(f"{self.path.name}: expected images (B, 3, H, W), got shape {tuple(images.shape)}.")
        if tuple(images.shape[-2:]) != tuple(self.input_size):
            raise ValueError(
                f"{self.path.name} was exported for {self.input_size[0]}x{self.input_size[1]} inputs, got "
                f"{images.shape[-2]}x{images.shape[-1]}. Resize the images (the task's datamodule does) or re-export "
                "with `moto-vision export --image-size`."
            )
        images = images.detach().to("cpu", torch.float32).contiguous()
        if self.dynamic_batch or images.shape[0] == 1:
            outputs = self.run(images)
        else:
            per_image = [self.run(image[None].contiguous()) for image in images]
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

    def run(self, image: torch.Tensor) -> list[torch.Tensor]:
        # Outputs may live in the program's planned memory, which the next call reuses: copy them out.
        return [output.clone() for output in self._method.execute([image])]


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
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        shape = model_input.shape
        self.input_size = (int(shape[-2]), int(shape[-1]))
        self.dynamic_batch = not isinstance(shape[0], int)

    def run(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(out) for out in self._session.run(None, {self._input_name: image.numpy()})]


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
        details = self._runner.get_input_details()
        self._input_name = next(iter(details))
        self._input = details[self._input_name]
        self._outputs = self._runner.get_output_details()
        shape = self._input["shape"]
        self.input_size = (int(shape[-2]), int(shape[-1]))
        self.dynamic_batch = False

    def run(self, image: torch.Tensor) -> list[torch.Tensor]:
        outputs = self._runner(**{self._input_name: _quantize(image.numpy(), self._input)})
        # litert-torch names outputs output_0, output_1, ... in the order the module returned them.
        keys = sorted(outputs, key=lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)])
        return [torch.from_numpy(_dequantize(outputs[key], self._outputs.get(key, {})).copy()) for key in keys]


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

    def run(self, image: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), _torch_threads(self.threads):
            outputs = self.module(image)
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


_PREDICTORS: dict[str, type[Predictor]] = {
    ".pte": ExecuTorchPredictor,
    ".onnx": OnnxPredictor,
    ".tflite": TFLitePredictor,
}


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
    suffix = path.suffix.lower()
    if suffix == ".ckpt":
        return _load_checkpoint(path, threads, task_class, image_size, allow_classes)
    if suffix not in _PREDICTORS:
        raise ValueError(f"{path}: unknown model format {suffix!r}; expected one of {sorted(_PREDICTORS)} or .ckpt.")
    return _PREDICTORS[suffix](path, read_metadata(path), threads=threads)


def _load_checkpoint(
    path: Path,
    threads: int | None,
    task_class: str | type | None,
    image_size: int | None,
    allow_classes: Sequence[str | type],
) -> TorchPredictor:
    from moto_vision.deploy.session import model_facts
    from moto_vision.deploy.source import image_size_of, load_task, prepare_inference_module

    task, info = load_task(path, task_class, allow_classes=allow_classes)
    size = image_size_of(task, override=image_size)
    example = torch.zeros(1, 3, size, size)
    module = prepare_inference_module(task, example)
    return TorchPredictor(module, path, model_facts(task, info, module, example), threads=threads)

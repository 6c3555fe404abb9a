"""The one table of export formats (as in Ultralytics'): suffix, exporter, predictor, availability, options.

Everything that differs between formats is a column here; the export session, the runtime loader, the CLI and
the docs read this table instead of naming formats themselves. Exporters and predictors are referenced by
import path and imported on first use, so reading the table imports no heavy package::

    from moto_vision.deploy.formats import FORMATS, format_for_path

    FORMATS["onnx"].options          # {'dynamic_batch': True, 'opset_version': None}
    format_for_path("x.pte").name    # 'executorch'
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["FORMATS", "ExportFormat", "ExporterUnavailable", "format_for_path"]

#: Why LiteRT is not installed by default (measured with litert-torch 0.10.0 against torch 2.14.1).
LITERT_NOTE = (
    "LiteRT export needs the optional package litert-torch (`pip install 'moto-vision[litert]'`). litert-torch "
    "0.10 accepts our torch (it requires torch<2.15) and converts moto-vision models, but its dependency xdsl "
    "pins typing-extensions<4.13 and it pulls in jax and transformers, so it is not part of the default install; "
    "put it in its own environment: `python -m venv --system-site-packages .venv-litert && "
    ".venv-litert/bin/pip install 'moto-vision[litert]'`."
)


class ExporterUnavailable(RuntimeError):
    """The packages a format needs are not installed (the message says what to install)."""


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass(frozen=True)
class ExportFormat:
    """A phone format.

    Attributes:
        name: CLI name (``executorch``, ``onnx``, ``tflite``).
        suffix: file suffix.
        runtime: the runtime that loads it on the phone and here.
        int8: how ``--quantize int8`` is done for this format.
        modules: Python modules the exporter needs.
        install: how to get them.
        exporter: ``"module:function"`` writing the file (see :mod:`moto_vision.deploy.exporters`).
        predictor: ``"module:Class"`` running the file (see :mod:`moto_vision.deploy.runtime`).
        options: the exporter's own options and their defaults (``export(..., options={"onnx": {...}})``).
        embeds_metadata: whether the model facts are written into the file itself (else only ``metadata.json``).
    """

    name: str
    suffix: str
    runtime: str
    int8: str
    modules: tuple[str, ...]
    install: str
    exporter: str
    predictor: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    embeds_metadata: bool = True

    def missing(self) -> list[str]:
        """The needed modules that are not importable."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    @property
    def available(self) -> bool:
        """Whether the exporter's packages are installed."""
        return not self.missing()

    def check(self) -> None:
        """Raise :class:`ExporterUnavailable` with install instructions when the exporter cannot run."""
        missing = self.missing()
        if missing:
            raise ExporterUnavailable(f"{self.name} export needs {', '.join(missing)}, not installed. {self.install}")

    def resolve_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The format's options with ``given`` applied; unknown names are an error."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise ValueError(f"{self.name} export has no option(s) {unknown}; its options are: {known}.")
        return {**self.options, **given}

    def export(self, *args: Any, options: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Write the artifact with this format's exporter (arguments as in :mod:`moto_vision.deploy.exporters`)."""
        self.check()
        return _load(self.exporter)(*args, **kwargs, **self.resolve_options(options))

    def load(self, path: str | os.PathLike[str], metadata: dict[str, Any], threads: int | None = None) -> Any:
        """Open an artifact of this format as a :class:`~moto_vision.deploy.runtime.Predictor`."""
        return _load(self.predictor)(Path(path), metadata, threads=threads)


FORMATS: dict[str, ExportFormat] = {
    "executorch": ExportFormat(
        name="executorch",
        suffix=".pte",
        runtime="ExecuTorch (XNNPACK delegate)",
        int8="PT2E (torchao) + XNNPACKQuantizer, per-channel int8 weights, int8 activations",
        modules=("executorch",),
        install="Install it with `pip install 'moto-vision[export]'` (executorch).",
        exporter="moto_vision.deploy.exporters:export_executorch",
        predictor="moto_vision.deploy.runtime:ExecuTorchPredictor",
    ),
    "onnx": ExportFormat(
        name="onnx",
        suffix=".onnx",
        runtime="ONNX Runtime",
        int8="ONNX Runtime static QDQ, per-channel int8 weights, uint8 activations",
        modules=("onnx", "onnxscript", "onnxruntime"),
        install="Install them with `pip install 'moto-vision[export]'` (onnx, onnxscript, onnxruntime).",
        exporter="moto_vision.deploy.exporters:export_onnx",
        predictor="moto_vision.deploy.runtime:OnnxPredictor",
        # dynamic_batch: a batch axis of any size (else batch 1); opset_version: None is the exporter's default.
        options=MappingProxyType({"dynamic_batch": True, "opset_version": None}),
    ),
    "tflite": ExportFormat(
        name="tflite",
        suffix=".tflite",
        runtime="LiteRT (TFLite interpreter, XNNPACK delegate)",
        int8="PT2E (torchao) + litert-torch PT2EQuantizer, per-channel int8 weights, int8 activations",
        modules=("litert_torch",),
        install=LITERT_NOTE,
        exporter="moto_vision.deploy.exporters:export_tflite",
        predictor="moto_vision.deploy.runtime:TFLitePredictor",
        embeds_metadata=False,
    ),
}


def format_for_path(path: str | os.PathLike[str]) -> ExportFormat:
    """The format of an artifact, from its suffix."""
    suffix = Path(path).suffix.lower()
    for export_format in FORMATS.values():
        if export_format.suffix == suffix:
            return export_format
    known = sorted(f.suffix for f in FORMATS.values())
    raise ValueError(f"{path}: unknown model format {suffix!r}; expected one of {known} or .ckpt.")

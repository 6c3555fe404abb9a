"""From a trained task to a phone: export, quantization, parity checks, profiling and benchmarks.

Heavy optional dependencies (onnx, onnxruntime, executorch, litert-torch) are imported inside the
functions that need them, and the names below are imported on first use, so importing this package
stays cheap::

    from moto_vision.deploy import export, load, profile_model

    result = export("best.ckpt", "executorch", quantize="int8", output="export/")
    model = load(result.path)           # same call as the task: images in [0, 1] -> task output
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "FORMATS",
    "ExportResult",
    "ExportSession",
    "ModelProfile",
    "ParityReport",
    "Predictor",
    "benchmark",
    "check_parity",
    "count_macs",
    "count_parameters",
    "evaluate",
    "export",
    "load",
    "profile_model",
    "read_metadata",
    "sweep",
]

_LOCATIONS = {
    "FORMATS": "moto_vision.deploy.formats",
    "ExportResult": "moto_vision.deploy.session",
    "ExportSession": "moto_vision.deploy.session",
    "export": "moto_vision.deploy.session",
    "ModelProfile": "moto_vision.deploy.profile",
    "count_macs": "moto_vision.deploy.profile",
    "count_parameters": "moto_vision.deploy.profile",
    "profile_model": "moto_vision.deploy.profile",
    "ParityReport": "moto_vision.deploy.parity",
    "check_parity": "moto_vision.deploy.parity",
    "evaluate": "moto_vision.deploy.parity",
    "Predictor": "moto_vision.deploy.runtime",
    "load": "moto_vision.deploy.runtime",
    "read_metadata": "moto_vision.deploy.artifact",
    "benchmark": "moto_vision.deploy.benchmarking",
    "sweep": "moto_vision.deploy.pareto",
}


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'moto_vision.deploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""moto-vision: camera perception for mobile phones.

Scene detection, portrait / face segmentation and auto white balance as PyTorch Lightning tasks on
shared timm backbones, with a differentiable camera ISP for augmentation and a path to the phone
(ExecuTorch, ONNX, int8).

The heavy sub-packages (``tasks``, ``data``, ``deploy``) are imported lazily so that
``from moto_vision.backbones import create_backbone`` or ``from moto_vision import isp`` stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("backbones", "callbacks", "data", "deploy", "isp", "metrics", "models", "tasks")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

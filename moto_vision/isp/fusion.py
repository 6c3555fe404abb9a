"""Kernel fusion of the ISP's elementwise chains with ``torch.compile`` (optional, on by default).

In eager PyTorch every ISP step is a pass over the whole batch: inverse tone curve, sRGB decoding, colour
matrix, vignetting, noise, clipping, white balance, colour matrix, sRGB encoding, tone curve, about fifteen
passes over 25 MB for a 32 x 3 x 256 x 256 batch. ``torch.compile`` fuses each chain into one generated loop
(PyTorch has no fused kernel for these curves, hence this module). On the 2-core development CPU that cuts
``CameraPipeline`` from about 75 ms to 37 ms per batch (``docs/benchmarks.md``).

A fused function runs compiled when

- the environment variable ``MOTO_VISION_ISP_COMPILE`` is not ``0``,
- its first tensor argument is on the CPU or a CUDA device, and
- compilation works (on the CPU it needs a C++ compiler).

Otherwise, or if compiling fails (one warning says why), the same Python function runs eagerly; both give the
same result up to float rounding (about 1e-6). The first call compiles (5-10 s on the CPU); shapes are dynamic,
so other batch and image sizes reuse the compiled code.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["COMPILE_ENV", "fused", "fusion_enabled"]

#: Set to ``0`` to run the ISP eagerly (tests do, so they do not spend time compiling).
COMPILE_ENV = "MOTO_VISION_ISP_COMPILE"
_FAILED: list[str] = []


def fusion_enabled(device: torch.device | None = None) -> bool:
    """Whether fused functions compile: the environment allows it, no compile has failed, the device is supported."""
    if os.environ.get(COMPILE_ENV, "1") == "0" or _FAILED:
        return False
    return device is None or device.type in ("cpu", "cuda")


def fused(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a pure tensor function so it runs through ``torch.compile`` when :func:`fusion_enabled`.

    The function must not mutate its arguments (in-place steps on its own intermediates are fine).
    """
    compiled: list[Callable[..., Any]] = []  # created on first use: importing the compiler stack takes a while

    def run(*args: Any) -> Any:
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
        if not fusion_enabled(device):
            return fn(*args)
        try:
            if not compiled:
                compiled.append(torch.compile(fn, dynamic=True, fullgraph=True))
            return compiled[0](*args)
        except Exception as error:  # no C++ compiler, unsupported backend, ...: fall back to eager, once
            # Eager first: an error of the inputs themselves surfaces from there and does not turn fusion off.
            result = fn(*args)
            _FAILED.append(f"{type(error).__name__}: {error}".splitlines()[0][:300])
            warnings.warn(
                f"moto_vision.isp: torch.compile failed ({_FAILED[-1]}); the ISP runs eagerly (slower, same result). "
                f"Set {COMPILE_ENV}=0 to skip the attempt.",
                RuntimeWarning,
                stacklevel=2,
            )
            return result

    run.__name__ = getattr(fn, "__name__", "fused")
    run.__doc__ = fn.__doc__
    return run

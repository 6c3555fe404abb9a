"""Kernel fusion of the ISP's elementwise chains with ``torch.compile``, where it pays.

In eager PyTorch every ISP step is a pass over the whole batch: inverse tone curve, sRGB decoding, colour
matrix, vignetting, noise, clipping, white balance, colour matrix, sRGB encoding, tone curve, about fifteen
passes over 25 MB for a 32 x 3 x 256 x 256 batch. ``torch.compile`` fuses each chain into one generated loop
(PyTorch has no fused kernel for these curves, hence this module). On the 2-core development CPU that cuts
``CameraPipeline`` from about 75 ms to 37 ms per batch (``docs/benchmarks.md``).

Compiling costs about 10-20 s of CPU time (much more wall time on a busy machine) once per process, so it only
pays on long runs. The environment variable ``MOTO_VISION_ISP_COMPILE`` decides:

- ``auto`` (the default): compile when the run ahead is long enough to pay the compile back: the training loop
  says how many calls to expect (:func:`expect_calls`; moto-vision's datamodules do it from the trainer's
  remaining steps), and a chain compiles when ``expected calls x elements per call`` reaches
  :data:`PAYBACK_ELEMENTS`. Without a hint (your own loop), the chains run eagerly;
- ``1``: always compile; ``0``: never.

A compiled chain also needs its first tensor on the CPU or a CUDA device and a working compiler (on the CPU, a
C++ compiler); if compiling fails (one warning says why), the same Python function runs eagerly. Both give the same
result up to float rounding (about 1e-6). Shapes are dynamic, so other batch and image sizes reuse the compiled code.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["COMPILE_ENV", "PAYBACK_ELEMENTS", "expect_calls", "fused", "fusion_enabled"]

#: ``auto`` (default), ``1`` (always compile) or ``0`` (never; tests do, so they do not spend time compiling).
COMPILE_ENV = "MOTO_VISION_ISP_COMPILE"
#: Tensor elements a chain must be expected to process before compiling pays. On the 2-core development CPU
#: (docs/benchmarks.md, "When compiling the ISP pays"): compiling costs 7.5 s of CPU time with a warm inductor cache
#: (about 26 s the first time on a machine); fusing saves 4.1 ns per element and call on a quiet machine, 19-35 ns
#: at load 9. Break-even: about 1.8e9 elements on a quiet machine with a warm cache, 2-4e8 on a loaded one; 2e9 is
#: the quiet-laptop case, about 640 steps of a 16 x 3 x 256 x 256 portrait batch.
PAYBACK_ELEMENTS = 2e9
_FAILED: list[str] = []
_EXPECTED_CALLS: list[int | None] = [None]
_GENERATION = [0]


def expect_calls(calls: int | None) -> None:
    """Tell the fused chains how many more calls to expect (a run's remaining training steps); ``None``: unknown.

    In ``auto`` mode each chain decides at its next call whether compiling pays for that many calls of its input
    size; a new hint (a new run in the same process) makes them decide again.
    """
    _EXPECTED_CALLS[0] = None if calls is None else max(0, int(calls))
    _GENERATION[0] += 1


def _mode() -> str:
    value = os.environ.get(COMPILE_ENV, "auto").strip().lower()
    return value if value in ("0", "1") else "auto"


def fusion_enabled(device: torch.device | None = None) -> bool:
    """Whether fused functions may compile: the environment allows it, no compile has failed, the device is supported.

    In ``auto`` mode this is necessary, not sufficient: a chain also needs an expected workload that pays.
    """
    if _mode() == "0" or _FAILED:
        return False
    return device is None or device.type in ("cpu", "cuda")


def _pays(elements: int) -> bool:
    if _mode() == "1":
        return True
    calls = _EXPECTED_CALLS[0]
    return calls is not None and calls * elements >= PAYBACK_ELEMENTS


def fused(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a pure tensor function so it runs through ``torch.compile`` when :func:`fusion_enabled` and it pays.

    The function must not mutate its arguments (in-place steps on its own intermediates are fine).
    """
    compiled: list[Callable[..., Any]] = []  # created on first use: importing the compiler stack takes a while
    decision: dict[str, Any] = {"generation": -1, "compile": False}

    def run(*args: Any) -> Any:
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None or not fusion_enabled(first.device):
            return fn(*args)
        if _mode() == "1":
            use = True
        elif compiled:
            use = True  # compiled already: the cost is paid, use it
        else:
            if decision["generation"] != _GENERATION[0]:
                decision.update(generation=_GENERATION[0], compile=_pays(first.numel()))
            use = decision["compile"]
        if not use:
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

"""Small tensor ops written from operations that the phone runtimes execute well, with the values of the obvious form.

ExecuTorch's XNNPACK backend takes a graph in partitions: every op it cannot run (a ``sum``, an ``amax``, a
``where``, a norm, a mean over other dimensions than the last two of a 4-D tensor) falls back to the portable
kernels, splits the graph and costs a round trip. These helpers express such reductions and selections through ops
XNNPACK runs (global average and max pooling, slices, adds, clamps, batched matmul), which ONNX Runtime also runs
as fast or faster than the plain forms. Nothing here exists in torch or kornia in this form (their versions are the
plain ops), hence the module. Each helper documents the plain expression it equals; ``tests/test_models_ops.py``
checks the equality.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "block_mean",
    "blockwise_mean",
    "channel_max",
    "channel_sum",
    "select",
    "spatial_max",
    "spatial_mean",
    "step",
    "unit_length",
    "weighted_sum",
]


def spatial_mean(x: Tensor) -> Tensor:
    """``x.mean(dim=(2, 3), keepdim=True)`` of ``(B, C, H, W)``: XNNPACK's global average pooling."""
    return x.mean(dim=(2, 3), keepdim=True)


def spatial_max(x: Tensor) -> Tensor:
    """``x.amax(dim=(2, 3), keepdim=True)`` of ``(B, C, H, W)``, as a max pooling over the whole image."""
    return F.max_pool2d(x, tuple(x.shape[-2:]))


def block_mean(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``adaptive_avg_pool2d(x, size)`` of ``(..., H, W)``; when the size divides the input, two whole-row means.

    Same values. Each step is a mean over the last two dimensions of a 4-D tensor, which XNNPACK runs as global
    average pooling and ONNX Runtime as a contiguous ReduceMean: first over each block's width, then (after
    transposing the much smaller result) over its height. Blocks of at most 4 x 4 pixels use ``avg_pool2d``, which
    both runtimes run well at small kernels. Measured at 1 thread, ExecuTorch / ONNX Runtime, a 256 x 256 x 3 image
    pooled to 16 x 16: 0.15 / 0.05 ms, against 0.33 / 0.08 ms for one reshaped mean over the block axes (ExecuTorch
    runs it in its portable kernels) and 0.18 / 0.36 ms for ``avg_pool2d`` (slow in ONNX Runtime at 16 x 16 kernels).
    """
    (h, w), (gh, gw) = x.shape[-2:], size
    if h % gh or w % gw:
        return F.adaptive_avg_pool2d(x, size)
    kh, kw = h // gh, w // gw
    if kh * kw == 1:
        return x
    if kh <= 4 and kw <= 4 and x.dim() == 4:
        return F.avg_pool2d(x, (kh, kw))
    lead = x.shape[:-2]
    n = math.prod(lead)
    rows = x.reshape(1, n * h * gw, 1, kw).mean(dim=(2, 3), keepdim=True)  # (n, h, gw): the mean over a block's width
    cols = rows.reshape(1, n * gh, kh, gw).transpose(2, 3).reshape(1, n * gh * gw, 1, kh)
    return cols.mean(dim=(2, 3), keepdim=True).reshape(*lead, gh, gw)


def blockwise_mean(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``x.mean(dim=(2, 3), keepdim=True)`` of ``(B, C, H, W)`` as the mean of ``block_mean(x, size)``.

    Equal blocks give the same value; where the size does not divide the image, :func:`spatial_mean` is used.

    Global average pooling over a full frame is slow in ExecuTorch's XNNPACK (0.065 ms for 256 x 256 x 3, against
    0.02 ms for the two-stage block mean, measured at 1 thread), and a model that also takes ``block_mean(x, size)``
    of the same image elsewhere (the AWB head's colour grid) computes it once: the ExecuTorch export merges the two
    (common-subexpression elimination in :func:`moto_vision.deploy.exporters.lower_executorch`), ONNX Runtime does
    so by itself.
    """
    (h, w), (gh, gw) = x.shape[-2:], size
    if h % gh or w % gw:
        return spatial_mean(x)
    return spatial_mean(block_mean(x, size))


def channel_sum(x: Tensor, dim: int = 1) -> Tensor:
    """``x.sum(dim=dim, keepdim=True)`` for a short dimension (a few channels), as adds of slices."""
    total = x.narrow(dim, 0, 1)
    for i in range(1, x.shape[dim]):
        total = total + x.narrow(dim, i, 1)
    return total


def channel_max(x: Tensor, dim: int = 1) -> Tensor:
    """``x.amax(dim=dim, keepdim=True)`` for a short dimension, as elementwise maxima of slices."""
    peak = x.narrow(dim, 0, 1)
    for i in range(1, x.shape[dim]):
        peak = torch.maximum(peak, x.narrow(dim, i, 1))
    return peak


def unit_length(x: Tensor, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """``x / x.norm(dim=dim, keepdim=True).clamp_min(eps)`` for a short dimension (RGB)."""
    return x / channel_sum(x * x, dim).sqrt().clamp_min(eps)


def step(x: Tensor, threshold: float = 0.0, sharpness: float = 1e30) -> Tensor:
    """``(x > threshold).to(x.dtype)`` as a clamp: 1 above the threshold, 0 at or below it.

    Exact for every ``x`` whose distance from the threshold times ``sharpness`` is at least 1 or 0: with the
    default, any float32 value that differs from the threshold by more than ``1e-30``.
    """
    return ((x - threshold) * sharpness).clamp(0.0, 1.0)


def select(condition: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """``torch.where(condition > 0, a, b)`` for a 0 / 1 float ``condition`` (from :func:`step`), as products.

    Exact while ``a`` and ``b`` are finite.
    """
    return condition * a + (1.0 - condition) * b


def weighted_sum(values: Tensor, weights: Tensor) -> Tensor:
    """``(values * weights[:, None]).sum(dim=-1)``: ``(B, C, N)`` values and ``(B, N)`` weights to ``(B, C)``.

    A batched matrix product, which XNNPACK and ONNX Runtime run as one GEMM.
    """
    return torch.bmm(values, weights.unsqueeze(-1)).flatten(1)  # flatten, a view: squeeze is not an XNNPACK op

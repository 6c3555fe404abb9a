"""Grayness Index (Qian, Kamarainen, Nikkanen & Matas, "On Finding Gray Pixels", CVPR 2019).

A learning-free estimator that looks for gray pixels: under the dichromatic model a gray surface changes all three
channels by the same factor from one pixel to the next, so the local contrast of ``log(R / (R + G + B))`` and
``log(B / (R + G + B))`` is zero there whatever the light. The illuminant is the mean colour of the ``percent`` %
of the pixels with the smallest such contrast (the "grayness index", smoothed). It is one of the few statistical
methods that hold up across cameras, because it uses no statistics of colours, only of their local ratios.

Written here (no library ships it) after the authors' reference MATLAB code, ``GPconstancy_GI.m``, ``DerivGauss.m``
and ``runme.m`` of github.com/yanlinqian/Grayness-Index, step for step:

1. pixels are masked where the maximum channel is ``>= 0.95`` (clipped) or the channel sum ``<= 0.0315`` (dark,
   and our zeroed charts), in ``runme.m``'s ``[0, 1]`` scale;
2. each channel is smoothed by a 7 x 7 box filter with circular boundaries (``fspecial('average', [7 7])``,
   ``imfilter(..., 'circular')``); pixels where a smoothed channel is 0 are masked and the zeros set to ``eps``;
3. ``DerivGauss(c, 0.5)``: the gradient magnitude through the 5 x 5 kernel ``-x exp(-(x^2 + y^2) / (2 sigma^2)) /
   (pi sigma^2)`` and its transpose (convolution, edge-replicating boundaries); pixels whose three channels all have
   a magnitude ``<= delta_threshold`` (``1e-4``: flat, no evidence) are masked;
4. the grayness index is ``sqrt(|d log(r / n)|^2 + |d log(b / n)|^2)`` with ``n = r + g + b`` (the same
   ``DerivGauss`` magnitudes); masked pixels get the map's maximum; the map is box-filtered (7 x 7, circular);
5. the ``floor(percent / 100 * H * W)`` smallest values are the gray pixels (every pixel at or below the value of
   that rank, as the reference's ``<=``), and the estimate is the unit-length mean of their *input* colours.

``percent`` defaults to the reference's tuned ``0.1`` (``Npre = 10^-1``); at 64 x 64 that is 4 pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moto_vision.errors import OptionError

__all__ = ["GrayIndex", "gray_index_map", "gray_pixel_derivative"]

#: MATLAB's ``eps`` (the reference replaces zeros by it before the logs).
_MATLAB_EPS = 2.220446049250313e-16


def _derivative_kernels(sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``DerivGauss.m``'s x and y kernels ``(2, 1, k, k)``, flipped for ``conv2d`` (the reference convolves)."""
    ssq = sigma * sigma
    # Its half width: the largest of 1..50 where exp(-w^2 / (2 sigma^2)) > 1e-6 (at least 1).
    width = max([w for w in range(1, 51) if math.exp(-(w * w) / (2 * ssq)) > 1e-6], default=1)
    r = torch.arange(-width, width + 1, dtype=torch.float64)
    y, x = torch.meshgrid(r, r, indexing="ij")
    kx = -x * torch.exp(-(x * x + y * y) / (2 * ssq)) / (math.pi * ssq)
    kernels = torch.stack([kx, kx.T]).flip(-1, -2)  # imfilter 'conv' = correlation with the flipped kernel
    return kernels[:, None].to(device=device, dtype=dtype)


def gray_pixel_derivative(x: Tensor, sigma: float = 0.5) -> Tensor:
    """Per-channel gradient magnitude of ``DerivGauss.m`` (``(B, C, H, W)``, edge-replicating boundaries)."""
    b, c, h, w = x.shape
    kernels = _derivative_kernels(sigma, x.dtype, x.device)
    r = kernels.shape[-1] // 2
    flat = F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="replicate")
    d = F.conv2d(flat, kernels)
    return d.pow(2).sum(dim=1).sqrt().reshape(b, c, h, w)


def _box_circular(x: Tensor, size: int) -> Tensor:
    """``imfilter(x, fspecial('average', [size size]), 'circular')`` per channel."""
    r = size // 2
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="circular"), size, stride=1)


def gray_index_map(
    x: Tensor,
    saturation: float = 0.95,
    dark_sum: float = 0.0315,
    delta_threshold: float = 1e-4,
    window: int = 7,
    sigma: float = 0.5,
) -> Tensor:
    """The smoothed grayness index ``(B, 1, H, W)`` of linear RGB ``(B, 3, H, W)`` (small: gray; see the module)."""
    mask = (x.amax(dim=1, keepdim=True) >= saturation) | (x.sum(dim=1, keepdim=True) <= dark_sum)
    smooth = _box_circular(x, window)
    mask = mask | (smooth == 0).any(dim=1, keepdim=True)
    smooth = smooth.masked_fill(smooth == 0, _MATLAB_EPS)
    delta = gray_pixel_derivative(smooth, sigma)
    mask = mask | (delta <= delta_threshold).all(dim=1, keepdim=True)
    log_n = torch.log(smooth.sum(dim=1, keepdim=True))
    log_rb = torch.log(smooth[:, 0::2]) - log_n  # log(r / n), log(b / n)
    delta_log = gray_pixel_derivative(log_rb, sigma)
    mask = mask | ~torch.isfinite(delta_log).all(dim=1, keepdim=True)
    index = delta_log.pow(2).sum(dim=1, keepdim=True).sqrt()
    index = index.masked_fill(~torch.isfinite(index), math.inf)
    peak = index.amax(dim=(1, 2, 3), keepdim=True)
    return _box_circular(torch.where(mask, peak, index), window)


class GrayIndex(nn.Module):
    """Grayness Index (Qian et al., CVPR 2019): the mean colour of the grayest ``percent`` % of the pixels.

    Args:
        percent: share of the pixels taken as gray, in percent (the reference's ``Npre``, tuned 0.1); at least one.
        saturation: clipped-pixel threshold on the maximum channel (the reference's 0.95, ``[0, 1]`` scale).
        dark_sum: pixels whose channel sum is at or below this are masked (the reference's 0.0315; catches zeroed
            chart pixels).
        delta_threshold: pixels whose three smoothed channels all have a gradient magnitude at or below this are
            masked (the reference's 1e-4).
    """

    def __init__(
        self, percent: float = 0.1, saturation: float = 0.95, dark_sum: float = 0.0315, delta_threshold: float = 1e-4
    ) -> None:
        super().__init__()
        if not 0 < percent <= 100:
            raise OptionError(f"GrayIndex: percent must be in (0, 100], got {percent}.")
        self.percent = float(percent)
        self.saturation = float(saturation)
        self.dark_sum = float(dark_sum)
        self.delta_threshold = float(delta_threshold)

    def forward(self, x: Tensor) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` of linear RGB ``(B, 3, H, W)`` (NaN where the gray pixels sum to 0)."""
        dtype = x.dtype
        x = x.float() if dtype not in (torch.float32, torch.float64) else x
        index = gray_index_map(x, self.saturation, self.dark_sum, self.delta_threshold).flatten(1)
        count = max(1, math.floor(self.percent / 100.0 * index.shape[1]))
        threshold = index.kthvalue(count, dim=1, keepdim=True).values
        chosen = (index <= threshold).to(x.dtype)[:, None]  # (B, 1, N)
        total = (x.flatten(2) * chosen).sum(dim=-1)
        norm = total.norm(dim=1, keepdim=True)
        return torch.where(norm > 0, total / norm.masked_fill(norm == 0, 1.0), math.nan).to(dtype)

    def extra_repr(self) -> str:
        return (
            f"percent={self.percent}, saturation={self.saturation}, dark_sum={self.dark_sum}, "
            f"delta_threshold={self.delta_threshold}"
        )

"""Independent NumPy / SciPy / scikit-image versions of the literature's metric and baseline definitions.

Written from the reference sources, not from moto-vision's torch code, so that tests compare two implementations:

- MATLAB ``prctile`` (Statistics Toolbox documentation, "Quantiles and Percentiles"): the i-th of n sorted values
  is the ``100 (i - 0.5) / n`` percentile, linear in between, clamped outside;
- FFCC ``internal/ErrorMetrics.m`` (github.com/google/ffcc);
- van de Weijer's ``general_cc.m`` with ``gDer.m`` / ``fill_border``, ``norm_derivative.m``, ``set_border.m`` and
  ``dilation33.m`` (Edge-Based Color Constancy code), with MATLAB's ``filter2`` as SciPy's 2-D correlation;
- Qian et al.'s Grayness Index, ``GPconstancy_GI.m`` / ``DerivGauss.m`` / ``runme.m`` (github.com/yanlinqian/
  Grayness-Index), with SciPy's ``correlate`` (``mode="wrap"``) for ``imfilter(..., 'circular')`` and
  ``ndimage.convolve`` (``mode="nearest"``) for ``imfilter(..., 'conv', 'replicate')``;
- Cheng, Prasad & Brown's PCA method (JOSA A 2014) as MATLAB's ``illumpca`` documents it, with NumPy's ``svd``;
- DAVIS ``db_eval_boundary`` / ``f_measure`` / ``_seg2bmap`` (davis2017-evaluation, ``davis2017/metrics.py``), with
  scikit-image's ``disk`` and SciPy's binary dilation in place of OpenCV's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, signal
from skimage.morphology import disk


# --------------------------------------------------------------------------------------- FFCC statistics
def matlab_prctile(values: np.ndarray, percent: float) -> float:
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = x.size
    at = 100.0 * (np.arange(1, n + 1) - 0.5) / n
    return float(np.interp(percent, at, x))  # np.interp holds the end values outside, as prctile does


def ffcc_error_metrics(errors: np.ndarray) -> dict[str, float]:
    e = np.asarray(errors, dtype=np.float64).ravel()
    p25, p50, p75, p95 = (matlab_prctile(e, q) for q in (25, 50, 75, 95))
    return {
        "mean": e.mean(),
        "mean2": math.sqrt((e**2).mean()),
        "mean4": ((e**4).mean()) ** 0.25,
        "median": p50,
        "trimean": (p25 + 2 * p50 + p75) / 4,
        "best25": e[e <= p25].mean(),
        "worst25": e[e >= p75].mean(),
        "worst5": e[e >= p95].mean(),
        "max": e.max(),
    }


# --------------------------------------------------------------------------------------- general_cc.m
def _gauss_kernel(sigma: float, order: int) -> tuple[np.ndarray, int]:
    size = int(math.floor(3.0 * sigma + 0.5))
    x = np.arange(-size, size + 1, dtype=np.float64)
    g = 1 / (math.sqrt(2 * math.pi) * sigma) * np.exp(x**2 / (-2 * sigma * sigma))
    if order == 0:
        k = g / g.sum()
    elif order == 1:
        k = -(x / sigma**2) * g
        k = k / np.sum(x * k)
    else:
        k = (x**2 / sigma**4 - 1 / sigma**2) * g
        k = k - k.sum() / x.size
        k = k / np.sum(0.5 * x * x * k)
    return k, size


def g_der(f: np.ndarray, sigma: float, iorder: int, jorder: int) -> np.ndarray:
    gx, size = _gauss_kernel(sigma, iorder)
    gy, _ = _gauss_kernel(sigma, jorder)
    padded = np.pad(f, size, mode="edge")  # fill_border
    h = signal.correlate2d(padded, gx[None, :], mode="same")  # filter2(Gx, f): Gx is a row vector (along x)
    h = signal.correlate2d(h, gy[:, None], mode="same")  # filter2(Gy', H)
    return h[size:-size, size:-size] if size else h


def norm_derivative(image: np.ndarray, sigma: float, order: int) -> np.ndarray:
    out = np.empty_like(image)
    for c in range(3):
        f = image[:, :, c]
        if order == 1:
            out[:, :, c] = np.sqrt(g_der(f, sigma, 1, 0) ** 2 + g_der(f, sigma, 0, 1) ** 2)
        else:
            fxx, fyy, fxy = g_der(f, sigma, 2, 0), g_der(f, sigma, 0, 2), g_der(f, sigma, 1, 1)
            out[:, :, c] = np.sqrt(fxx**2 + 4 * fxy**2 + fyy**2)
    return out


def dilation33(mask: np.ndarray) -> np.ndarray:
    hh, ll = mask.shape
    rows = np.stack([np.vstack([mask[1:], mask[-1:]]), mask, np.vstack([mask[:1], mask[:-1]])]).max(axis=0)
    return np.stack([np.hstack([rows[:, 1:], rows[:, -1:]]), rows, np.hstack([rows[:, :1], rows[:, :-1]])]).max(axis=0)


def set_border(mask: np.ndarray, width: float) -> np.ndarray:
    y, x = np.meshgrid(np.arange(1, mask.shape[0] + 1), np.arange(1, mask.shape[1] + 1), indexing="ij")
    keep = (x < mask.shape[1] - width + 1) & (x > width) & (y < mask.shape[0] - width + 1) & (y > width)
    return mask * keep


def general_cc(
    image: np.ndarray, njet: int, mink_norm: float, sigma: float, mask_im: np.ndarray, saturation: float = 1.0
) -> np.ndarray:
    """``general_cc.m`` on an ``(H, W, 3)`` image; ``mask_im`` is 1 on excluded pixels. Returns unit RGB."""
    data = np.asarray(image, dtype=np.float64).copy()
    mask2 = mask_im + dilation33((data.max(axis=2) >= saturation).astype(np.float64))
    mask2 = set_border((mask2 == 0).astype(np.float64), sigma + 1)
    if njet == 0 and sigma != 0:
        for c in range(3):
            data[:, :, c] = g_der(data[:, :, c], sigma, 0, 0)
    if njet > 0:
        data = norm_derivative(data, sigma, njet)
    data = np.abs(data)
    if mink_norm != -1:
        white = np.array([np.sum(data[:, :, c] ** mink_norm * mask2) ** (1 / mink_norm) for c in range(3)])
    else:
        white = np.array([np.max(data[:, :, c] * mask2) for c in range(3)])
    return white / math.sqrt(np.sum(white**2))


# --------------------------------------------------------------------------------------- Grayness Index
def deriv_gauss(channel: np.ndarray, sigma: float = 0.5) -> np.ndarray:
    """``DerivGauss.m``: gradient magnitude through the derivative-of-Gaussian kernel and its transpose."""
    widths = [w for w in range(1, 51) if math.exp(-(w * w) / (2 * sigma * sigma)) > 1e-6]
    width = widths[-1] if widths else 1
    y, x = np.mgrid[-width : width + 1, -width : width + 1].astype(np.float64)
    kernel = -x * np.exp(-(x * x + y * y) / (2 * sigma * sigma)) / (math.pi * sigma * sigma)
    ax = ndimage.convolve(channel, kernel, mode="nearest")
    ay = ndimage.convolve(channel, kernel.T, mode="nearest")
    return np.sqrt(ax * ax + ay * ay)


def _average7_circular(channel: np.ndarray) -> np.ndarray:
    """``imfilter(c, fspecial('average', [7 7]), 'circular')`` as direct sums (a running-sum filter such as
    ``uniform_filter`` leaves -1e-17 where the image is 0, whose log is NaN)."""
    return ndimage.correlate(channel, np.full((7, 7), 1.0 / 49.0), mode="wrap")


def grayness_index(image: np.ndarray, npre: float = 0.1, delta_threshold: float = 1e-4) -> np.ndarray:
    """``runme.m`` + ``GPconstancy_GI.m`` on an ``(H, W, 3)`` image in ``[0, 1]``: the unit illuminant estimate."""
    eps = np.finfo(np.float64).eps
    mask = (image.max(axis=2) >= 0.95) | (image.sum(axis=2) <= 0.0315)
    r, g, b = (_average7_circular(image[..., c]) for c in range(3))
    mask = mask | (r == 0) | (g == 0) | (b == 0)
    r, g, b = (np.where(c == 0, eps, c) for c in (r, g, b))
    norm1 = r + g + b
    dr, dg, db = deriv_gauss(r), deriv_gauss(g), deriv_gauss(b)
    mask = mask | ((dr <= delta_threshold) & (dg <= delta_threshold) & (db <= delta_threshold))
    dlr = deriv_gauss(np.log(r) - np.log(norm1))
    dlb = deriv_gauss(np.log(b) - np.log(norm1))
    mask = mask | np.isinf(dlr) | np.isinf(dlb)
    gi = np.sqrt(dlr**2 + dlb**2)
    gi[mask] = gi.max()
    gi = _average7_circular(gi)
    num = math.floor(npre * gi.size / 100)
    chosen = gi <= np.sort(gi.ravel())[num - 1]
    estimate = image[chosen].mean(axis=0)
    return estimate / np.linalg.norm(estimate)


# --------------------------------------------------------------------------------------- Cheng's PCA
def illumpca(image: np.ndarray, percentage: float = 3.5, mask: np.ndarray | None = None) -> np.ndarray:
    """``illumpca(A, percentage, 'Mask', mask)`` on an ``(H, W, 3)`` image; ``mask`` is True on the pixels used."""
    colours = image.reshape(-1, 3).astype(np.float64)
    if mask is not None:
        colours = colours[mask.ravel()]
    mean = colours.mean(axis=0)
    projection = (colours * mean).sum(axis=1) / (mean**2).sum()
    ordered = colours[np.argsort(projection, kind="stable")]
    if percentage >= 50 or len(ordered) == 1:
        selected = ordered
    else:
        low = max(1, math.floor(percentage / 100 * len(ordered)))
        selected = np.vstack([ordered[:low], ordered[len(ordered) - low :]])
    _, s, vt = np.linalg.svd(selected, full_matrices=False)
    eps = 10 * np.finfo(np.float64).eps
    s = np.pad(s, (0, 3 - s.size))
    degenerate = len(selected) < 2 or np.array_equal(vt.T, np.eye(3)) or (s[0] - s[1] <= eps and s[0] - s[2] <= eps)
    estimate = selected.mean(axis=0) if degenerate else np.abs(vt[0])
    return estimate / np.linalg.norm(estimate)


# --------------------------------------------------------------------------------------- DAVIS boundary F
def seg2bmap(seg: np.ndarray) -> np.ndarray:
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def davis_counts(fg: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008):
    """``(n_fg, n_gt, fg_match, gt_match)`` of DAVIS's ``f_measure``."""
    void = np.zeros(fg.shape, dtype=bool) if void is None else void.astype(bool)
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(fg.shape))
    fg_b = seg2bmap(fg * np.logical_not(void))
    gt_b = seg2bmap(gt * np.logical_not(void))
    fg_dil = ndimage.binary_dilation(fg_b, disk(bound_pix)) if bound_pix > 0 else fg_b
    gt_dil = ndimage.binary_dilation(gt_b, disk(bound_pix)) if bound_pix > 0 else gt_b
    return int(fg_b.sum()), int(gt_b.sum()), int((fg_b & gt_dil).sum()), int((gt_b & fg_dil).sum())


def davis_f_from_counts(n_fg: int, n_gt: int, fg_match: int, gt_match: int) -> float:
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = fg_match / n_fg, gt_match / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def davis_f_measure(fg: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008) -> float:
    return davis_f_from_counts(*davis_counts(fg, gt, void, bound_th))

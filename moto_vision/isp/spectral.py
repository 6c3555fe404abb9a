"""Spectral colour formation: light spectra, surface reflectances and camera sensitivities on one wavelength grid.

A camera records, per channel ``c``, ``raw_c = sum_l S_c(l) E(l) R(l)`` for a surface of reflectance ``R`` under a
light of spectral power ``E`` through sensitivities ``S``; the colour of the light *in that camera* (the AWB ground
truth) is the response to a perfect white, ``sum_l S_c(l) E(l)``. This module holds the pieces, as batched
float64 tensors on :data:`WAVELENGTHS` (400-700 nm in 10 nm steps, 31 samples; spectra are box-averaged into the
10 nm bins, which keeps the energy of fluorescent and LED lines):

- analytic lights: Planck's law (:func:`planck_spd`) and the CIE daylight series (:func:`daylight_spd`);
- tabulated data (:func:`spectral_data`): the CIE 1931 2-degree colour-matching functions, the CIE daylight basis,
  CIE fluorescent (FL1-12, FL3.1-15), high-pressure (HP1-5) and LED (LED-B1...V2) illuminants and 55 measured lamps,
  284 measured surface reflectances, the Mallett & Yuksel (2019) sRGB basis spectra, two measured cameras and the
  sensitivities fitted to every camera matrix of :mod:`~moto_vision.isp.camera_matrices`;
- :func:`sensitivities_from_matrix`: smooth, non-negative sensitivities whose colour matrix is a given XYZ -> raw
  matrix (how the tabulated pool cameras were made, and how ``--data.camera`` renders for your sensor);
- :func:`fit_xyz_to_raw`: the least-squares XYZ -> raw matrix of sensitivities (what a DNG ``ColorMatrix`` is).

The tables are a small ``.npz`` written once by ``python -m moto_vision.isp.spectra.build`` (needs
``colour-science``, BSD-3-Clause; its data sources are named in that script), so neither rendering nor the base
install needs ``colour``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "WAVELENGTHS",
    "camera_response",
    "daylight_spd",
    "fit_xyz_to_raw",
    "planck_spd",
    "sensitivities_from_matrix",
    "spd_to_xyz",
    "spectral_data",
]

#: Wavelength grid (nm) of every spectrum in moto-vision.
WAVELENGTHS = torch.arange(400.0, 701.0, 10.0, dtype=torch.float64)

_DATA_FILE = Path(__file__).with_name("spectra") / "spectra.npz"

# Planck's second radiation constant hc/k in m K (CODATA 2018).
_C2 = 1.438776877e-2


@functools.lru_cache(maxsize=1)
def _load(path: str) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"{path} is missing; it ships with moto-vision. Regenerate it with "
            "`pip install colour-science && python -m moto_vision.isp.spectra.build`."
        )
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@functools.lru_cache(maxsize=1)
def spectral_data() -> dict[str, Tensor | list[str]]:
    """The tabulated spectra (loaded once): float64 tensors on :data:`WAVELENGTHS` and their names.

    Keys: ``cmf`` ``(L, 3)`` CIE 1931 x-bar, y-bar, z-bar; ``daylight_basis`` ``(L, 3)`` CIE S0, S1, S2;
    ``lights`` ``(NL, L)`` (peak 1) with ``light_names`` / ``light_kinds``; ``reflectances`` ``(NR, L)`` in
    ``[0, 1]`` with ``reflectance_sources``; ``mallett_basis`` ``(L, 3)``; ``camera_sensitivities`` ``(NC, L, 3)``
    with ``camera_names``, ``camera_kinds`` (``measured`` or ``adobe-fit``) and ``camera_matrices`` ``(NC, 3, 3)``
    (the published XYZ -> raw matrix for ``adobe-fit`` cameras, the least-squares one for measured cameras).
    The tensors are shared: do not modify them in place.
    """
    raw = _load(str(_DATA_FILE))
    out: dict[str, Tensor | list[str]] = {}
    for key, value in raw.items():
        out[key] = [str(v) for v in value] if value.dtype.kind in "US" else torch.from_numpy(value).double()
    return out


def _tensor(value: Tensor | float) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


def planck_spd(cct: Tensor | float) -> Tensor:
    """Black-body spectral power on :data:`WAVELENGTHS`, scaled to peak 1 over the grid.

    Args:
        cct: temperature in kelvin, any shape.

    Returns:
        ``(*cct.shape, L)`` float64.
    """
    t = _tensor(cct)[..., None]
    lam = WAVELENGTHS * 1e-9
    spd = lam.pow(-5) / torch.expm1(_C2 / (lam * t))
    return spd / spd.amax(dim=-1, keepdim=True)


def daylight_spd(cct: Tensor | float) -> Tensor:
    """CIE daylight (D series) of a correlated colour temperature, 4000-25000 K (clamped), scaled to peak 1.

    The chromaticity follows the CIE daylight locus (CIE 015:2018, eq. 4.7-4.9); the spectrum is
    ``S0 + M1 S1 + M2 S2`` of the tabulated basis.

    Args:
        cct: correlated colour temperature in kelvin, any shape.

    Returns:
        ``(*cct.shape, L)`` float64.
    """
    t = _tensor(cct).clamp(4000.0, 25000.0)
    x_low = -4.6070e9 / t**3 + 2.9678e6 / t**2 + 0.09911e3 / t + 0.244063
    x_high = -2.0064e9 / t**3 + 1.9018e6 / t**2 + 0.24748e3 / t + 0.237040
    x = torch.where(t <= 7000.0, x_low, x_high)
    y = -3.000 * x**2 + 2.870 * x - 0.275
    m = 0.0241 + 0.2562 * x - 0.7341 * y
    m1 = (-1.3515 - 1.7703 * x + 5.9114 * y) / m
    m2 = (0.0300 - 31.4424 * x + 30.0717 * y) / m
    basis = spectral_data()["daylight_basis"]
    spd = basis[:, 0] + m1[..., None] * basis[:, 1] + m2[..., None] * basis[:, 2]
    return spd / spd.amax(dim=-1, keepdim=True)


def spd_to_xyz(spd: Tensor) -> Tensor:
    """CIE 1931 XYZ of spectra ``(..., L)`` (unnormalised sums over the grid)."""
    return spd.double() @ spectral_data()["cmf"]


def camera_response(sensitivities: Tensor, spd: Tensor) -> Tensor:
    """Raw RGB of light spectra ``(..., L)`` through sensitivities ``(..., L, 3)`` (broadcast): ``sum_l S(l) E(l)``."""
    return torch.einsum("...l,...lc->...c", spd.to(sensitivities.dtype), sensitivities)


def fit_xyz_to_raw(
    sensitivities: Tensor, illuminant: Tensor | None = None, reflectances: Tensor | None = None
) -> Tensor:
    """Least-squares XYZ -> raw matrices of cameras, fitted on reflectances under one light (default D65).

    This is how a DNG ``ColorMatrix`` is calibrated: raw responses and XYZ of the same surfaces under the
    calibration light, related by the 3 x 3 matrix that fits best. XYZ is scaled so the light's white has
    ``Y = 1`` and raw keeps the sensitivities' own scale, as in Adobe's matrices.

    Args:
        sensitivities: ``(..., L, 3)``.
        illuminant: ``(L,)`` calibration light (default: CIE D65 from the daylight series).
        reflectances: ``(N, L)`` surfaces to fit on (default: the tabulated measured reflectances).

    Returns:
        ``(..., 3, 3)`` float64 matrices.
    """
    data = spectral_data()
    light = daylight_spd(6504.0) if illuminant is None else illuminant.double()
    surfaces = data["reflectances"] if reflectances is None else reflectances.double()
    stimuli = surfaces * light / (light @ data["cmf"][:, 1])  # (N, L), white at Y = 1
    xyz = stimuli @ data["cmf"]  # (N, 3)
    raw = torch.einsum("nl,...lc->...nc", stimuli, sensitivities.double())  # (..., N, 3)
    # Normal equations: M^T = (X^T X)^-1 X^T R for every camera at once.
    gram_inv = torch.linalg.inv(xyz.T @ xyz)
    return (gram_inv @ xyz.T @ raw).transpose(-1, -2)


def sensitivities_from_matrix(matrix: Tensor | np.ndarray, smoothness: float = 1e-3) -> Tensor:
    """Smooth non-negative camera sensitivities ``(L, 3)`` whose colour matrix is ``matrix`` (XYZ -> raw, D65).

    A 3 x 3 matrix does not define a camera's spectral response; this picks a physically plausible one: per
    channel, the non-negative ``S_c`` that reproduces ``matrix @ XYZ`` on the measured reflectances under D65 in the
    least-squares sense, with a second-difference penalty (``smoothness``) that keeps it smooth. The positivity
    keeps it from being the exact (negative-lobed) ``matrix @ cmf``, so it is not colorimetric, as real sensors are
    not. Checked against a measured camera: from the Nikon D5100's Adobe matrix alone this recovers its measured
    (NPL) sensitivities with cosine similarities 0.97 / 0.99 / 0.95 (R / G / B), and reproduces the matrix's raw
    values on the training surfaces to 1.2%.

    Args:
        matrix: ``(3, 3)`` XYZ -> raw (e.g. a DNG ``ColorMatrix2`` divided by its scale).
        smoothness: weight of the second-difference penalty (relative to the data term).

    Returns:
        ``(L, 3)`` float64 sensitivities on :data:`WAVELENGTHS`.
    """
    from scipy.optimize import nnls

    data = spectral_data()
    m = np.asarray(matrix, dtype=np.float64).reshape(3, 3)
    light = daylight_spd(6504.0).numpy()
    cmf = data["cmf"].numpy()
    stimuli = data["reflectances"].numpy() * light / (light @ cmf[:, 1])
    target = stimuli @ cmf @ m.T  # (N, 3)
    n = stimuli.shape[1]
    second_difference = np.diff(np.eye(n), 2, axis=0) / np.abs(stimuli).mean()
    columns = []
    for c in range(3):
        scale = np.sqrt(np.mean(target[:, c] ** 2))
        a = np.concatenate([stimuli / scale, np.sqrt(smoothness) * second_difference])
        b = np.concatenate([target[:, c] / scale, np.zeros(n - 2)])
        columns.append(nnls(a, b, maxiter=50 * n)[0])
    return torch.from_numpy(np.stack(columns, axis=1))

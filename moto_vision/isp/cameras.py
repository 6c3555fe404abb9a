"""Cameras as spectral sensitivities: the pool of real cameras, imaginary cameras between them, your own sensor.

A :class:`CameraPool` holds sensitivities ``(N, L, 3)`` on :data:`~moto_vision.isp.spectral.WAVELENGTHS`:
by default every camera of :mod:`~moto_vision.isp.camera_matrices` (sensitivities fitted to its Adobe DNG matrix)
plus two measured cameras, none of them a camera of a colour-constancy benchmark. :meth:`CameraPool.split` holds
cameras out for leave-cameras-out validation; :meth:`CameraPool.sample` draws training cameras:

- **imaginary cameras** (CCMNet, Kim et al. ICCV 2025, interpolates the colour matrices of real cameras): with
  probability ``mix``, a convex combination of two pool cameras' sensitivities, the physical counterpart of
  interpolating their matrices;
- **sensor variation**: each channel's curve shifted by a few nanometres and multiplied by a smooth random
  factor (dye and filter-stack differences that no 3 x 3 matrix captures);
- **channel gains**: a random per-channel scale (analogue gains, the arbitrary scale of raw spaces), a wide prior
  that keeps a model from memorising where one camera's illuminants lie.

:func:`camera_from_spec` builds the one camera of ``--data.camera``: a pool name, a 3 x 3 XYZ -> raw matrix
(9 numbers, or a JSON / YAML file with ``xyz_to_raw`` or ``color_matrix``) or a CSV of measured sensitivities
(``wavelength,r,g,b``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from moto_vision.errors import OptionError
from moto_vision.isp.spectral import WAVELENGTHS, fit_xyz_to_raw, sensitivities_from_matrix, spectral_data

__all__ = ["CameraPool", "camera_from_spec"]


def _hash_fraction(key: str, seed: int) -> float:
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class CameraPool:
    """A set of cameras given by their spectral sensitivities.

    Args:
        names: camera names.
        sensitivities: ``(N, L, 3)`` sensitivities (each camera's scale is free; they are normalised to a peak of 1).
    """

    def __init__(self, names: Sequence[str], sensitivities: Tensor) -> None:
        if sensitivities.ndim != 3 or sensitivities.shape[1:] != (len(WAVELENGTHS), 3):
            raise ValueError(
                f"CameraPool: sensitivities must be (N, {len(WAVELENGTHS)}, 3) on 400-700 nm in 10 nm steps, "
                f"got {tuple(sensitivities.shape)}"
            )
        if len(names) != sensitivities.shape[0] or not len(names):
            raise ValueError(f"CameraPool: {len(names)} names for {sensitivities.shape[0]} cameras")
        self.names = list(names)
        peak = sensitivities.double().flatten(1).amax(dim=1).clamp_min(1e-12)
        self.sensitivities = sensitivities.double() / peak[:, None, None]

    @classmethod
    def default(cls) -> CameraPool:
        """Every tabulated camera: fitted to the Adobe matrices of ``camera_matrices`` and the measured ones."""
        data = spectral_data()
        return cls(data["camera_names"], data["camera_sensitivities"])

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"CameraPool({len(self)} cameras)"

    def subset(self, names: Sequence[str]) -> CameraPool:
        """The cameras of the given names, in that order."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise KeyError(f"cameras not in the pool: {missing}")
        index = [self.names.index(n) for n in names]
        return CameraPool(list(names), self.sensitivities[index])

    def split(self, fractions: Sequence[float], seed: int = 0) -> list[CameraPool]:
        """Disjoint pools by a stable hash of each camera's name: ``[rest, part_1, part_2, ...]``.

        ``split([0.1, 0.2])`` gives about 70% / 10% / 20% of the cameras (each part has at least one). The
        assignment of a camera depends only on its name and ``seed``, so adding cameras moves no other one.
        """
        if sum(fractions) >= 1 or any(f <= 0 for f in fractions):
            raise ValueError(f"CameraPool.split: fractions must be positive and sum below 1, got {list(fractions)}")
        edges = np.cumsum([0.0, *fractions])
        scores = {n: _hash_fraction(n, seed) for n in self.names}
        parts: list[list[str]] = [[] for _ in fractions]
        rest: list[str] = []
        for name, score in scores.items():
            slot = int(np.searchsorted(edges, score, side="right")) - 1
            (parts[slot] if slot < len(fractions) else rest).append(name)
        for k, part in enumerate(parts):  # a tiny pool may leave a part empty: move the best-scored camera there
            if not part:
                candidate = min(rest, key=lambda n: abs(scores[n] - edges[k]))
                rest.remove(candidate)
                part.append(candidate)
        if not rest:
            raise ValueError(f"CameraPool.split: {len(self)} cameras are too few for {len(fractions) + 1} parts")
        return [self.subset(rest), *(self.subset(p) for p in parts)]

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        mix: float = 0.0,
        shift_nm: float = 0.0,
        ripple: float = 0.0,
        gains: float = 0.0,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` cameras: ``(sensitivities (n, L, 3), pool index (n,) of the first parent)``.

        Args:
            n: number of cameras.
            generator: random generator (CPU).
            mix: probability that a camera is a convex combination of two pool cameras (an imaginary camera).
            shift_nm: standard deviation of a per-channel wavelength shift of the curves.
            ripple: amplitude (log scale) of a smooth random factor on each curve.
            gains: half-range of a per-channel log gain (``0.35``: channel scales within x/÷ 1.42).
        """
        g = generator
        first = torch.randint(len(self), (n,), generator=g)
        second = torch.randint(len(self), (n,), generator=g)
        weight = torch.rand(n, generator=g, dtype=torch.float64)
        weight = torch.where(torch.rand(n, generator=g) < mix, weight, torch.zeros_like(weight))
        sens = (1 - weight)[:, None, None] * self.sensitivities[first] + weight[:, None, None] * self.sensitivities[
            second
        ]
        shift = shift_nm * torch.randn(n, 1, 3, generator=g, dtype=torch.float64)
        coeffs = torch.randn(n, 4, 3, generator=g, dtype=torch.float64)
        if shift_nm > 0:
            # Resample each channel at wavelengths moved by `shift` (linear interpolation on the 10 nm grid).
            position = (torch.arange(len(WAVELENGTHS), dtype=torch.float64)[None, :, None] - shift / 10.0).clamp(
                0, len(WAVELENGTHS) - 1
            )
            lo = position.floor().long().clamp(max=len(WAVELENGTHS) - 2)
            frac = position - lo
            sens = torch.gather(sens, 1, lo) * (1 - frac) + torch.gather(sens, 1, lo + 1) * frac
        if ripple > 0:
            t = torch.linspace(0.0, math.pi, len(WAVELENGTHS), dtype=torch.float64)
            basis = torch.stack([torch.cos(k * t) for k in range(1, 5)])  # (4, L): smooth across the visible
            sens = sens * torch.exp(ripple * torch.einsum("nkc,kl->nlc", coeffs, basis) / 2.0)
        if gains > 0:
            log_gain = (2 * torch.rand(n, 1, 3, generator=g, dtype=torch.float64) - 1) * gains
            sens = sens * torch.exp(log_gain - log_gain.mean(dim=-1, keepdim=True))
        return sens, first

    def xyz_to_raw(self) -> Tensor:
        """``(N, 3, 3)`` least-squares XYZ -> raw matrices (D65) of the pool's cameras."""
        return fit_xyz_to_raw(self.sensitivities)


def camera_from_spec(spec: str | Sequence[float]) -> CameraPool:
    """One camera from a ``--data.camera`` value (see the module docstring).

    Args:
        spec: a pool camera's name (``"Nikon D5100"``), 9 numbers (XYZ -> raw, row-major, any scale), or a path to
            a ``.csv`` of sensitivities (``wavelength,r,g,b``; resampled to 400-700 nm) or a ``.json`` / ``.yaml``
            file with a ``xyz_to_raw`` or ``color_matrix`` entry (9 numbers or 3 x 3; a DNG ``ColorMatrix2`` works).

    Returns:
        A one-camera :class:`CameraPool` named after the spec.
    """
    if not isinstance(spec, str):
        return CameraPool(["user matrix"], sensitivities_from_matrix(_matrix(spec, "--data.camera"))[None])
    pool = CameraPool.default()
    if spec in pool.names:
        return pool.subset([spec])
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".csv":
        return CameraPool([path.stem], _read_sensitivities_csv(path)[None])
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"--data.camera {spec}: no such file")
        import yaml

        content = json.loads(path.read_text()) if path.suffix.lower() == ".json" else yaml.safe_load(path.read_text())
        key = next((k for k in ("xyz_to_raw", "color_matrix", "ColorMatrix2") if k in (content or {})), None)
        if key is None:
            raise OptionError(f"{path}: expected an `xyz_to_raw` (or `color_matrix`) entry with 9 numbers")
        return CameraPool([path.stem], sensitivities_from_matrix(_matrix(content[key], str(path)))[None])
    try:
        numbers = [float(v) for v in spec.replace("[", " ").replace("]", " ").replace(",", " ").split()]
    except ValueError:
        numbers = []
    if len(numbers) == 9:
        return CameraPool(["user matrix"], sensitivities_from_matrix(_matrix(numbers, "--data.camera"))[None])
    close = [n for n in pool.names if spec.lower() in n.lower()][:5]
    raise OptionError(
        f"--data.camera {spec!r}: not a pool camera, a .csv / .json / .yaml / .dng file or 9 numbers"
        + (f" (did you mean {close}?)" if close else "")
    )


def _matrix(values: Sequence[float] | Sequence[Sequence[float]], where: str) -> np.ndarray:
    m = np.asarray(values, dtype=np.float64).reshape(-1)
    if m.size != 9 or not np.isfinite(m).all():
        raise OptionError(f"{where}: an XYZ -> raw matrix needs 9 finite numbers, got {list(m)}")
    m = m.reshape(3, 3)
    if abs(np.linalg.det(m)) < 1e-9 * np.abs(m).max() ** 3:
        raise OptionError(f"{where}: the XYZ -> raw matrix is singular")
    return m / np.abs(m).max()


def _read_sensitivities_csv(path: Path) -> Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"--data.camera {path}: no such file")
    try:
        table = np.genfromtxt(path, delimiter=",", names=True)
        wavelength = table[table.dtype.names[0]]
        columns = [table[name] for name in table.dtype.names[1:4]]
    except Exception as error:  # genfromtxt raises several types on malformed files
        raise OptionError(f"{path}: expected a CSV with a header and columns wavelength,r,g,b ({error})") from None
    if len(columns) != 3 or wavelength.min() > 420 or wavelength.max() < 680:
        raise OptionError(f"{path}: needs columns wavelength,r,g,b covering 420-680 nm at least")
    sens = np.stack([np.interp(WAVELENGTHS.numpy(), wavelength, c, left=0.0, right=0.0) for c in columns], axis=1)
    if not np.isfinite(sens).all() or (sens < 0).any() or sens.max() <= 0:
        raise OptionError(f"{path}: sensitivities must be finite, non-negative and not all zero")
    return torch.from_numpy(sens)

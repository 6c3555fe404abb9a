"""Angular errors of illuminant estimates and their FFCC-style summary statistics.

Colour-constancy methods are compared by the angle between the estimated and the true illuminant:

- *recovery* error: ``arccos(<est, gt> / (|est| |gt|))``, the angle between the two RGB vectors;
- *reproduction* error (Finlayson & Zakizadeh, BMVC 2014): ``arccos(<w, 1> / (|w| sqrt(3)))`` with
  ``w = gt / est``, the angle between a white surface corrected with the estimate and true white.

Both are reported in degrees and summarised over a dataset as in FFCC (Barron & Tsai, CVPR 2017): mean,
median, trimean ``(Q1 + 2 Q2 + Q3) / 4``, best-25% (mean of errors ``<= Q1``), worst-25% (mean of errors
``>= Q3``), 95th percentile and max.

torchmetrics has no angular-error metric, so :class:`AngularError` is written here: it keeps every
per-image error in ``cat`` states (synchronised across processes by torchmetrics) because the median,
trimean and percentiles need the whole distribution, not running sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "STATISTICS",
    "AngularError",
    "error_statistics",
    "format_table",
    "recovery_angular_error",
    "reproduction_angular_error",
]

#: Summary statistics, in the order FFCC-style tables print them.
STATISTICS: tuple[str, ...] = ("mean", "median", "trimean", "best25", "worst25", "p95", "max")


def _angle_deg(a: Tensor, b: Tensor) -> Tensor:
    """Angle in degrees between rows of ``a`` and ``b``, via ``atan2(|a x b|, a . b)``.

    ``atan2`` is accurate for both tiny and large angles, unlike ``arccos`` whose precision collapses
    near zero, where good estimators live.
    """
    cross = torch.linalg.cross(a, b, dim=-1).norm(dim=-1)
    dot = (a * b).sum(dim=-1)
    return torch.rad2deg(torch.atan2(cross, dot))


def recovery_angular_error(estimate: Tensor, target: Tensor) -> Tensor:
    """Recovery angular error in degrees between illuminants ``(..., 3)``; scale of either does not matter.

    Args:
        estimate: estimated illuminant RGB, ``(..., 3)``.
        target: ground-truth illuminant RGB, ``(..., 3)``.

    Returns:
        Errors ``(...)`` in degrees, computed in float64.
    """
    return _angle_deg(estimate.double(), target.double()).to(estimate.dtype)


def reproduction_angular_error(estimate: Tensor, target: Tensor, eps: float = 1e-9) -> Tensor:
    """Reproduction angular error in degrees (Finlayson & Zakizadeh 2014): angle of ``target / estimate`` to white.

    Args:
        estimate: estimated illuminant RGB, ``(..., 3)``; channels must be positive.
        target: ground-truth illuminant RGB, ``(..., 3)``.
        eps: floor on ``estimate`` so that a zero channel gives a large finite error, not ``inf``.

    Returns:
        Errors ``(...)`` in degrees, computed in float64.
    """
    w = target.double() / estimate.double().clamp_min(eps)
    return _angle_deg(w, torch.ones_like(w)).to(estimate.dtype)


def error_statistics(errors: Tensor) -> dict[str, Tensor]:
    """FFCC summary statistics of a 1-D tensor of angular errors.

    Quartiles and the 95th percentile use linear interpolation (``torch.quantile``'s default, as
    numpy / MATLAB ``prctile`` style tables do). Best-25% is the mean of the errors at or below the first
    quartile, worst-25% the mean of those at or above the third.

    Args:
        errors: per-image errors, any shape (flattened).

    Returns:
        ``{"mean", "median", "trimean", "best25", "worst25", "p95", "max"}``; NaN when ``errors`` is empty.
    """
    e = errors.detach().flatten().double()
    if e.numel() == 0:
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=e.device)
        return {name: nan for name in STATISTICS}
    q1, q2, q3, p95 = torch.quantile(e, torch.tensor([0.25, 0.5, 0.75, 0.95], dtype=e.dtype, device=e.device))
    return {
        "mean": e.mean(),
        "median": q2,
        "trimean": (q1 + 2 * q2 + q3) / 4,
        "best25": e[e <= q1].mean(),
        "worst25": e[e >= q3].mean(),
        "p95": p95,
        "max": e.max(),
    }


class AngularError(Metric):
    """Recovery and reproduction angular errors (degrees) with FFCC summary statistics.

    ``update(estimate, target)`` takes illuminants ``(B, 3)`` (any positive scale); ``compute()`` returns a
    flat dict ``{"recovery_mean", "recovery_median", ..., "reproduction_max"}`` (see :data:`STATISTICS`),
    which a ``MetricCollection`` logs as ``val_recovery_median`` and so on. Per-image errors are kept in
    ``cat`` states, so the statistics are exact over the whole dataset and across DDP processes.

    Args:
        kinds: which errors to report, ``"recovery"`` and / or ``"reproduction"``.
        statistics: which summary statistics to report (subset of :data:`STATISTICS`).

    Example:
        >>> metric = AngularError()
        >>> metric.update(torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([[1.0, 1.0, 1.0]]))
        >>> float(metric.compute()["recovery_median"])
        0.0
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    recovery: list[Tensor]
    reproduction: list[Tensor]

    def __init__(
        self,
        kinds: Sequence[str] = ("recovery", "reproduction"),
        statistics: Sequence[str] = STATISTICS,
    ) -> None:
        super().__init__()
        unknown = [k for k in kinds if k not in ("recovery", "reproduction")] + [
            s for s in statistics if s not in STATISTICS
        ]
        if unknown:
            raise ValueError(f"AngularError: unknown kinds / statistics {unknown}; choose from {STATISTICS}.")
        self.kinds = tuple(kinds)
        self.statistics = tuple(statistics)
        self.add_state("recovery", default=[], dist_reduce_fx="cat")
        self.add_state("reproduction", default=[], dist_reduce_fx="cat")

    def update(self, estimate: Tensor, target: Tensor) -> None:
        """Add a batch of estimates and ground truths, both ``(B, 3)``."""
        if estimate.shape != target.shape or estimate.shape[-1] != 3:
            raise ValueError(
                f"AngularError expects estimate and target of shape (B, 3); got {tuple(estimate.shape)} and "
                f"{tuple(target.shape)}."
            )
        estimate, target = estimate.detach().reshape(-1, 3), target.detach().reshape(-1, 3)
        self.recovery.append(recovery_angular_error(estimate.double(), target.double()).float())
        self.reproduction.append(reproduction_angular_error(estimate.double(), target.double()).float())

    def errors(self, kind: str = "recovery") -> Tensor:
        """All per-image errors of ``kind`` seen so far (after synchronisation inside ``compute``)."""
        values = getattr(self, kind)
        if isinstance(values, Tensor):
            return values
        return dim_zero_cat(values) if values else torch.zeros(0, device=self.device)

    def compute(self) -> dict[str, Tensor]:
        """Summary statistics of every requested kind, keyed ``"<kind>_<statistic>"``."""
        result: dict[str, Tensor] = {}
        for kind in self.kinds:
            stats = error_statistics(self.errors(kind))
            for name in self.statistics:
                result[f"{kind}_{name}"] = stats[name].float()
        return result


def format_table(rows: dict[str, dict[str, float]], kinds: Sequence[str] = ("recovery", "reproduction")) -> str:
    """A Markdown table of FFCC statistics, one row per method.

    Args:
        rows: ``{method name: {"recovery_mean": ..., ...}}`` as returned by :meth:`AngularError.compute`.
        kinds: which error kinds to print as column groups.

    Returns:
        The table as Markdown text (readable in a terminal, pasteable into docs).
    """
    short = {"mean": "Mean", "median": "Med.", "trimean": "Tri.", "best25": "B25%", "worst25": "W25%"}
    short |= {"p95": "95%", "max": "Max"}
    prefix = {"recovery": "Rec.", "reproduction": "Rep."}
    header = ["Method"] + [f"{prefix[kind]} {short[s]}" for kind in kinds for s in STATISTICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for method, values in rows.items():
        cells = [method]
        for kind in kinds:
            for stat in STATISTICS:
                value = values.get(f"{kind}_{stat}", math.nan)
                cells.append(f"{value:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

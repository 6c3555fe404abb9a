"""Angular errors of illuminant estimates and their summary statistics, as FFCC defines them.

Colour-constancy methods are compared by the angle between the estimated and the true illuminant:

- *recovery* error: ``arccos(<est, gt> / (|est| |gt|))``, the angle between the two RGB vectors;
- *reproduction* error (Finlayson & Zakizadeh, BMVC 2014): ``arccos(<w, 1> / (|w| sqrt(3)))`` with
  ``w = gt / est``, the angle between a white surface corrected with the estimate and true white.

Both are in degrees. An error is *undefined* (NaN) where its formula divides by zero: a zero estimate or a zero
ground truth (recovery), an estimate with a zero channel or a zero ground truth (reproduction). Signs are kept,
so an estimate pointing the opposite way, ``(-1, -2, -3)`` against ``(1, 2, 3)``, is 180 degrees off.

The summary statistics are those of FFCC's ``internal/ErrorMetrics.m`` (Barron & Tsai, CVPR 2017;
github.com/google/ffcc), computed on the defined errors only:

- quartiles and the 95th percentile with MATLAB's ``prctile`` (:func:`prctile`), not NumPy's default;
- ``median`` = ``prctile(e, 50)``; ``trimean`` = ``(P25 + 2 P50 + P75) / 4``;
- ``best25`` = mean of the errors ``<= P25``; ``worst25`` = mean of the errors ``>= P75``;
  ``worst5`` = mean of the errors ``>= P95`` (FFCC's ``b25``, ``w25``, ``w05``);
- ``mean``, ``mean2`` (root mean square), ``mean4`` (quartic root of the mean fourth power), ``max``.

Two figures are ours, not FFCC's, and are named as such (:data:`EXTRA_STATISTICS`): ``p95``, the 95th percentile
itself (``prctile(e, 95)``), and ``undefined``, the number of undefined errors, which are counted and never
averaged in.

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
    "ALL_STATISTICS",
    "EXTRA_STATISTICS",
    "FFCC_STATISTICS",
    "STATISTICS",
    "AngularError",
    "error_statistics",
    "format_table",
    "prctile",
    "recovery_angular_error",
    "reproduction_angular_error",
]

#: Every statistic FFCC's ``ErrorMetrics.m`` computes, under our names (FFCC: mean, mean2, mean4, median, tri,
#: b25, w25, w05, max).
FFCC_STATISTICS: tuple[str, ...] = ("mean", "mean2", "mean4", "median", "trimean", "best25", "worst25", "worst5", "max")
#: Statistics that are not FFCC's: the 95th percentile itself and the count of undefined errors.
EXTRA_STATISTICS: tuple[str, ...] = ("p95", "undefined")
#: Everything :func:`error_statistics` returns.
ALL_STATISTICS: tuple[str, ...] = FFCC_STATISTICS + EXTRA_STATISTICS
#: The columns of result tables, in the order the colour-constancy literature prints them (all FFCC's).
STATISTICS: tuple[str, ...] = ("mean", "median", "trimean", "best25", "worst25", "worst5", "max")

_KINDS = ("recovery", "reproduction")


def _float_dtype(*tensors: Tensor) -> torch.dtype:
    """The floating dtype of a result computed from ``tensors``: their common float type, else the default."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _angle_deg(a: Tensor, b: Tensor) -> Tensor:
    """Angle in degrees between rows of ``a`` and ``b``, via ``atan2(|a x b|, a . b)``.

    ``atan2`` is accurate for both tiny and large angles, unlike ``arccos`` whose precision collapses
    near zero, where good estimators live. It returns 0 for a zero vector; callers mark those undefined.
    """
    cross = torch.linalg.cross(a, b, dim=-1).norm(dim=-1)
    dot = (a * b).sum(dim=-1)
    return torch.rad2deg(torch.atan2(cross, dot))


def recovery_angular_error(estimate: Tensor, target: Tensor) -> Tensor:
    """Recovery angular error in degrees between illuminants ``(..., 3)``; the scale of either does not matter.

    Args:
        estimate: estimated illuminant RGB, ``(..., 3)``, any sign.
        target: ground-truth illuminant RGB, ``(..., 3)``.

    Returns:
        Errors ``(...)`` in degrees (computed in float64, returned in the inputs' float type, or the default float
        type for integer inputs); NaN where the estimate or the target is the zero vector.
    """
    dtype = _float_dtype(estimate, target)
    a, b = estimate.double(), target.double()
    undefined = (a == 0).all(dim=-1) | (b == 0).all(dim=-1)
    return _angle_deg(a, b).masked_fill(undefined, math.nan).to(dtype)


def reproduction_angular_error(estimate: Tensor, target: Tensor) -> Tensor:
    """Reproduction angular error in degrees (Finlayson & Zakizadeh 2014): angle of ``target / estimate`` to white.

    Args:
        estimate: estimated illuminant RGB, ``(..., 3)``, any sign (no clamping: a negative channel turns the
            corrected white away from white, as the formula says).
        target: ground-truth illuminant RGB, ``(..., 3)``.

    Returns:
        Errors ``(...)`` in degrees (float64 inside, returned as in :func:`recovery_angular_error`); NaN where a
        channel of the estimate is zero (the correction ``target / estimate`` is infinite) or the target is zero.
    """
    dtype = _float_dtype(estimate, target)
    a, b = estimate.double(), target.double()
    undefined = (a == 0).any(dim=-1) | (b == 0).all(dim=-1)
    w = b / a.masked_fill(a == 0, 1.0)  # the filled value never reaches the result: those rows are NaN
    return _angle_deg(w, torch.ones_like(w)).masked_fill(undefined, math.nan).to(dtype)


def prctile(values: Tensor, percent: float | Sequence[float] | Tensor) -> Tensor:
    """Percentiles of a 1-D tensor exactly as MATLAB's ``prctile`` (Statistics Toolbox, default ``"exact"``).

    MATLAB assigns the ``i``-th of the ``n`` sorted values to the percentile ``100 (i - 0.5) / n``, interpolates
    linearly between those points and returns the smallest / largest value outside them. That is not
    ``torch.quantile`` / ``numpy.percentile``'s default (which puts the sorted values at ``100 (i - 1) / (n - 1)``);
    it equals NumPy's ``method="hazen"``. Written here because torch has only the default rule.

    Args:
        values: the sample (flattened); NaN are not allowed (remove them first).
        percent: percentiles in ``[0, 100]``.

    Returns:
        One value per requested percentile, in ``values``' dtype; NaN when ``values`` is empty.
    """
    x = values.detach().flatten().sort().values
    p = torch.as_tensor(percent, dtype=torch.float64, device=x.device)
    n = x.numel()
    if n == 0:
        return torch.full(p.shape, math.nan, dtype=x.dtype if x.is_floating_point() else torch.float64)
    position = (n * p / 100 + 0.5).clamp(1, n) - 1  # 0-based fractional index into the sorted values
    low = position.floor().long()
    high = (low + 1).clamp_max(n - 1)
    frac = position - low
    xd = x.double()
    return (xd[low] + frac * (xd[high] - xd[low])).to(_float_dtype(x))


def error_statistics(errors: Tensor) -> dict[str, Tensor]:
    """FFCC summary statistics (``ErrorMetrics.m``) of per-image angular errors, plus our two extras.

    NaN errors (undefined, see the module docstring) are left out of every statistic and counted in
    ``"undefined"``.

    Args:
        errors: per-image errors, any shape (flattened).

    Returns:
        ``{name: float64 scalar}`` for every name in :data:`ALL_STATISTICS`; the statistics are NaN when no error
        is defined.
    """
    e = errors.detach().flatten().double()
    defined = ~e.isnan()
    undefined = (~defined).sum().double()
    e = e[defined]
    if e.numel() == 0:
        nan = torch.tensor(math.nan, dtype=torch.float64, device=e.device)
        return {name: nan for name in FFCC_STATISTICS} | {"p95": nan, "undefined": undefined}
    p25, p50, p75, p95 = prctile(e, [25.0, 50.0, 75.0, 95.0])
    return {
        "mean": e.mean(),
        "mean2": e.pow(2).mean().sqrt(),
        "mean4": e.pow(4).mean().pow(0.25),
        "median": p50,
        "trimean": (p25 + 2 * p50 + p75) / 4,
        "best25": e[e <= p25].mean(),
        "worst25": e[e >= p75].mean(),
        "worst5": e[e >= p95].mean(),
        "max": e.max(),
        "p95": p95,
        "undefined": undefined,
    }


class AngularError(Metric):
    """Recovery and reproduction angular errors (degrees) with FFCC summary statistics.

    ``update(estimate, target)`` takes illuminants ``(B, 3)`` (any scale); ``compute()`` returns a flat dict
    ``{"recovery_mean", "recovery_median", ..., "reproduction_undefined"}``, which a ``MetricCollection`` logs as
    ``val_recovery_median`` and so on. Per-image errors are kept in ``cat`` states, so the statistics are exact
    over the whole dataset and across DDP processes. Undefined errors (a zero estimate or ground truth) are kept
    as NaN, left out of the statistics and counted in ``<kind>_undefined``.

    Args:
        kinds: which errors to report, ``"recovery"`` and / or ``"reproduction"``.
        statistics: which statistics to report, from :data:`ALL_STATISTICS` (default: the table columns
            :data:`STATISTICS` and the ``undefined`` count).

    Example:
        >>> metric = AngularError()
        >>> metric.update(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0]] * 2))
        >>> values = metric.compute()
        >>> float(values["recovery_median"]), float(values["recovery_undefined"])
        (0.0, 1.0)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    recovery: list[Tensor]
    reproduction: list[Tensor]

    def __init__(
        self,
        kinds: Sequence[str] = _KINDS,
        statistics: Sequence[str] = (*STATISTICS, "undefined"),
    ) -> None:
        super().__init__()
        unknown = [k for k in kinds if k not in _KINDS] + [s for s in statistics if s not in ALL_STATISTICS]
        if unknown:
            raise ValueError(
                f"AngularError: unknown kinds / statistics {unknown}; kinds are {_KINDS}, statistics {ALL_STATISTICS}."
            )
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
        self.recovery.append(recovery_angular_error(estimate, target).float())
        self.reproduction.append(reproduction_angular_error(estimate, target).float())

    def errors(self, kind: str = "recovery") -> Tensor:
        """All per-image errors of ``kind`` seen so far, NaN where undefined (synchronised inside ``compute``)."""
        values = getattr(self, kind)
        if isinstance(values, Tensor):
            return values
        return dim_zero_cat(values) if values else torch.zeros(0, device=self.device)

    def compute(self) -> dict[str, Tensor]:
        """The requested statistics of every requested kind, keyed ``"<kind>_<statistic>"``."""
        result: dict[str, Tensor] = {}
        for kind in self.kinds:
            stats = error_statistics(self.errors(kind))
            for name in self.statistics:
                result[f"{kind}_{name}"] = stats[name].float()
        return result


#: Column titles of :func:`format_table`.
_SHORT = {"mean": "Mean", "median": "Med.", "trimean": "Tri.", "best25": "B25%", "worst25": "W25%", "worst5": "W5%"}
_SHORT |= {"max": "Max", "mean2": "RMS", "mean4": "Mean4", "p95": "P95 (not FFCC)"}
_PREFIX = {"recovery": "Rec.", "reproduction": "Rep."}


def format_table(
    rows: dict[str, dict[str, float]],
    kinds: Sequence[str] = _KINDS,
    statistics: Sequence[str] = STATISTICS,
) -> str:
    """A Markdown table of FFCC statistics, one row per method, with a note on undefined errors.

    Columns: mean, median, trimean, best 25% (``B25%``), worst 25% (``W25%``) and worst 5% (``W5%``, FFCC's mean
    of the errors at or above the 95th percentile) and max, per error kind. When a row has undefined errors
    (``<kind>_undefined > 0``), a line under the table says how many were left out of its statistics.

    Args:
        rows: ``{method name: {"recovery_mean": ..., ...}}`` as returned by :meth:`AngularError.compute`.
        kinds: which error kinds to print as column groups.
        statistics: which statistics to print (from :data:`FFCC_STATISTICS` and ``p95``).

    Returns:
        The table as Markdown text (readable in a terminal, pasteable into docs).
    """
    header = ["Method"] + [f"{_PREFIX[kind]} {_SHORT[s]}" for kind in kinds for s in statistics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    notes = []
    for method, values in rows.items():
        cells = [method] + [f"{values.get(f'{kind}_{stat}', math.nan):.2f}" for kind in kinds for stat in statistics]
        lines.append("| " + " | ".join(cells) + " |")
        counts = {kind: values.get(f"{kind}_undefined", 0.0) for kind in kinds}
        if any(count > 0 for count in counts.values()):
            notes.append(f"{method}: " + ", ".join(f"{int(count)} {kind}" for kind, count in counts.items()))
    if notes:
        lines += [
            "",
            "Undefined errors (zero estimate or ground truth, or a zero estimate channel for the reproduction error) "
            "are counted, not averaged in: " + "; ".join(notes) + ".",
        ]
    return "\n".join(lines)

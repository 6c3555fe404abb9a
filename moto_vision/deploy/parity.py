"""Does the exported model compute what PyTorch computed? Output differences and task metrics, side by side.

Both models see the same real batches from the task's datamodule. For fp32 the check is the largest
absolute output difference (and, for AWB, the largest angle between the two illuminant estimates); for
int8, where outputs move by design, it is the task's own metric computed by the task's own
``configure_metrics`` / ``update_metrics`` on both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from moto_vision.deploy.source import batch_inputs
from moto_vision.metrics.collection import flatten_metrics

__all__ = ["ParityReport", "check_parity", "evaluate", "headline_metric"]

#: Default fp32 tolerances (the issue's targets): logits / outputs, and AWB illuminant angle in degrees.
FP32_ATOL = 1e-4
FP32_MAX_ANGLE_DEG = 1e-3


@dataclass
class ParityReport:
    """Agreement between a reference (PyTorch) and a candidate (exported) model on the same images.

    Attributes:
        images: how many images were compared.
        max_abs_diff: largest absolute difference over every output element.
        max_scaled_diff: largest absolute difference of each output divided by ``max(1, max |reference output|)``
            (what the fp32 tolerance is applied to: float32 rounding grows with the values' magnitude).
        mean_abs_diff: mean absolute difference.
        max_angle_deg: largest angle between reference and candidate vectors (AWB illuminants), else ``None``.
        reference_metrics: task metrics of the reference.
        candidate_metrics: task metrics of the candidate.
        metric: the headline metric name (from the task's ``monitor``).
        passed: whether fp32 tolerances were met (``None`` when not judged, e.g. for int8).
        tolerance: the tolerances used.
    """

    images: int
    max_abs_diff: float
    mean_abs_diff: float
    max_angle_deg: float | None
    max_scaled_diff: float = 0.0
    reference_metrics: dict[str, float] = field(default_factory=dict)
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    metric: str | None = None
    passed: bool | None = None
    tolerance: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for a terminal."""
        parts = [f"{self.images} images", f"max |diff| {self.max_abs_diff:.3g}"]
        if self.max_scaled_diff < self.max_abs_diff:
            parts[-1] += f" ({self.max_scaled_diff:.3g} of the output's scale)"
        if self.max_angle_deg is not None:
            parts.append(f"max angle {self.max_angle_deg:.3g} deg")
        if self.metric and self.metric in self.candidate_metrics:
            ref = self.reference_metrics.get(self.metric, math.nan)
            parts.append(f"{self.metric} {ref:.4g} (pytorch) -> {self.candidate_metrics[self.metric]:.4g}")
        if self.passed is not None:
            parts.append("PASS" if self.passed else "FAIL")
        return ", ".join(parts)


def headline_metric(task: Any, split: str = "test") -> str:
    """The metric a task is selected by (its ``monitor``) for ``split``: ``val_accuracy`` -> ``test_accuracy``."""
    monitor = str(getattr(task, "monitor", "val_loss"))
    return f"{split}_{monitor.split('_', 1)[1] if '_' in monitor else monitor}"


def task_outputs(task: Any, outputs: Any) -> Any:
    """Outputs of the export graph in the form the task's ``update_metrics`` / ``compute_loss`` take.

    Identity unless the task's ``export_module()`` adds post-processing (e.g. calibrated probabilities instead of
    logits); such a task defines ``outputs_from_export(outputs)`` to map them back.
    """
    hook = getattr(task, "outputs_from_export", None)
    return hook(outputs) if callable(hook) else outputs


class _Scorer:
    """Accumulates a task's metrics (and mean loss) over batches for one model."""

    def __init__(self, task: Any, split: str, enabled: bool = True) -> None:
        self.task, self.split = task, split
        metrics = task.configure_metrics() if enabled and hasattr(task, "configure_metrics") else None
        self.metrics = metrics.clone(prefix=f"{split}_") if metrics is not None else None
        self.loss_sum, self.loss_count, self.loss_ok = 0.0, 0, enabled and hasattr(task, "compute_loss")

    def update(self, outputs: Any, batch: Mapping[str, Any]) -> None:
        if self.metrics is None and not self.loss_ok:
            return
        outputs = task_outputs(self.task, outputs)
        if self.metrics is not None:
            self.task.update_metrics(self.metrics, outputs, batch)
        if self.loss_ok:
            try:
                loss = self.task.compute_loss(outputs, batch)["loss"]
            except Exception:  # some losses need training-time state; the metric table does not depend on it
                self.loss_ok = False
            else:
                size = batch["image"].shape[0]
                self.loss_sum += float(loss) * size
                self.loss_count += size

    def compute(self) -> dict[str, float]:
        values: dict[str, float] = {}
        if self.metrics is not None:
            computed = flatten_metrics(self.metrics.compute())
            values.update({k: float(v) for k, v in computed.items() if v.numel() == 1})
        if self.loss_ok and self.loss_count:
            values[f"{self.split}_loss"] = self.loss_sum / self.loss_count
        return values


@torch.no_grad()
def evaluate(
    task: Any,
    predict: Callable[..., Any],
    batches: Iterable[Mapping[str, Any]],
    split: str = "test",
    *,
    inputs: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Score any callable with the task's own metrics (and loss) on datamodule batches.

    ``predict`` takes the export graph's inputs (the images, and any further ``inputs`` the graph takes, see
    :func:`~moto_vision.deploy.source.batch_inputs`) and returns what the graph returns (see :func:`task_outputs`).
    """
    scorer = _Scorer(task, split)
    for batch in batches:
        scorer.update(predict(*_inputs(batch, inputs)), batch)
    return scorer.compute()


@torch.no_grad()
def check_parity(
    task: Any,
    reference: Callable[[torch.Tensor], Any],
    candidate: Callable[[torch.Tensor], Any],
    batches: Iterable[Mapping[str, Any]],
    *,
    inputs: Mapping[str, torch.Tensor] | None = None,
    judge: bool = True,
    score: bool = True,
    atol: float = FP32_ATOL,
    max_angle_deg: float = FP32_MAX_ANGLE_DEG,
    split: str = "test",
) -> ParityReport:
    """Run ``reference`` and ``candidate`` on the same batches; compare outputs and task metrics.

    Args:
        task: the task (for its metrics, loss and ground-truth key).
        reference: the PyTorch model (same call as the task).
        candidate: the exported model's predictor.
        batches: datamodule batches (dicts with ``"image"`` and the ground truth).
        inputs: the export graph's example inputs by name when it takes more than the image.
        judge: apply the fp32 tolerances (off for int8, whose outputs differ by design).
        score: compute the task's metrics (off when the export graph's outputs cannot be scored).
        atol: largest allowed absolute output difference.
        max_angle_deg: largest allowed angle between illuminant estimates (AWB tasks).
        split: name prefix of the metrics.
    """
    angular = getattr(task, "target_key", None) == "illuminant"
    reference_scores, candidate_scores = _Scorer(task, split, score), _Scorer(task, split, score)
    images, max_abs, max_scaled, abs_sum, elements = 0, 0.0, 0.0, 0.0, 0
    max_angle = 0.0 if angular else None
    for batch in batches:
        arguments = _inputs(batch, inputs)
        ref_out, cand_out = reference(*arguments), candidate(*arguments)
        images += batch["image"].shape[0]
        for ref, cand in zip(_flat(ref_out), _flat(cand_out)):
            if ref.shape != cand.shape:
                raise ValueError(f"Exported output has shape {tuple(cand.shape)}, PyTorch {tuple(ref.shape)}.")
            diff = (ref.float() - cand.float()).abs()
            worst = float(diff.max())
            max_abs = max(max_abs, worst)
            max_scaled = max(max_scaled, worst / max(1.0, float(ref.float().abs().max())))
            abs_sum += float(diff.sum())
            elements += diff.numel()
            if angular and ref.ndim == 2 and ref.shape[-1] == 3:
                max_angle = max(max_angle, float(_angle_deg(ref.float(), cand.float()).max()))
        reference_scores.update(ref_out, batch)
        candidate_scores.update(cand_out, batch)
    if images == 0:
        raise ValueError("Parity check got no batches; is the datamodule's test split empty?")
    passed = None
    tolerance: dict[str, float] = {}
    if judge:
        # atol applies to outputs of magnitude up to 1 and scales with larger ones: segmentation logits of a
        # trained model reach 10-20, where float32 kernels that sum in another order differ by a few 1e-4.
        tolerance = {"atol": atol} | ({"max_angle_deg": max_angle_deg} if angular else {})
        passed = max_scaled <= atol and (max_angle is None or max_angle <= max_angle_deg)
        passed = passed and math.isfinite(max_abs)
    return ParityReport(
        images=images,
        max_abs_diff=max_abs,
        mean_abs_diff=abs_sum / max(1, elements),
        max_angle_deg=max_angle,
        max_scaled_diff=max_scaled,
        reference_metrics=reference_scores.compute(),
        candidate_metrics=candidate_scores.compute(),
        metric=headline_metric(task, split),
        passed=passed,
        tolerance=tolerance,
    )


def _inputs(batch: Mapping[str, Any], inputs: Mapping[str, torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
    return batch_inputs(batch, inputs) if inputs else (batch["image"],)


def _flat(outputs: Any) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, Mapping):
        return [v for v in outputs.values() if isinstance(v, torch.Tensor)]
    return [v for v in outputs if isinstance(v, torch.Tensor)]


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # acos loses precision near 1; atan2 of |a x b| and a.b is accurate for tiny angles (our 1e-3 deg target).
    cross = torch.linalg.cross(a, b, dim=-1).norm(dim=-1)
    dot = (a * b).sum(-1)
    return torch.rad2deg(torch.atan2(cross, dot))

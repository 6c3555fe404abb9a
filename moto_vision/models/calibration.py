"""Calibrated scores for classifiers: temperature scaling and per-class decision thresholds.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) divides the
logits by one scalar ``T`` fitted on held-out data by minimising the negative log-likelihood; it changes
confidence, never the ranking, so accuracy and mAP are unchanged. For multi-label models the thresholds
that turn independent per-class scores into decisions are chosen per class on the same held-out data
(maximising F1 by default).

Written here because neither torchmetrics nor timm ships a fitter; plain PyTorch, no Lightning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ScoreCalibrator", "fit_temperature", "fit_thresholds"]

_MIN_T, _MAX_T = 0.05, 20.0


def _nll(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
    return F.cross_entropy(logits, targets)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, *, multi_label: bool, max_iter: int = 100) -> float:
    """Fit the temperature ``T`` minimising the NLL of ``logits / T`` (L-BFGS on ``log T``).

    Args:
        logits: ``(N, K)`` held-out logits.
        targets: ``(N,)`` class indices, or ``(N, K)`` multi-hot for multi-label.
        multi_label: sigmoid (``True``) or softmax (``False``) likelihood.
        max_iter: L-BFGS iterations.

    Returns:
        The temperature, clamped to ``[0.05, 20]``.
    """
    logits = logits.detach().float()
    targets = targets.detach()
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _nll(logits / log_t.exp(), targets, multi_label)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not torch.isfinite(torch.tensor(temperature)):
        return 1.0
    return min(max(temperature, _MIN_T), _MAX_T)


def fit_thresholds(probs: torch.Tensor, targets: torch.Tensor, *, default: float = 0.5) -> torch.Tensor:
    """Per-class thresholds on independent scores that maximise each class's F1 on held-out data.

    The threshold is placed halfway between the lowest score that is kept and the next one below it.
    Classes without positive examples keep ``default``.

    Args:
        probs: ``(N, K)`` calibrated probabilities.
        targets: ``(N, K)`` multi-hot ground truth.
        default: threshold of classes that cannot be fitted.

    Returns:
        ``(K,)`` thresholds.
    """
    probs = probs.detach().float()
    targets = targets.detach().float()
    n, k = probs.shape
    sorted_probs, order = probs.sort(dim=0, descending=True)
    sorted_targets = targets.gather(0, order)
    tp = sorted_targets.cumsum(0)
    predicted = torch.arange(1, n + 1, dtype=torch.float32).unsqueeze(1)
    positives = targets.sum(0, keepdim=True)
    f1 = 2 * tp / (predicted + positives).clamp(min=1)
    best = f1.argmax(dim=0)
    kept = sorted_probs.gather(0, best.unsqueeze(0)).squeeze(0)
    below = sorted_probs.gather(0, (best + 1).clamp(max=n - 1).unsqueeze(0)).squeeze(0)
    below = torch.where(best + 1 < n, below, torch.zeros_like(below))
    thresholds = (kept + below) / 2
    fittable = (positives.squeeze(0) > 0) & (f1.gather(0, best.unsqueeze(0)).squeeze(0) > 0)
    return torch.where(fittable, thresholds, torch.full((k,), default))


class ScoreCalibrator(nn.Module):
    """Turns logits into calibrated scores and decisions; its fitted state lives in buffers.

    Buffers (saved with the model's ``state_dict``): ``temperature`` (scalar) and ``thresholds``
    (``(K,)``, used for multi-label decisions; multi-class decides by arg-max).

    Args:
        num_classes: number of classes ``K``.
        multi_label: sigmoid scores and per-class thresholds (``True``) or softmax (``False``).
    """

    def __init__(self, num_classes: int, *, multi_label: bool = False) -> None:
        super().__init__()
        self.multi_label = multi_label
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("thresholds", torch.full((num_classes,), 0.5))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities ``(B, K)``: ``sigmoid`` or ``softmax`` of ``logits / T``."""
        return self.probabilities(logits, calibrated=True)

    def probabilities(self, logits: torch.Tensor, *, calibrated: bool = True) -> torch.Tensor:
        """Scores of ``logits``, with (``calibrated=True``) or without the fitted temperature."""
        if calibrated:
            logits = logits / self.temperature.to(logits.dtype)
        return logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)

    def logits_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Logits that give ``scores`` back through :meth:`forward` (for scoring exported, calibrated outputs).

        ``sigmoid(z / T) = p`` gives ``z = T * logit(p)``; ``softmax(z / T) = p`` gives ``z = T * log(p)`` up to a
        per-image constant, which no softmax, arg-max, loss or metric sees.
        """
        temperature = self.temperature.to(scores.dtype)
        if self.multi_label:
            return temperature * torch.logit(scores, eps=1e-6)
        return temperature * scores.clamp_min(1e-30).log()

    def decide(self, probs: torch.Tensor) -> torch.Tensor:
        """Multi-hot decisions ``(B, K)``: per-class thresholds (multi-label) or the arg-max (multi-class)."""
        if self.multi_label:
            return probs >= self.thresholds.to(probs.dtype)
        return F.one_hot(probs.argmax(dim=-1), probs.shape[-1]).bool()

    @torch.no_grad()
    def fit(self, logits: torch.Tensor, targets: torch.Tensor, *, temperature: bool = True) -> dict[str, float]:
        """Fit the temperature (and, for multi-label, the thresholds) on held-out logits and targets.

        Returns:
            ``{"temperature", "nll_before", "nll_after"}``.
        """
        logits = logits.detach().float().cpu()
        targets = targets.detach().cpu()
        nll_before = float(_nll(logits, targets, self.multi_label))
        value = fit_temperature(logits, targets, multi_label=self.multi_label) if temperature else 1.0
        self.temperature.fill_(value)
        nll_after = float(_nll(logits / value, targets, self.multi_label))
        if self.multi_label:
            probs = (logits / value).sigmoid()
            self.thresholds.copy_(fit_thresholds(probs, targets).to(self.thresholds))
        return {"temperature": value, "nll_before": nll_before, "nll_after": nll_after}

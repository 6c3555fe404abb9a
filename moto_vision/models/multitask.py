"""Multi-task building blocks: head adapters on a shared feature list, and loss weighting (no Lightning).

A shared :class:`~moto_vision.backbones.Backbone` returns its feature maps once; every head reads what it needs
from that list. The adapters give the single-task heads (not copies of them) one signature,
``branch(features, image) -> output``:

- :class:`IlluminantBranch`: an AWB head (:class:`~moto_vision.models.ConfidencePoolingHead` or
  :class:`~moto_vision.models.PoolingMLPHead`) on one early feature level, plus the linear image for its
  local-colour votes;
- :class:`SegmentationBranch`: a segmentation decoder (:func:`~moto_vision.models.create_segmentation_decoder`) on
  all levels, logits at the image size;
- :class:`ClassificationBranch`: a :class:`~moto_vision.models.ClassificationHead` on the pooled levels.

Loss weighting turns the per-task losses into the one that is optimised:

- :class:`FixedWeighting`: ``sum_t w_t L_t`` with constant weights;
- :class:`UncertaintyWeighting`: homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, "Multi-Task Learning
  Using Uncertainty to Weigh Losses", CVPR 2018), ``sum_t exp(-s_t) L_t + s_t`` with learned ``s_t = log sigma_t^2``.

Tasks without labels in a batch are simply absent from the loss dict: they contribute nothing, not even their
regulariser ``s_t``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "ClassificationBranch",
    "FixedWeighting",
    "IlluminantBranch",
    "LossWeighting",
    "SegmentationBranch",
    "UncertaintyWeighting",
]


# --------------------------------------------------------------------------------------------- branches
class IlluminantBranch(nn.Module):
    """An AWB head reading one feature level of the shared backbone (and the linear image).

    Args:
        head: the illuminant head, ``head(features, image) -> (B, 3)`` unit-norm RGB.
        level: index of the feature map it reads (the single-task AWB model reads level 1, stride 4).
    """

    def __init__(self, head: nn.Module, level: int) -> None:
        super().__init__()
        self.head = head
        self.level = int(level)

    def forward(self, features: Sequence[Tensor], image: Tensor) -> Tensor:
        return self.head(features[self.level], image)


class SegmentationBranch(nn.Module):
    """A segmentation decoder on every feature level, logits ``(B, C, H, W)`` at the image size.

    Args:
        decoder: ``decoder(features, size=...) -> logits``.
    """

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, features: Sequence[Tensor], image: Tensor) -> Tensor:
        return self.decoder(features, size=image.shape[-2:])


class ClassificationBranch(nn.Module):
    """A pooled classification head, logits ``(B, K)`` (the image is not used).

    Args:
        head: ``head(features) -> logits``.
    """

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: Sequence[Tensor], image: Tensor) -> Tensor:
        return self.head(features)


# --------------------------------------------------------------------------------------------- weighting
class LossWeighting(nn.Module):
    """Combines per-task losses into the optimised loss.

    ``forward(losses)`` takes ``{task: scalar loss}`` for the tasks that have labels in the batch and returns
    ``(total, weights)``, where ``weights[task]`` is the factor the task's loss was multiplied by (for logging).
    """

    def forward(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class FixedWeighting(LossWeighting):
    """``sum_t w_t L_t`` with constant weights.

    Args:
        weights: weight of each task (tasks not listed weigh 1).
    """

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.weights = {str(k): float(v) for k, v in (weights or {}).items()}

    def forward(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if not losses:
            raise ValueError("FixedWeighting got no task losses; every batch needs at least one labelled task.")
        weights = {
            task: torch.as_tensor(self.weights.get(task, 1.0), device=loss.device) for task, loss in losses.items()
        }
        total = sum(weights[task] * loss for task, loss in losses.items())
        return total, weights  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


class UncertaintyWeighting(LossWeighting):
    """Learned homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    ``total = sum_t exp(-s_t) * L_t + s_t`` with one learned ``s_t = log sigma_t^2`` per task. For a fixed loss the
    optimum is ``s_t = log L_t``, i.e. weight ``1 / L_t``: every task is brought to the same scale whatever its unit
    (AWB degrees, cross-entropy nats), and the total at the optimum is ``sum_t (1 + log L_t)``, a scale-free
    criterion. We use one form for every task (the paper has an extra 1/2 for regression losses, which only
    shifts ``s_t`` by ``log 2``).

    Kendall et al. start at ``s_t = 0``; with Adam, ``s_t`` then moves about one learning rate per step and
    needs hundreds of steps to reach ``log L_t`` (AWB losses are around 10 degrees, so ``s`` about 2.3). With
    ``warm_start`` each ``s_t`` starts instead at the log of the task's first training loss, i.e. already at the
    optimum for the untrained model, and is learned from there.

    Args:
        tasks: the task names.
        warm_start: initialise ``s_t`` from the first training loss of each task instead of 0.
    """

    def __init__(self, tasks: Sequence[str], warm_start: bool = True) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.log_vars = nn.ParameterDict({task: nn.Parameter(torch.zeros(())) for task in self.tasks})
        self.warm_start = warm_start
        # Saved with the model, so a resumed or fine-tuned model is not re-initialised.
        self.register_buffer("initialised", torch.zeros(len(self.tasks), dtype=torch.bool))

    def weights(self) -> dict[str, Tensor]:
        """The current weights ``exp(-s_t)``."""
        return {task: torch.exp(-self.log_vars[task].detach()) for task in self.tasks}

    def forward(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if not losses:
            raise ValueError("UncertaintyWeighting got no task losses; every batch needs at least one labelled task.")
        total = None
        weights = {}
        for task, loss in losses.items():
            if task not in self.log_vars:
                raise KeyError(f"UncertaintyWeighting has no weight for task {task!r}; it knows {self.tasks}.")
            log_var = self.log_vars[task]
            index = self.tasks.index(task)
            if self.warm_start and self.training and not bool(self.initialised[index]):
                with torch.no_grad():
                    log_var.fill_(math.log(max(float(loss.detach()), 1e-6)))
                    self.initialised[index] = True
            term = torch.exp(-log_var) * loss + log_var
            total = term if total is None else total + term
            weights[task] = torch.exp(-log_var.detach())
        return total, weights  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, warm_start={self.warm_start}"

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
  Using Uncertainty to Weigh Losses", CVPR 2018), ``sum_t exp(-s_t) L_t + s_t`` with learned ``s_t = log sigma_t^2``;
- :class:`GradNormWeighting`: gradient-norm balancing after GradNorm (Chen et al., ICML 2018): weights that give
  every task the same gradient norm on the shared features, scaled up for tasks that train slowly.

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
    "GradNormWeighting",
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

    #: Whether ``forward`` needs the shared features the losses were computed from (``features=``).
    needs_features: bool = False

    def forward(
        self, losses: Mapping[str, Tensor], features: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class FixedWeighting(LossWeighting):
    """``sum_t w_t L_t`` with constant weights.

    Args:
        weights: weight of each task (tasks not listed weigh 1).
    """

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.weights = {str(k): float(v) for k, v in (weights or {}).items()}

    def forward(
        self, losses: Mapping[str, Tensor], features: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
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

    def forward(
        self, losses: Mapping[str, Tensor], features: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
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


class GradNormWeighting(LossWeighting):
    """Gradient-norm balancing after GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

    GradNorm wants every task's *weighted* gradient norm on the shared layers to equal the mean norm times
    ``r_t ** alpha``, where ``r_t = (L_t / L_t(0)) / mean_u (L_u / L_u(0))`` is the task's relative inverse training
    rate: a task whose loss has fallen less than the others' gets a larger share of the shared gradient. Two
    simplifications, both cheaper than the paper's second optimiser:

    - the norms ``g_t = ||dL_t / dF||`` are taken on one shared feature map ``F`` instead of the last shared layer's
      weights: the deepest backbone level that every head depends on (the AWB head's level when it is enabled,
      else the deepest). That is one backward pass per task down to ``F`` (activation gradients only), about one
      extra backward pass of the model per step in all;
    - the weights are set to the values that meet the target, ``w_t = mean(g) * r_t ** alpha / g_t``, smoothed by an
      exponential moving average (``momentum``) and normalised to sum to the number of tasks.

    The weights are detached: the loss is ``sum_t w_t L_t``. Under DDP the norms and losses are averaged over
    ranks, so every rank uses the same weights. Without features (validation) the current weights are used.

    Args:
        tasks: the task names.
        alpha: strength of the training-rate term (0: equal gradient norms; the paper uses 0.5-3).
        momentum: weight of the previous weights in the moving average.
    """

    needs_features = True

    def __init__(self, tasks: Sequence[str], alpha: float = 1.5, momentum: float = 0.9) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.alpha = float(alpha)
        self.momentum = float(momentum)
        self.register_buffer("current", torch.ones(len(self.tasks)))
        self.register_buffer("initial_losses", torch.zeros(len(self.tasks)))

    def weights(self) -> dict[str, Tensor]:
        """The current weights."""
        return {task: self.current[i].clone() for i, task in enumerate(self.tasks)}

    @torch.no_grad()
    def _update(self, norms: dict[str, Tensor], losses: Mapping[str, Tensor]) -> None:
        index = torch.tensor([self.tasks.index(t) for t in norms], device=self.current.device)
        g = torch.stack([norms[t] for t in norms]).float()
        loss = torch.stack([losses[t].detach() for t in norms]).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            both = torch.cat([g, loss])
            torch.distributed.all_reduce(both)
            both /= torch.distributed.get_world_size()
            g, loss = both[: len(norms)], both[len(norms) :]
        fresh = self.initial_losses[index] == 0
        self.initial_losses[index] = torch.where(fresh, loss.clamp_min(1e-8), self.initial_losses[index])
        ratio = loss / self.initial_losses[index]
        rate = ratio / ratio.mean()
        target = g.mean() * rate.pow(self.alpha) / g.clamp_min(1e-12)
        # Only the tasks in this batch move; their total stays what it was, so absent tasks keep their share.
        target = target * self.current[index].sum() / target.sum()
        self.current[index] = self.momentum * self.current[index] + (1.0 - self.momentum) * target
        self.current.mul_(len(self.tasks) / self.current.sum())

    def forward(
        self, losses: Mapping[str, Tensor], features: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if not losses:
            raise ValueError("GradNormWeighting got no task losses; every batch needs at least one labelled task.")
        unknown = [t for t in losses if t not in self.tasks]
        if unknown:
            raise KeyError(f"GradNormWeighting has no weight for tasks {unknown}; it knows {self.tasks}.")
        if self.training and features is not None and torch.is_grad_enabled():
            shared = [f for f in features if f.requires_grad]
            norms = {}
            for task, loss in losses.items():
                grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
                squares = [g.float().pow(2).sum() for g in grads if g is not None]
                norm = torch.stack(squares).sum().sqrt() if squares else None
                # A head whose gradient does not reach the features yet (e.g. a zero-initialised last layer) has no
                # norm to balance: it keeps its weight this step.
                if norm is not None and float(norm) > 1e-12:
                    norms[task] = norm
            if len(norms) > 1:
                self._update(norms, losses)
        weights = {task: self.current[self.tasks.index(task)].detach() for task in losses}
        total = sum(weights[task] * loss for task, loss in losses.items())
        return total, weights  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, alpha={self.alpha}, momentum={self.momentum}"

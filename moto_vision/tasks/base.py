"""``BaseTask``: the LightningModule every moto-vision task builds on (in the manner of TorchGeo).

A task subclass declares its typed constructor arguments (so LightningCLI validates YAML and lists
them in ``--help``) and implements four hooks:

- ``configure_models``: build ``self.backbone`` (from :func:`~moto_vision.backbones.create_backbone`)
  and the head(s);
- ``configure_losses``: build the loss module(s);
- ``configure_metrics``: return one ``torchmetrics.MetricCollection``; the base clones it per split;
- ``compute_loss`` / ``update_metrics``: per batch.

The base saves every constructor argument as a hyperparameter (primitives only, so
``Task.load_from_checkpoint(path)`` needs nothing but the path and loads with ``weights_only``),
runs the train / val / test loops, logs losses and metrics per split, and sets up AdamW with linear
warm-up and cosine decay unless the YAML provides ``optimizer:`` / ``lr_scheduler:``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

import torch
from lightning.pytorch import Callback, LightningModule
from torch import nn
from torchmetrics import MetricCollection

from moto_vision.metrics.collection import flatten_metrics
from moto_vision.trust import is_primitive

__all__ = ["BaseTask"]

Batch = dict[str, Any]


class BaseTask(LightningModule, ABC):
    """Shared training logic of moto-vision tasks.

    Class attributes that subclasses set:

    Attributes:
        monitor: metric that selects the best checkpoint (e.g. ``"val_loss"``).
        monitor_mode: ``"min"`` or ``"max"`` for ``monitor``.
        color_domain: the images the model expects: ``"srgb"`` (gamma-encoded) or ``"linear"``
            (linear camera RGB).
        task_name: short name used in exported metadata and logs.
    """

    monitor: ClassVar[str] = "val_loss"
    monitor_mode: ClassVar[Literal["min", "max"]] = "min"
    color_domain: ClassVar[Literal["srgb", "linear"]] = "srgb"
    task_name: ClassVar[str] = "task"
    #: Batch key of the task's ground truth (``"illuminant"``, ``"mask"``, ``"label"``).
    target_key: ClassVar[str] = "target"

    #: Hyperparameters that are not constructor arguments of the model (never saved).
    _hparams_ignore: ClassVar[tuple[str, ...]] = ()

    backbone: nn.Module

    def __init__(self) -> None:
        """Save the subclass's constructor arguments and build models, losses and metrics.

        Subclasses call ``super().__init__()`` at the end of their own ``__init__``; Lightning collects
        the arguments of every ``__init__`` on the stack.
        """
        super().__init__()
        self.save_hyperparameters(ignore=list(self._hparams_ignore))
        _check_primitive_hparams(self.hparams, type(self).__name__)
        self.configure_models()
        self.configure_losses()
        metrics = self.configure_metrics()
        self.train_metrics = metrics.clone(prefix="train_") if metrics is not None else None
        self.val_metrics = metrics.clone(prefix="val_") if metrics is not None else None
        self.test_metrics = metrics.clone(prefix="test_") if metrics is not None else None
        if self.hparams.get("freeze_backbone", False):
            self.freeze_backbone()

    # ----------------------------------------------------------------- hooks for subclasses
    @abstractmethod
    def configure_models(self) -> None:
        """Build ``self.backbone`` and the heads."""

    def configure_losses(self) -> None:
        """Build loss modules (optional)."""

    def configure_metrics(self) -> MetricCollection | None:
        """Return the metrics of one split; the base clones them for train, val and test."""
        return None

    @abstractmethod
    def compute_loss(self, outputs: Any, batch: Batch) -> dict[str, torch.Tensor]:
        """Return a dict of loss terms; ``"loss"`` is the one optimised."""

    def update_metrics(self, metrics: MetricCollection, outputs: Any, batch: Batch) -> None:
        """Update ``metrics`` with one batch and its ground truth ``batch[self.target_key]``."""
        metrics.update(outputs, batch[self.target_key])

    def render_batch(self, batch: Batch, outputs: Any, max_images: int = 8) -> torch.Tensor | None:
        """Render predictions of a batch as one ``(3, H, W)`` image in ``[0, 1]`` for visual logging."""
        return None

    def export_module(self) -> nn.Module:
        """The inference graph to export: takes the task's ``[0, 1]`` image, returns the task's output."""
        return self

    def export_metadata(self) -> dict[str, Any]:
        """Facts an exported artifact carries: task, colour domain, input size, class names, thresholds."""
        meta: dict[str, Any] = {
            "task": self.task_name,
            "task_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "color_domain": self.color_domain,
            "backbone": self.hparams.get("backbone"),
        }
        for key in ("class_names", "thresholds", "image_size", "temperature"):
            if key in self.hparams:
                meta[key] = self.hparams[key]
        return meta

    # ----------------------------------------------------------------- backbone freezing
    def freeze_backbone(self) -> None:
        """Freeze backbone weights and keep its BatchNorm statistics fixed (eval mode) while training."""
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)
        self.backbone.eval()
        self._backbone_frozen = True

    def train(self, mode: bool = True) -> BaseTask:
        super().train(mode)
        if getattr(self, "_backbone_frozen", False):
            self.backbone.eval()
        return self

    # ----------------------------------------------------------------- loops
    def metrics_for(self, split: str) -> MetricCollection | None:
        return {"train": self.train_metrics, "val": self.val_metrics, "test": self.test_metrics}.get(split)

    def shared_step(self, batch: Batch, split: str) -> tuple[torch.Tensor, Any]:
        """Forward, loss, logging and metric update for one batch of ``split``."""
        outputs = self(batch["image"])
        losses = self.compute_loss(outputs, batch)
        batch_size = batch["image"].shape[0]
        self.log_dict(
            {f"{split}_{name}": value.detach() for name, value in losses.items() if name != "loss"},
            batch_size=batch_size,
            on_step=split == "train",
            on_epoch=True,
            prog_bar=False,
            sync_dist=split != "train",
        )
        self.log(
            f"{split}_loss",
            losses["loss"].detach(),
            batch_size=batch_size,
            prog_bar=True,
            on_step=split == "train",
            on_epoch=True,
            sync_dist=split != "train",
        )
        metrics = self.metrics_for(split)
        if metrics is not None:
            with torch.no_grad():
                self.update_metrics(metrics, _detach(outputs), batch)
        return losses["loss"], outputs

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self.shared_step(batch, "train")
        return loss

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        loss, outputs = self.shared_step(batch, "val")
        return {"loss": loss, "outputs": outputs}

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        loss, outputs = self.shared_step(batch, "test")
        return {"loss": loss, "outputs": outputs}

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self(batch["image"])

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        values = self._log_metrics("test")
        if values:
            self.report_test_results(values)

    def report_test_results(self, values: Mapping[str, float]) -> None:
        """Called once after ``test`` with the computed metrics; tasks print their result tables here."""

    def _log_metrics(self, split: str) -> dict[str, float]:
        metrics = self.metrics_for(split)
        if metrics is None or not any(m.update_called for m in metrics.values(copy_state=False)):
            return {}
        computed = metrics.compute()
        scalars = {k: v for k, v in flatten_metrics(computed).items() if v.numel() == 1}
        self.log_dict(scalars, prog_bar=False)
        metrics.reset()
        return {k: float(v) for k, v in scalars.items()}

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no weight decay on norms and biases) with linear warm-up then cosine decay per step."""
        decay, no_decay = [], []
        for parameter in self.parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim <= 1 else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": float(self.hparams.get("weight_decay", 1e-4))},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=float(self.hparams.get("lr", 1e-3)),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        warmup = int(round(total * float(self.hparams.get("warmup_fraction", 0.05))))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------- callbacks and loading
    def configure_callbacks(self) -> list[Callback]:
        """Add the visual-logging callback unless the trainer already has one."""
        from moto_vision.callbacks import PredictionGridLogger

        if not self.hparams.get("log_predictions", True):
            return []
        if self._trainer is not None and any(isinstance(c, PredictionGridLogger) for c in self.trainer.callbacks):
            return []
        return [PredictionGridLogger()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task class, which datamodule (class path and arguments) trained it, and the library version."""
        from moto_vision import __version__

        record: dict[str, Any] = {
            "version": __version__,
            "task_class": f"{type(self).__module__}.{type(self).__qualname__}",
        }
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None:
            record["datamodule_class"] = f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"
            hparams = dict(getattr(datamodule, "hparams", {}) or {})
            record["datamodule_hparams"] = {
                k: v for k, v in hparams.items() if not k.startswith("_") and is_primitive(v)
            }
        checkpoint["moto_vision"] = record

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path | IO,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        **kwargs: Any,
    ) -> BaseTask:
        """Load a task from a checkpoint path alone (weights-only loading).

        Backbone weights come from the checkpoint, so the original ``pretrained`` source (a hub name or a
        file that may no longer exist) is not read again.
        """
        kwargs.setdefault("pretrained", False)
        return super().load_from_checkpoint(
            checkpoint_path,
            map_location=map_location,
            hparams_file=hparams_file,
            strict=strict,
            weights_only=weights_only,
            **kwargs,
        )


def _warmup_cosine(total_steps: int, warmup_steps: int, floor: float = 0.01):
    """Learning-rate factor: linear warm-up to 1, then cosine to ``floor`` at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _detach(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs.detach()
    if isinstance(outputs, Mapping):
        return {k: _detach(v) for k, v in outputs.items()}
    return outputs


def _check_primitive_hparams(hparams: Mapping[str, Any], owner: str) -> None:
    bad = [k for k, v in hparams.items() if not is_primitive(v)]
    if bad:
        raise TypeError(
            f"{owner}: hyperparameters {bad} are not primitives (str, number, bool, list, dict); checkpoints "
            "must load with weights_only=True. Pass names or numbers instead of objects."
        )

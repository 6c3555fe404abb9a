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
runs the train / val / test loops, logs losses and metrics per split, logs a picture of the first
validation batch's predictions, supplies its best / last ``ModelCheckpoint``, and sets up AdamW with linear
warm-up and cosine decay unless the YAML provides ``optimizer:`` / ``lr_scheduler:``.

The arguments every task shares (``lr``, ``weight_decay``, ``warmup_fraction``, ``freeze_backbone``,
``log_predictions``) are declared once, on :class:`BaseTask`; a task takes them as ``**kwargs`` and passes them on
(LightningCLI follows ``super().__init__(**kwargs)`` and lists them in the task's ``--help``). Its own defaults for
them are :attr:`BaseTask.optimizer_defaults`.

Tasks made of :mod:`moto_vision.heads` kits (:class:`KitTask` and the multi-task model) get metric updates,
end-of-validation calibration, data checks, pictures and export metadata from their kits (:meth:`task_heads`).
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection

from moto_vision import viz
from moto_vision.backbones import Backbone, create_backbone, upgrade_state_dict
from moto_vision.errors import OptionError
from moto_vision.heads import TaskKit
from moto_vision.metrics.collection import flatten_metrics
from moto_vision.models.common import Normalize
from moto_vision.trust import (
    UntrustedCheckpointError,
    check_state_dict,
    is_primitive,
    read_checkpoint_file,
    resolve_checkpoint,
)

__all__ = ["BaseTask", "KitExport", "KitTask", "TaskHead", "create_task_backbone"]

Batch = dict[str, Any]
#: The constructor arguments every task shares, declared on BaseTask.
_SHARED_ARGUMENTS = ("lr", "weight_decay", "warmup_fraction", "freeze_backbone", "log_predictions")


@dataclass(frozen=True)
class TaskHead:
    """A kit as one model uses it.

    Attributes:
        kit: the task kit.
        parts: the module that holds the parts ``kit.build`` returned (the task itself in single-task models).
        criterion: the loss module from ``kit.build_loss()``.
        prefix: prefix of the head's metric and loss names (``""`` in single-task models, ``"scene_"`` ...).
        where: how users reach the kit's options, for error messages (``"--model.init_args."``).
    """

    kit: TaskKit
    parts: nn.Module
    criterion: nn.Module
    prefix: str = ""
    where: str = "--model.init_args."


def create_task_backbone(name: str, pretrained: bool | str, kits: Sequence[TaskKit]) -> Backbone:
    """The backbone for heads of ``kits``: only up to the deepest level they read when every kit knows it (AWB)."""
    levels = [kit.max_level() for kit in kits]
    if levels and all(level is not None for level in levels):
        deepest = max(levels)  # type: ignore[type-var]
        return create_backbone(name, pretrained=pretrained, out_indices=list(range(deepest + 1)))
    return create_backbone(name, pretrained=pretrained)


class BaseTask(LightningModule, ABC):
    """Shared training logic of moto-vision tasks.

    Args:
        lr: peak learning rate of AdamW. ``None``: the task's default ({lr}).
        weight_decay: AdamW weight decay, not applied to norms and biases. ``None``: the task's default
            ({weight_decay}).
        warmup_fraction: share of the steps spent in linear warm-up before the cosine decay. ``None``: the task's
            default ({warmup_fraction}).
        freeze_backbone: keep the backbone's weights and BatchNorm statistics fixed (train the heads only).
        log_predictions: log a picture of the first validation batch's predictions every validation epoch (to
            TensorBoard or W&B when active, else as a PNG in the run directory).

    Class attributes that subclasses set:

    Attributes:
        monitor: metric that selects the best checkpoint (e.g. ``"val_loss"``).
        monitor_mode: ``"min"`` or ``"max"`` for ``monitor``.
        color_domain: the images the model expects: ``"srgb"`` (gamma-encoded) or ``"linear"``
            (linear camera RGB).
        task_name: short name used in exported metadata and logs.
        optimizer_defaults: the task's values of ``lr``, ``weight_decay`` and ``warmup_fraction`` when not given.
    """

    monitor: ClassVar[str] = "val_loss"
    monitor_mode: ClassVar[Literal["min", "max"]] = "min"
    color_domain: ClassVar[Literal["srgb", "linear"]] = "srgb"
    task_name: ClassVar[str] = "task"
    #: Batch key of the task's ground truth (``"illuminant"``, ``"mask"``, ``"label"``).
    target_key: ClassVar[str] = "target"
    optimizer_defaults: ClassVar[dict[str, float]] = {"lr": 1e-3, "weight_decay": 1e-4, "warmup_fraction": 0.05}

    #: Hyperparameters that are not constructor arguments of the model (never saved).
    _hparams_ignore: ClassVar[tuple[str, ...]] = ()
    #: The tasks that set their own ``optimizer_defaults``, named in the docstring above (what ``--help`` shows).
    _defaults_owners: ClassVar[list[type]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "optimizer_defaults" in cls.__dict__:
            BaseTask._defaults_owners.append(cls)
            BaseTask.__doc__ = _shared_arguments_doc(BaseTask._defaults_owners)

    backbone: nn.Module

    def __init__(
        self,
        *,
        lr: float | None = None,
        weight_decay: float | None = None,
        warmup_fraction: float | None = None,
        freeze_backbone: bool = False,
        log_predictions: bool = True,
    ) -> None:
        """Save the constructor arguments of the task (and these) and build models, losses and metrics.

        Subclasses call ``super().__init__(**kwargs)`` at the end of their own ``__init__``; Lightning collects
        the arguments of every ``__init__`` on the stack.
        """
        super().__init__()
        self.save_hyperparameters(ignore=list(self._hparams_ignore))
        # A task that declares its own arguments instead of passing **kwargs on keeps only those (its checkpoints
        # hold its constructor arguments, nothing else).
        parameters = inspect.signature(type(self).__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            for key in _SHARED_ARGUMENTS:
                if key not in parameters:
                    self.hparams.pop(key, None)
        for key, value in self.optimizer_defaults.items():
            if key in self.hparams and self.hparams[key] is None:
                self.hparams[key] = value  # checkpoints record the value used
        _check_primitive_hparams(self.hparams, type(self).__name__)
        self._calibration_outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._train_means = nn.ModuleDict()  # epoch means of the training losses (log_value)
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

    def task_heads(self) -> list[TaskHead]:
        """The kits the model is made of (none for tasks written without :mod:`moto_vision.heads`)."""
        return []

    def head_pair(self, head: TaskHead, outputs: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A head's predictions and ground truth in a batch (``None`` when the batch has none for it)."""
        target = batch.get(head.kit.target_key)
        return None if target is None else (outputs, target)

    def head_images(self, head: TaskHead, batch: Batch) -> torch.Tensor:
        """The images of a head's rows of ``batch``, in the head's colour domain (for its pictures)."""
        return batch["image"]

    def head_datamodule(self, head: TaskHead, datamodule: Any) -> Any:
        """The datamodule whose facts a head is checked against."""
        return datamodule

    def update_metrics(self, metrics: MetricCollection, outputs: Any, batch: Batch) -> None:
        """Update ``metrics`` with one batch: through the kits, else with ``batch[self.target_key]``."""
        heads = self.task_heads()
        if not heads:
            metrics.update(outputs, batch[self.target_key])
            return
        for head in heads:
            pair = self.head_pair(head, outputs, batch)
            if pair is not None:
                head.kit.update(head.parts, _head_items(metrics, head), *pair, prefix=head.prefix)

    def render_batch(self, batch: Batch, outputs: Any, max_images: int = 8) -> torch.Tensor | None:
        """Predictions of a batch as one ``(3, H, W)`` picture in ``[0, 1]``: every head's, stacked."""
        grids = []
        for head in self.task_heads():
            pair = self.head_pair(head, outputs, batch)
            if pair is None:
                continue
            prediction, target = pair
            images = self.head_images(head, batch)[:max_images].float()
            picture = head.kit.render(
                head.parts, images, prediction[:max_images].float(), target[:max_images], max_images=max_images
            )
            grids.append(picture)
        return viz.stack_grids(grids) if grids else None

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
        heads = self.task_heads()
        if len(heads) == 1 and not heads[0].prefix:
            meta.update(heads[0].kit.export_metadata(heads[0].parts))
        elif heads:
            meta["heads"] = {h.prefix.removesuffix("_"): h.kit.export_metadata(h.parts) for h in heads}
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
        for name, value in losses.items():
            if name != "loss":
                self.log_value(split, name, value, batch_size)
        self.log_value(split, "loss", losses["loss"], batch_size, prog_bar=True)
        metrics = self.metrics_for(split)
        if metrics is not None:
            with torch.no_grad():
                self.update_metrics(metrics, _detach(outputs), batch)
        return losses["loss"], outputs

    def log_value(self, split: str, name: str, value: torch.Tensor, batch_size: int, prog_bar: bool = False) -> None:
        """Log a loss term of a step as ``<split>_<name>`` (training: ``train_<name>_step`` and ``..._epoch``).

        Under DDP every logged value is global, so Lightning warns about none: validation and test losses are
        averaged over the processes (``sync_dist``); training step values are the process's own (averaging them
        would cost a collective per step); the training epoch means are torchmetrics means, synchronised in
        :meth:`on_train_epoch_end`. (Lightning's own epoch means of training values with ``sync_dist`` deadlock
        under DDP: its progress bar computes them on the first process only, Lightning issue #21264.)
        """
        key, value = f"{split}_{name}", value.detach()
        if split != "train":
            self.log(key, value, batch_size=batch_size, on_step=False, on_epoch=True, prog_bar=prog_bar, sync_dist=True)
            return
        # The names Lightning gives a value logged per step and per epoch, so loss terms never clash with metrics.
        self.log(f"{key}_step", value, batch_size=batch_size, on_step=True, on_epoch=False, prog_bar=prog_bar)
        if key not in self._train_means:
            self._train_means[key] = MeanMetric().to(value.device)
        self._train_means[key].update(value, weight=batch_size)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self.shared_step(batch, "train")
        return loss

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        loss, outputs = self.shared_step(batch, "val")
        for head in self.task_heads():
            pair = self.head_pair(head, outputs, batch) if head.kit.calibrates else None
            if pair is not None:
                stash = self._calibration_outputs.setdefault(head.prefix, [])
                stash.append((pair[0].detach(), pair[1].detach()))
        return {"loss": loss, "outputs": outputs}

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        loss, outputs = self.shared_step(batch, "test")
        return {"loss": loss, "outputs": outputs}

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self(batch["image"])

    def on_train_epoch_end(self) -> None:
        means = {f"{key}_epoch": mean.compute() for key, mean in self._train_means.items() if mean.update_called}
        # Equal on every process after torchmetrics' synchronisation (see log_value).
        self.log_dict(means, sync_dist=True)
        for mean in self._train_means.values():
            mean.reset()
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        stash, self._calibration_outputs = self._calibration_outputs, {}
        if stash and not (self._trainer is not None and self.trainer.sanity_checking):
            for head in self.task_heads():
                if head.prefix in stash:
                    self._calibrate(head, stash[head.prefix])
        self._log_metrics("val")

    def _calibrate(self, head: TaskHead, stash: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Fit a head's calibration on the epoch's validation outputs (of every process) and re-score the epoch."""
        outputs = torch.cat([o for o, _ in stash])
        targets = torch.cat([t for _, t in stash])
        all_outputs, all_targets = outputs, targets
        if self._trainer is not None and self.trainer.world_size > 1:
            all_outputs = self.all_gather(outputs).flatten(0, 1)
            all_targets = self.all_gather(targets).flatten(0, 1)
        values = head.kit.calibrate(head.parts, all_outputs, all_targets)
        self.log_dict({f"val_{head.prefix}{name}": value for name, value in values.items()}, sync_dist=True)
        # Score the epoch with the calibration just fitted, i.e. exactly as this checkpoint will behave.
        items = _head_items(self.val_metrics, head)
        for _, metric in items:
            metric.reset()
        head.kit.update(head.parts, items, outputs, targets, prefix=head.prefix)

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Log a picture of the first validation batch's predictions (``log_predictions``)."""
        if batch_idx != 0 or dataloader_idx != 0 or not self.hparams.get("log_predictions", True):
            return
        if self._trainer is None or self.trainer.sanity_checking:
            return
        predictions = outputs.get("outputs") if isinstance(outputs, Mapping) else None
        if predictions is None:
            return
        with torch.no_grad():
            grid = self.render_batch(batch, predictions)
        if grid is not None:
            # trainer.log_dir is a collective call under DDP: every rank must ask for it, not only rank zero.
            self._log_picture(grid, Path(self.trainer.log_dir or self.trainer.default_root_dir))

    @rank_zero_only
    def _log_picture(self, grid: torch.Tensor, run_dir: Path) -> None:
        if not viz.log_image(self.trainer.loggers, "predictions", grid, self.global_step):
            viz.save_png(grid, run_dir / "predictions" / f"epoch{self.current_epoch:03d}.png")

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
        # torchmetrics synchronised these over the processes: every process holds the same values, so averaging
        # them (sync_dist) changes nothing and tells Lightning they are global (no per-process warning).
        self.log_dict(scalars, prog_bar=False, sync_dist=True)
        metrics.reset()
        return {k: float(v) for k, v in scalars.items()}

    # ----------------------------------------------------------------- setup checks
    def setup(self, stage: str) -> None:
        """Check that the datamodule agrees with the model's heads before any step runs (and adapt the losses).

        ``moto-vision fit`` links the data's image size, classes and labels to the model; this check is for models
        and datamodules built by hand.
        """
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        if stage != "predict":
            for head in self.task_heads():
                data = self.head_datamodule(head, datamodule)
                if data is not None:
                    head.kit.check_data(data, head.where)
                    if stage == "fit":
                        head.kit.setup_loss(head.criterion, data)
        size = getattr(datamodule, "image_size", None)
        if size is not None and "image_size" in self.hparams and size != self.hparams.image_size:
            rank_zero_warn(
                f"Data image_size {size} differs from the model's image_size {self.hparams.image_size} (the size "
                "exports use); recipes keep them equal."
            )

    # ----------------------------------------------------------------- optimisation
    def learning_rate_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """The parameters, grouped by learning rate: ``[(parameters, lr), ...]`` (frozen ones are left out later).

        One group at ``lr`` here; a model that trains parts at their own rates (``MultiTaskPerception``'s
        ``head_lr``) overrides it.
        """
        return [(list(self.parameters()), self._optimizer_value("lr"))]

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no weight decay on norms and biases) with linear warm-up then cosine decay per step."""
        groups = []
        for parameters, lr in self.learning_rate_groups():
            decay = [p for p in parameters if p.requires_grad and p.ndim > 1]
            no_decay = [p for p in parameters if p.requires_grad and p.ndim <= 1]
            groups += [
                {"params": decay, "weight_decay": self._optimizer_value("weight_decay"), "lr": lr},
                {"params": no_decay, "weight_decay": 0.0, "lr": lr},
            ]
        optimizer = torch.optim.AdamW(groups, lr=self._optimizer_value("lr"))
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        warmup = int(round(total * self._optimizer_value("warmup_fraction")))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _optimizer_value(self, key: str) -> float:
        value = self.hparams.get(key)
        return float(self.optimizer_defaults[key] if value is None else value)

    # ----------------------------------------------------------------- callbacks and loading
    def configure_callbacks(self) -> list[Callback]:
        """The task's checkpoints: ``best.ckpt`` by :attr:`monitor` and ``last.ckpt``, so recipes need not list them.

        ``last.ckpt`` is the state after the latest validation, written every time (its own ``ModelCheckpoint``
        without a monitor): Lightning's ``save_last=True`` on the best checkpoint writes it only when the best
        improves, so after a plateau "last" would be the best epoch's state and a resumed run would repeat epochs.
        They replace Lightning's default checkpoint (last epoch only). A ``ModelCheckpoint`` the trainer was given
        with any argument set is kept instead, ``ModelCheckpoint`` subclasses (e.g. step checkpoints for resuming)
        are kept beside it, and a trainer without checkpointing gets none.
        """
        if self._trainer is None or not self.trainer.checkpoint_callbacks:
            return []
        plain = [c for c in self.trainer.callbacks if type(c) is ModelCheckpoint]
        if any(not _is_default_checkpoint(c) for c in plain):
            return []
        # Best first: Lightning's ``ckpt_path="best"`` reads the first checkpoint callback, and the last checkpoint,
        # written after it, holds its updated record.
        return [
            ModelCheckpoint(monitor=self.monitor, mode=self.monitor_mode, filename="best"),
            ModelCheckpoint(filename="last", save_top_k=1, enable_version_counter=False),
        ]

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

    def load_weights(self, checkpoint: str | Path) -> Path:
        """Copy the model weights of ``checkpoint`` into this task, to fine-tune them (``fit --weights_from``).

        Only the weights: the epoch, the optimizer and the schedule start anew (``--ckpt_path`` resumes those). The
        checkpoint is read as data (weights only, :mod:`moto_vision.trust`); its weights must be exactly this
        model's tensors, so the model must be built with the options the checkpoint was trained with (the error
        lists the ones that differ). A recipe with ``EMAWeightAveraging`` saved the averaged weights, which are
        the ones loaded.

        Args:
            checkpoint: a ``.ckpt`` file, or a run directory (its newest ``best*.ckpt``, else ``last*.ckpt``).

        Returns:
            The checkpoint file the weights came from.

        Raises:
            FileNotFoundError: no such checkpoint.
            UntrustedCheckpointError: the file is not a weights-only checkpoint.
            OptionError: the weights do not fit this model (names the options that differ).
        """
        path = resolve_checkpoint(checkpoint)
        raw = read_checkpoint_file(path)
        if "state_dict" not in raw:
            raise OptionError(f"{path} is not a Lightning checkpoint (no 'state_dict'); pass a .ckpt written by fit.")
        try:
            check_state_dict(raw["state_dict"], None, source=str(path), owner=type(self).__name__)
            state_dict = checked_state_dict(self, raw["state_dict"], source=str(path), owner=type(self).__name__)
        except UntrustedCheckpointError as error:
            raise OptionError(f"{error}{_differing_options(raw.get('hyper_parameters'), self.hparams)}") from None
        self.load_state_dict(state_dict, strict=True)
        return path


def checked_state_dict(module: nn.Module, state_dict: Mapping[str, Any], *, source: str, owner: str) -> dict[str, Any]:
    """A checkpoint's weights (already checked to be tensors), renamed and checked to be exactly ``module``'s tensors.

    The result is ready for ``load_state_dict(strict=True)`` (:func:`moto_vision.trust.check_state_dict` raises
    otherwise). Backbone weights of earlier releases have other names; ``load_state_dict`` renames them, so they
    are compared renamed (:func:`moto_vision.backbones.upgrade_state_dict`).
    """
    renamed = upgrade_state_dict(module, state_dict)
    check_state_dict(renamed, module.state_dict(), source=source, owner=owner)
    return renamed


def _differing_options(recorded: Any, current: Mapping[str, Any]) -> str:
    """`` It was trained with ...`` for the constructor arguments a checkpoint records other values of."""
    if not isinstance(recorded, Mapping):
        return ""
    differ = [
        f"{name} {recorded[name]!r} (this model: {current[name]!r})"
        for name in current
        if name in recorded and recorded[name] != current[name] and name not in ("pretrained", *_SHARED_ARGUMENTS)
    ]
    if not differ:
        return ""
    shown = ", ".join(differ[:6]) + (f" and {len(differ) - 6} more" if len(differ) > 6 else "")
    return f" It was trained with {shown}: give the model those options (e.g. --model.init_args.NAME VALUE)."


#: BaseTask's docstring with ``{lr}``, ``{weight_decay}``, ``{warmup_fraction}`` where each task's default goes.
_BASE_DOC_TEMPLATE: str = BaseTask.__doc__ or ""


def _shared_arguments_doc(owners: Sequence[type]) -> str:
    """BaseTask's docstring naming every task's default of the shared optimiser arguments.

    The shared arguments are declared once, on BaseTask, with ``None`` meaning "the task's default", so the
    ``--help`` of every task (which takes its argument help from here) lists the values each task uses.
    """
    values = {}
    for key in ("lr", "weight_decay", "warmup_fraction"):
        named = ", ".join(
            f"{owner.__name__} {owner.optimizer_defaults[key]:g}" for owner in sorted(owners, key=lambda c: c.__name__)
        )  # type: ignore[attr-defined]
        values[key] = f"{named}; see ``optimizer_defaults``" if named else "see ``optimizer_defaults``"
    return _BASE_DOC_TEMPLATE.format(**values)


BaseTask.__doc__ = _shared_arguments_doc([])


class KitExport(nn.Module):
    """A single-task model's deployed graph: ``[0, 1]`` image -> the kit's exported output (e.g. calibrated scores).

    Normalisation, backbone and head are inside, so the phone feeds plain images.
    """

    def __init__(self, normalize: nn.Module, backbone: nn.Module, kit: TaskKit, parts: nn.ModuleDict) -> None:
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone
        self.parts = parts
        self.kit = kit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.kit.forward(self.parts, self.backbone(self.normalize(x)), x)
        return self.kit.export_output(self.parts, output)


class KitTask(BaseTask):
    """A single-task model: one kit's head on a timm backbone (the base of the AWB, portrait and scene tasks).

    A subclass sets :attr:`kit_type` and takes the kit's options among its constructor arguments, under their names,
    next to ``backbone``, ``pretrained`` and ``image_size``. The kit's parts become attributes of the task
    (``self.head``, ``self.decoder``, ...), so checkpoints keep the key names of earlier releases.
    """

    kit_type: ClassVar[type[TaskKit]]
    kit: TaskKit

    @property
    def monitor(self) -> str:  # type: ignore[override]
        return f"val_{self.kit.headline}"

    @property
    def monitor_mode(self) -> Literal["min", "max"]:  # type: ignore[override]
        return self.kit.headline_mode

    @property
    def target_key(self) -> str:  # type: ignore[override]
        return self.kit.target_key

    @property
    def color_domain(self) -> Literal["srgb", "linear"]:  # type: ignore[override]
        return self.kit.domain

    def configure_normalization(self) -> nn.Module:
        """The input normalisation inside the model (mean / std by default)."""
        return Normalize()

    def configure_models(self) -> None:
        self.kit = self.kit_type.from_hparams(self.hparams)
        # Checkpoints store what the kit resolved (e.g. scene class names from a taxonomy name or a file).
        self.hparams.update({k: v for k, v in self.kit.hparams().items() if k in self.hparams})
        self.normalize = self.configure_normalization()
        self.backbone = create_task_backbone(self.hparams.backbone, self.hparams.pretrained, [self.kit])
        parts = self.kit.build(self.backbone.channels, self.backbone.reductions)
        self._part_names = list(parts)
        for name, module in parts.items():
            self.add_module(name, module)

    def configure_losses(self) -> None:
        self.criterion = self.kit.build_loss()

    def configure_metrics(self) -> MetricCollection:
        return self.kit.metrics()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kit.forward(self, self.backbone(self.normalize(x)), x)

    def compute_loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return self.kit.loss(self.criterion, outputs, batch[self.kit.target_key])

    def task_heads(self) -> list[TaskHead]:
        return [TaskHead(self.kit, self, self.criterion)]

    def export_module(self) -> nn.Module:
        """The deployed graph: ``[0, 1]`` image -> the kit's exported output."""
        parts = nn.ModuleDict({name: getattr(self, name) for name in self._part_names})
        return KitExport(self.normalize, self.backbone, self.kit, parts)

    def outputs_from_export(self, outputs: torch.Tensor) -> torch.Tensor:
        """Outputs of :meth:`export_module` mapped back to :meth:`forward`'s, so exported models are scored alike."""
        return self.kit.output_from_export(self, outputs)

    def report_test_results(self, values: Mapping[str, float]) -> None:
        self.kit.report(self, values, prefix="test_", title=None)


def _head_items(metrics: MetricCollection, head: TaskHead) -> list[tuple[str, Metric]]:
    return [(n, m) for n, m in metrics.items(keep_base=True, copy_state=False) if n.startswith(head.prefix)]


def _is_default_checkpoint(callback: ModelCheckpoint) -> bool:
    """Whether a ModelCheckpoint has Lightning's default settings (what ``enable_checkpointing`` adds)."""
    reference = ModelCheckpoint()
    return callback.state_key == reference.state_key and all(
        getattr(callback, name) == getattr(reference, name)
        for name in ("dirpath", "filename", "save_last", "save_top_k", "save_weights_only")
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

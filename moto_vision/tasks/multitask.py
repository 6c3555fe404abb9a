"""``MultiTaskPerception``: one shared backbone, heads for AWB, portrait segmentation and scene detection.

One forward pass of one backbone feeds every enabled head, so a phone gets the illuminant, the person mask and
the scene scores of a frame for about the price of one network. The heads, losses and metrics are those of the
single-task models (:class:`~moto_vision.tasks.AWBRegressor`, :class:`~moto_vision.tasks.PortraitSegmenter`,
:class:`~moto_vision.tasks.SceneClassifier`), not copies:

- AWB: :class:`~moto_vision.models.ConfidencePoolingHead` on an early feature level (stride 4 by default, as the
  single-task model), :class:`~moto_vision.models.AngularLoss`, :class:`~moto_vision.metrics.AngularError`;
- portrait: a decoder from :func:`~moto_vision.models.create_segmentation_decoder` on every level,
  :class:`~moto_vision.models.SegmentationLoss`, the portrait metrics;
- scene: :class:`~moto_vision.models.ClassificationHead` on the deepest level,
  :class:`~moto_vision.models.ClassificationLoss`, the scene metrics, and the temperature / thresholds fitted on
  the validation set after every validation epoch (:class:`~moto_vision.models.ScoreCalibrator`).

Input domain: linear camera RGB before white balance, ``(B, 3, H, W)`` in ``[0, 1]`` (what the camera's
perception stage sees, and what AWB needs); :class:`~moto_vision.data.MultiTaskDataModule` unprocesses the sRGB
portrait and scene data into it. Inside the model every image is divided by its mean brightness and
log-encoded (:class:`~moto_vision.models.awb.ExposureNormalize`), which removes exposure and compresses the
linear range much as a tone curve would.

Training batches hold partial labels: a row contributes only the losses of the tasks it has ground truth for
(``has_<task>`` masks), and each head runs only on its labelled rows. The per-task losses are combined with fixed
weights or learned uncertainty weights (:mod:`moto_vision.models.multitask`). Metrics are reported per head with
the task as prefix: ``val_awb_recovery_mean``, ``val_portrait_iou``, ``test_scene_top1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MetricCollection

from moto_vision.backbones import create_backbone, drop_unused_stages
from moto_vision.data.multitask import TARGET_KEYS, TASKS, labelled_rows
from moto_vision.data.scene.taxonomy import resolve_class_names
from moto_vision.metrics.angular import AngularError, format_table
from moto_vision.models.awb import AngularLoss, ConfidencePoolingHead, ExposureNormalize, GrayWorld, PoolingMLPHead
from moto_vision.models.calibration import ScoreCalibrator
from moto_vision.models.classification import ClassificationHead, ClassificationLoss
from moto_vision.models.multitask import (
    ClassificationBranch,
    FixedWeighting,
    GradNormWeighting,
    IlluminantBranch,
    SegmentationBranch,
    UncertaintyWeighting,
)
from moto_vision.models.segmentation import SegmentationLoss, create_segmentation_decoder
from moto_vision.tasks.base import BaseTask
from moto_vision.tasks.scene import calibrate_scores, scene_metrics, update_scene_metrics
from moto_vision.tasks.segmentation import (
    check_mask_classes,
    mask_class_names,
    print_segmentation_report,
    render_segmentation_grid,
    segmentation_labels,
    segmentation_metrics,
)

__all__ = ["DEFAULT_FIXED_WEIGHTS", "MultiTaskExport", "MultiTaskPerception"]

Batch = dict[str, Any]
HeadName = Literal["awb", "portrait", "scene"]
IGNORE_INDEX = 255

#: Fixed weights used when ``weighting="fixed"`` and ``loss_weights`` leaves a head out. The AWB loss is an angle in
#: degrees (about 2-20 while training), the others are cross-entropies in nats (about 0.1-2), so AWB is scaled down.
DEFAULT_FIXED_WEIGHTS: dict[str, float] = {"awb": 0.1, "portrait": 1.0, "scene": 1.0}


class MultiTaskExport(nn.Module):
    """The deployed graph: linear camera RGB ``(B, 3, H, W)`` in ``[0, 1]`` -> ``{head: output}``.

    Outputs: ``"awb"`` unit-norm illuminant ``(B, 3)``; ``"portrait"`` mask logits ``(B, C, H, W)``; ``"scene"``
    calibrated scene scores ``(B, K)`` (softmax or sigmoid of the temperature-scaled logits). Normalisation, backbone
    and heads are all inside, so the phone feeds the raw frame and reads all three results of one pass.
    """

    def __init__(
        self, normalize: nn.Module, backbone: nn.Module, branches: nn.ModuleDict, calibrator: nn.Module | None
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone
        self.branches = branches
        self.calibrator = calibrator

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.backbone(self.normalize(x))
        outputs = {}
        for name, branch in self.branches.items():
            output = branch(features, x)
            if name == "scene" and self.calibrator is not None:
                output = self.calibrator(output)
            outputs[name] = output
        return outputs


class MultiTaskPerception(BaseTask):
    """AWB, portrait segmentation and scene detection from one backbone pass over linear camera RGB.

    ``forward(x)`` returns ``{head: output}`` for the enabled heads: ``"awb"`` the unit-norm illuminant ``(B, 3)``,
    ``"portrait"`` mask logits ``(B, C, H, W)`` at the input size, ``"scene"`` scene logits ``(B, K)``.

    Args:
        heads: the enabled heads, any non-empty subset of ``awb``, ``portrait``, ``scene`` (default: all).
        backbone: timm model name of the shared backbone.
        pretrained: backbone weights: ``False``, a local file (a single-task moto-vision ``.ckpt`` works), or
            ``True`` (timm hub).
        image_size: input size the model is trained and exported at (equal to the data's).
        log_input: the backbone sees log intensities of the exposure-normalised image (else linear ones).
        weighting: ``"uncertainty"`` (learned, Kendall et al. 2018), ``"fixed"`` (``loss_weights``) or
            ``"gradnorm"`` (gradient-norm balancing on the shared features, after Chen et al. 2018).
        loss_weights: fixed weight per head (``weighting="fixed"``); heads left out use
            :data:`DEFAULT_FIXED_WEIGHTS`.
        gradnorm_alpha: ``weighting="gradnorm"``: strength of the training-rate term (0: equal gradient norms).
        uncertainty_warm_start: start each learned log-variance at the log of the head's first training loss
            instead of 0 (see :class:`~moto_vision.models.multitask.UncertaintyWeighting`).
        awb_feature_level: backbone feature level the AWB head reads (1 = stride 4, as the single-task model).
        awb_head: ``"confidence"`` (FC4 confidence-weighted pooling) or ``"mlp"``.
        awb_head_channels: hidden width of the AWB head.
        awb_local_colour: confidence head: each location estimates a gain on the image colour under it.
        awb_global_context: confidence head: every location also sees the image-wide mean of the features.
        awb_vote_grid: confidence head: pool the AWB features to at most this many votes per side (16: the grid
            of a 64 px input at stride 4), so the head costs the same and votes on the same regions at any input
            size; at 256 px it would otherwise be the most expensive part of the graph. ``None``: no pooling.
        portrait_decoder: segmentation decoder (``mobile``, ``lraspp``, ``unet``, ``fpn``, ``deeplabv3plus``).
        portrait_decoder_channels: decoder width (``None``: the decoder's default).
        portrait_num_classes: 1 for binary person masks, ``N`` for ``N``-class face parsing.
        portrait_class_names: names of the mask classes, background first (default: background, person).
        portrait_dice_weight: weight of the Dice term of the segmentation loss.
        portrait_boundary_weight: weight of the boundary-band cross-entropy term.
        portrait_boundary_tolerance: tolerance of the DAVIS boundary F-score metric: a fraction of the image
            diagonal (``< 1``, DAVIS: 0.008) or whole pixels (``>= 1``).
        scene_class_names: scene classes: a list, ``"synthetic"``, ``"camera"`` or a text file (as
            :class:`~moto_vision.tasks.SceneClassifier`); stored resolved.
        scene_multi_label: independent sigmoid scores per scene instead of one softmax.
        scene_feature_indices: feature levels the scene head pools (default: the deepest).
        scene_hidden: width of a hidden layer in the scene head (0: linear).
        scene_dropout: dropout before the scene head's last layer.
        scene_label_smoothing: multi-class label smoothing.
        scene_temperature_scaling: fit the scene temperature on the validation set every validation epoch.
        scene_top_k: ``k`` of the scene top-k accuracy.
        lr: peak learning rate (AdamW, warm-up then cosine).
        weight_decay: AdamW weight decay (not applied to norms, biases and the loss weights).
        warmup_fraction: share of the steps spent warming up.
        freeze_backbone: train the heads only.
        log_predictions: log a grid of every head's validation predictions each epoch.
    """

    monitor: ClassVar[str] = "val_loss"
    monitor_mode: ClassVar[Literal["min", "max"]] = "min"
    color_domain: ClassVar[Literal["srgb", "linear"]] = "linear"
    task_name: ClassVar[str] = "multitask"
    #: Ground truth is per head (``illuminant``, ``mask``, ``label`` with ``has_<head>`` row masks).
    target_key: ClassVar[str] = "has_labels"

    def __init__(
        self,
        heads: list[HeadName] | None = None,
        backbone: str = "mobilenetv3_small_100",
        pretrained: bool | str = False,
        image_size: int = 64,
        log_input: bool = True,
        weighting: Literal["uncertainty", "fixed", "gradnorm"] = "uncertainty",
        loss_weights: dict[str, float] | None = None,
        gradnorm_alpha: float = 1.5,
        uncertainty_warm_start: bool = True,
        awb_feature_level: int = 1,
        awb_head: Literal["confidence", "mlp"] = "confidence",
        awb_head_channels: int = 64,
        awb_local_colour: bool = True,
        awb_global_context: bool = True,
        awb_vote_grid: int | None = 16,
        portrait_decoder: Literal["mobile", "lraspp", "unet", "fpn", "deeplabv3plus"] = "mobile",
        portrait_decoder_channels: int | None = None,
        portrait_num_classes: int = 1,
        portrait_class_names: list[str] | None = None,
        portrait_dice_weight: float = 1.0,
        portrait_boundary_weight: float = 0.0,
        portrait_boundary_tolerance: float = 0.008,
        scene_class_names: list[str] | str = "synthetic",
        scene_multi_label: bool = False,
        scene_feature_indices: list[int] | None = None,
        scene_hidden: int = 0,
        scene_dropout: float = 0.2,
        scene_label_smoothing: float = 0.1,
        scene_temperature_scaling: bool = True,
        scene_top_k: int = 3,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.05,
        freeze_backbone: bool = False,
        log_predictions: bool = True,
    ) -> None:
        chosen = list(TASKS) if heads is None else list(dict.fromkeys(heads))
        if not chosen or any(h not in TASKS for h in chosen):
            raise ValueError(f"MultiTaskPerception: heads must be a non-empty subset of {list(TASKS)}, got {heads}.")
        unknown = sorted(set(loss_weights or {}) - set(chosen))
        if unknown:
            raise ValueError(
                f"MultiTaskPerception: loss_weights names {unknown}, which are not enabled heads {chosen}."
            )
        check_mask_classes(portrait_num_classes, portrait_class_names, prefix="portrait_")
        super().__init__()
        # Training tracks a few headline metrics per head; per-class and calibration metrics are for val and test.
        self.train_metrics = self._metrics(core_only=True).clone(prefix="train_")
        self._val_scene: list[tuple[Tensor, Tensor]] = []
        self._shared_features: list[Tensor] | None = None

    # ----------------------------------------------------------------- configuration
    @property
    def head_names(self) -> list[str]:
        """The enabled heads, in the fixed order awb, portrait, scene."""
        return [t for t in TASKS if t in self.hparams.heads]

    @property
    def shared_level(self) -> int:
        """The deepest backbone feature level that every enabled head depends on (levels feed forward)."""
        last = len(self.backbone.channels) - 1
        deepest = {"awb": self.hparams.awb_feature_level, "portrait": last, "scene": last}
        if "scene" in self.head_names and self.hparams.scene_feature_indices:
            deepest["scene"] = max(i % (last + 1) for i in self.hparams.scene_feature_indices)
        return min(deepest[h] for h in self.head_names)

    @property
    def report_metrics(self) -> list[str]:
        """One headline metric per enabled head (``moto-vision benchmark`` shows a column for each)."""
        headline = {"awb": "awb_recovery_median", "portrait": "portrait_iou", "scene": "scene_top1"}
        return [headline[head] for head in self.head_names]

    @property
    def portrait_binary(self) -> bool:
        return self.hparams.portrait_num_classes == 1

    @property
    def portrait_class_names(self) -> list[str]:
        """Mask class names, background first."""
        return mask_class_names(self.hparams.portrait_num_classes, self.hparams.portrait_class_names)

    def configure_models(self) -> None:
        hp = self.hparams
        hp.heads = [t for t in TASKS if t in (hp.heads or TASKS)]
        self.normalize = ExposureNormalize(log=hp.log_input)
        if hp.heads == ["awb"]:
            # Only the early AWB level is read: build and run the backbone up to it (as the single-task AWB model).
            levels = list(range(hp.awb_feature_level + 1))
            self.backbone = drop_unused_stages(
                create_backbone(hp.backbone, pretrained=hp.pretrained, out_indices=levels)
            )
        else:
            self.backbone = create_backbone(hp.backbone, pretrained=hp.pretrained)
        channels, reductions = self.backbone.channels, self.backbone.reductions
        branches: dict[str, nn.Module] = {}
        self.scene_calibrator: ScoreCalibrator | None = None
        if "awb" in hp.heads:
            level = hp.awb_feature_level
            if not 0 <= level < len(channels):
                raise ValueError(
                    f"awb_feature_level {level} is outside the {len(channels)} levels of {hp.backbone} "
                    f"(strides {list(reductions)})."
                )
            if hp.awb_head == "confidence":
                head: nn.Module = ConfidencePoolingHead(
                    channels[level],
                    hidden=hp.awb_head_channels,
                    local_colour=hp.awb_local_colour,
                    global_context=hp.awb_global_context,
                    grid=hp.awb_vote_grid,
                )
            else:
                head = PoolingMLPHead(channels[level], hidden=hp.awb_head_channels)
            branches["awb"] = IlluminantBranch(head, level)
        if "portrait" in hp.heads:
            decoder = create_segmentation_decoder(
                hp.portrait_decoder,
                channels,
                reductions,
                hp.portrait_num_classes,
                channels=hp.portrait_decoder_channels,
            )
            branches["portrait"] = SegmentationBranch(decoder)
        if "scene" in hp.heads:
            names = resolve_class_names(hp.scene_class_names)
            if len(names) < 2:
                raise ValueError(f"Scene detection needs at least two classes, got {names}.")
            hp.scene_class_names = names  # resolved, so checkpoints are self-contained
            classifier = ClassificationHead(
                channels,
                len(names),
                feature_indices=hp.scene_feature_indices or [-1],
                hidden=hp.scene_hidden,
                dropout=hp.scene_dropout,
            )
            branches["scene"] = ClassificationBranch(classifier)
            self.scene_calibrator = ScoreCalibrator(len(names), multi_label=hp.scene_multi_label)
        self.branches = nn.ModuleDict(branches)

    def configure_losses(self) -> None:
        hp = self.hparams
        criteria: dict[str, nn.Module] = {}
        if "awb" in hp.heads:
            criteria["awb"] = AngularLoss()
        if "portrait" in hp.heads:
            criteria["portrait"] = SegmentationLoss(
                hp.portrait_num_classes,
                dice_weight=hp.portrait_dice_weight,
                boundary_weight=hp.portrait_boundary_weight,
                ignore_index=IGNORE_INDEX,
            )
        if "scene" in hp.heads:
            criteria["scene"] = ClassificationLoss(
                len(hp.scene_class_names), multi_label=hp.scene_multi_label, label_smoothing=hp.scene_label_smoothing
            )
        self.criteria = nn.ModuleDict(criteria)
        if hp.weighting == "uncertainty":
            if hp.loss_weights:
                rank_zero_warn("loss_weights are used with weighting='fixed' only; uncertainty weighting learns them.")
            self.weighting: nn.Module = UncertaintyWeighting(self.head_names, warm_start=hp.uncertainty_warm_start)
        elif hp.weighting == "gradnorm":
            if hp.loss_weights:
                rank_zero_warn("loss_weights are used with weighting='fixed' only; gradnorm sets them from gradients.")
            self.weighting = GradNormWeighting(self.head_names, alpha=hp.gradnorm_alpha)
        else:
            weights = {h: DEFAULT_FIXED_WEIGHTS[h] for h in self.head_names} | dict(hp.loss_weights or {})
            self.weighting = FixedWeighting(weights)

    def configure_metrics(self) -> MetricCollection:
        return self._metrics(core_only=False)

    def _metrics(self, *, core_only: bool) -> MetricCollection:
        hp = self.hparams
        collections = []
        if "awb" in hp.heads:
            collections.append(MetricCollection({"angular": AngularError()}, prefix="awb_"))
        if "portrait" in hp.heads:
            portrait = segmentation_metrics(
                self.portrait_class_names,
                binary=self.portrait_binary,
                ignore_index=IGNORE_INDEX,
                boundary_tolerance=hp.portrait_boundary_tolerance,
                core_only=core_only,
            )
            collections.append(
                MetricCollection(dict(portrait.items(keep_base=True)), prefix="portrait_", compute_groups=False)
            )
        if "scene" in hp.heads:
            scene = scene_metrics(
                list(hp.scene_class_names),
                multi_label=hp.scene_multi_label,
                top_k=hp.scene_top_k,
                core_only=core_only,
            )
            collections.append(
                MetricCollection(dict(scene.items(keep_base=True)), prefix="scene_", compute_groups=False)
            )
        # A list of prefixed collections: metric keys are "<head>_<metric>" and so are the logged values
        # (val_awb_recovery_mean, val_portrait_iou_person), which torchmetrics would not give for a dict of them.
        return MetricCollection(collections, compute_groups=False)

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Every enabled head's output for linear camera RGB ``(B, 3, H, W)`` in ``[0, 1]`` (see the class doc)."""
        features = self.backbone(self.normalize(x))
        return {name: branch(features, x) for name, branch in self.branches.items()}

    def forward_labelled(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """One backbone pass over the batch, then each head on the rows that have its labels only.

        ``outputs[head]`` holds one row per labelled row of that head (``labelled_rows(batch, head)``); heads without
        labelled rows are absent.
        """
        image = batch["image"]
        features = self.backbone(self.normalize(image))
        # Kept for loss weightings that read gradients on the shared features (GradNormWeighting).
        self._shared_features = features if self.training and torch.is_grad_enabled() else None
        outputs = {}
        for name, branch in self.branches.items():
            rows = labelled_rows(batch, name)
            if rows is None:
                continue
            if bool(rows.all()):
                outputs[name] = branch(features, image)
            else:
                index = rows.nonzero().squeeze(1)
                outputs[name] = branch([f.index_select(0, index) for f in features], image.index_select(0, index))
        return outputs

    def _prediction_and_target(
        self, head: str, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]
    ) -> tuple[Tensor, Tensor] | None:
        """A head's predictions and ground truth on its labelled rows (``None`` when it has none).

        Accepts outputs of :meth:`forward_labelled` (labelled rows only) and of :meth:`forward` (every row).
        """
        rows = labelled_rows(batch, head)
        prediction = outputs.get(head) if isinstance(outputs, Mapping) else None
        if rows is None or prediction is None:
            return None
        count = int(rows.sum())
        if prediction.shape[0] == rows.shape[0] and count != rows.shape[0]:
            prediction = prediction[rows]
        elif prediction.shape[0] != count:
            raise ValueError(
                f"{head} outputs have {prediction.shape[0]} rows; the batch has {rows.shape[0]}, {count} labelled."
            )
        return prediction, batch[TARGET_KEYS[head]][rows]

    # ----------------------------------------------------------------- loss and metrics
    def compute_loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """Each head's loss on its labelled rows, and their weighted combination as ``"loss"``."""
        head_losses: dict[str, Tensor] = {}
        for head in self.head_names:
            pair = self._prediction_and_target(head, outputs, batch)
            if pair is None:
                continue
            value = self.criteria[head](*pair)
            head_losses[head] = value["loss"] if isinstance(value, Mapping) else value
        features = None
        if getattr(self.weighting, "needs_features", False) and self._shared_features is not None:
            features = [self._shared_features[self.shared_level]]
        self._shared_features = None  # do not hold this step's activations any longer
        total, weights = self.weighting(head_losses, features=features)
        terms = {"loss": total}
        for head, loss in head_losses.items():
            terms[f"{head}_loss"] = loss
            terms[f"{head}_weight"] = weights[head]
        return terms

    def update_metrics(self, metrics: MetricCollection, outputs: Mapping[str, Tensor], batch: Batch) -> None:
        for head in self.head_names:
            pair = self._prediction_and_target(head, outputs, batch)
            if pair is None:
                continue
            prediction, target = pair
            prefix = f"{head}_"
            items = [(n, m) for n, m in metrics.items(keep_base=True, copy_state=False) if n.startswith(prefix)]
            if head == "scene":
                update_scene_metrics(items, self.scene_calibrator, prediction, target, prefix=prefix)
                continue
            if head == "portrait":
                prediction = segmentation_labels(prediction)
            for _, metric in items:
                metric.update(prediction, target)

    # ----------------------------------------------------------------- loops
    def shared_step(self, batch: Batch, split: str) -> tuple[Tensor, dict[str, Tensor]]:
        """Forward (heads on their labelled rows), loss, per-head logging and metrics for one batch."""
        outputs = self.forward_labelled(batch)
        losses = self.compute_loss(outputs, batch)
        train = split == "train"
        for head in outputs:
            count = int(labelled_rows(batch, head).sum())  # type: ignore[union-attr]
            self.log(
                f"{split}_{head}_loss",
                losses[f"{head}_loss"].detach(),
                batch_size=count,
                on_step=train,
                on_epoch=True,
                sync_dist=not train,
            )
            if train:
                self.log(f"train_{head}_weight", losses[f"{head}_weight"], batch_size=count, on_step=True)
        self.log(
            f"{split}_loss",
            losses["loss"].detach(),
            batch_size=batch["image"].shape[0],
            prog_bar=True,
            on_step=train,
            on_epoch=True,
            sync_dist=not train,
        )
        metrics = self.metrics_for(split)
        if metrics is not None:
            with torch.no_grad():
                self.update_metrics(metrics, {k: v.detach() for k, v in outputs.items()}, batch)
        return losses["loss"], outputs

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        result = super().validation_step(batch, batch_idx, dataloader_idx)
        pair = self._prediction_and_target("scene", result["outputs"], batch) if "scene" in self.branches else None
        if pair is not None:
            self._val_scene.append((pair[0].detach(), pair[1].detach()))
        return result

    def on_validation_epoch_end(self) -> None:
        stash, self._val_scene = self._val_scene, []
        sanity = self._trainer is not None and self.trainer.sanity_checking
        if stash and not sanity and self.scene_calibrator is not None:
            logits, targets = torch.cat([s[0] for s in stash]), torch.cat([s[1] for s in stash])
            all_logits, all_targets = logits, targets
            if self._trainer is not None and self.trainer.world_size > 1:
                all_logits = self.all_gather(logits).flatten(0, 1)
                all_targets = self.all_gather(targets).flatten(0, 1)
            report = calibrate_scores(
                self.scene_calibrator,
                all_logits,
                all_targets,
                temperature=self.hparams.scene_temperature_scaling,
            )
            self.log_dict(
                {
                    "val_scene_temperature": report["temperature"],
                    "val_scene_ece_before_calibration": report["ece_before"],
                    "val_scene_ece_after_calibration": report["ece_after"],
                }
            )
            # Score the epoch with the calibration just fitted, as this checkpoint will behave.
            items = [
                (n, m) for n, m in self.val_metrics.items(keep_base=True, copy_state=False) if n.startswith("scene_")
            ]
            for _, metric in items:
                metric.reset()
            update_scene_metrics(items, self.scene_calibrator, logits, targets, prefix="scene_")
        super().on_validation_epoch_end()

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Every head's output; scene scores are calibrated (as in the exported graph)."""
        return self.export_module()(batch["image"])

    # ----------------------------------------------------------------- setup checks
    def setup(self, stage: str) -> None:
        """Check that the data provides every head's labels with the model's classes and size."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        data_tasks = getattr(datamodule, "tasks", None)
        if data_tasks is not None:
            missing = [h for h in self.head_names if h not in data_tasks]
            if missing:
                raise ValueError(
                    f"Heads {missing} have no data: the datamodule loads tasks {list(data_tasks)}. Add them to "
                    "--data.tasks (and configure their data) or remove them from --model.heads."
                )
            extra = [t for t in data_tasks if t not in self.head_names]
            if extra:
                rank_zero_warn(f"The data loads tasks {extra} that have no head; their samples only cost time.")
        names = getattr(datamodule, "scene_class_names", None)
        if "scene" in self.head_names and names is not None and list(names) != list(self.hparams.scene_class_names):
            raise ValueError(
                f"The scene data's classes {list(names)} differ from the model's {list(self.hparams.scene_class_names)}"
                " (names and order must match). Set --model.scene_class_names to the data's classes."
            )
        multi_label = getattr(datamodule, "scene_multi_label", None)
        if "scene" in self.head_names and multi_label is not None and multi_label != self.hparams.scene_multi_label:
            raise ValueError(
                f"model.scene_multi_label={self.hparams.scene_multi_label} but the scene data has multi_label="
                f"{multi_label}; set both the same."
            )
        outputs = getattr(datamodule, "portrait_num_classes", None)
        if "portrait" in self.head_names and outputs is not None and outputs != self.hparams.portrait_num_classes:
            raise ValueError(
                f"The portrait data has {outputs} output class(es) ({datamodule.portrait_class_names}) but the model "
                f"has portrait_num_classes={self.hparams.portrait_num_classes}; make them equal."
            )
        size = getattr(datamodule, "image_size", None)
        if size is not None and size != self.hparams.image_size:
            rank_zero_warn(
                f"Data image_size {size} differs from the model's image_size {self.hparams.image_size} (the size "
                "exports use); recipes keep them equal."
            )

    # ----------------------------------------------------------------- reporting
    def report_test_results(self, values: Mapping[str, float]) -> None:
        """Print every head's test table and save all test metrics as JSON in the run directory."""
        run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir) if self._trainer is not None else None
        self._print_and_save(dict(values), run_dir)

    @rank_zero_only
    def _print_and_save(self, values: dict[str, float], run_dir: Path | None) -> None:
        if "awb" in self.head_names:
            row = {k.removeprefix("test_awb_"): v for k, v in values.items() if k.startswith("test_awb_")}
            print("\nAWB head: angular errors in degrees on the test split (lower is better):\n")
            print(format_table({f"MultiTaskPerception ({self.hparams.backbone}, awb head)": row}) + "\n")
        if "portrait" in self.head_names:
            print_segmentation_report(
                values,
                self.portrait_class_names,
                binary=self.portrait_binary,
                boundary_tolerance=self.hparams.portrait_boundary_tolerance,
                prefix="test_portrait_",
                title="Portrait head: test results",
            )
        if "scene" in self.head_names:
            from moto_vision.tasks.scene_report import print_scene_report

            calibrator = self.scene_calibrator
            print_scene_report(
                values,
                class_names=list(self.hparams.scene_class_names),
                multi_label=self.hparams.scene_multi_label,
                temperature=float(calibrator.temperature),
                thresholds=[float(t) for t in calibrator.thresholds] if self.hparams.scene_multi_label else None,
                top_k=max(1, min(self.hparams.scene_top_k, len(self.hparams.scene_class_names))),
                confusion_png=None,
                prefix="test_scene_",
            )
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "multitask_test_results.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
            print(f"Saved {run_dir / 'multitask_test_results.json'}")

    def render_batch(self, batch: Batch, outputs: Any, max_images: int = 8) -> Tensor | None:
        """One grid per head (its labelled rows), stacked: AWB corrections, mask overlays, captioned scenes.

        Camera RGB is shown white-balanced by Gray World and gamma-encoded so that the portrait and scene rows are
        recognisable; the AWB rows show uncorrected / corrected by the prediction / corrected by the truth.
        """
        if not isinstance(outputs, Mapping):
            return None
        grids = []
        for head in self.head_names:
            pair = self._prediction_and_target(head, outputs, batch)
            if pair is None:
                continue
            prediction, target = pair
            rows = labelled_rows(batch, head)
            images = batch["image"][rows][:max_images].float()
            prediction, target = prediction[:max_images].float(), target[:max_images]
            if head == "awb":
                from moto_vision.tasks.awb import render_white_balance_grid

                grids.append(render_white_balance_grid(images, prediction, target, max_images=max_images))
            elif head == "portrait":
                shown = _viewable(images)
                grids.append(render_segmentation_grid(shown, target, prediction, len(self.portrait_class_names)))
            else:
                from moto_vision.tasks.scene_report import render_predictions

                calibrator = self.scene_calibrator
                grids.append(
                    render_predictions(
                        _viewable(images),
                        calibrator(prediction),
                        target,
                        list(self.hparams.scene_class_names),
                        multi_label=self.hparams.scene_multi_label,
                        thresholds=calibrator.thresholds,
                    )
                )
        return _stack(grids) if grids else None

    # ----------------------------------------------------------------- export
    def export_module(self) -> nn.Module:
        """One graph for every head: linear camera RGB -> ``{"awb", "portrait", "scene"}`` (scene calibrated)."""
        return MultiTaskExport(self.normalize, self.backbone, self.branches, self.scene_calibrator)

    def outputs_from_export(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Map the exported outputs back to :meth:`forward`'s (calibrated scene scores -> equivalent logits)."""
        outputs = dict(outputs)
        if "scene" in outputs and self.scene_calibrator is not None:
            outputs["scene"] = self.scene_calibrator.logits_from_scores(outputs["scene"])
        return outputs

    def export_metadata(self) -> dict[str, Any]:
        hp = self.hparams
        meta = super().export_metadata()
        heads: dict[str, Any] = {}
        if "awb" in hp.heads:
            heads["awb"] = {
                "output": "illuminant",
                "shape": ["batch", 3],
                "meaning": "unit-norm camera RGB of the light; correct with x / illuminant * illuminant[:, 1:2]",
                "feature_level": hp.awb_feature_level,
                "vote_grid": hp.awb_vote_grid,
            }
        if "portrait" in hp.heads:
            heads["portrait"] = {
                "output": "logits",
                "shape": ["batch", hp.portrait_num_classes, "height", "width"],
                "activation": "sigmoid" if self.portrait_binary else "softmax",
                "class_names": self.portrait_class_names,
                "num_classes": hp.portrait_num_classes,
                "decoder": hp.portrait_decoder,
            }
        if "scene" in hp.heads:
            calibrator = self.scene_calibrator
            heads["scene"] = {
                "output": "calibrated_scores",
                "shape": ["batch", len(hp.scene_class_names)],
                "activation": "sigmoid" if hp.scene_multi_label else "softmax",
                "class_names": list(hp.scene_class_names),
                "multi_label": hp.scene_multi_label,
                "temperature": float(calibrator.temperature),
                "decision": "per_class_threshold" if hp.scene_multi_label else "argmax",
                "thresholds": [float(t) for t in calibrator.thresholds] if hp.scene_multi_label else None,
            }
        meta.update(
            {
                "heads": heads,
                "output_structure": "dict",
                "image_size": int(hp.image_size),
                "input_domain": "linear camera RGB before white balance, [0, 1]",
            }
        )
        return meta


def _viewable(images: Tensor) -> Tensor:
    """Linear camera RGB -> a displayable image.

    Gray-World white balance, exposure so that the 97th percentile is 0.9, sRGB gamma.
    """
    from kornia.color import linear_rgb_to_rgb

    from moto_vision.models.awb import apply_white_balance

    balanced = apply_white_balance(images, GrayWorld()(images))
    scale = torch.quantile(balanced.flatten(1), 0.97, dim=1).clamp_min(1e-6)[:, None, None, None] / 0.9
    return linear_rgb_to_rgb((balanced / scale).clamp(0, 1))


def _stack(grids: list[Tensor]) -> Tensor:
    """Stack ``(3, H_i, W_i)`` grids vertically on a white canvas, left-aligned."""
    width = max(g.shape[-1] for g in grids)
    gap = 6
    height = sum(g.shape[-2] for g in grids) + gap * (len(grids) - 1)
    canvas = torch.ones(3, height, width, dtype=grids[0].dtype, device=grids[0].device)
    top = 0
    for grid in grids:
        canvas[:, top : top + grid.shape[-2], : grid.shape[-1]] = grid.to(canvas)
        top += grid.shape[-2] + gap
    return canvas

"""``MultiTaskPerception``: one shared backbone with one head per task kit (AWB, portrait, scene, ...).

One forward pass of one backbone feeds every enabled head, so a phone gets the illuminant, the person mask and
the scene scores of a frame for about the price of one network. Each head is its task's kit
(:mod:`moto_vision.heads`), the same the single-task models use: its head network, loss, metrics, calibration
(the scene temperature and thresholds, fitted after every validation epoch), pictures, test table and export
metadata. This module only combines them; it knows no task by name.

Input domain: linear camera RGB before white balance, ``(B, 3, H, W)`` in ``[0, 1]`` (what the camera's
perception stage sees, and what AWB needs); :class:`~moto_vision.data.MultiTaskDataModule` unprocesses the sRGB
portrait and scene data into it. Inside the model every image is divided by its mean brightness and
encoded by a square root (``input_encoding``, :class:`~moto_vision.models.awb.ExposureNormalize`), which removes
exposure and compresses the linear range much as a tone curve would.

Training batches hold partial labels: a row contributes only the losses of the tasks it has ground truth for
(``has_<task>`` masks), and each head runs only on its labelled rows. The per-task losses are combined with fixed
weights, learned uncertainty weights or gradient-norm balancing (:mod:`moto_vision.models.multitask`). Metrics
are reported per head with the task as prefix: ``val_awb_recovery_mean``, ``val_portrait_iou``, ``test_scene_top1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MetricCollection

from moto_vision import viz
from moto_vision.backbones import upgrade_keys_hook
from moto_vision.data.multitask import labelled_rows
from moto_vision.errors import OptionError
from moto_vision.heads import (
    TASKS,
    AWBOptions,
    SceneOptions,
    SegmentationOptions,
    TaskKit,
    TaskName,
    get_kit,
    kit_names,
)
from moto_vision.models.awb import ExposureNormalize, GrayWorld, InputEncoding, apply_white_balance
from moto_vision.models.multitask import FixedWeighting, GradNormWeighting, UncertaintyWeighting
from moto_vision.tasks.base import BaseTask, TaskHead, create_task_backbone

__all__ = ["DEFAULT_FIXED_WEIGHTS", "HeadOptions", "MultiTaskExport", "MultiTaskPerception"]

Batch = dict[str, Any]


#: Fixed weight of each built-in head when ``weighting="fixed"`` and ``loss_weights`` leaves it out (the kits'
#: ``loss_weight``).
DEFAULT_FIXED_WEIGHTS: dict[str, float] = {name: get_kit(name).loss_weight for name in TASKS}


@dataclass(frozen=True)
class HeadOptions:
    """Options of each built-in head (the ``head_options`` of :class:`MultiTaskPerception`).

    Args:
        awb: the AWB head. It reads the stride-4 features (``feature_level: 1``, as the single-task model) and votes
            on at most 16 x 16 regions (``vote_grid: 16``, the grid of a 64 px input at stride 4), so it costs the
            same at any input size; at 256 px it would otherwise be the most expensive part of the graph.
        portrait: the portrait head.
        scene: the scene head (``class_names`` are stored resolved).
    """

    awb: AWBOptions = field(default_factory=lambda: AWBOptions(vote_grid=16))
    portrait: SegmentationOptions = field(default_factory=SegmentationOptions)
    scene: SceneOptions = field(default_factory=SceneOptions)


_HEAD_DEFAULTS = HeadOptions()

#: Argument names of 0.1, ``<head>_<option>``; they still work, with a deprecation warning, until 0.3.
_FLAT_ARGUMENTS: tuple[str, ...] = (
    "awb_feature_level", "awb_head", "awb_head_channels", "awb_local_colour", "awb_global_context", "awb_vote_grid",
    "portrait_decoder", "portrait_decoder_channels", "portrait_num_classes", "portrait_class_names",
    "portrait_dice_weight", "portrait_boundary_weight", "portrait_boundary_tolerance", "scene_class_names",
    "scene_multi_label", "scene_feature_indices", "scene_hidden", "scene_dropout", "scene_label_smoothing",
    "scene_temperature_scaling", "scene_top_k",
)  # fmt: skip


class MultiTaskExport(nn.Module):
    """The deployed graph: linear camera RGB ``(B, 3, H, W)`` in ``[0, 1]`` -> ``{head: output}``.

    Each output is its kit's exported form (``"awb"`` unit-norm illuminant ``(B, 3)``; ``"portrait"`` mask logits
    ``(B, C, H, W)``; ``"scene"`` calibrated scene scores ``(B, K)``). Normalisation, backbone and heads are all
    inside, so the phone feeds the raw frame and reads every result of one pass.
    """

    def __init__(
        self, normalize: nn.Module, backbone: nn.Module, branches: nn.ModuleDict, kits: Mapping[str, TaskKit]
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone
        self.branches = branches
        self.kits = dict(kits)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.backbone(self.normalize(x))
        outputs = {}
        for name, parts in self.branches.items():
            kit = self.kits[name]
            outputs[name] = kit.export_output(parts, kit.forward(parts, features, x))
        return outputs


class MultiTaskPerception(BaseTask):
    """Several task heads (AWB, portrait segmentation, scene detection) from one backbone pass over linear RGB.

    ``forward(x)`` returns ``{head: output}`` for the enabled heads: ``"awb"`` the unit-norm illuminant ``(B, 3)``,
    ``"portrait"`` mask logits ``(B, C, H, W)`` at the input size, ``"scene"`` scene logits ``(B, K)``.

    Args:
        heads: the enabled heads, any non-empty subset of the registered tasks (default: awb, portrait, scene;
            ``moto-vision fit`` takes the data's ``tasks``).
        backbone: timm model name of the shared backbone.
        pretrained: backbone weights: ``False``, a local file (a single-task moto-vision ``.ckpt`` works), or
            ``True`` (timm hub).
        image_size: input size the model is trained and exported at (``moto-vision fit`` takes the data's).
        input_encoding: how the backbone sees the exposure-normalised linear image
            (:class:`~moto_vision.models.awb.ExposureNormalize`): ``"sqrt"`` (default: a gamma-2 curve, the cheapest
            compressive encoding on a phone), ``"log"`` (the encoding of 0.1) or ``"linear"``.
        log_input: the 0.1 spelling, kept so that its checkpoints load as they were trained: ``True`` is
            ``input_encoding="log"``, ``False`` ``"linear"`` (used only when ``input_encoding`` is not given).
        input_reference: what the backbone sees the image relative to: ``"mean"`` (its mean brightness, the
            default and what earlier checkpoints used) or ``"channel_mean"`` (each channel relative to its own mean,
            a Grey World balance: a portrait-only model's boundary F +0.02, the three-head model's AWB a little
            worse; docs/multitask.md#results).
        weighting: ``"uncertainty"`` (learned, Kendall et al. 2018), ``"fixed"`` (``loss_weights``) or
            ``"gradnorm"`` (gradient-norm balancing on the shared features, after Chen et al. 2018).
        loss_weights: fixed weight per head (``weighting="fixed"``); heads left out use their kit's
            ``loss_weight`` (:data:`DEFAULT_FIXED_WEIGHTS`).
        gradnorm_alpha: ``weighting="gradnorm"``: strength of the training-rate term (0: equal gradient norms).
        uncertainty_warm_start: start each learned log-variance at the log of the head's first training loss
            instead of 0 (see :class:`~moto_vision.models.multitask.UncertaintyWeighting`).
        head_options: options of each head, in sections named by head (:class:`HeadOptions`; in Python a dict
            ``{head: {option: value}}`` also works, for any registered head): ``--model.head_options.awb.vote_grid 8``.
        head_lr: learning rate of each named head's own layers (e.g. ``{awb: 0.005, scene: 0.004}``, the rates of
            the single-task recipes); the backbone and the heads left out train at ``lr``. The warm-up and cosine
            schedule scale every rate alike.
        awb_feature_level: deprecated (until 0.3), as every ``<head>_<option>`` argument of 0.1 below: use
            ``head_options.awb.feature_level``.
        awb_head: deprecated: ``head_options.awb.head``.
        awb_head_channels: deprecated: ``head_options.awb.head_channels``.
        awb_local_colour: deprecated: ``head_options.awb.local_colour``.
        awb_global_context: deprecated: ``head_options.awb.global_context``.
        awb_vote_grid: deprecated: ``head_options.awb.vote_grid``.
        portrait_decoder: deprecated: ``head_options.portrait.decoder``.
        portrait_decoder_channels: deprecated: ``head_options.portrait.decoder_channels``.
        portrait_num_classes: deprecated: ``head_options.portrait.num_classes``.
        portrait_class_names: deprecated: ``head_options.portrait.class_names``.
        portrait_dice_weight: deprecated: ``head_options.portrait.dice_weight``.
        portrait_boundary_weight: deprecated: ``head_options.portrait.boundary_weight``.
        portrait_boundary_tolerance: deprecated: ``head_options.portrait.boundary_tolerance``.
        scene_class_names: deprecated: ``head_options.scene.class_names``.
        scene_multi_label: deprecated: ``head_options.scene.multi_label``.
        scene_feature_indices: deprecated: ``head_options.scene.feature_indices``.
        scene_hidden: deprecated: ``head_options.scene.hidden``.
        scene_dropout: deprecated: ``head_options.scene.dropout``.
        scene_label_smoothing: deprecated: ``head_options.scene.label_smoothing``.
        scene_temperature_scaling: deprecated: ``head_options.scene.temperature_scaling``.
        scene_top_k: deprecated: ``head_options.scene.top_k``.
        **kwargs: the arguments every task shares (``lr``, ``weight_decay``, ``warmup_fraction``,
            ``freeze_backbone``, ``log_predictions``; see :class:`~moto_vision.tasks.BaseTask`).
    """

    monitor: ClassVar[str] = "val_loss"
    monitor_mode: ClassVar[Literal["min", "max"]] = "min"
    color_domain: ClassVar[Literal["srgb", "linear"]] = "linear"
    task_name: ClassVar[str] = "multitask"
    #: Ground truth is per head (``illuminant``, ``mask``, ``label`` with ``has_<head>`` row masks).
    target_key: ClassVar[str] = "has_labels"
    optimizer_defaults: ClassVar[dict[str, float]] = {"lr": 3e-3, "weight_decay": 1e-4, "warmup_fraction": 0.05}
    _hparams_ignore: ClassVar[tuple[str, ...]] = _FLAT_ARGUMENTS

    def __init__(
        self,
        heads: list[TaskName] | None = None,
        backbone: str = "mobilenetv3_small_100",
        pretrained: bool | str = False,
        image_size: int = 64,
        input_encoding: InputEncoding | None = None,
        log_input: bool | None = None,
        input_reference: Literal["mean", "channel_mean"] = "mean",
        weighting: Literal["uncertainty", "fixed", "gradnorm"] = "uncertainty",
        loss_weights: dict[str, float] | None = None,
        gradnorm_alpha: float = 1.5,
        uncertainty_warm_start: bool = True,
        head_options: HeadOptions = _HEAD_DEFAULTS,
        head_lr: dict[str, float] | None = None,
        awb_feature_level: int | None = None,
        awb_head: Literal["confidence", "mlp"] | None = None,
        awb_head_channels: int | None = None,
        awb_local_colour: bool | None = None,
        awb_global_context: bool | None = None,
        awb_vote_grid: int | None = None,
        portrait_decoder: Literal["mobile", "lraspp", "unet", "fpn", "deeplabv3plus"] | None = None,
        portrait_decoder_channels: int | None = None,
        portrait_num_classes: int | None = None,
        portrait_class_names: list[str] | None = None,
        portrait_dice_weight: float | None = None,
        portrait_boundary_weight: float | None = None,
        portrait_boundary_tolerance: float | None = None,
        scene_class_names: list[str] | str | None = None,
        scene_multi_label: bool | None = None,
        scene_feature_indices: list[int] | None = None,
        scene_hidden: int | None = None,
        scene_dropout: float | None = None,
        scene_label_smoothing: float | None = None,
        scene_temperature_scaling: bool | None = None,
        scene_top_k: int | None = None,
        **kwargs: Any,
    ) -> None:
        heads = _check_heads(heads)
        for argument, per_head in (("loss_weights", loss_weights), ("head_lr", head_lr)):
            unknown = sorted(set(per_head or {}) - set(heads))
            if unknown:
                raise OptionError(
                    f"MultiTaskPerception: {argument} names {unknown}, which are not enabled heads {heads}."
                )
        not_positive = {name: lr for name, lr in (head_lr or {}).items() if not lr > 0}
        if not_positive:
            raise OptionError(f"MultiTaskPerception: head_lr must be positive learning rates, got {not_positive}.")
        arguments = locals()  # the deprecated flat arguments, by name
        flat = {name: arguments[name] for name in _FLAT_ARGUMENTS}
        # Primitive dicts, what checkpoints store (the heads not enabled keep their options unchecked).
        head_options = _head_options(head_options, flat, heads)  # type: ignore[assignment]
        super().__init__(**kwargs)
        # Training tracks a few headline metrics per head; per-class and calibration metrics are for val and test.
        self.train_metrics = self._metrics(core_only=True).clone(prefix="train_")
        self._shared_features: list[Tensor] | None = None

    # ----------------------------------------------------------------- configuration
    @property
    def head_names(self) -> list[str]:
        """The enabled heads, in the registry's order (awb, portrait, scene, then other registered tasks)."""
        return [name for name in kit_names() if name in self.hparams.heads]

    @property
    def input_encoding(self) -> InputEncoding:
        """The backbone's input encoding (:class:`~moto_vision.models.awb.ExposureNormalize`).

        ``input_encoding``, else the 0.1 ``log_input`` (its checkpoints store only that, ``True`` then), else "sqrt".
        """
        hp = self.hparams
        if hp.get("input_encoding") is not None:
            return hp.input_encoding
        log_input = hp.get("log_input")
        return "sqrt" if log_input is None else ("log" if log_input else "linear")

    @property
    def shared_level(self) -> int:
        """The deepest backbone feature level that every enabled head depends on (levels feed forward)."""
        levels = len(self.backbone.channels)
        return min(max(self.kits[name].feature_levels(levels)) for name in self.head_names)

    @property
    def report_metrics(self) -> list[str]:
        """One headline metric per enabled head (``moto-vision benchmark`` shows a column for each)."""
        return [f"{name}_{self.kits[name].headline}" for name in self.head_names]

    def configure_models(self) -> None:
        hp = self.hparams
        self.kits: dict[str, TaskKit] = {name: get_kit(name)(hp.head_options.get(name)) for name in self.head_names}
        self.normalize = ExposureNormalize(self.input_encoding, reference=hp.get("input_reference", "mean"))
        # Only what the heads read is built (an AWB-only model stops after the AWB level, as the single-task one).
        self.backbone = create_task_backbone(hp.backbone, hp.pretrained, list(self.kits.values()))
        channels, reductions = self.backbone.channels, self.backbone.reductions
        self.branches = nn.ModuleDict(
            {name: nn.ModuleDict(kit.build(channels, reductions)) for name, kit in self.kits.items()}
        )
        self.register_load_state_dict_pre_hook(upgrade_keys_hook)

    def configure_losses(self) -> None:
        hp = self.hparams
        self.criteria = nn.ModuleDict({name: kit.build_loss() for name, kit in self.kits.items()})
        if hp.weighting != "fixed" and hp.loss_weights:
            rank_zero_warn(f"loss_weights are used with weighting='fixed' only; weighting={hp.weighting!r} sets them.")
        if hp.weighting == "uncertainty":
            self.weighting: nn.Module = UncertaintyWeighting(self.head_names, warm_start=hp.uncertainty_warm_start)
        elif hp.weighting == "gradnorm":
            self.weighting = GradNormWeighting(self.head_names, alpha=hp.gradnorm_alpha)
        else:
            weights = {name: kit.loss_weight for name, kit in self.kits.items()} | dict(hp.loss_weights or {})
            self.weighting = FixedWeighting(weights)

    def configure_metrics(self) -> MetricCollection:
        return self._metrics(core_only=False)

    def learning_rate_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """The backbone (and everything but the heads) at ``lr``; each head of ``head_lr`` at its own rate."""
        head_lr = dict(self.hparams.get("head_lr") or {})
        own = [(list(self.branches[name].parameters()), float(lr)) for name, lr in head_lr.items()]
        taken = {id(p) for parameters, _ in own for p in parameters}
        return [([p for p in self.parameters() if id(p) not in taken], self._optimizer_value("lr")), *own]

    def _metrics(self, *, core_only: bool) -> MetricCollection:
        collections = [
            MetricCollection(
                dict(kit.metrics(core_only).items(keep_base=True)), prefix=f"{name}_", compute_groups=False
            )
            for name, kit in self.kits.items()
        ]
        # A list of prefixed collections: metric keys are "<head>_<metric>" and so are the logged values
        # (val_awb_recovery_mean, val_portrait_iou_person), which torchmetrics would not give for a dict of them.
        return MetricCollection(collections, compute_groups=False)

    def task_heads(self) -> list[TaskHead]:
        return [
            TaskHead(
                kit, self.branches[name], self.criteria[name], f"{name}_", f"--model.init_args.head_options.{name}."
            )
            for name, kit in self.kits.items()
        ]

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Every enabled head's output for linear camera RGB ``(B, 3, H, W)`` in ``[0, 1]`` (see the class doc)."""
        features = self.backbone(self.normalize(x))
        return {name: kit.forward(self.branches[name], features, x) for name, kit in self.kits.items()}

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
        for name, kit in self.kits.items():
            rows = labelled_rows(batch, name)
            if rows is None:
                continue
            if bool(rows.all()):
                outputs[name] = kit.forward(self.branches[name], features, image)
            else:
                index = rows.nonzero().squeeze(1)
                subset = [f.index_select(0, index) for f in features]
                outputs[name] = kit.forward(self.branches[name], subset, image.index_select(0, index))
        return outputs

    def head_pair(self, head: TaskHead, outputs: Any, batch: Batch) -> tuple[Tensor, Tensor] | None:
        """A head's predictions and ground truth on its labelled rows (``None`` when it has none).

        Accepts outputs of :meth:`forward_labelled` (labelled rows only) and of :meth:`forward` (every row).
        """
        name = head.prefix.removesuffix("_")
        rows = labelled_rows(batch, name)
        prediction = outputs.get(name) if isinstance(outputs, Mapping) else None
        if rows is None or prediction is None:
            return None
        count = int(rows.sum())
        if prediction.shape[0] == rows.shape[0] and count != rows.shape[0]:
            prediction = prediction[rows]
        elif prediction.shape[0] != count:
            raise ValueError(
                f"{name} outputs have {prediction.shape[0]} rows; the batch has {rows.shape[0]}, {count} labelled."
            )
        return prediction, batch[head.kit.target_key][rows]

    def head_images(self, head: TaskHead, batch: Batch) -> Tensor:
        """A head's rows, shown in its data's domain: sRGB heads see the camera RGB white-balanced by Gray World."""
        images = batch["image"][labelled_rows(batch, head.prefix.removesuffix("_"))]
        if head.kit.domain == "linear":
            return images
        return viz.linear_to_display(apply_white_balance(images, GrayWorld()(images)))

    def head_datamodule(self, head: TaskHead, datamodule: Any) -> Any:
        return getattr(datamodule, "datamodules", {}).get(head.prefix.removesuffix("_"))

    # ----------------------------------------------------------------- loss
    def compute_loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """Each head's loss on its labelled rows, and their weighted combination as ``"loss"``."""
        head_losses: dict[str, Tensor] = {}
        for head in self.task_heads():
            pair = self.head_pair(head, outputs, batch)
            if pair is not None:
                head_losses[head.prefix.removesuffix("_")] = head.kit.loss(head.criterion, *pair)["loss"]
        features = None
        if getattr(self.weighting, "needs_features", False) and self._shared_features is not None:
            features = [self._shared_features[self.shared_level]]
        self._shared_features = None  # do not hold this step's activations any longer
        total, weights = self.weighting(head_losses, features=features)
        terms = {"loss": total}
        for name, loss in head_losses.items():
            terms[f"{name}_loss"] = loss
            terms[f"{name}_weight"] = weights[name]
        return terms

    # ----------------------------------------------------------------- loops
    def shared_step(self, batch: Batch, split: str) -> tuple[Tensor, dict[str, Tensor]]:
        """Forward (heads on their labelled rows), loss, per-head logging and metrics for one batch."""
        outputs = self.forward_labelled(batch)
        losses = self.compute_loss(outputs, batch)
        for name in outputs:
            count = int(labelled_rows(batch, name).sum())  # type: ignore[union-attr]
            self.log_value(split, f"{name}_loss", losses[f"{name}_loss"], count)
            if split == "train":
                self.log(f"train_{name}_weight", losses[f"{name}_weight"], batch_size=count, on_step=True)
        self.log_value(split, "loss", losses["loss"], batch["image"].shape[0], prog_bar=True)
        metrics = self.metrics_for(split)
        if metrics is not None:
            with torch.no_grad():
                self.update_metrics(metrics, {k: v.detach() for k, v in outputs.items()}, batch)
        return losses["loss"], outputs

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Every head's output in its exported form (scene scores calibrated, as in the exported graph)."""
        return self.export_module()(batch["image"])

    def setup(self, stage: str) -> None:
        """Check that the data provides every head's labels, with the model's classes and size."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        data_tasks = getattr(datamodule, "tasks", None)
        if data_tasks is not None:
            missing = [h for h in self.head_names if h not in data_tasks]
            if missing:
                raise OptionError(
                    f"Heads {missing} have no data: the datamodule loads tasks {list(data_tasks)}. Add them to "
                    "--data.tasks (and configure their data) or remove them from --model.heads."
                )
            extra = [t for t in data_tasks if t not in self.head_names]
            if extra:
                rank_zero_warn(f"The data loads tasks {extra} that have no head; their samples only cost time.")
        super().setup(stage)

    def upgrade_keys(self, state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """Rename 0.1's per-head parts kept outside the heads (``scene_calibrator.*``) to ``branches.<head>.<part>``.

        :meth:`load_state_dict` applies it (as :class:`~moto_vision.backbones.Backbone` does for its own names), and
        :func:`moto_vision.backbones.upgrade_state_dict` for checks before loading.
        """
        moved = {
            f"{prefix}{name}_{part}.": f"{prefix}branches.{name}.{part}."
            for name in self.branches
            for part in self.branches[name]
        }
        upgraded = {}
        for key, value in state_dict.items():
            old = next((o for o in moved if key.startswith(o)), None)
            upgraded[moved[old] + key.removeprefix(old) if old else key] = value
        return upgraded

    # ----------------------------------------------------------------- reporting and export
    def report_test_results(self, values: Mapping[str, float]) -> None:
        """Print every head's test table and save all test metrics as JSON in the run directory."""
        run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir) if self._trainer is not None else None
        self._print_and_save(dict(values), run_dir)

    @rank_zero_only
    def _print_and_save(self, values: dict[str, float], run_dir: Path | None) -> None:
        for head in self.task_heads():
            head.kit.report(head.parts, values, prefix=f"test_{head.prefix}", title=f"{head.prefix[:-1]} head")
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "multitask_test_results.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
            print(f"Saved {run_dir / 'multitask_test_results.json'}")

    def export_module(self) -> nn.Module:
        """One graph for every head: linear camera RGB -> ``{head: exported output}`` (scene calibrated)."""
        return MultiTaskExport(self.normalize, self.backbone, self.branches, self.kits)

    def outputs_from_export(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Map the exported outputs back to :meth:`forward`'s (calibrated scene scores -> equivalent logits)."""
        return {
            name: self.kits[name].output_from_export(self.branches[name], value) if name in self.kits else value
            for name, value in outputs.items()
        }

    def export_metadata(self) -> dict[str, Any]:
        meta = super().export_metadata()
        meta.update(
            {
                "output_structure": "dict",
                "image_size": int(self.hparams.image_size),
                "input_domain": "linear camera RGB before white balance, [0, 1]",
            }
        )
        return meta


def _check_heads(heads: list[str] | None) -> list[str]:
    """The enabled heads, checked against the registry (default: the built-in tasks)."""
    chosen = list(TASKS) if heads is None else list(dict.fromkeys(heads))
    registered = kit_names()
    if not chosen or any(h not in registered for h in chosen):
        raise OptionError(f"MultiTaskPerception: heads must be a non-empty subset of {registered}, got {heads}.")
    return [name for name in registered if name in chosen]


def _head_options(head_options: Any, flat: Mapping[str, Any], heads: list[str]) -> dict[str, dict[str, Any]]:
    """Each head's options as a dict: its section, overridden by the deprecated flat ``<head>_<option>`` arguments.

    Enabled heads are validated (and resolved, e.g. scene class names) by their kits.
    """
    if isinstance(head_options, HeadOptions):
        sections = {f.name: getattr(head_options, f.name) for f in fields(head_options)}
    elif isinstance(head_options, Mapping):
        sections = {f.name: None for f in fields(HeadOptions)} | dict(head_options)
    else:
        raise TypeError(f"MultiTaskPerception: head_options must be HeadOptions or a dict, got {head_options!r}.")
    unknown = sorted(set(sections) - set(kit_names()))
    if unknown:
        raise OptionError(f"MultiTaskPerception: head_options names {unknown}, which are not registered tasks.")
    given = {name: value for name, value in flat.items() if value is not None}
    if given:
        rank_zero_warn(
            f"MultiTaskPerception: the arguments {sorted(given)} are deprecated and will be removed in 0.3; give each "
            "head's options in its section of head_options instead, e.g. `head_options: {awb: {feature_level: 1}}` "
            "or --model.init_args.head_options.awb.feature_level 1. (Checkpoints written by 0.1 pass them; saving "
            "such a model again stores the sections.)",
            category=FutureWarning,
        )
    options = {}
    for name, section in sections.items():
        kit = get_kit(name)
        values = kit.hparams_of(section)
        values.update({key.split("_", 1)[1]: v for key, v in given.items() if key.split("_", 1)[0] == name})
        options[name] = kit(values).hparams() if name in heads else kit.hparams_of(values)
    return options

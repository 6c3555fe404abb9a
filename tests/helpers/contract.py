"""Contract tests that every task kit and every task inherits (in the manner of smp's model tester).

A new kit gets them by subclassing :class:`KitContract` and saying how to make the kit and a batch of ground truth;
a new LightningModule task by subclassing :class:`TaskContract`. pytest collects the ``test_*`` methods of every
``Test*`` subclass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from moto_vision.backbones import create_backbone
from moto_vision.heads import TaskKit, get_kit, kit_names
from moto_vision.metrics.collection import flatten_metrics as _flatten
from moto_vision.tasks import BaseTask

BACKBONE = "test_efficientnet"


class KitContract:
    """What every :class:`~moto_vision.heads.TaskKit` does, on a tiny timm backbone."""

    size = 64
    batch = 3

    def make_kit(self) -> TaskKit:
        raise NotImplementedError

    def make_target(self, batch: int, size: int) -> torch.Tensor:
        """Ground truth of ``batch`` images of ``size`` x ``size`` under the kit's ``target_key``."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ helpers
    def _setup(self) -> tuple[TaskKit, nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        kit = self.make_kit()
        backbone = create_backbone(BACKBONE)
        parts = nn.ModuleDict(kit.build(backbone.channels, backbone.reductions))
        image = torch.rand(self.batch, 3, self.size, self.size)
        output = kit.forward(parts, backbone(image), image)
        return kit, backbone, parts, image, output

    # ------------------------------------------------------------------------------------------ tests
    def test_facts_are_registered(self) -> None:
        kit = self.make_kit()
        assert kit.name in kit_names() and get_kit(kit.name) is type(kit)
        assert kit.domain in ("srgb", "linear") and kit.target_key and kit.headline_mode in ("min", "max")
        assert kit.datamodule.count(".") >= 1 and kit.loss_weight > 0
        # Options round-trip through primitives (checkpoints store them with weights_only loading).
        assert type(kit)(json.loads(json.dumps(kit.hparams()))).hparams() == kit.hparams()

    def test_forward_loss_and_gradients(self) -> None:
        kit, backbone, parts, image, output = self._setup()
        assert output.shape[0] == self.batch and torch.isfinite(output).all()
        terms = kit.loss(kit.build_loss(), output, self.make_target(self.batch, self.size))
        assert isinstance(terms, dict) and "loss" in terms and terms["loss"].ndim == 0
        terms["loss"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in parts.parameters())

    def test_metrics_report_the_headline(self, capsys: Any) -> None:
        kit, backbone, parts, image, output = self._setup()
        target = self.make_target(self.batch, self.size)
        for core_only in (True, False):
            metrics = kit.metrics(core_only=core_only).clone(prefix="test_")
            kit.update(parts, metrics.items(keep_base=True, copy_state=False), output.detach(), target)
            values = {k: v for k, v in _flatten(metrics.compute()).items() if v.numel() == 1}
            assert f"test_{kit.headline}" in values, sorted(values)
        kit.report(parts, {k: float(v) for k, v in values.items()}, prefix="test_", title="contract")
        assert capsys.readouterr().out.strip()

    def test_export_output_maps_back(self) -> None:
        kit, backbone, parts, image, output = self._setup()
        exported = kit.export_output(parts, output.detach())
        back = kit.output_from_export(parts, exported)
        # What the metrics see is the same: equal outputs, or (scene) logits equal up to a per-row constant.
        torch.testing.assert_close(kit.export_output(parts, back), exported, rtol=1e-4, atol=1e-5)

    def test_render_is_an_image(self) -> None:
        kit, backbone, parts, image, output = self._setup()
        picture = kit.render(parts, image, output.detach(), self.make_target(self.batch, self.size), max_images=2)
        assert picture.ndim == 3 and picture.shape[0] == 3 and 0 <= float(picture.min()) <= float(picture.max()) <= 1

    def test_export_metadata_is_json(self) -> None:
        kit, backbone, parts, image, output = self._setup()
        meta = kit.export_metadata(parts)
        assert {"output", "shape"} <= set(meta) and json.loads(json.dumps(meta)) == meta


class TaskContract:
    """What every task (a :class:`~moto_vision.tasks.BaseTask`) does."""

    size = 64

    def make_task(self) -> BaseTask:
        raise NotImplementedError

    def make_batch(self, batch: int, size: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def test_forward_and_loss(self) -> None:
        task = self.make_task()
        batch = self.make_batch(2, self.size)
        outputs = task(batch["image"])
        tensors = list(outputs.values()) if isinstance(outputs, dict) else [outputs]
        assert all(t.shape[0] == batch["image"].shape[0] and torch.isfinite(t).all() for t in tensors)
        losses = task.compute_loss(outputs, batch)
        assert isinstance(losses, dict) and losses["loss"].ndim == 0

    def test_weights_only_checkpoint_round_trip(self, tmp_path: Path) -> None:
        task = self.make_task().eval()
        path = tmp_path / "task.ckpt"
        # What Lightning writes, minus the trainer state: weights and the (primitive) constructor arguments.
        torch.save(
            {
                "state_dict": task.state_dict(),
                "hyper_parameters": dict(task.hparams),
                "pytorch-lightning_version": L.__version__,
            },
            path,
        )
        loaded = type(task).load_from_checkpoint(path).eval()
        image = self.make_batch(2, self.size)["image"]
        with torch.no_grad():
            _assert_close(loaded(image), task(image))
        assert dict(loaded.hparams) == dict(task.hparams)

    def test_export_module_matches_the_task(self) -> None:
        task = self.make_task().eval()
        batch = self.make_batch(2, self.size)
        image = batch["image"]
        with torch.no_grad():
            exported = task.export_module().eval()(image)
            mapped = task.outputs_from_export(exported) if hasattr(task, "outputs_from_export") else exported
            # The exported outputs score exactly as the task's own.
            ours, theirs = task.configure_metrics().clone(), task.configure_metrics().clone()
            task.update_metrics(ours, task(image), batch)
            task.update_metrics(theirs, mapped, batch)
            _assert_close(_scalars(ours.compute()), _scalars(theirs.compute()))
        program = torch.export.export(task.export_module().eval(), (image[:1],))
        assert program.graph_signature.output_specs

    def test_render_batch(self) -> None:
        task = self.make_task().eval()
        batch = self.make_batch(3, self.size)
        with torch.no_grad():
            picture = task.render_batch(batch, task(batch["image"]), max_images=2)
        assert picture is not None and picture.ndim == 3 and picture.shape[0] == 3

    def test_export_metadata_keys(self) -> None:
        meta = self.make_task().export_metadata()
        assert {"task", "task_class", "color_domain", "backbone", "image_size"} <= set(meta)
        assert json.loads(json.dumps(meta)) == meta


def _scalars(values: Any) -> dict[str, float]:
    return {k: float(v) for k, v in _flatten(values).items() if v.numel() == 1}


def _assert_close(ours: Any, theirs: Any) -> None:
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs)
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5, equal_nan=True, msg=key)
    else:
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, equal_nan=True)

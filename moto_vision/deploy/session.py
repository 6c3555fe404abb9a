"""Export a trained task to a phone format, reload it in its runtime and check it against PyTorch.

The Python entry points behind ``moto-vision export``::

    from moto_vision.deploy import export

    result = export("runs/scene/checkpoints/best.ckpt", "executorch", quantize="int8", output="export/")
    print(result.path, result.status, result.parity.summary())

:class:`ExportSession` holds what every format shares (the task, its fused inference graph, calibration
and parity batches from the datamodule), so exporting several formats of one model does that work once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from moto_vision.deploy.artifact import foreign_checkpoint, record_artifact
from moto_vision.deploy.formats import FORMATS, ExporterUnavailable
from moto_vision.deploy.parity import ParityReport, check_parity
from moto_vision.deploy.quantize import calibration_inputs
from moto_vision.deploy.runtime import Predictor, TorchPredictor, load
from moto_vision.deploy.source import (
    CheckpointInfo,
    InferenceModule,
    build_datamodule,
    data_batches,
    datamodule_from_config,
    export_inputs,
    image_size_of,
    load_task,
    model_facts,
    prepare_inference_module,
)
from moto_vision.trust import UntrustedCheckpointError

__all__ = ["ExportResult", "ExportSession", "export"]

Precision = Literal["fp32", "int8"]
Status = Literal["exported", "verified", "failed", "unavailable"]


@dataclass
class ExportResult:
    """The outcome of one export.

    Attributes:
        format: ``executorch``, ``onnx`` or ``tflite``.
        precision: ``fp32`` or ``int8``.
        status: ``verified`` (reloaded in its runtime and checked against PyTorch), ``exported`` (written, not
            checked), ``failed`` (export or check failed; see ``error``) or ``unavailable`` (exporter not installed).
        path: the artifact (``None`` if nothing was written).
        size_bytes: artifact size.
        parity: the comparison with PyTorch.
        info: what the exporter did (exporter used, fallbacks with reasons, quantization scheme).
        error: why it failed.
        seconds: wall time of export plus check.
    """

    format: str
    precision: str
    status: Status
    path: Path | None = None
    size_bytes: int = 0
    parity: ParityReport | None = None
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for a terminal."""
        head = f"{self.format:<10} {self.precision:<5} {self.status:<11}"
        if self.path is not None and self.size_bytes:
            head += f" {self.size_bytes / 1e6:7.3f} MB  {self.path}"
        if self.parity is not None:
            head += f"\n    parity: {self.parity.summary()}"
        if self.error:
            head += f"\n    {self.error}"
        return head

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "status": self.status,
            "path": str(self.path) if self.path else None,
            "size_bytes": self.size_bytes,
            "parity": self.parity.to_dict() if self.parity else None,
            "info": self.info,
            "error": self.error,
            "seconds": round(self.seconds, 2),
        }


class ExportSession:
    """One model, ready to export to several formats and precisions.

    Args:
        task: the task (a ``BaseTask``) in eval mode.
        info: what its checkpoint records (``None`` for an in-memory task).
        datamodule: supplies calibration (``val``) and parity / metric (``test``) batches. Without one, fp32
            parity runs on random images and no metric is computed; int8 export refuses to run.
        image_size: deploy input size (default: the task's ``image_size`` hparam).
        calibration_images: images used to calibrate int8 scales.
        parity_batches: test batches for parity and metrics (``None``: the whole test split).
        atol: fp32 tolerance on outputs.
    """

    def __init__(
        self,
        task: Any,
        info: CheckpointInfo | None = None,
        datamodule: Any | None = None,
        *,
        image_size: int | None = None,
        calibration_images: int = 32,
        parity_batches: int | None = None,
        atol: float = 1e-4,
    ) -> None:
        self.task = task.eval()
        self.info = info
        self.datamodule = datamodule
        size = image_size_of(task, datamodule, image_size)
        #: Example inputs of the export graph by name (batch 1), the image first.
        self.inputs = export_inputs(task, size)
        self.example = self.inputs["image"] if "image" in self.inputs else next(iter(self.inputs.values()))
        self.module = prepare_inference_module(task, self.inputs)
        self.facts = model_facts(task, info, self.module, self.inputs)
        self.scoreable, self.score_note = _scoreable(task, self.module, self.inputs)
        self.calibration_count = calibration_images
        self.parity_count = parity_batches
        self.atol = atol
        self._calibration: list[torch.Tensor] | None = None
        self._test_batches: list[dict[str, Any]] | None = None

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike[str],
        *,
        task_class: str | type | None = None,
        data_config: str | os.PathLike[str] | None = None,
        batch_size: int | None = None,
        allow_classes: Sequence[str | type] = (),
        **kwargs: Any,
    ) -> ExportSession:
        """Load a task checkpoint and rebuild its datamodule from the checkpoint's record (or ``data_config``).

        The checkpoint is untrusted data: the task and datamodule classes it records must be moto-vision's own or in
        ``allow_classes`` (see :func:`~moto_vision.deploy.source.load_task`); a refused checkpoint raises
        :class:`~moto_vision.trust.UntrustedCheckpointError` before anything it names is imported.
        """
        task, info = load_task(checkpoint, task_class, allow_classes=allow_classes)
        overrides = {"batch_size": batch_size} if batch_size else {}
        if data_config is not None:
            datamodule = datamodule_from_config(data_config)
        elif info.datamodule_class:
            try:
                datamodule = build_datamodule(
                    info.datamodule_class,
                    info.datamodule_hparams,
                    source=str(info.path),
                    allow_classes=allow_classes,
                    num_workers=0,
                    **overrides,
                )
            except UntrustedCheckpointError:
                raise
            except Exception as error:  # a moved dataset, a renamed class...: say what and how to fix it
                raise ValueError(
                    f"{info.path} was trained with {info.datamodule_class}({info.datamodule_hparams}), which cannot "
                    f"be rebuilt here ({type(error).__name__}: {error}). Pass a recipe whose data: section points at "
                    "data on this machine: --data-config recipes/<task>.yaml (data_config=...)."
                ) from error
        else:
            datamodule = None
        return cls(task, info, datamodule, **kwargs)

    # ------------------------------------------------------------------ data
    @property
    def reference(self) -> TorchPredictor:
        """The fused PyTorch graph as a predictor: the reference every artifact is compared with."""
        path = self.info.path if self.info is not None else Path(f"{type(self.task).__name__}.pt")
        return TorchPredictor(self.module, path, self.facts)

    def calibration(self) -> list[tuple[torch.Tensor, ...]]:
        """Calibration samples (batch 1, one tuple of graph inputs each) from the datamodule's validation split."""
        if self._calibration is None:
            if self.datamodule is None:
                raise ValueError(
                    "int8 export needs calibration images from the task's datamodule, but the checkpoint records "
                    "none. Pass the training recipe: `--data-config recipes/<task>.yaml`."
                )
            with self._data_errors("val"):
                batches = data_batches(self.datamodule, "val")
                self._calibration = calibration_inputs(batches, self.calibration_count, self.inputs)
        return self._calibration

    def test_batches(self) -> list[dict[str, Any]]:
        """Batches for parity and metrics: the datamodule's test split, else 4 batches of random images."""
        if self._test_batches is None:
            if self.datamodule is not None:
                with self._data_errors("test"):
                    self._test_batches = list(data_batches(self.datamodule, "test", self.parity_count))
            else:
                generator = torch.Generator().manual_seed(1)
                size = self.example.shape[-2:]
                # Extra graph inputs (if any) repeat their example (see batch_inputs).
                self._test_batches = [
                    {"image": torch.rand(4, 3, *size, generator=generator)} for _ in range(self.parity_count or 4)
                ]
        return self._test_batches

    @contextlib.contextmanager
    def _data_errors(self, split: str) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            name = type(self.datamodule).__name__
            raise RuntimeError(
                f"Could not read the {split} split of {name}: {type(error).__name__}: {error}. Check the data it "
                "points at, or pass a recipe for data on this machine: --data-config recipes/<task>.yaml."
            ) from error

    @property
    def has_ground_truth(self) -> bool:
        return self.datamodule is not None

    @property
    def can_score(self) -> bool:
        """Whether exported models can be scored with the task's metrics (ground truth and compatible outputs)."""
        return self.has_ground_truth and self.scoreable

    # ------------------------------------------------------------------ export
    def default_name(self, format: str, precision: str) -> str:
        return f"{self.facts.get('task') or 'model'}_{precision}{FORMATS[format].suffix}"

    def export(
        self,
        format: str,
        precision: Precision = "fp32",
        output: str | os.PathLike[str] = "export",
        *,
        name: str | None = None,
        verify: bool = True,
        overwrite: bool = False,
        threads: int | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ExportResult:
        """Export to ``format`` at ``precision`` in the directory ``output``, then reload and check it.

        Never raises for a failed export: the result says ``failed`` with the reason and no file is left behind.
        A missing optional exporter gives ``unavailable`` with the install instructions.

        Args:
            format: a name in :data:`~moto_vision.deploy.formats.FORMATS`.
            precision: ``fp32`` or ``int8``.
            output: directory for the artifact and its ``metadata.json``.
            name: file name (default ``<task>_<precision>.<suffix>``).
            verify: reload the artifact in its runtime and compare with PyTorch.
            overwrite: replace an existing artifact of the same name.
            threads: CPU threads of the runtime during the check (default 1).
            options: exporter options per format (``{"onnx": {"opset_version": 18}}``; see ``FORMATS[f].options``).

        Raises:
            ValueError: an unknown format, precision or exporter option.
        """
        if format not in FORMATS:
            raise ValueError(f"Unknown format {format!r}; choose from {sorted(FORMATS)}.")
        if precision not in ("fp32", "int8"):
            raise ValueError(f"Unknown precision {precision!r}; choose fp32 or int8.")
        chosen = FORMATS[format].resolve_options((options or {}).get(format))  # a typo is the caller's error
        start = time.perf_counter()
        result = ExportResult(format=format, precision=precision, status="failed")
        path = Path(output) / (name or self.default_name(format, precision))
        if path.suffix != FORMATS[format].suffix:
            path = path.with_name(path.name + FORMATS[format].suffix)
        if path.exists() and not overwrite:
            result.error = f"{path} exists; pass --overwrite (overwrite=True) to replace it or choose another name."
            return result
        other = foreign_checkpoint(path.parent, self.facts)
        if other and not overwrite:
            result.error = (
                f"{path.parent / 'metadata.json'} describes another checkpoint (sha256 {other[:12]}...); export each "
                "model into its own --output directory, or pass --overwrite to start a new metadata.json there."
            )
            return result
        export_format = FORMATS[format]
        try:
            export_format.check()
        except ExporterUnavailable as error:
            result.status, result.error = "unavailable", str(error)
            return result
        facts = {**self.facts, "format": format, "precision": precision}
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            calibration = self.calibration() if precision == "int8" else None
            result.info = export_format.export(
                self.module,
                tuple(self.inputs.values()),
                path,
                facts,
                precision=precision,
                calibration=calibration,
                input_names=self.module.input_names,
                output_names=self.module.output_names,
                options=chosen,
            )
            if chosen:
                result.info["options"] = chosen
            if calibration is not None:
                result.info["calibration_images"] = len(calibration)
        except Exception as error:
            result.error = f"{format} {precision} export failed: {type(error).__name__}: {error}"
            result.seconds = time.perf_counter() - start
            return result
        result.path, result.size_bytes, result.status = path, path.stat().st_size, "exported"
        if verify:
            self._verify(result, threads)
        entry = {
            "format": format,
            "precision": precision,
            "status": result.status,
            "size_bytes": result.size_bytes,
            **result.info,
            "parity": result.parity.to_dict() if result.parity else None,
        }
        if self.datamodule is None and result.parity is not None:
            entry["parity_note"] = "random images (no datamodule recorded), outputs compared, no metric"
        if self.score_note:
            entry["metrics_note"] = self.score_note
        record_artifact(path, self.facts, entry, replace=overwrite)
        result.seconds = time.perf_counter() - start
        return result

    def _verify(self, result: ExportResult, threads: int | None) -> None:
        assert result.path is not None
        try:
            # One thread unless asked: parity needs no speed, and idle runtime threads spin on a busy machine.
            predictor: Predictor = load(result.path, threads=threads or 1)
            # Predictors built from the sidecar are complete only after the sidecar is written; use ours now.
            predictor.metadata = {**self.facts, **predictor.metadata}
            parity = check_parity(
                self.task,
                self.reference,
                predictor,
                self.test_batches(),
                inputs=self.inputs,
                judge=result.precision == "fp32",
                score=self.can_score,
                atol=self.atol,
            )
        except Exception as error:
            result.status, result.error = "failed", f"reload / parity failed: {type(error).__name__}: {error}"
            return
        result.parity = parity
        finite = all(torch.isfinite(torch.tensor(v)) for v in parity.candidate_metrics.values())
        finite = finite and torch.isfinite(torch.tensor(parity.max_abs_diff))
        if parity.passed is False:
            result.status = "failed"
            result.error = f"parity failed: {parity.summary()} (tolerance {parity.tolerance})"
        elif not finite:
            result.status, result.error = "failed", "exported model returns non-finite values"
        else:
            result.status = "verified"


@torch.no_grad()
def _scoreable(task: Any, module: InferenceModule, inputs: Mapping[str, torch.Tensor]) -> tuple[bool, str | None]:
    """Whether outputs of the export graph can go through the task's ``update_metrics``.

    Yes when the graph returns what ``forward`` returns, or when the task maps them back with
    ``outputs_from_export``. Otherwise (post-processing inside the graph and no mapping) metrics of exported
    models would be computed on the wrong kind of values, so they are not computed and the reason is recorded.
    """
    if callable(getattr(task, "outputs_from_export", None)):
        return True, None
    exported = module(*inputs.values())
    forward = task(*inputs.values())
    ours = [exported] if isinstance(exported, torch.Tensor) else list(exported)
    theirs = (
        [forward]
        if isinstance(forward, torch.Tensor)
        else list(forward.values() if isinstance(forward, dict) else forward)
    )
    same = len(ours) == len(theirs) and all(
        isinstance(b, torch.Tensor) and a.shape == b.shape and torch.allclose(a, b.float(), atol=1e-4, rtol=1e-3)
        for a, b in zip(ours, theirs)
    )
    if same:
        return True, None
    name = type(task).__name__
    return False, (
        f"{name}.export_module() returns post-processed outputs (they differ from {name}.forward()) and {name} "
        "defines no outputs_from_export() to map them back, so task metrics of exported models are not computed; "
        "outputs are still compared with PyTorch."
    )


def export(
    source: str | os.PathLike[str] | Any,
    format: str = "executorch",
    *,
    quantize: Precision | None = None,
    output: str | os.PathLike[str] = "export",
    name: str | None = None,
    task_class: str | type | None = None,
    data_config: str | os.PathLike[str] | None = None,
    datamodule: Any | None = None,
    image_size: int | None = None,
    verify: bool = True,
    overwrite: bool = False,
    calibration_images: int = 32,
    parity_batches: int | None = None,
    allow_classes: Sequence[str | type] = (),
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> ExportResult:
    """Export a checkpoint (or an in-memory task) to one phone format.

    Args:
        source: a ``.ckpt`` path or a ``BaseTask`` instance.
        format: ``executorch`` (``.pte``), ``onnx`` or ``tflite``.
        quantize: ``"int8"`` for post-training int8 quantization, ``None`` for fp32.
        output: directory for the artifact and its ``metadata.json``.
        name: file name (default ``<task>_<precision>.<suffix>``).
        task_class: task class for checkpoints that do not record it.
        data_config: recipe YAML whose ``data:`` section builds the datamodule (default: the checkpoint's record).
        datamodule: a datamodule instance (for in-memory tasks).
        image_size: deploy input size (default: the task's ``image_size``).
        verify: reload the artifact in its runtime and compare with PyTorch.
        overwrite: replace an existing artifact of the same name.
        calibration_images: images for int8 calibration.
        parity_batches: test batches for parity and metrics (default: the whole test split).
        allow_classes: classes (or import paths) besides moto-vision's own that the checkpoint may name.
        options: exporter options per format, e.g. ``{"onnx": {"opset_version": 18}}``.
    """
    options = {"image_size": image_size, "calibration_images": calibration_images, "parity_batches": parity_batches}
    if isinstance(source, (str, os.PathLike)):
        session = ExportSession.from_checkpoint(
            source, task_class=task_class, data_config=data_config, allow_classes=allow_classes, **options
        )
    else:
        session = ExportSession(source, None, datamodule, **options)
    precision = quantize or "fp32"
    return session.export(format, precision, output, name=name, verify=verify, overwrite=overwrite, options=options)

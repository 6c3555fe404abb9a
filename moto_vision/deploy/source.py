"""What an export starts from: a task (from a checkpoint), its inference graph, and real data batches.

Everything here is generic over :class:`~moto_vision.tasks.BaseTask`: the task class comes from the
checkpoint, the graph from ``task.export_module()``, the datamodule from the record the base task writes
into every checkpoint (``checkpoint["moto_vision"]["datamodule_class" / "datamodule_hparams"]``), so
calibration and parity use batches of the data the model was trained on.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moto_vision.deploy.artifact import file_sha256

__all__ = [
    "CheckpointInfo",
    "InferenceModule",
    "build_datamodule",
    "data_batches",
    "datamodule_from_config",
    "load_task",
    "prepare_inference_module",
    "read_checkpoint_info",
    "resolve_checkpoint",
    "resolve_class",
]


@dataclass
class CheckpointInfo:
    """What a moto-vision checkpoint says about itself.

    Attributes:
        path: the checkpoint file.
        sha256: hash of the file (recorded in exported metadata).
        task_class: import path of the task class, or ``None`` if the checkpoint does not say.
        hparams: the task's hyperparameters.
        datamodule_class: import path of the datamodule that trained it (``None`` if not recorded).
        datamodule_hparams: that datamodule's constructor arguments.
    """

    path: Path
    sha256: str
    task_class: str | None
    hparams: dict[str, Any]
    datamodule_class: str | None = None
    datamodule_hparams: dict[str, Any] = field(default_factory=dict)


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or for a run directory its newest ``best*.ckpt`` (else ``last*.ckpt``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        for pattern in ("best*.ckpt", "last*.ckpt"):
            found = sorted(path.rglob(pattern), key=lambda p: p.stat().st_mtime)
            if found:
                return found[-1]
        raise FileNotFoundError(f"No best*.ckpt or last*.ckpt under {path}. Train first, or pass the .ckpt file.")
    return path


def read_checkpoint_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read the task and datamodule records of a Lightning checkpoint written by a moto-vision task.

    Args:
        path: a ``.ckpt`` file, or a run directory (its newest ``best*.ckpt``, else ``last*.ckpt``).
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}. Pass the .ckpt written by `moto-vision fit`.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict'); export needs a task checkpoint.")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    record = dict(checkpoint.get("moto_vision") or {})
    # Where the class comes from, best first: our own record, then LightningCLI's (subclass mode stores it).
    task_class = record.get("task_class") or hparams.get("_class_path")
    return CheckpointInfo(
        path=path,
        sha256=file_sha256(path),
        task_class=task_class,
        hparams={k: v for k, v in hparams.items() if not k.startswith("_")},
        datamodule_class=record.get("datamodule_class"),
        datamodule_hparams=dict(record.get("datamodule_hparams") or {}),
    )


def resolve_class(name: str, packages: tuple[str, ...]) -> type:
    """Import ``name``: a dotted path (``pkg.module.Class``) or a short name exported by one of ``packages``."""
    if "." in name:
        module_name, _, attribute = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ImportError(f"Cannot import {name!r}: {error}") from error
    for package in packages:
        module = importlib.import_module(package)
        if hasattr(module, name):
            return getattr(module, name)
    raise ImportError(f"Unknown class {name!r}: not exported by {', '.join(packages)}. Use the full import path.")


def load_task(checkpoint: str | os.PathLike[str], task_class: str | type | None = None) -> tuple[Any, CheckpointInfo]:
    """Load the task of a checkpoint in eval mode on the CPU.

    Args:
        checkpoint: a ``.ckpt`` written by a moto-vision task.
        task_class: the task class (or its import path / short name) when the checkpoint does not record it.

    Returns:
        ``(task, info)``.
    """
    info = read_checkpoint_info(checkpoint)
    chosen = task_class or info.task_class
    if chosen is None:
        raise ValueError(
            f"{info.path} does not record its task class. Pass it: `--task AWBRegressor` (or the full import "
            "path, e.g. `--task mypackage.tasks.MyTask`)."
        )
    cls = chosen if isinstance(chosen, type) else resolve_class(chosen, ("moto_vision.tasks",))
    task = cls.load_from_checkpoint(info.path, map_location="cpu")
    task.eval()
    info.task_class = f"{cls.__module__}.{cls.__qualname__}"
    return task, info


def build_datamodule(datamodule_class: str | type, hparams: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
    """Instantiate a datamodule from its class (path) and constructor arguments (unknown keys are dropped)."""
    cls = (
        datamodule_class
        if isinstance(datamodule_class, type)
        else resolve_class(datamodule_class, ("moto_vision.data",))
    )
    arguments = {**dict(hparams or {}), **overrides}
    signature = inspect.signature(cls.__init__)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        arguments = {k: v for k, v in arguments.items() if k in signature.parameters}
    return cls(**arguments)


def datamodule_from_config(path: str | os.PathLike[str]) -> Any:
    """Build the datamodule of a recipe YAML (its ``data:`` section: ``class_path`` + ``init_args``)."""
    import yaml

    path = Path(path)
    config = yaml.safe_load(path.read_text()) or {}
    data = config.get("data")
    if not isinstance(data, Mapping) or "class_path" not in data:
        raise ValueError(f"{path} has no `data: class_path: ...` section to build a datamodule from.")
    return build_datamodule(data["class_path"], data.get("init_args") or {})


def data_batches(datamodule: Any, split: str = "test", max_batches: int | None = None) -> Iterator[dict[str, Any]]:
    """Batches of a datamodule split, with that split's batch augmentation applied as in training loops.

    Outside a Trainer Lightning does not call ``on_after_batch_transfer``, so the split's augmentation
    (for evaluation usually a deterministic transform, if any) is applied here the same way.
    """
    stage = {"train": "fit", "val": "fit", "test": "test", "predict": "predict"}[split]
    datamodule.setup(stage)
    loader = getattr(datamodule, f"{split}_dataloader")()
    augmentations = getattr(datamodule, "augmentations", None)
    augmentation = augmentations[split] if augmentations is not None and split in augmentations else None
    for batch in itertools.islice(loader, max_batches):
        if augmentation is not None:
            with torch.no_grad():
                batch = datamodule.augment(batch, augmentation, split)
        yield batch


class InferenceModule(nn.Module):
    """The task's export graph with plain tensor outputs.

    Exporters and runtimes want a tensor or a flat tuple of tensors; a task whose export module returns a
    dict (e.g. multi-task heads) is flattened in ``output_names`` order, and predictors rebuild the dict.

    Attributes:
        output_names: names of the outputs in order (``["output"]`` for a single tensor).
        output_structure: ``"tensor"``, ``"tuple"`` or ``"dict"``: what the task itself returns.
    """

    def __init__(self, module: nn.Module, output_names: list[str], output_structure: str) -> None:
        super().__init__()
        self.module = module
        self.output_names = output_names
        self.output_structure = output_structure

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.module(image)
        if self.output_structure == "tensor":
            return outputs
        if self.output_structure == "dict":
            return tuple(outputs[name] for name in self.output_names)
        return tuple(outputs)


@torch.no_grad()
def prepare_inference_module(task: nn.Module, example: torch.Tensor) -> InferenceModule:
    """A fused, eval-mode copy of ``task.export_module()`` ready for ``torch.export``.

    The task itself is left untouched; re-parameterisable blocks (MobileOne, FastViT, RepViT) of the copy are
    fused with :func:`moto_vision.backbones.reparameterize`.
    """
    from moto_vision.backbones import reparameterize

    source = task.export_module() if hasattr(task, "export_module") else task
    trainer = getattr(source, "_trainer", None)
    if trainer is not None:  # a LightningModule holds its Trainer; never deep-copy that
        source._trainer = None
    try:
        module = copy.deepcopy(source).cpu().eval()
    finally:
        if trainer is not None:
            source._trainer = trainer
    module = reparameterize(module).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    outputs = module(example)
    if isinstance(outputs, torch.Tensor):
        names, structure = ["output"], "tensor"
    elif isinstance(outputs, Mapping):
        names, structure = [str(k) for k in outputs], "dict"
    elif isinstance(outputs, (tuple, list)):
        names, structure = [f"output_{i}" for i in range(len(outputs))], "tuple"
    else:
        raise TypeError(f"{type(task).__name__}.export_module() returned {type(outputs).__name__}; expected tensors.")
    return InferenceModule(module, names, structure).eval()


def image_size_of(task: Any, datamodule: Any | None = None, override: int | None = None) -> int:
    """The deploy input size: ``override``, else the task's ``image_size`` hparam, else a test batch's size."""
    if override:
        return int(override)
    size = getattr(task, "hparams", {}).get("image_size")
    if size:
        return int(size)
    if datamodule is not None:
        batch = next(data_batches(datamodule, "test", 1))
        return int(batch["image"].shape[-1])
    raise ValueError(
        f"{type(task).__name__} has no `image_size` hyperparameter and no datamodule was found; pass --image-size."
    )

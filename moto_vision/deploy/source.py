"""What an export starts from: a task (from a checkpoint), its inference graph, and real data batches.

Everything here is generic over :class:`~moto_vision.tasks.BaseTask`: the task class comes from the
checkpoint, the graph from ``task.export_module()``, the datamodule from the record the base task writes
into every checkpoint (``checkpoint["moto_vision"]["datamodule_class" / "datamodule_hparams"]``), so
calibration and parity use batches of the data the model was trained on.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import itertools
import os
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moto_vision.deploy.artifact import file_sha256
from moto_vision.trust import (
    UntrustedCheckpointError,
    check_init_args,
    check_state_dict,
    read_checkpoint_file,
    resolve_checkpoint,
    resolve_recorded_class,
    resolve_user_class,
)

__all__ = [
    "CheckpointInfo",
    "InferenceModule",
    "build_datamodule",
    "data_batches",
    "datamodule_from_config",
    "batch_inputs",
    "export_inputs",
    "load_task",
    "model_facts",
    "prepare_inference_module",
    "read_checkpoint_info",
    "resolve_checkpoint",
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


def read_checkpoint_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read the task and datamodule records of a Lightning checkpoint written by a moto-vision task.

    Reading imports nothing: the file is loaded with ``torch.load(weights_only=True)`` and the recorded class
    names are only strings here (see :mod:`moto_vision.trust` for what may be imported later).

    Args:
        path: a ``.ckpt`` file, or a run directory (its newest ``best*.ckpt``, else ``last*.ckpt``).
    """
    return _read_checkpoint(path)[0]


def _read_checkpoint(path: str | os.PathLike[str]) -> tuple[CheckpointInfo, Mapping[str, Any]]:
    path = resolve_checkpoint(path)
    checkpoint = read_checkpoint_file(path)
    if "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict'); export needs a task checkpoint.")
    hparams = checkpoint.get("hyper_parameters") or {}
    record = checkpoint.get("moto_vision") or {}
    for name, value in (("hyper_parameters", hparams), ("moto_vision", record)):
        if not isinstance(value, Mapping):
            raise UntrustedCheckpointError(f"{path}: {name!r} is a {type(value).__name__}, not a dict.")
    datamodule_hparams = record.get("datamodule_hparams") or {}
    if not isinstance(datamodule_hparams, Mapping):
        raise UntrustedCheckpointError(f"{path}: 'datamodule_hparams' is a {type(datamodule_hparams).__name__}.")
    # Where the class comes from, best first: our own record, then LightningCLI's (subclass mode stores it).
    task_class = record.get("task_class") or hparams.get("_class_path")
    info = CheckpointInfo(
        path=path,
        sha256=file_sha256(path),
        task_class=task_class,
        hparams={k: v for k, v in hparams.items() if not str(k).startswith("_")},
        datamodule_class=record.get("datamodule_class"),
        datamodule_hparams=dict(datamodule_hparams),
    )
    return info, checkpoint


def load_task(
    checkpoint: str | os.PathLike[str],
    task_class: str | type | None = None,
    *,
    allow_classes: Sequence[str | type] = (),
) -> tuple[Any, CheckpointInfo]:
    """Load the task of a checkpoint in eval mode on the CPU, treating the checkpoint as untrusted data.

    The recorded task class is imported only if it is a moto-vision task (the allow-list of
    :mod:`moto_vision.trust`) or in ``allow_classes``; its recorded hyperparameters must be primitives that fit
    the class signature, and the weights must be exactly the model's tensors. Anything else raises
    :class:`~moto_vision.trust.UntrustedCheckpointError` before any recorded name is imported or called.

    Args:
        checkpoint: a ``.ckpt`` written by a moto-vision task (or its run directory).
        task_class: the task class (or its import path / short name) to load the checkpoint as, chosen by the user
            (for checkpoints that do not record it, or to override the record).
        allow_classes: further classes (or import paths) the checkpoint may name (``--allow-class``).

    Returns:
        ``(task, info)``.
    """
    from lightning.pytorch import LightningModule

    from moto_vision.tasks.base import checked_state_dict

    info, raw = _read_checkpoint(checkpoint)
    source = str(info.path)
    if task_class is not None:
        cls = task_class if isinstance(task_class, type) else resolve_user_class(task_class, "task")
    elif info.task_class is None:
        raise ValueError(
            f"{info.path} does not record its task class. Pass it: `--task AWBRegressor` (or the full import "
            "path, e.g. `--task mypackage.tasks.MyTask`)."
        )
    else:
        cls = resolve_recorded_class(info.task_class, "task", source=source, allow=allow_classes)
    if not (isinstance(cls, type) and issubclass(cls, LightningModule)):
        raise UntrustedCheckpointError(f"{source}: {cls!r} is not a LightningModule; cannot load a task from it.")
    hparams = check_init_args(cls, info.hparams, source=source, role="hyperparameter")
    if "pretrained" in inspect.signature(cls.__init__).parameters:
        hparams["pretrained"] = False  # the weights come from the checkpoint; never re-read the original source
    state_dict = raw["state_dict"]
    check_state_dict(state_dict, None, source=source, owner=cls.__name__)
    task = cls(**hparams)
    owner = f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in list(hparams.items())[:2])}, ...)"
    state_dict = checked_state_dict(task, state_dict, source=source, owner=owner)
    # What LightningModule.load_from_checkpoint does after building the module, on the checked weights.
    task.on_load_checkpoint(dict(raw))
    task.load_state_dict(state_dict, strict=True)
    task.eval()
    info.task_class = f"{cls.__module__}.{cls.__qualname__}"
    return task, info


def build_datamodule(
    datamodule_class: str | type,
    hparams: Mapping[str, Any] | None = None,
    *,
    source: str = "the checkpoint",
    allow_classes: Sequence[str | type] = (),
    **overrides: Any,
) -> Any:
    """Rebuild a datamodule recorded in a checkpoint: a trusted class, arguments checked against its signature.

    Args:
        datamodule_class: the class, or the recorded import path (resolved through :mod:`moto_vision.trust`).
        hparams: the recorded constructor arguments (primitives only; validated against the signature's types).
        source: the checkpoint, for messages.
        allow_classes: further classes (or import paths) the record may name.
        **overrides: arguments set here (``num_workers=0``), applied where the class takes them.
    """
    from lightning.pytorch import LightningDataModule

    cls = (
        datamodule_class
        if isinstance(datamodule_class, type)
        else resolve_recorded_class(datamodule_class, "datamodule", source=source, allow=allow_classes)
    )
    if not issubclass(cls, LightningDataModule):
        raise UntrustedCheckpointError(f"{source}: {cls.__name__} is not a LightningDataModule.")
    parameters = inspect.signature(cls.__init__).parameters
    arguments = {**dict(hparams or {}), **{k: v for k, v in overrides.items() if k in parameters}}
    return cls(**_sections(cls, check_init_args(cls, arguments, source=source, role="datamodule argument")))


def _sections(cls: type, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded dicts turned back into the dataclass sections their parameters are typed with.

    As the training parser builds them (the multi-task data's per-task sections); other values pass through.
    """
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: nothing to convert
        return dict(arguments)
    out = dict(arguments)
    for name, value in arguments.items():
        hint = hints.get(name)
        if isinstance(value, Mapping) and isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out[name] = hint(**value)
    return out


def datamodule_from_config(path: str | os.PathLike[str]) -> Any:
    """Build the datamodule of a recipe YAML with the training parser (only its ``data:`` section is instantiated).

    A full recipe is parsed exactly as ``moto-vision fit --config`` parses it (interpolation, ``class_path`` short
    names, validation of every section, unknown keys are errors); a YAML holding only a ``data:`` section is parsed
    by the same parser's datamodule part.
    """
    from moto_vision.cli import recipe_datamodule

    return recipe_datamodule(path)


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


def export_inputs(task: Any, size: int) -> dict[str, torch.Tensor]:
    """The inputs of the task's export graph, batch 1, in call order: the image first.

    A task whose ``export_module()`` takes more than the image (e.g. an AWB model fed the camera's colour matrix)
    defines ``export_inputs(image) -> dict[str, Tensor]`` returning every input by name, the image first; the names
    become the artifact's input names, and data batches supply each input under the same key (see
    :func:`batch_inputs`).
    """
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    hook = getattr(task, "export_inputs", None)
    if not callable(hook):
        return {"image": image}
    inputs = dict(hook(image))
    if not inputs or next(iter(inputs.values())) is not image:
        raise ValueError(f"{type(task).__name__}.export_inputs() must return the example image first.")
    return inputs


def batch_inputs(batch: Mapping[str, Any], examples: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """A data batch as export-graph inputs: ``batch[name]`` for each input, the image under ``"image"``.

    An extra input the batch does not hold is the example input repeated over the batch, for the PyTorch graph and
    the artifact alike (parity compares them on the same inputs).
    """
    images = batch["image"]
    inputs = [images]
    for name, example in list(examples.items())[1:]:
        value = batch.get(name)
        inputs.append(value if value is not None else example.expand(images.shape[0], *example.shape[1:]))
    return tuple(inputs)


class InferenceModule(nn.Module):
    """The task's export graph with plain tensor inputs and outputs.

    Exporters and runtimes want a tensor or a flat tuple of tensors; a task whose export module returns a
    dict (e.g. multi-task heads) is flattened in ``output_names`` order, and predictors rebuild the dict.

    Attributes:
        input_names: names of the inputs in call order (``["image"]`` for most tasks).
        output_names: names of the outputs in order (``["output"]`` for a single tensor).
        output_structure: ``"tensor"``, ``"tuple"`` or ``"dict"``: what the task itself returns.
    """

    def __init__(
        self, module: nn.Module, output_names: list[str], output_structure: str, input_names: list[str] | None = None
    ) -> None:
        super().__init__()
        self.module = module
        self.input_names = list(input_names or ["image"])
        self.output_names = output_names
        self.output_structure = output_structure

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.module(*inputs)
        if self.output_structure == "tensor":
            return outputs
        if self.output_structure == "dict":
            return tuple(outputs[name] for name in self.output_names)
        return tuple(outputs)


@torch.no_grad()
def prepare_inference_module(
    task: nn.Module, example: torch.Tensor | Mapping[str, torch.Tensor] | Sequence[torch.Tensor]
) -> InferenceModule:
    """A fused, eval-mode copy of ``task.export_module()`` ready for ``torch.export``.

    Args:
        task: the task.
        example: the example input(s): the image, or every input by name as :func:`export_inputs` gives them.

    The task itself is left untouched; re-parameterisable blocks (MobileOne, FastViT, RepViT) of the copy are
    fused with :func:`moto_vision.backbones.reparameterize`.
    """
    from moto_vision.backbones import reparameterize

    if isinstance(example, torch.Tensor):
        example = {"image": example}
    elif not isinstance(example, Mapping):
        example = {"image": example[0], **{f"input_{i}": t for i, t in enumerate(example[1:], 1)}}
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
    outputs = module(*example.values())
    if isinstance(outputs, torch.Tensor):
        names, structure = ["output"], "tensor"
    elif isinstance(outputs, Mapping):
        names, structure = [str(k) for k in outputs], "dict"
    elif isinstance(outputs, (tuple, list)):
        names, structure = [f"output_{i}" for i in range(len(outputs))], "tuple"
    else:
        raise TypeError(f"{type(task).__name__}.export_module() returned {type(outputs).__name__}; expected tensors.")
    return InferenceModule(module, names, structure, list(example)).eval()


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


def model_facts(
    task: Any,
    info: CheckpointInfo | None,
    module: InferenceModule,
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
) -> dict[str, Any]:
    """Metadata shared by every artifact of one model (task facts from ``task.export_metadata()`` plus ours)."""
    from moto_vision import __version__

    if isinstance(inputs, torch.Tensor):
        inputs = {"image": inputs}
    facts: dict[str, Any] = dict(task.export_metadata()) if hasattr(task, "export_metadata") else {}
    image = next(iter(inputs.values()))
    height, width = int(image.shape[-2]), int(image.shape[-1])
    color_domain = facts.get("color_domain", getattr(task, "color_domain", "srgb"))
    with torch.no_grad():
        outputs = module(*inputs.values())
    outputs = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
    described = [
        {"name": name, "shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}
        for name, tensor in inputs.items()
    ]
    facts.update(
        {
            "moto_vision_version": __version__,
            "image_size": facts.get("image_size", height if height == width else [height, width]),
            "input_size": [height, width],
            "input": {
                **described[0],
                "layout": "NCHW",
                "range": [0.0, 1.0],
                "color_domain": color_domain,
                "normalization": "inside the model",
            },
            "inputs": described,
            "outputs": list(module.output_names),
            "output_structure": module.output_structure,
            "output_shapes": {n: list(t.shape) for n, t in zip(module.output_names, outputs)},
            "checkpoint": {"file": info.path.name, "sha256": info.sha256} if info is not None else None,
        }
    )
    return facts

"""``MultiTaskDataModule``: the AWB, portrait and scene datamodules combined, in one camera input domain.

Each task keeps its own datamodule (its data, splits and augmentation); this module combines their loaders with
Lightning's :class:`~lightning.pytorch.utilities.CombinedLoader` and, on the device, turns every step's per-task
batches into one batch for the shared backbone:

1. each task's own training augmentation runs on its batch (AWB relighting and linear ISP preset; the portrait
   and scene flips, crops and sRGB camera presets);
2. sRGB images (portrait, scene) are *unprocessed* into linear camera RGB before white balance with
   :func:`moto_vision.isp.unprocess` (inverse tone curve and gamma, a camera's colour matrix, a light's colour):
   the domain the camera's perception stage sees and the one AWB needs. ``unprocess_cameras`` says which cameras
   and lights: ``brooks`` (default) the four camera matrices and Planckian lights of Brooks et al.; ``pool`` the
   AWB data's camera pools and light spectra, split as the AWB data splits them, so validation and test images are
   seen by cameras training never saw (``test --data.unprocess_cameras pool`` tests any checkpoint so). Training
   batches draw new cameras and lights every step; validation and test images get a fixed camera and light per
   sample, so their metrics are comparable between epochs and runs. AWB data is already linear camera RGB;
3. the batches are concatenated into ``{"image": (N, 3, S, S), "illuminant": (N, 3), "mask": (N, S, S),
   "label": (N,) or (N, K), "has_awb": (N,), "has_portrait": (N,), "has_scene": (N,)}``. ``has_<task>`` says which
   rows carry that task's ground truth; the other rows hold a filler (zeros, ignore index 255, -1) that no loss
   or metric reads.

Each task's data is configured in its own typed section, whose options are its datamodule's arguments
(:data:`AWBDataOptions`, :data:`PortraitDataOptions`, :data:`SceneDataOptions`, made from the signatures of
:class:`~moto_vision.data.AWBDataModule`, :class:`~moto_vision.data.PortraitDataModule` and
:class:`~moto_vision.data.SceneDataModule`, so ``--help`` lists every option with its default and LightningCLI
validates them)::

    data:
      class_path: MultiTaskDataModule
      init_args:
        image_size: 64
        awb: {train_size: 1024}          # AWBDataModule arguments
        portrait: {synthetic_train_size: 512}
        scene: {synthetic_train_size: 512}

or ``--data.awb.train_size 1024`` on the command line. In Python, pass the sections
(``awb=AWBDataOptions(train_size=1024)``); plain dicts still work until 0.3, with a deprecation warning.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from lightning.pytorch.utilities import CombinedLoader, rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from moto_vision.data.base import BaseDataModule, split_of
from moto_vision.heads import TASKS, TaskName, get_kit, kit_names

if TYPE_CHECKING:
    from moto_vision.data.awb.synthetic import CameraVariation
    from moto_vision.isp.cameras import CameraPool

__all__ = [
    "TASKS",
    "AWBDataOptions",
    "DATA_OPTIONS",
    "MultiTaskDataModule",
    "PortraitDataOptions",
    "SceneDataOptions",
    "TaskName",
    "UnprocessToCamera",
    "data_options_class",
    "datamodule_class",
    "labelled_rows",
    "merge_task_batches",
]

Batch = dict[str, Any]


def datamodule_class(task: str) -> type[BaseDataModule]:
    """The datamodule class of a registered task (its kit's ``datamodule`` import path)."""
    module, _, name = get_kit(task).datamodule.rpartition(".")
    return getattr(importlib.import_module(module), name)


#: Options a task's section does not have: the multi-task datamodule sets ``image_size`` for every task (one
#: backbone pass needs one size).
_SHARED = ("image_size",)
#: Options whose section default is ``None``: "the MultiTaskDataModule's value" (its ``batch_size``, ...).
_INHERITED = ("batch_size", "num_workers", "seed")


def data_options_class(task: str) -> type:
    """A frozen dataclass of ``task``'s datamodule arguments: its typed section in :class:`MultiTaskDataModule`.

    The fields, types and defaults are read from the datamodule's signature (one place for them), without
    ``image_size`` (shared by every task) and with ``batch_size``, ``num_workers`` and ``seed`` defaulting to
    ``None``, which takes the multi-task datamodule's value. The docstring is the datamodule's, so ``--help``
    describes each option as the datamodule documents it.
    """
    cls = datamodule_class(task)
    hints = typing.get_type_hints(cls.__init__)
    specs = []
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in _SHARED or parameter.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            continue
        annotation = hints.get(name, Any)
        if name in _INHERITED:
            specs.append((name, annotation | None, dataclasses.field(default=None)))
        elif isinstance(parameter.default, (list, dict, set)):
            default = parameter.default
            specs.append((name, annotation, dataclasses.field(default_factory=lambda d=default: type(d)(d))))
        else:
            specs.append((name, annotation, dataclasses.field(default=parameter.default)))
    name = cls.__name__.removesuffix("Module") + "Options"  # AWBDataModule -> AWBDataOptions
    section = dataclasses.make_dataclass(name, specs, frozen=True)
    section.__module__ = __name__  # importable by name (jsonargparse, pickling)
    section.__doc__ = (
        f"The {task} section of MultiTaskDataModule: arguments of {cls.__name__} (batch_size, num_workers and seed "
        f"default to the MultiTaskDataModule's; image_size is the MultiTaskDataModule's).\n\n"
        + inspect.cleandoc(cls.__doc__ or "").split("\n", 1)[-1]
    )
    return section


#: The typed data section of each built-in task (:func:`data_options_class`).
DATA_OPTIONS: dict[str, type] = {task: data_options_class(task) for task in TASKS}
AWBDataOptions = DATA_OPTIONS["awb"]
PortraitDataOptions = DATA_OPTIONS["portrait"]
SceneDataOptions = DATA_OPTIONS["scene"]
_DEFAULT_SECTIONS = {task: section() for task, section in DATA_OPTIONS.items()}  # frozen: shared safely


def _section_arguments(task: str, section: Any) -> dict[str, Any]:
    """The datamodule arguments a section sets: the fields that differ from their defaults, as primitives."""
    cls = DATA_OPTIONS.get(task)
    if cls is None or not isinstance(section, cls):
        raise TypeError(f"MultiTaskDataModule: the {task} section must be a {getattr(cls, '__name__', 'dict')}.")
    defaults = cls()
    return {
        f.name: getattr(section, f.name)
        for f in dataclasses.fields(section)
        if getattr(section, f.name) != getattr(defaults, f.name)
    }


def labelled_rows(batch: Mapping[str, Any], task: str) -> Tensor | None:
    """Boolean ``(N,)`` mask of the rows of ``batch`` that carry ``task``'s ground truth, or ``None`` if none do.

    Merged batches say it with ``has_<task>``; a plain single-task batch (no ``has_`` key) is labelled in every row
    when it has the task's target key.
    """
    key = f"has_{task}"
    if key in batch:
        rows = batch[key]
        return rows if bool(rows.any()) else None
    if get_kit(task).target_key in batch:
        image = batch["image"]
        return torch.ones(image.shape[0], dtype=torch.bool, device=image.device)
    return None


def merge_task_batches(parts: Mapping[str, Mapping[str, Any]], tasks: Sequence[str]) -> Batch:
    """Concatenate per-source batches into one, with ``has_<task>`` masks for partial labels.

    Args:
        parts: ``{source: batch}``; every batch has ``"image"`` and any of the target keys (a scene batch whose
            images were unprocessed may carry an ``"illuminant"`` too).
        tasks: the tasks whose ``has_`` masks to write.

    Returns:
        The merged batch (see the module docstring). Targets no part carries are left out.
    """
    parts = {name: part for name, part in parts.items() if part is not None}
    if not parts:
        raise ValueError("merge_task_batches got no batches.")
    images = [part["image"] for part in parts.values()]
    sizes = {tuple(image.shape[-2:]) for image in images}
    if len(sizes) > 1:
        raise ValueError(
            f"The tasks' images have different sizes {sorted(sizes)}; one backbone pass needs one size. "
            "MultiTaskDataModule passes its image_size to every task: do not set image_size per task."
        )
    image = torch.cat(images)
    n, device = image.shape[0], image.device
    merged: Batch = {"image": image}
    offsets, start = {}, 0
    for name, part in parts.items():
        offsets[name] = (start, start + part["image"].shape[0])
        start = offsets[name][1]
    for task in tasks:
        kit = get_kit(task)
        key = kit.target_key
        has = torch.zeros(n, dtype=torch.bool, device=device)
        carriers = [name for name, part in parts.items() if key in part]
        if carriers:
            example = parts[carriers[0]][key]
            target = torch.full((n, *example.shape[1:]), kit.fill_value, dtype=example.dtype, device=device)
            for name in carriers:
                lo, hi = offsets[name]
                target[lo:hi] = parts[name][key]
                has[lo:hi] = True
            merged[key] = target
        merged[f"has_{task}"] = has
    return merged


class UnprocessToCamera(nn.Module):
    """sRGB images to linear camera RGB before white balance (:func:`moto_vision.isp.unprocess`).

    Random cameras and lights for training; for evaluation (``fixed=True``) each sample's camera and light are drawn
    from a generator seeded by ``seed`` and the sample's index, so a test image is the same raw image in every run.

    Args:
        fixed: derive the parameters from sample indices instead of drawing them.
        seed: seed of the fixed draws.
        cameras: the camera pool to draw from, with the AWB data's lights
            (:func:`~moto_vision.data.awb.photo_scenes.pool_camera_params`); ``None``: the four camera matrices and
            Planckian lights of Brooks et al. (:func:`moto_vision.isp.sample_camera_params`).
        variation: how training cameras vary around the pool (imaginary cameras; ``None``: the pool's as they are).
    """

    def __init__(
        self,
        fixed: bool = False,
        seed: int = 0,
        cameras: CameraPool | None = None,
        variation: CameraVariation | None = None,
    ) -> None:
        super().__init__()
        self.fixed = fixed
        self.seed = int(seed)
        self.cameras = cameras
        self.variation = variation

    def _draw(self, batch_size: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        if self.cameras is None:
            from moto_vision.isp import sample_camera_params

            return sample_camera_params(batch_size, generator=generator)
        from moto_vision.data.awb.photo_scenes import pool_camera_params

        return pool_camera_params(batch_size, generator, self.cameras, self.variation)

    def camera_params(self, batch_size: int, index: Tensor | None, device: torch.device) -> dict[str, Tensor]:
        if not self.fixed:
            return {key: value.to(device) for key, value in self._draw(batch_size, None).items()}
        if index is None:
            raise ValueError("UnprocessToCamera(fixed=True) needs the samples' indices (batch['index']).")
        draws = [self._draw(1, torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))) for i in index.tolist()]
        return {key: torch.cat([d[key] for d in draws]).to(device) for key in draws[0]}

    def forward(self, image: Tensor, index: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``(raw, params)``: linear camera RGB ``(B, 3, H, W)`` and the camera parameters (with ``"illuminant"``)."""
        from moto_vision.isp import unprocess

        params = self.camera_params(image.shape[0], index, image.device)
        raw, params = unprocess(image.float(), params)
        return raw.to(image.dtype), params

    def extra_repr(self) -> str:
        cameras = "brooks" if self.cameras is None else f"{len(self.cameras)} pool cameras"
        return f"fixed={self.fixed}, seed={self.seed}, cameras={cameras}"


class _Indexed(Dataset):
    """A dataset whose samples also carry their index (for the fixed per-sample cameras of evaluation)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "index": index}


def _given_arguments(task: str, section: Any) -> dict[str, Any]:
    """A task section (or, deprecated, a dict of datamodule arguments) as the dict of arguments it sets."""
    if section is None:
        return {}
    if isinstance(section, Mapping):
        if section:
            name = DATA_OPTIONS[task].__name__
            rank_zero_warn(
                f"MultiTaskDataModule: a plain dict for the {task} data is deprecated and will be refused in 0.3; pass "
                f"{name}(...) from moto_vision.data.multitask (YAML and the command line are unchanged: "
                f"`{task}: {{option: value}}`, --data.{task}.<option>).",
                category=FutureWarning,
            )
        return {key: value for key, value in section.items() if value is not None}
    return _section_arguments(task, section)


class MultiTaskDataModule(BaseDataModule):
    """The task datamodules combined for :class:`~moto_vision.tasks.MultiTaskPerception` (see the module docstring).

    Args:
        tasks: which tasks' data to load (default: all three). Usually the model's ``heads``.
        image_size: side of every task's square images (passed to each task's datamodule).
        awb: the AWB data, arguments of :class:`~moto_vision.data.AWBDataModule` (``format``, ``root``,
            ``train_size``, ...) in an :data:`AWBDataOptions` section (``--data.awb.train_size 1024``). A plain dict
            is deprecated (until 0.3).
        portrait: the portrait data, a :data:`PortraitDataOptions` section (PortraitDataModule arguments).
        scene: the scene data, a :data:`SceneDataOptions` section (SceneDataModule arguments).
        train_mode: how training steps combine the loaders: ``max_size_cycle`` (an epoch is the longest loader,
            shorter ones start over) or ``min_size`` (stop with the shortest).
        unprocessed_awb_labels: training images unprocessed from sRGB (portrait, scene) also carry the light they
            were unprocessed with as AWB ground truth (free AWB labels, Brooks et al. 2019). Validation and test AWB
            metrics stay on the AWB data only.
        unprocess_cameras: the cameras and lights the sRGB images are unprocessed with. ``brooks`` (default): the
            four camera matrices and Planckian lights of Brooks et al. ``pool``: the AWB data's camera pools and
            light spectra (:func:`~moto_vision.data.awb.photo_scenes.pool_camera_params`), split as the AWB data
            splits them (``awb.val_cameras``, ``awb.test_cameras``, ``awb.camera_seed``; imaginary cameras in
            training), so every head is validated and tested on cameras training never saw; with ``awb.camera``
            every image goes through that one sensor. Trained with ``pool``, the recipe's heads scored no better on
            the held-out cameras than trained with ``brooks`` (docs/multitask.md#one-input-domain-linear-camera-rgb).
        batch_size: samples per task per step (a task's own ``batch_size`` overrides it).
        num_workers: data-loading workers per task.
        seed: seed of every task's data (a task's own ``seed`` overrides it) and of the fixed evaluation cameras.
    """

    def __init__(
        self,
        tasks: list[TaskName] | None = None,
        image_size: int = 64,
        awb: AWBDataOptions = _DEFAULT_SECTIONS["awb"],
        portrait: PortraitDataOptions = _DEFAULT_SECTIONS["portrait"],
        scene: SceneDataOptions = _DEFAULT_SECTIONS["scene"],
        train_mode: Literal["max_size_cycle", "min_size"] = "max_size_cycle",
        unprocessed_awb_labels: bool = False,
        unprocess_cameras: Literal["brooks", "pool"] = "brooks",
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        # Checkpoints store primitive dicts: only what each section sets (the rest are the datamodules' defaults).
        awb, portrait, scene = (
            _given_arguments(task, section)
            for task, section in (("awb", awb), ("portrait", portrait), ("scene", scene))
        )
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        chosen = list(TASKS) if tasks is None else list(dict.fromkeys(tasks))
        registered = kit_names()
        if not chosen or any(t not in registered for t in chosen):
            raise ValueError(f"MultiTaskDataModule: tasks must be a non-empty subset of {registered}, got {tasks}.")
        self.tasks = [t for t in registered if t in chosen]
        self.image_size = image_size
        self.train_mode = train_mode
        self.unprocessed_awb_labels = unprocessed_awb_labels
        if unprocess_cameras not in ("pool", "brooks"):
            raise ValueError(
                f"MultiTaskDataModule: unprocess_cameras must be 'pool' or 'brooks', got {unprocess_cameras!r}."
            )
        self.unprocess_cameras = unprocess_cameras
        arguments = {"awb": awb, "portrait": portrait, "scene": scene}
        self._awb_arguments = awb
        self.datamodules: dict[str, BaseDataModule] = {
            task: self._build(task, arguments.get(task) or {}) for task in self.tasks
        }

    def _build(self, task: str, arguments: Mapping[str, Any]) -> BaseDataModule:
        cls = datamodule_class(task)
        accepted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
        unknown = sorted(set(arguments) - set(accepted))
        if unknown:
            raise ValueError(
                f"MultiTaskDataModule: {task} has no argument(s) {unknown}; {cls.__name__} accepts {accepted}."
            )
        if "image_size" in arguments and arguments["image_size"] != self.image_size:
            raise ValueError(
                f"MultiTaskDataModule: {task}.image_size={arguments['image_size']} differs from image_size="
                f"{self.image_size}; all tasks share one input size. Set only the top-level image_size."
            )
        options = {"batch_size": self.batch_size, "num_workers": self.num_workers, "seed": self.seed}
        options.update(arguments)
        options["image_size"] = self.image_size
        return cls(**options)

    # ----------------------------------------------------------------- datasets and loaders
    def setup(self, stage: str | None = None) -> None:
        for datamodule in self.datamodules.values():
            if self._trainer_attached():
                # The task datamodules run their own training augmentation and read the split from the trainer.
                datamodule.trainer = self.trainer
            datamodule.setup(stage)

    def train_dataloader(self) -> CombinedLoader:
        loaders = {task: dm.train_dataloader() for task, dm in self.datamodules.items()}
        return CombinedLoader(loaders, mode=self.train_mode)

    def _eval_loader(self, split: str) -> CombinedLoader:
        loaders = {}
        for task, dm in self.datamodules.items():
            dataset = getattr(dm, f"{split}_dataset")
            if dataset is None:
                raise RuntimeError(f"The {task} datamodule has no {split} dataset; call setup() first.")
            loaders[task] = DataLoader(
                _Indexed(dataset),
                batch_size=dm.batch_size,
                shuffle=False,
                num_workers=dm.num_workers,
                persistent_workers=dm.num_workers > 0,
            )
        # Every sample of every task once; tasks that run out early are None in the last steps.
        return CombinedLoader(loaders, mode="max_size")

    def val_dataloader(self) -> CombinedLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> CombinedLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        raise NotImplementedError(
            "MultiTaskDataModule has no predict split: its samples come from three datasets with different labels. "
            "Run the model on your images directly (MultiTaskPerception(...)(images) returns every head's output), "
            "or export it with `moto-vision export` and use the exported model."
        )

    # ----------------------------------------------------------------- batches on the device
    def build_augmentations(self) -> dict[str, nn.Module]:
        """Per split: the sRGB -> camera conversion of each sRGB task (random for training, fixed otherwise)."""
        srgb = [task for task in self.tasks if get_kit(task).domain == "srgb"]
        cameras = self.unprocess_camera_pools() if srgb else {}
        modules: dict[str, nn.Module] = {}
        for split in ("train", "val", "test"):
            offset = {"train": 0, "val": 1, "test": 2}[split]
            pool, variation = cameras.get(split, (None, None))
            modules[split] = nn.ModuleDict(
                {
                    task: UnprocessToCamera(
                        fixed=split != "train",
                        seed=(self.seed * 7 + offset) * 3 + kit_names().index(task),
                        cameras=pool,
                        variation=variation,
                    )
                    for task in srgb
                }
            )
        return modules

    def unprocess_camera_pools(self) -> dict[str, tuple[CameraPool, CameraVariation]]:
        """Per split, the camera pool and variation the sRGB images are unprocessed with (``{}`` for ``brooks``).

        Those of the AWB data (:meth:`~moto_vision.data.AWBDataModule.synthetic_cameras`), from the ``awb`` section's
        options also when AWB is not among the tasks, so one set of options says which cameras are held out.
        """
        if self.unprocess_cameras == "brooks":
            return {}
        awb = self.datamodules.get("awb")
        if awb is None:
            awb = self._build("awb", self._awb_arguments or {})
        pools = awb.synthetic_cameras()
        return {split: (pools[split], awb.camera_variation(split)) for split in ("train", "val", "test")}

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        split = split_of(self.trainer if self._trainer_attached() else None)
        if not isinstance(batch, Mapping) or split not in self.augmentations:
            return batch
        with torch.no_grad():
            return self.augment(batch, self.augmentations[split], split)

    def augment(self, batch: Any, augmentation: nn.Module, split: str) -> Batch:
        """Turn one step of per-task batches into one merged batch in linear camera RGB (module docstring).

        Takes what the combined loader yields: ``{task: batch or None}``, or, when iterated outside a Trainer,
        the ``(batches, batch_idx, dataloader_idx)`` tuple of :class:`~lightning.pytorch.utilities.CombinedLoader`.
        """
        if isinstance(batch, tuple) and len(batch) == 3 and isinstance(batch[0], Mapping):
            batch = batch[0]
        if not isinstance(batch, Mapping):
            raise TypeError(f"MultiTaskDataModule expected a dict of task batches, got {type(batch).__name__}.")
        if "image" in batch:
            return dict(batch)  # already merged
        parts: dict[str, Batch] = {}
        for task, part in batch.items():
            if part is None:
                continue
            part = dict(part)
            if split == "train" and self._trainer_attached():
                part = self.datamodules[task].on_after_batch_transfer(part, 0)
            if task in augmentation:
                raw, params = augmentation[task].to(part["image"].device)(part["image"], part.get("index"))
                part["image"] = raw
                if split == "train" and self.unprocessed_awb_labels and "awb" in self.tasks:
                    part["illuminant"] = params["illuminant"].to(raw.dtype)
            parts[task] = part
        return merge_task_batches(parts, self.tasks)

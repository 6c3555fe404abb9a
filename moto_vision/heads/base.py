"""``TaskKit``: everything about one camera task that does not depend on how it is trained.

A kit is a plain object (no tensors, no Lightning) made from typed options. It knows its task's facts (name,
ground-truth key, the colour domain of its data, the filler of unlabelled rows, its headline metric) and builds
and uses the task's head on the feature maps of any :class:`~moto_vision.backbones.Backbone`:

- ``build(channels, reductions)`` returns the head's named parts (``{"head": ...}``, ``{"decoder": ...}``, ...);
  the model holds them where it likes: a single-task model as its own attributes (``self.head``), the multi-task
  model in one ``ModuleDict`` per head. Every other method takes that holder as ``parts``;
- ``forward`` / ``export_output`` / ``output_from_export``: the head on the features, the deployed form of its
  output and back;
- ``build_loss`` and ``loss`` (always a dict with ``"loss"``), ``metrics`` and ``update``, ``calibrate`` (fitted on
  validation outputs, e.g. temperature scaling), ``render`` (a picture of predictions), ``report`` (the test
  table), ``export_metadata`` and ``check_data`` (does a datamodule agree with the model).

The single-task LightningModules and :class:`~moto_vision.tasks.MultiTaskPerception` both use kits, so a task's
head, loss, metrics and reports exist once. Kits register in :mod:`moto_vision.heads.registry`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal, get_args

from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

from moto_vision.errors import OptionError

__all__ = ["IGNORE_INDEX", "TASKS", "ColorDomain", "TaskKit", "TaskName"]

#: The built-in tasks, in the order every multi-task model and datamodule uses. A kit registered by another package
#: works through the Python API; add its name here to name it in YAML too (LightningCLI validates the Literal).
TaskName = Literal["awb", "portrait", "scene"]
#: The built-in tasks in their fixed order (the values of :data:`TaskName`).
TASKS: tuple[str, ...] = get_args(TaskName)
#: Mask value of unlabelled pixels (segmentation), in data, losses, metrics and merged multi-task batches.
IGNORE_INDEX = 255
#: ``"srgb"``: gamma-encoded sRGB; ``"linear"``: linear camera RGB before white balance.
ColorDomain = Literal["srgb", "linear"]

Parts = Any  # an nn.Module whose attributes are the parts that build() returned


class TaskKit(ABC):
    """One task's facts and head logic (see the module docstring).

    Class attributes that kits set:

    Attributes:
        name: registry key; also the metric prefix and output name in multi-task models (``val_<name>_...``).
        target_key: the batch key of the ground truth (``"illuminant"``, ``"mask"``, ``"label"``).
        domain: the colour domain of the task's own data (what its datamodule yields).
        fill_value: target value of rows without this task's label in merged multi-task batches.
        datamodule: import path of the task's LightningDataModule (imported only by the multi-task datamodule, so
            this floor never imports ``data``).
        options_type: the dataclass of the kit's options.
        calibrates: whether the kit fits something on validation outputs after every validation epoch.
        loss_weight: the task's weight in a multi-task loss with fixed weights when none is given (losses come in
            different units; the weight brings this one to the scale of a cross-entropy in nats).
    """

    name: ClassVar[str]
    target_key: ClassVar[str]
    domain: ClassVar[ColorDomain]
    fill_value: ClassVar[float]
    datamodule: ClassVar[str]
    options_type: ClassVar[type[Any]]
    calibrates: ClassVar[bool] = False
    loss_weight: ClassVar[float] = 1.0

    def __init__(self, options: Any = None) -> None:
        self.options = self.parse_options(options)

    # ------------------------------------------------------------------------------------------ options
    @classmethod
    def parse_options(cls, value: Any) -> Any:
        """The kit's options from ``None`` (defaults), an options dataclass or a mapping of option names."""
        if value is None:
            return cls.options_type()
        if isinstance(value, cls.options_type):
            return dataclasses.replace(value)
        if isinstance(value, Mapping):
            known = [f.name for f in dataclasses.fields(cls.options_type)]
            unknown = sorted(set(value) - set(known))
            if unknown:
                raise OptionError(f"The {cls.name} head has no option(s) {unknown}; its options are {known}.")
            return cls.options_type(**value)
        raise TypeError(f"{cls.name} head options must be a {cls.options_type.__name__} or a dict, got {value!r}.")

    @classmethod
    def hparams_of(cls, value: Any) -> dict[str, Any]:
        """Options (as :meth:`parse_options` takes them) as a dict of primitives, without the kit's own checks."""
        return dataclasses.asdict(cls.parse_options(value))

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> TaskKit:
        """The kit of a single-task model, whose constructor arguments include the kit's options by name."""
        names = {f.name for f in dataclasses.fields(cls.options_type)}
        return cls({k: v for k, v in hparams.items() if k in names})

    def hparams(self) -> dict[str, Any]:
        """The options as primitives (what a checkpoint stores)."""
        return dataclasses.asdict(self.options)

    # ------------------------------------------------------------------------------------------ facts
    @property
    @abstractmethod
    def headline(self) -> str:
        """The metric that selects checkpoints and heads benchmark tables (without split prefix)."""

    @property
    @abstractmethod
    def headline_mode(self) -> Literal["min", "max"]:
        """Whether lower or higher :attr:`headline` is better."""

    def max_level(self) -> int | None:
        """The deepest backbone level the head reads, if known before the backbone exists (``None``: every level).

        The backbone then stops at that level when no other head needs more.
        """
        return None

    def feature_levels(self, num_levels: int) -> list[int]:
        """The backbone levels (``0 .. num_levels - 1``) the head reads."""
        return list(range(num_levels))

    # ------------------------------------------------------------------------------------------ model
    @abstractmethod
    def build(self, channels: Sequence[int], reductions: Sequence[int]) -> dict[str, nn.Module]:
        """The head's named parts for a backbone with these feature channels and strides."""

    @abstractmethod
    def forward(self, parts: Parts, features: Sequence[Tensor], image: Tensor) -> Tensor:
        """The head's output from the backbone's feature maps (and the model's input image)."""

    def export_output(self, parts: Parts, output: Tensor) -> Tensor:
        """What the deployed graph returns for ``output`` (e.g. calibrated scores instead of logits)."""
        return output

    def output_from_export(self, parts: Parts, exported: Tensor) -> Tensor:
        """The inverse of :meth:`export_output`, so exported models are scored with the same metrics."""
        return exported

    # ------------------------------------------------------------------------------------------ training
    @abstractmethod
    def build_loss(self) -> nn.Module:
        """The loss module (called by :meth:`loss`)."""

    def loss(self, criterion: nn.Module, output: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Loss terms: ``"loss"`` (optimised) and further ``<term>_loss`` entries to log."""
        value = criterion(output, target)
        return dict(value) if isinstance(value, Mapping) else {"loss": value}

    def setup_loss(self, criterion: nn.Module, datamodule: Any) -> None:  # noqa: B027 (optional hook)
        """Adapt the loss to the training data before fitting (e.g. class weights from counts)."""

    @abstractmethod
    def metrics(self, core_only: bool = False) -> MetricCollection:
        """The task's metrics of one split (``core_only``: the cheap headline ones, for training steps)."""

    def update(
        self, parts: Parts, metrics: Iterable[tuple[str, Metric]], output: Tensor, target: Tensor, prefix: str = ""
    ) -> None:
        """Update ``(name, metric)`` pairs of :meth:`metrics` (names may carry ``prefix``) with one batch."""
        for _, metric in metrics:
            metric.update(output, target)

    def calibrate(self, parts: Parts, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        """Fit the kit's calibration on a whole validation split's outputs; returns values to log."""
        return {}

    # ------------------------------------------------------------------------------------------ reporting
    @abstractmethod
    def render(self, parts: Parts, images: Tensor, output: Tensor, target: Tensor, max_images: int = 8) -> Tensor:
        """A ``(3, H, W)`` picture in ``[0, 1]`` of predictions and ground truth.

        ``images`` are in the kit's :attr:`domain` (a model in another domain converts them for display first).
        """

    @abstractmethod
    def report(self, parts: Parts, values: Mapping[str, float], *, prefix: str, title: str | None = None) -> None:
        """Print the test table from metric values named ``<prefix><metric>``."""

    @abstractmethod
    def export_metadata(self, parts: Parts) -> dict[str, Any]:
        """Facts an exported model carries about this head's output."""

    def check_data(self, datamodule: Any, where: str = "--model.init_args.") -> None:  # noqa: B027 (optional hook)
        """Raise a ``ValueError`` naming the fix when ``datamodule`` disagrees with the head (classes, labels).

        ``where`` is how the user reaches the kit's options, for the message.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"

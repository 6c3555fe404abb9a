"""Checkpoints are data, never code: the classes a checkpoint may name, and checks on what it passes them.

A moto-vision checkpoint records which task class it holds and which datamodule trained it
(``checkpoint["moto_vision"]``, and LightningCLI's ``hyper_parameters["_class_path"]``). Checkpoints are
shared between teams and downloaded from model hubs, so a recorded name is never imported just because
it is recorded: it must be on the allow-list below (moto-vision's own tasks and datamodules, under their
current and former import paths), or the user must name the class themselves (``--allow-class
pkg.mod.Class`` on the command line, ``allow_classes=[...]`` in the API). Looking a name up never imports
anything; only a listed or allowed class is imported.

What a checkpoint passes to that class is checked too: constructor arguments must be primitives (str,
numbers, bool, None, lists and str-keyed dicts of those, no ``class_path`` anywhere) and fit the class
signature's types (validated by jsonargparse, as LightningCLI validates a recipe), and the weights must be
tensors whose names and shapes are exactly the model's.

Other projects add their own classes with :func:`register_class` (in their own code, which the user
chose to import). Nothing here imports Lightning or any moto-vision task, so any floor can use it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import inspect
import os
import pathlib
import types
import typing
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Kind",
    "TrustedClass",
    "UntrustedCheckpointError",
    "check_init_args",
    "check_primitive_record",
    "check_state_dict",
    "is_data_type",
    "is_primitive",
    "read_checkpoint_file",
    "register_class",
    "registered_classes",
    "resolve_checkpoint",
    "resolve_recorded_class",
    "resolve_user_class",
]

Kind = Literal["task", "datamodule"]

_WHAT = {"task": "task (LightningModule)", "datamodule": "datamodule"}


class UntrustedCheckpointError(ValueError):
    """A checkpoint names a class, arguments or weights that moto-vision refuses to use (one-line message)."""


@dataclass(frozen=True)
class TrustedClass:
    """A class checkpoints may name.

    Attributes:
        path: canonical import path, ``package.module.Class``.
        kind: ``"task"`` or ``"datamodule"``.
        aliases: other names that mean the same class (former import paths, package re-exports, the short name).
    """

    path: str
    kind: Kind
    aliases: tuple[str, ...] = ()

    def load(self) -> type:
        """Import the class from its canonical path."""
        return _import_path(self.path)


#: Every accepted name (canonical path and aliases) -> its entry, per kind.
_REGISTRY: dict[Kind, dict[str, TrustedClass]] = {"task": {}, "datamodule": {}}


def register_class(cls_or_path: type | str, kind: Kind, *, aliases: Iterable[str] = ()) -> TrustedClass:
    """Allow checkpoints to name a class (for a project's own tasks and datamodules).

    Args:
        cls_or_path: the class, or its canonical import path (``pkg.module.Class``; not imported now).
        kind: ``"task"`` or ``"datamodule"``.
        aliases: former import paths under which checkpoints written earlier recorded the class.

    Returns:
        The registry entry.
    """
    if kind not in _REGISTRY:
        raise ValueError(f"kind must be 'task' or 'datamodule', got {kind!r}.")
    path = cls_or_path if isinstance(cls_or_path, str) else _path_of(cls_or_path)
    if "." not in path:
        raise ValueError(f"register_class needs a full import path (pkg.module.Class), got {path!r}.")
    short = path.rpartition(".")[2]
    entry = TrustedClass(path, kind, tuple(dict.fromkeys([*aliases, short])))
    for name in (path, *entry.aliases):
        _REGISTRY[kind][name] = entry
    return entry


def registered_classes(kind: Kind | None = None) -> list[TrustedClass]:
    """The allow-list: one entry per class (optionally of one kind), in registration order."""
    kinds: list[Kind] = [kind] if kind else ["task", "datamodule"]
    return [entry for k in kinds for entry in dict.fromkeys(_REGISTRY[k].values())]


def _register_builtins() -> None:
    # moto-vision's own classes. When a class moves, its old path stays here as an alias: checkpoints written by
    # earlier releases recorded it. tests/test_trust.py checks each entry imports to the class it names and that
    # every task / datamodule moto_vision.tasks and moto_vision.data export is listed.
    for path, aliases in {
        "moto_vision.tasks.awb.AWBRegressor": ["moto_vision.tasks.AWBRegressor"],
        "moto_vision.tasks.segmentation.PortraitSegmenter": ["moto_vision.tasks.PortraitSegmenter"],
        "moto_vision.tasks.scene.SceneClassifier": ["moto_vision.tasks.SceneClassifier"],
        "moto_vision.tasks.multitask.MultiTaskPerception": ["moto_vision.tasks.MultiTaskPerception"],
    }.items():
        register_class(path, "task", aliases=aliases)
    for path, aliases in {
        "moto_vision.data.awb.datamodule.AWBDataModule": [
            "moto_vision.data.AWBDataModule",
            "moto_vision.data.awb.AWBDataModule",
        ],
        "moto_vision.data.portrait.datamodule.PortraitDataModule": [
            "moto_vision.data.PortraitDataModule",
            "moto_vision.data.portrait.PortraitDataModule",
        ],
        # Until the scene datamodule became a package it lived in moto_vision/data/scene.py.
        "moto_vision.data.scene.datamodule.SceneDataModule": [
            "moto_vision.data.SceneDataModule",
            "moto_vision.data.scene.SceneDataModule",
        ],
        "moto_vision.data.multitask.MultiTaskDataModule": ["moto_vision.data.MultiTaskDataModule"],
    }.items():
        register_class(path, "datamodule", aliases=aliases)


_register_builtins()


# ----------------------------------------------------------------------------------------------- classes
def resolve_recorded_class(
    name: Any, kind: Kind, *, source: str, allow: Iterable[str | type] = (), option: str = "--allow-class"
) -> type:
    """The class a checkpoint names, if it is on the allow-list or the user allowed it; nothing else is imported.

    Args:
        name: the recorded name (``pkg.module.Class``).
        kind: what the checkpoint uses it as.
        source: the checkpoint (for the message).
        allow: classes (or import paths) the user allows in addition to the registry.
        option: how the user allows a class, for the message.

    Raises:
        UntrustedCheckpointError: the name is not a string, not listed and not allowed.
    """
    if not isinstance(name, str) or not name:
        raise UntrustedCheckpointError(f"{source}: the recorded {_WHAT[kind]} class is {name!r}, not an import path.")
    for allowed in allow:
        if isinstance(allowed, type) and name in (_path_of(allowed), allowed.__qualname__):
            return allowed
        if isinstance(allowed, str) and name == allowed:
            return _import_path(allowed)
    entry = _REGISTRY[kind].get(name)
    if entry is None:
        raise UntrustedCheckpointError(
            f"{source} names {_WHAT[kind]} class {name!r}, which is not a moto-vision {kind}; refusing to import it "
            f"(checkpoints are data, not code). If you trust this checkpoint and that class, allow it: "
            f"{option} {name} (API: allow_classes=[{name!r}])."
        )
    return entry.load()


def resolve_user_class(name: str | type, kind: Kind) -> type:
    """A class the user named (``--task``): a registered short name or alias, else the import path they gave."""
    if isinstance(name, type):
        return name
    entry = _REGISTRY[kind].get(name)
    if entry is not None:
        return entry.load()
    if "." not in name:
        known = sorted({e.path.rpartition(".")[2] for e in registered_classes(kind)})
        raise ImportError(f"Unknown {kind} class {name!r}: use one of {known} or a full import path (pkg.mod.Class).")
    return _import_path(name)


def _path_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_path(path: str) -> type:
    module_name, _, attribute = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ImportError(f"Cannot import {path!r}: {error}") from error
    if not isinstance(found, type):
        raise ImportError(f"{path!r} is a {type(found).__name__}, not a class.")
    return found


# ----------------------------------------------------------------------------------------------- arguments
_PRIMITIVES = (str, int, float, bool, type(None))


def is_primitive(value: Any) -> bool:
    """Whether ``value`` is a str, number, bool, None, or a list / tuple / str-keyed dict of those."""
    if isinstance(value, _PRIMITIVES):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_primitive(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and is_primitive(v) for k, v in value.items())
    return False


def _class_path_key(value: Any, where: str) -> str | None:
    """Where a ``class_path`` key hides in ``value`` (jsonargparse would import and call it), else ``None``."""
    if isinstance(value, Mapping):
        if "class_path" in value:
            return where
        for key, item in value.items():
            found = _class_path_key(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _class_path_key(item, f"{where}[{i}]")
            if found:
                return found
    return None


def check_primitive_record(values: Any, *, source: str, role: str = "init", owner: str = "the class") -> None:
    """Refuse recorded arguments that are not a str-keyed dict of primitives, or that hold a ``class_path``.

    Raises:
        UntrustedCheckpointError: naming the first offending key.
    """
    if not isinstance(values, Mapping):
        raise UntrustedCheckpointError(f"{source}: the {role}s of {owner} are a {type(values).__name__}, not a dict.")
    for key, value in values.items():
        if not isinstance(key, str) or not is_primitive(value):
            raise UntrustedCheckpointError(
                f"{source}: {role} {key!r} of {owner} is a {type(value).__name__}, not a primitive (str, number, bool, "
                "list, dict); refusing the checkpoint."
            )
        hidden = _class_path_key(value, key)
        if hidden:
            raise UntrustedCheckpointError(
                f"{source}: {role} {hidden} of {owner} holds a 'class_path' (a class to import and call); refusing "
                "the checkpoint."
            )


def check_init_args(cls: type, arguments: Mapping[str, Any], *, source: str, role: str = "init") -> dict[str, Any]:
    """Validate constructor arguments read from a checkpoint against ``cls``'s signature.

    Every value must be a primitive without a ``class_path`` key anywhere, and fit the parameter's type annotation
    (jsonargparse validates them as LightningCLI validates a recipe). Keys the signature no longer has (a renamed
    argument of an older release) are dropped with a warning, as Lightning's own loading drops them.

    Args:
        cls: the (trusted) class.
        arguments: the recorded arguments.
        source: the checkpoint (for messages).
        role: what the arguments are, for messages (``"hyperparameter"``, ``"datamodule argument"``).

    Returns:
        The arguments to call ``cls`` with.

    Raises:
        UntrustedCheckpointError: a value is not a primitive, holds a ``class_path`` or does not fit its type.
    """
    name = cls.__name__
    check_primitive_record(arguments, source=source, role=role, owner=name)
    parameters = inspect.signature(cls.__init__).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    named = {n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self"}
    unknown = [k for k in arguments if k not in named]
    if unknown and not open_ended:
        warnings.warn(
            f"{source}: {name} no longer takes {unknown} (recorded by an older release); ignoring them.", stacklevel=2
        )
    known = {k: v for k, v in arguments.items() if k in named}
    hints = _type_hints(cls)
    for key, value in known.items():
        if value is not None and key in hints and not is_data_type(hints[key]):
            # jsonargparse would import a callable or class named by a string for such a parameter.
            raise UntrustedCheckpointError(
                f"{source}: {role} {key!r} of {name} is typed {hints[key]!r}, which a checkpoint may not set; "
                "refusing the checkpoint."
            )
    checked = _typed(cls, known, source=source, role=role)
    return {**checked, **({k: arguments[k] for k in unknown} if open_ended else {})}


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: treat them as untyped (jsonargparse reads them as Any)
        return {}


def is_data_type(annotation: Any) -> bool:
    """Whether a parameter annotation admits only data: primitives, Literal, containers and unions of them."""
    if annotation in _PRIMITIVES or annotation in (Any, object, pathlib.Path, os.PathLike):
        return True
    if typing.is_typeddict(annotation) or (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)):
        # Sections of options (the multi-task model's head_options): data when every field is.
        return all(is_data_type(t) for t in typing.get_type_hints(annotation).values())
    origin = typing.get_origin(annotation)
    if origin is Literal or origin is os.PathLike:
        return True
    if origin in (typing.Union, types.UnionType, list, tuple, dict, set, frozenset) or origin in (
        collections.abc.Sequence,
        collections.abc.Mapping,
        collections.abc.Iterable,
    ):
        return all(a is Ellipsis or is_data_type(a) for a in typing.get_args(annotation))
    if annotation in (list, tuple, dict, set):
        return True
    return False


def _typed(cls: type, arguments: dict[str, Any], *, source: str, role: str) -> dict[str, Any]:
    """``arguments`` parsed against ``cls``'s signature types by jsonargparse (converted values where primitive)."""
    if not arguments:
        return {}
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    try:
        parser.add_class_arguments(cls, "init", fail_untyped=False, sub_configs=False)
    except Exception:  # a signature jsonargparse cannot read: the primitive check above is all we can do
        return dict(arguments)
    try:
        parsed = parser.parse_object({"init": arguments}, defaults=False)
    except Exception as error:  # jsonargparse's ArgumentError, whose message spans lines
        detail = " ".join(str(error).split())
        raise UntrustedCheckpointError(
            f"{source}: the recorded {role}s do not fit {cls.__name__}'s signature ({detail[:400]}); refusing the "
            "checkpoint."
        ) from None
    values = parsed.get("init")
    values = values.as_dict() if hasattr(values, "as_dict") else dict(values or {})
    # jsonargparse converts ("3" -> 3 for an int); keep our primitive values where it built other objects.
    return {k: values[k] if k in values and is_primitive(values[k]) else v for k, v in arguments.items()}


# ----------------------------------------------------------------------------------------------- weights
def check_state_dict(state_dict: Any, expected: Mapping[str, Any] | None, *, source: str, owner: str) -> None:
    """Refuse weights that are not exactly the model's: non-tensors, missing or extra names, other shapes.

    Args:
        state_dict: the checkpoint's ``state_dict``.
        expected: the freshly built model's ``state_dict()``; ``None`` checks only that every entry is a tensor.
        source: the checkpoint (for messages).
        owner: how to call the model in messages (``AWBRegressor(backbone='...')``).

    Raises:
        UntrustedCheckpointError: with one line saying what does not fit.
    """
    import torch

    if not isinstance(state_dict, Mapping):
        raise UntrustedCheckpointError(f"{source}: 'state_dict' is a {type(state_dict).__name__}, not a dict.")
    for key, value in state_dict.items():
        if not isinstance(key, str) or type(value) is not torch.Tensor:
            raise UntrustedCheckpointError(
                f"{source}: state_dict entry {key!r} is a {type(value).__name__}, not a tensor; the checkpoint is "
                "damaged or was altered."
            )
    if expected is None:
        return
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected]
    if missing or extra:
        parts = [f"{len(missing)} missing (first: {missing[:3]})" if missing else "", ""]
        parts[1] = f"{len(extra)} unexpected (first: {extra[:3]})" if extra else ""
        raise UntrustedCheckpointError(
            f"{source}: the weights do not fit {owner}: {', '.join(p for p in parts if p)} tensors; the checkpoint "
            "is damaged, was altered, or belongs to another model."
        )
    for key, target in expected.items():
        if tuple(state_dict[key].shape) != tuple(target.shape):
            raise UntrustedCheckpointError(
                f"{source}: weight {key!r} has shape {tuple(state_dict[key].shape)} but {owner} expects "
                f"{tuple(target.shape)}; the checkpoint is damaged, was altered, or belongs to another model."
            )


def resolve_checkpoint(path: str | os.PathLike[str]) -> pathlib.Path:
    """A checkpoint file, or for a run directory its newest ``best*.ckpt`` (else ``last*.ckpt``)."""
    path = pathlib.Path(path).expanduser()
    if path.is_dir():
        for pattern in ("best*.ckpt", "last*.ckpt"):
            found = sorted(path.rglob(pattern), key=lambda p: p.stat().st_mtime)
            if found:
                return found[-1]
        raise FileNotFoundError(f"No best*.ckpt or last*.ckpt under {path}. Train first, or pass the .ckpt file.")
    return path


def read_checkpoint_file(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """Read a Lightning checkpoint as data: ``torch.load(weights_only=True)``, which runs no recorded code.

    Raises:
        FileNotFoundError: there is no such file.
        UntrustedCheckpointError: the file is not a weights-only checkpoint (one line saying why).
    """
    import torch

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}. Pass the .ckpt written by `moto-vision fit`.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights-only unpickling refuses anything but tensors and plain containers
        message = " ".join(str(error).split())[:300]
        raise UntrustedCheckpointError(f"{path} is not a readable weights-only PyTorch checkpoint: {message}") from None
    if not isinstance(checkpoint, Mapping):
        raise UntrustedCheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict.")
    return checkpoint

"""The task registry: one dict from task name to its :class:`~moto_vision.heads.base.TaskKit` class.

As timm's ``register_model``: a decorator and a dict, no framework. It is the single list of tasks: the multi-task
model and datamodule read the tasks, their ground-truth keys, colour domains and fillers from here::

    from moto_vision.heads import TaskKit, register_kit

    @register_kit
    class SkyKit(TaskKit):
        name = "sky"
        ...
"""

from __future__ import annotations

from typing import Any

from moto_vision.errors import OptionError
from moto_vision.heads.base import TASKS, TaskKit

__all__ = ["create_kit", "get_kit", "kit_names", "register_kit"]

_KITS: dict[str, type[TaskKit]] = {}


def register_kit(cls: type[TaskKit]) -> type[TaskKit]:
    """Class decorator: add a kit to the registry under ``cls.name`` (a name can be registered once)."""
    name = cls.name
    if name in _KITS and _KITS[name] is not cls:
        raise ValueError(f"A task kit named {name!r} is already registered ({_KITS[name].__qualname__}).")
    _KITS[name] = cls
    return cls


def kit_names() -> list[str]:
    """The registered tasks: the built-in ones in the order of ``TaskName``, then the others as registered."""
    builtin = [name for name in TASKS if name in _KITS]
    return builtin + [name for name in _KITS if name not in builtin]


def get_kit(name: str) -> type[TaskKit]:
    """The kit class registered as ``name``."""
    try:
        return _KITS[name]
    except KeyError:
        raise OptionError(f"Unknown task {name!r}; the registered tasks are {kit_names()}.") from None


def create_kit(name: str, options: Any = None) -> TaskKit:
    """A kit of task ``name`` with ``options`` (``None``, its options dataclass or a dict)."""
    return get_kit(name)(options)

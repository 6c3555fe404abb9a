"""No silent fallbacks in data options: an option the chosen format does not read is an error, not a no-op.

The datamodules' format-specific arguments default to ``None`` ("not given"; the docstring says which value is then
used), so an explicit value can be told from the default: ``--data.synthetic_train_size 100`` with a real format,
or ``--data.root`` with the synthetic one, is refused with a message that says what to do, instead of training on
something else than the user asked for. A value equal to the default changes nothing and passes, so that the
configs and checkpoints of earlier releases (which record every default) still build their datamodules.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moto_vision.data.errors import DataOptionError

__all__ = ["matching_formats", "refuse_ignored_options", "require_format_for_root", "with_defaults"]


def with_defaults(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` with each ``None`` ("not given") replaced by its default."""
    return {name: defaults[name] if value is None else value for name, value in given.items()}


def refuse_ignored_options(
    owner: str, fmt: str, options: Mapping[str, tuple[Any, bool]], defaults: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`DataOptionError` naming every given option that format ``fmt`` does not read.

    Args:
        owner: the datamodule's name, for the message.
        fmt: the chosen format.
        options: ``name -> (value, applies)``; a value of ``None`` means "not given" and is never refused.
        defaults: the value each option takes when not given. A value equal to it is not refused either: it
            changes nothing, and checkpoints and configs written before the ``None`` defaults record it.
    """
    defaults = defaults or {}
    ignored = [
        name
        for name, (value, applies) in options.items()
        if value is not None and not applies and not (name in defaults and value == defaults[name])
    ]
    if ignored:
        listed = ", ".join(f"{name}={options[name][0]!r}" for name in ignored)
        raise DataOptionError(
            f"{owner}: format {fmt!r} does not use {listed}; remove {'it' if len(ignored) == 1 else 'them'} (or "
            "choose the format that reads them with --data.format)."
        )


def matching_formats(task: str, root: str | Path) -> list[str]:
    """The registered formats of ``task`` whose indexer finds samples under ``root`` (nothing is decoded)."""
    from moto_vision.data.records import format_names, get_indexer

    found = []
    for name in format_names(task):  # type: ignore[arg-type]
        try:
            if get_indexer(task, name)(Path(root).expanduser()):  # type: ignore[arg-type]
                found.append(name)
        except Exception:  # noqa: BLE001 - any failure means "not this layout"
            continue
    return found


def require_format_for_root(owner: str, task: str, root: str | None, fmt: str) -> None:
    """Refuse a dataset root with the synthetic format (which reads no files), suggesting the formats that fit."""
    if root is None or fmt != "synthetic":
        return
    path = Path(root).expanduser()
    if not path.exists():
        raise DataOptionError(f"{owner}: --data.root {root} does not exist (and format 'synthetic' reads no files).")
    candidates = matching_formats(task, path)
    looks = f"; {path} reads as: {', '.join(candidates)}" if candidates else ""
    raise DataOptionError(
        f"{owner}: --data.root {root} is set but the format is 'synthetic', which reads no files and would train on "
        f"rendered data instead. Pass --data.format{looks} (`moto-vision data formats` lists them all)."
    )

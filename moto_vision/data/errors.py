"""The exceptions bad data raises.

Every loader, indexer and datamodule raises these, so the command line can tell a data problem (one clear line
naming the file, and a hint to run ``moto-vision data check``) from a bug (a traceback).
"""

from __future__ import annotations

from moto_vision.errors import OptionError

__all__ = ["DataError", "DataFileNotFoundError", "DataOptionError", "MissingExtraError"]


class DataError(ValueError):
    """A dataset file or its ground truth is missing, unreadable or inconsistent; the message names the file."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A dataset root, ground-truth file or listed image does not exist (also a ``FileNotFoundError``)."""


class DataOptionError(DataError, OptionError):
    """Data options that do not fit together: a root without a format, an option the chosen format ignores."""


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the file that needs it and the extra to install."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        super().__init__(f"{what} needs {package}, which is not installed: pip install 'moto-vision[{extra}]'.")
        self.name = package

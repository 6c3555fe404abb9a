"""The exception for an option the user set to a value that cannot work.

Tasks, models, heads, backbones and ISP presets raise :class:`OptionError` when they check their options, so the
command line can tell a bad option (one line naming the option and the fix, exit status 2) from a bug (a
traceback). It is a ``ValueError``, so code that catches ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["OptionError"]


class OptionError(ValueError):
    """An option has a value that cannot work, alone or with the others; the message names the option and the fix."""

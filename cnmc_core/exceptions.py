"""Exceptions raised by cnmc_core.

Every error a user can cause derives from :class:`CnmcError`; its message names the file or
argument, the rule that was broken and, where there is one, the fix. The CLI prints the message
and exits with status 2 instead of showing a traceback; the dashboard shows it in ``st.error``.
"""

from __future__ import annotations

__all__ = ["CnmcError", "DataError", "ConfigError", "RunError", "AccessError"]


class CnmcError(ValueError):
    """Base class of every user-facing error of the library."""


class DataError(CnmcError):
    """A dataset, manifest, labels file or image that cannot be used as given."""


class ConfigError(CnmcError):
    """A configuration value, preset or command-line argument that is not allowed."""


class RunError(CnmcError):
    """A run or ensemble folder that is missing, malformed or in the wrong state."""


class AccessError(CnmcError):
    """An action the acting user's role does not allow (a viewer launching a run, a trainer
    cancelling someone else's), or a sign-in that is refused."""

"""Errors meant for a person. The CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class ForgeError(Exception):
    """A problem the user can fix: bad input, a missing plugin, a file that is not there.

    The message is shown as is, so it names what is wrong and where (file, line, field).
    A multi-problem error keeps one problem per line in ``problems``. ``exit_code`` is 2 (bad input) unless a
    subclass says otherwise (a failed gate: 3).
    """

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class ConfigError(ForgeError):
    """The run configuration (YAML file, ``--set`` overrides or flags) does not validate."""


class DataError(ForgeError):
    """A dataset is missing, unreadable or malformed."""


class PluginError(ForgeError):
    """A plugin is missing, broken, or two plugins claim the same name."""


class NotFoundError(ForgeError):
    """A named contribution (recipe, provider, template, exporter, server) or a run does not exist."""


class TrainingDiverged(ForgeError):
    """The training loss became NaN or infinite (``nan_policy: stop``): the run ends ``failed`` at that step, its
    last good checkpoint kept."""


class RunInterrupted(Exception):
    """Raised inside a run when the user pressed Ctrl-C (or the process got SIGTERM)."""

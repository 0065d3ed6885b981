"""Exceptions that the CLI turns into one line on stderr and a non-zero exit."""


class KsmtraceError(Exception):
    """An error the user can act on; never shown with a traceback."""

    exit_code = 2


class BadInput(KsmtraceError):
    """The input cannot be ingested (missing, empty, not a trace, truncated)."""


class TruncatedInput(BadInput):
    """A compressed input ended early; ``--partial`` keeps what was readable."""


class DuplicateRun(KsmtraceError):
    """The same file was already ingested under the same label."""


class StoreError(KsmtraceError):
    """The store is missing, locked or damaged."""


class MissingTool(KsmtraceError):
    """An external converter (perf, trace-cmd) is not installed."""

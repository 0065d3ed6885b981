"""Exceptions that the CLI turns into one line on stderr and a non-zero exit."""


class KsmtraceError(Exception):
    """An error the user can act on; never shown with a traceback."""

    exit_code = 2
    #: the failure is one input's own: a multi-file ingest reports it and goes on with the next file
    #: (False for store errors: when the store cannot take a run, the rest is not tried)
    per_input = True


class BadInput(KsmtraceError):
    """The input cannot be ingested (missing, unreadable, empty, not a trace, truncated)."""


class TruncatedInput(BadInput):
    """A compressed input ended early; ``--partial`` keeps what was readable."""


class DuplicateRun(KsmtraceError):
    """The same file was already ingested under the same label."""


class StoreError(KsmtraceError):
    """The store is missing, locked, damaged, unwritable or full."""

    per_input = False


class MissingTool(KsmtraceError):
    """An external converter (perf, trace-cmd) is not installed."""


def os_error_message(e: OSError, path=None) -> str:
    """``PATH: reason`` for an OSError: the file(s) it names (else ``path``) and the OS's reason.

    Works for the OSErrors of pyarrow and matplotlib too, which often carry no file name or strerror.
    """
    import os

    # the OS's own words for errno (pyarrow puts a long "Error writing bytes ... Detail: ..." in strerror)
    reason = (os.strerror(e.errno) if isinstance(e.errno, int) and e.errno > 0 else e.strerror) \
        or " ".join(str(e).split()) or type(e).__name__
    names = [n for n in (e.filename, e.filename2) if n not in (None, "")]
    if not names and path is not None:
        names = [path]
    where = " -> ".join(os.fsdecode(n) if isinstance(n, bytes) else str(n) for n in names)
    return f"{where}: {reason}" if where else reason

"""ksmtrace: measure rmap_walk_ksm() lock holds and walks from real kernel traces.

The Python API (``ksmtrace.api``) mirrors the command line::

    from ksmtrace import api
    api.ingest(["before.trace.gz"], label="before", store="data")
    api.sql("SELECT label, count(*) FROM walks GROUP BY ALL", store="data")

(``ksmtrace.ingest`` is the package of input-format parsers, hence ``api.ingest``.)

``import ksmtrace`` itself is light: ``api`` (duckdb, pandas, pyarrow) is imported on first use, so the
``ksmtrace`` command can install its Ctrl-C handling before those heavy imports.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["api", "connect", "runs", "sql", "__version__"]


def __getattr__(name: str):
    if name in ("api", "connect", "runs", "sql"):
        import importlib

        api = importlib.import_module(".api", __name__)
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

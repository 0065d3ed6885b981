"""ksmtrace: measure rmap_walk_ksm() lock holds and walks from real kernel traces.

The Python API mirrors the command line::

    import ksmtrace
    ksmtrace.ingest(["before.trace.gz"], label="before", store="data")
    ksmtrace.sql("SELECT label, count(*) FROM events GROUP BY ALL", store="data")
"""
from .api import connect, ingest, runs, sql  # noqa: F401

__version__ = "0.1.0"

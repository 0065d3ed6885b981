"""ksmtrace: measure rmap_walk_ksm() lock holds and walks from real kernel traces.

The Python API (``ksmtrace.api``) mirrors the command line::

    from ksmtrace import api
    api.ingest(["before.trace.gz"], label="before", store="data")
    api.sql("SELECT label, count(*) FROM walks GROUP BY ALL", store="data")

(``ksmtrace.ingest`` is the package of input-format parsers, hence ``api.ingest``.)
"""
from . import api  # noqa: F401
from .api import connect, runs, sql  # noqa: F401

__version__ = "0.1.0"

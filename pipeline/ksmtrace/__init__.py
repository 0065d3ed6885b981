"""ksmtrace: measure rmap_walk_ksm() lock holds and walks from real kernel traces.

The Python API (``ksmtrace.api``) mirrors the command line::

    from ksmtrace import api
    api.ingest(["before.trace.gz"], label="before", store="data")
    api.sql("SELECT label, count(*) FROM walks GROUP BY ALL", store="data")

(``ksmtrace.ingest`` is the package of input-format parsers, hence ``api.ingest``.)
"""
__version__ = "0.1.0"


def __getattr__(name):
    # api (duckdb, pandas, polars) is imported on first use: commands that never touch the store, such as
    # repro and capture inside a QEMU guest (10-30x slower), start without that second of imports
    if name in ("api", "connect", "runs", "sql"):
        import importlib

        api = importlib.import_module(".api", __name__)
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

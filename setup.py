"""Build hook for the optional compiled parsers (everything else is in pyproject.toml).

Every ``pipeline/ksmtrace/ingest/native/NAME.c`` is one CPython extension module, ``ksmtrace.ingest._c_NAME``,
loaded through ``ksmtrace.ingest._native``. They are optional: where no C compiler or Python headers exist,
``pip install .`` still succeeds (setuptools skips a failed optional extension with a warning) and ksmtrace
uses the pure Python parsers, which give the same rows.
"""
from pathlib import Path

from setuptools import Extension, setup

NATIVE = Path("pipeline") / "ksmtrace" / "ingest" / "native"

setup(ext_modules=[
    Extension(f"ksmtrace.ingest._c_{src.stem}", [src.as_posix()], optional=True,
              extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"])
    for src in sorted(NATIVE.glob("*.c"))
])

"""The compiled parsers: built where a compiler exists (CI says so with KSMTRACE_REQUIRE_NATIVE=1), and
switchable off, so both paths can be compared."""
from __future__ import annotations

import os

import pytest

from conftest import ROOT
from ksmtrace.ingest import _native

SOURCES = sorted(p.stem for p in (ROOT / "pipeline" / "ksmtrace" / "ingest" / "native").glob("*.c"))


@pytest.mark.skipif(os.environ.get("KSMTRACE_REQUIRE_NATIVE") != "1",
                    reason="KSMTRACE_REQUIRE_NATIVE=1 (set by .ci/run) makes a missing compiled parser a failure")
def test_every_native_source_is_built():
    assert _native.built() == SOURCES


def test_use_switches_every_module_off_and_on():
    prev = _native.use(False)
    try:
        assert all(_native.load(n) is None for n in SOURCES)
        _native.use(True)
        for n in _native.built():
            assert _native.load(n) is not None
    finally:
        _native.use(prev)

"""Shared fixtures: a temporary store, the public corpus, and a CLI runner."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis profiles. "ci" (the default of `python -m pytest tests`) is derandomized with no example database:
# the same examples on every run, so CI cannot go red on a new random draw. "fuzz" draws new random examples,
# 50 times as many: `python -m pytest tests --hypothesis-profile=fuzz` (or KSMTRACE_HYPOTHESIS_PROFILE=fuzz).
# What fuzzing finds becomes an explicit @example or table case, so the ci profile keeps checking it.
CI_MAX_EXAMPLES = 100
settings.register_profile("ci", derandomize=True, database=None, max_examples=CI_MAX_EXAMPLES,
                          print_blob=True)
settings.register_profile("fuzz", derandomize=False, max_examples=50 * CI_MAX_EXAMPLES, print_blob=True)
settings.load_profile(os.environ.get("KSMTRACE_HYPOTHESIS_PROFILE", "ci"))


def examples(n: int) -> int:
    """``max_examples`` of a test that runs ``n`` examples in the ci profile, scaled with the loaded profile
    (``--hypothesis-profile=fuzz``: 50 n)."""
    return max(1, n * settings.default.max_examples // CI_MAX_EXAMPLES)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pipeline"))

# the cached catalog of the computing views (ksmtrace.db._cached_catalog) goes to a directory of this test
# session, not the user's ~/.cache; the CLI subprocesses of the tests inherit it
if "KSMTRACE_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="ksmtrace-test-cache-")
    os.environ["KSMTRACE_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, True)


def _native_is_current() -> None:
    """The tests import ksmtrace from the checkout (pipeline/), so its compiled parsers must be built in place
    (``pip install -e .`` does that) from the current sources: a module older than its ``.c`` file is rebuilt
    here (setuptools' ``build_ext --inplace``), so a test never runs stale C code."""
    import subprocess

    native = ROOT / "pipeline" / "ksmtrace" / "ingest" / "native"
    stale = []
    for src in sorted(native.glob("*.c")):
        built = list(native.parent.glob(f"_c_{src.stem}.*.so"))
        if built and max(b.stat().st_mtime for b in built) < src.stat().st_mtime:
            stale.append(src.name)
    if stale:
        p = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT,
                           capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"conftest: rebuilding {', '.join(stale)} failed (pip install -e . shows why):\n"
                             + p.stderr[-2000:])


_native_is_current()

#: the public trace corpus that sits beside the checkout (../shared/corpus); tests skip without it
CORPUS = Path(os.environ.get("KSMTRACE_CORPUS", ROOT.parent / "shared" / "corpus"))


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"public trace corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def store_dir(tmp_path) -> Path:
    return tmp_path / "store"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str, stdin: bytes | None = None, env: dict | None = None) -> CliResult:
    """Run ``ksmtrace ARGS`` in a subprocess (so exit codes and stderr are real)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "pipeline") + os.pathsep + e.get("PYTHONPATH", "")
    e["COLUMNS"] = "200"
    if env:
        e.update(env)
    p = subprocess.run([sys.executable, "-m", "ksmtrace", *args], input=stdin, capture_output=True, env=e,
                       timeout=600)
    return CliResult(p.returncode, p.stdout.decode(), p.stderr.decode())


def run_cli_inproc(*args: str) -> CliResult:
    """Faster in-process variant for tests that do not need a real process."""
    from ksmtrace.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli


def parse_with(parser_cls, text: str, chunk_bytes: int | None = None, name: str = "t.txt"):
    """Parse ``text`` with one parser in-process: (rows sorted by line_no, ParseStats)."""
    import pyarrow as pa

    from ksmtrace.ingest.base import ParseStats, conform
    from ksmtrace.ingest.source import TraceSource

    src = TraceSource(stream=io.BytesIO(text.encode()), name=name)
    p = parser_cls()
    if chunk_bytes:
        p.chunk_bytes = chunk_bytes
    stats = ParseStats()
    tabs = [conform(t) for t in p.parse(src, stats)]
    tbl = pa.concat_tables(tabs) if tabs else conform(pa.table({"line_no": pa.array([], pa.int64())}))
    return tbl.sort_by("line_no").to_pylist(), stats

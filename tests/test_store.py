"""The store: atomic runs, duplicate refusal, concurrent ingests, bad input leaves it untouched."""
from __future__ import annotations

import gzip
import hashlib
import lzma
import bz2
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from conftest import ROOT, run_cli

TRACE = """\
# tracer: nop
#
# entries-in-buffer/entries-written: 4/4   #P:2
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
  rmap_benchmark-467     [003] ..... 17258.057760: rmap_walk_start: folio=000000004c2a9e1b rwc=00000000d3f1a07c page_type=ksm locked=false
  ksm_rmap_repro-10396   [001] ...1.   458.205232: set_migration_pte: addr=7f956e0b2000, pte=e7fff7ffdae58e00 order=0
            ksmd-37      [000] ...1.   458.050761: contention_begin: 000000001f538f6f (flags=READ)
  rmap_benchmark-467     [003] ..... 17258.762880: rmap_walk_end: folio=000000004c2a9e1b rwc=00000000d3f1a07c page_type=ksm locked=false
"""


def snapshot(d: Path) -> dict:
    if not d.exists():
        return {}
    return {str(p.relative_to(d)): p.stat().st_size for p in d.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.fixture
def trace_file(tmp_path) -> Path:
    p = tmp_path / "t.trace"
    p.write_text(TRACE)
    return p


def test_ingest_then_runs_and_exact_ts(trace_file, store_dir):
    r = run_cli("ingest", str(trace_file), "--store", str(store_dir), "--label", "before")
    assert r.code == 0, r.err
    assert "4 events" in r.out and "0 malformed" in r.out
    r = run_cli("sql", "SELECT ts_ns, event FROM events ORDER BY line_no", "--store", str(store_dir), "-f", "csv")
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert lines[0] == "ts_ns,event"
    assert lines[1] == "17258057760000,rmap_walk_start"
    r = run_cli("runs", "--store", str(store_dir), "-f", "json")
    assert r.code == 0, r.err
    import json

    runs = json.loads(r.out)
    assert len(runs) == 1
    run = runs[0]
    assert run["label"] == "before" and run["n_events"] == 4 and run["n_cpus"] == 2
    assert run["sha256"] == hashlib.sha256(TRACE.encode()).hexdigest()
    assert run["first_ts_ns"] == 458050761000 and run["last_ts_ns"] == 17258762880000


def test_duplicate_refused_unless_force(trace_file, store_dir):
    assert run_cli("ingest", str(trace_file), "--store", str(store_dir), "-l", "a").code == 0
    before = snapshot(store_dir)
    r = run_cli("ingest", str(trace_file), "--store", str(store_dir), "-l", "a")
    assert r.code == 2
    assert "already in the store" in r.err and "--force" in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert snapshot(store_dir) == before
    # another label is another run
    assert run_cli("ingest", str(trace_file), "--store", str(store_dir), "-l", "b").code == 0
    r = run_cli("ingest", str(trace_file), "--store", str(store_dir), "-l", "a", "--force")
    assert r.code == 0, r.err
    assert "replaced" in r.out
    r = run_cli("sql", "SELECT label, count(*) AS n FROM runs GROUP BY label ORDER BY label", "--store",
                str(store_dir), "-f", "csv")
    assert r.out.strip().splitlines()[1:] == ["a,1", "b,1"]


@pytest.mark.parametrize("compress,suffix", [(gzip.compress, ".gz"), (lzma.compress, ".xz"), (bz2.compress, ".bz2"),
                                             (zstandard.ZstdCompressor().compress, ".zst")])
def test_compressed_inputs(tmp_path, store_dir, compress, suffix):
    p = tmp_path / ("t.trace" + suffix)
    p.write_bytes(compress(TRACE.encode()))
    r = run_cli("ingest", str(p), "--store", str(store_dir))
    assert r.code == 0, r.err
    assert "4 events" in r.out


def test_stdin(store_dir):
    r = run_cli("ingest", "-", "--store", str(store_dir), stdin=TRACE.encode())
    assert r.code == 0, r.err
    assert "4 events" in r.out


@pytest.mark.parametrize("content,expect", [
    (b"", "empty"),
    (b"a,b,c\n1,2,3\n4,5,6\n", "no trace lines"),
    (bytes(range(256)) * 64, "no trace lines"),
])
def test_bad_input_refused_store_untouched(tmp_path, store_dir, trace_file, content, expect):
    assert run_cli("ingest", str(trace_file), "--store", str(store_dir)).code == 0
    before = snapshot(store_dir)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    r = run_cli("ingest", str(bad), "--store", str(store_dir))
    assert r.code == 2
    assert expect in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert snapshot(store_dir) == before


def test_missing_path_and_fresh_store_not_created(tmp_path, store_dir):
    r = run_cli("ingest", str(tmp_path / "nope.trace"), "--store", str(store_dir))
    assert r.code == 2 and "no such file" in r.err and "Traceback" not in r.err
    bad = tmp_path / "empty.txt"
    bad.write_bytes(b"")
    r = run_cli("ingest", str(bad), "--store", str(store_dir))
    assert r.code == 2
    assert not store_dir.exists()


def test_truncated_compressed_needs_partial(tmp_path, store_dir):
    big = TRACE + "".join(
        f"  ksm_rmap_repro-10396   [001] ...1.   {500 + i // 1000}.{i % 1000:03d}000: set_migration_pte: "
        f"addr=7f956e{i:06x}, pte=e7fff7ffdae58e00 order=0\n" for i in range(20000))
    data = gzip.compress(big.encode())
    p = tmp_path / "cut.trace.gz"
    p.write_bytes(data[: len(data) // 2])
    r = run_cli("ingest", str(p), "--store", str(store_dir))
    assert r.code == 2 and "--partial" in r.err and "Traceback" not in r.err
    assert not store_dir.exists()
    r = run_cli("ingest", str(p), "--store", str(store_dir), "--partial")
    assert r.code == 0, r.err
    assert "PARTIAL" in r.out
    r = run_cli("sql", "SELECT partial, n_events FROM runs", "--store", str(store_dir), "-f", "csv")
    partial, n = r.out.strip().splitlines()[1].split(",")
    assert partial == "true" and 4 < int(n) < 20004


def test_concurrent_ingests_do_not_corrupt(tmp_path, store_dir):
    files = []
    for i in range(6):
        p = tmp_path / f"t{i}.trace"
        p.write_text(TRACE + f"            ksmd-37      [000] ...1.   459.0{i:05d}: ksm_start_scan: seq {i} rmap size 0\n")
        files.append(p)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))
    procs = [subprocess.Popen([sys.executable, "-m", "ksmtrace", "ingest", str(f), "--store", str(store_dir),
                               "-l", "c"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for f in files]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read().decode()
    r = run_cli("sql", "SELECT count(*) AS runs, sum(n_events) AS ev, count(DISTINCT sha256) AS shas FROM runs",
                "--store", str(store_dir), "-f", "csv")
    assert r.out.strip().splitlines()[1] == "6,30,6"
    r = run_cli("sql", "SELECT count(*) FROM events", "--store", str(store_dir), "-f", "csv")
    assert r.out.strip().splitlines()[1] == "30"
    assert not list((store_dir / ".tmp").glob("*")) if (store_dir / ".tmp").exists() else True


def test_interrupted_ingest_leaves_no_visible_run(tmp_path, store_dir, trace_file):
    assert run_cli("ingest", str(trace_file), "--store", str(store_dir)).code == 0
    before_runs = run_cli("sql", "SELECT count(*) FROM runs", "--store", str(store_dir), "-f", "csv").out
    # a slow input: a pipe fed by a sleeping writer; kill the ingest mid-way
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))
    writer = subprocess.Popen(["bash", "-c", f"cat {trace_file}; sleep 30"], stdout=subprocess.PIPE)
    # (a shell's background jobs ignore SIGINT: give the child the default disposition, as a terminal would)
    ing = subprocess.Popen([sys.executable, "-m", "ksmtrace", "ingest", "-", "--store", str(store_dir), "-l", "x"],
                           stdin=writer.stdout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3)
    ing.send_signal(signal.SIGINT)
    code = ing.wait(30)
    writer.kill()
    writer.wait()
    assert code != 0
    assert b"Traceback" not in ing.stderr.read()
    after_runs = run_cli("sql", "SELECT count(*) FROM runs", "--store", str(store_dir), "-f", "csv").out
    assert after_runs == before_runs
    assert not (store_dir / ".tmp").exists() or not any((store_dir / ".tmp").iterdir())


def test_sigterm_also_cleans_up(tmp_path, store_dir, trace_file):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))
    writer = subprocess.Popen(["bash", "-c", f"cat {trace_file}; sleep 30"], stdout=subprocess.PIPE)
    ing = subprocess.Popen([sys.executable, "-m", "ksmtrace", "ingest", "-", "--store", str(store_dir)],
                           stdin=writer.stdout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    ing.terminate()
    code = ing.wait(30)
    writer.kill()
    writer.wait()
    assert code == 143
    assert b"Traceback" not in ing.stderr.read()
    assert not store_dir.exists()


def test_capture_sidecar_fills_provenance(tmp_path, store_dir):
    import json

    body = "\n".join(TRACE.splitlines()[12:]) + "\n"  # no header: no #P:N
    p = tmp_path / "cap.txt.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(body.encode()))
    (tmp_path / "cap.txt.meta.json").write_text(json.dumps({"kernel": "6.18.44-test", "cpus": 2,
                                                            "preemption": "none", "method": "events"}))
    r = run_cli("ingest", str(p), "--store", str(store_dir))
    assert r.code == 0, r.err
    r = run_cli("sql", "SELECT kernel, n_cpus, json_extract_string(meta, '$.capture.method') AS m FROM runs",
                "--store", str(store_dir), "-f", "csv")
    assert r.out.strip().splitlines()[1] == "6.18.44-test,2,events"

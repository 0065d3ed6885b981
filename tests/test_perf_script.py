"""perf script text: layouts, callchains, header, lost events, chunking, and round-trip properties."""
from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksmtrace.ingest import detect
from ksmtrace.ingest.base import ParseStats, conform
from ksmtrace.ingest.perf_script import PerfScriptParser
from ksmtrace.ingest.source import TraceSource

from conftest import examples, parse_with, run_cli


def parse_text(text: str, chunk_bytes: int | None = None):
    return parse_with(PerfScriptParser, text, chunk_bytes, name="t.txt")


# -- real layouts ------------------------------------------------------------------------------------------

PERF61 = """\
  ksm_rmap_repro  9000 [000]   375.395548:                         ksm:ksm_enter: mm 0xffff88810b1cabc0
            ksmd    37 [000]   375.419251:                    ksm:ksm_start_scan: seq 824 rmap size 2000
  ksm_rmap_repro  9000 [001]   375.507736:             migrate:set_migration_pte: addr=5643534d7000, pte=f7ffe7ffde460600 order=0
  ksm_rmap_repro  9000 [001]   375.505103: compaction:mm_compaction_migratepages: nr_migrated=32 nr_failed=0
"""


def test_default_layout_tracepoints():
    rows, stats = parse_text(PERF61)
    assert [r["event"] for r in rows] == ["ksm_enter", "ksm_start_scan", "set_migration_pte",
                                          "mm_compaction_migratepages"]
    assert [r["system"] for r in rows] == ["ksm", "ksm", "migrate", "compaction"]
    r = rows[2]
    assert (r["comm"], r["pid"], r["tgid"], r["cpu"], r["ts_ns"]) == ("ksm_rmap_repro", 9000, None, 1, 375507736000)
    assert r["payload"] == "addr=5643534d7000, pte=f7ffe7ffde460600 order=0"
    assert dict(r["fields"])["addr"] == "5643534d7000"
    assert dict(rows[1]["fields"]) == {"seq": "824", "rmap_size": "2000"}
    assert stats.meta["ts_resolution_ns"] == 1000 and stats.meta["tracer"] == "perf"
    assert stats.n_malformed == 0


def test_rmap_walk_events_split_system():
    text = ("  rmap_benchmark     467 [003] 17258.057760: rmap:rmap_walk_start: folio=0xffffea0004a3c740 "
            "rwc=0xffffc90001e3b9d8 page_type=ksm locked=false\n"
            "  rmap_benchmark     467 [003] 17258.762880:   rmap:rmap_walk_end: folio=0xffffea0004a3c740 "
            "rwc=0xffffc90001e3b9d8 page_type=ksm locked=false\n")
    rows, _ = parse_text(text)
    assert [(r["system"], r["event"]) for r in rows] == [("rmap", "rmap_walk_start"), ("rmap", "rmap_walk_end")]
    assert rows[1]["ts_ns"] - rows[0]["ts_ns"] == 705_120_000
    assert dict(rows[0]["fields"])["page_type"] == "ksm"


def test_ns_pid_tid_no_cpu_and_sample_modifiers():
    text = (" parallel_static 56089/56092  3909.100226436: sched:sched_switch: prev_comm=parallel_static "
            "prev_pid=56092 prev_prio=120 prev_state=D ==> next_comm=swapper/17 next_pid=0 next_prio=120\n"
            "perf_stacks 20602  2217.581638:          1 cycles:uppp: \n"
            "\tffffffff9c2009e7 [unknown] ([kernel.kallsyms])\n"
            "\t    7f443cc6f090 _start (/lib/x86_64-linux-gnu/ld-2.27.so)\n\n")
    rows, stats = parse_text(text)
    a, b = rows
    assert (a["pid"], a["tgid"], a["cpu"], a["ts_ns"]) == (56092, 56089, None, 3909100226436)
    assert (b["system"], b["event"], b["payload"]) == (None, "cycles:uppp", "")
    assert b["callchain"] == [
        {"addr": "ffffffff9c2009e7", "sym": "[unknown]", "off": None, "dso": "[kernel.kallsyms]"},
        {"addr": "7f443cc6f090", "sym": "_start", "off": None, "dso": "/lib/x86_64-linux-gnu/ld-2.27.so"},
    ]
    assert a["callchain"] is None
    assert stats.meta["ts_resolution_ns"] == 1


def test_callchain_symbols_with_spaces_parens_and_dso_with_spaces():
    text = ("server 100 [000] 1.000001: lock:contention_begin: 0xffff88811c022d70 (flags=READ)\n"
            "\tffffffff821ff2a5 rwsem_down_read_slowpath+0x1f5 ([kernel.kallsyms])\n"
            "\t    55d1db028560 std::_Function_handler<void (), main::{lambda()#1}>::_M_invoke+0x12 (/opt/my app/srv)\n"
            "\t    55d1db028561 operator==(a, b) const (/tmp/x (deleted))\n"
            "\t               0 [unknown] ([unknown])\n"
            "\tffffffff821ff4f4 down_read\n"
            "\n")
    rows, stats = parse_text(text)
    assert stats.n_malformed == 0
    (r,) = rows
    assert dict(r["fields"]) == {"lock_addr": "0xffff88811c022d70", "flags": "READ"}
    assert r["callchain"] == [
        {"addr": "ffffffff821ff2a5", "sym": "rwsem_down_read_slowpath", "off": "0x1f5", "dso": "[kernel.kallsyms]"},
        {"addr": "55d1db028560", "sym": "std::_Function_handler<void (), main::{lambda()#1}>::_M_invoke",
         "off": "0x12", "dso": "/opt/my app/srv"},
        {"addr": "55d1db028561", "sym": "operator==(a, b) const", "off": None, "dso": "/tmp/x (deleted)"},
        {"addr": "0", "sym": "[unknown]", "off": None, "dso": "[unknown]"},
        {"addr": "ffffffff821ff4f4", "sym": "down_read", "off": None, "dso": None},
    ]


def test_frame_on_the_event_line():
    text = "           false 39654 19115.489713:          1 cycles:u:  ffffffff9b201293 [unknown] ([unknown])\n"
    (r,), _ = parse_text(text)
    assert r["event"] == "cycles:u" and r["pid"] == 39654 and r["cpu"] is None
    assert r["callchain"] == [{"addr": "ffffffff9b201293", "sym": "[unknown]", "off": None, "dso": "[unknown]"}]


HEADER = """\
# ========
# captured on    : Sat Sep  4 10:27:47 2021
# header version : 1
# hostname : mark-t510
# os release : 5.11.0-27-generic
# perf version : 5.11.22
# nrcpus online : 4
# cmdline : /usr/bin/perf record -e migrate:set_migration_pte -a -g
# event : name = migrate:set_migration_pte, , id = { 1, 2 }, sample_type = IP|TID|TIME|CALLCHAIN|CPU
# ========
#
"""


def test_header_provenance():
    rows, stats = parse_text(HEADER + PERF61)
    assert len(rows) == 4
    m = stats.meta
    assert (m["kernel"], m["perf_version"], m["n_cpus"]) == ("5.11.0-27-generic", "5.11.22", 4)
    assert m["cmdline"] == "/usr/bin/perf record -e migrate:set_migration_pte -a -g"
    assert m["perf_events"][0].startswith("name = migrate:set_migration_pte")


def test_lost_events_and_perf_records():
    text = ("            perf  1234 [000]   100.000001: PERF_RECORD_LOST lost 17\n"
            "  ksm_rmap_repro  9000 [000]   100.000002: ksm:ksm_enter: mm 0xffff88810b1cabc0\n"
            ":-1    -1 [001]   100.000003: PERF_RECORD_LOST_SAMPLES lost 3\n")
    rows, stats = parse_text(text)
    assert stats.n_lost_events == 20 and not stats.lost_unknown
    assert [r["event"] for r in rows] == ["__lost_events", "ksm_enter", "__lost_events"]
    assert dict(rows[0]["fields"]) == {"lost": "17"}
    assert rows[0]["ts_ns"] == 100_000_001_000 and rows[0]["cpu"] == 0


def test_malformed_lines_are_counted_not_dropped():
    text = ("this is not perf output at all\n" + PERF61 + "...\n"
            "\tffffffff821ff2a5 frame_after_event ([kernel.kallsyms])\n")
    rows, stats = parse_text(text)
    assert len(rows) == 4
    assert stats.n_malformed == 2
    assert [e["line_no"] for e in stats.malformed_examples] == [1, 6]
    assert rows[-1]["callchain"][0]["sym"] == "frame_after_event"


def test_orphan_frames_at_start_are_malformed():
    rows, stats = parse_text("\tffffffff821ff2a5 orphan ([kernel.kallsyms])\n" + PERF61)
    assert len(rows) == 4 and stats.n_malformed == 1


def test_callchain_straddling_chunks():
    rec = ("ksm_rmap_repro  9000 [001]   375.507736: migrate:set_migration_pte: addr=1, pte=2 order=0\n"
           + "".join(f"\tffffffff8160{i:04x} frame_{i}+0x{i:x} ([kernel.kallsyms])\n" for i in range(40)) + "\n")
    text = rec * 7
    whole, _ = parse_text(text)
    for cb in (97, 500, 1333):
        part, stats = parse_text(text, chunk_bytes=cb)
        assert part == whole and stats.n_malformed == 0
    assert len(whole) == 7 and all(len(r["callchain"]) == 40 for r in whole)
    assert whole[3]["callchain"][39]["sym"] == "frame_39"


def test_sniff_prefers_perf_and_rejects_ftrace():
    ftrace = ("# tracer: nop\n#\n"
              "  ksm_rmap_repro-10396   [001] .....   458.050612: ksm_enter: mm 0000000013462d9c\n"
              "            ksmd-37      [000] .....   458.050658: ksm_start_scan: seq 834 rmap size 0\n")
    assert PerfScriptParser.sniff(ftrace, ftrace.encode()) == 0
    assert PerfScriptParser.sniff(PERF61, PERF61.encode()) >= 80
    assert detect(PERF61, PERF61.encode()).name == "perf-script"
    assert detect(HEADER + PERF61, (HEADER + PERF61).encode()).name == "perf-script"


def test_cli_ingest_perf_script(tmp_path):
    f = tmp_path / "perf.txt"
    f.write_text(HEADER + PERF61)
    store = tmp_path / "store"
    r = run_cli("ingest", "--store", str(store), "--label", "before", str(f))
    assert r.code == 0, r.err
    assert "[perf-script" in r.out and "4 events" in r.out
    from ksmtrace.store import Store

    (run,) = Store(store).runs().to_pylist()
    assert (run["n_cpus"], run["kernel"], run["ts_resolution_ns"], run["tracer"], run["n_events"]) == \
        (4, "5.11.0-27-generic", 1000, "perf", 4)
    files = (store / "events").glob(f"*/run_id={run['run_id']}/events-*.parquet")
    events = pa.concat_tables(pq.read_table(f) for f in files).to_pylist()
    assert sum(1 for e in events if e["system"] == "ksm") == 2
    assert json.loads(run["meta"])["perf_version"] == "5.11.22"


# -- round-trip property ----------------------------------------------------------------------------------

_word = st.from_regex(r"[A-Za-z][A-Za-z0-9_./:<>\-]{0,9}", fullmatch=True)
_comm = st.lists(_word, min_size=1, max_size=2).map(" ".join).filter(lambda c: not c.endswith(":"))
_ident = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)
_tp = st.tuples(_ident, _ident).map(lambda t: f"{t[0]}:{t[1]}")
_sample = st.sampled_from(["cycles", "cycles:uppp", "cpu-clock:uhH", "task-clock", "page-faults"])
_payload = st.from_regex(r"[A-Za-z0-9_=,.:()\[\]/ -]{0,40}", fullmatch=True).map(str.strip)
_symchars = st.from_regex(r"[A-Za-z_][A-Za-z0-9_:<>=,.#{}~@ ()\[\]*&+-]{0,30}", fullmatch=True).map(str.strip)
_sym = _symchars.filter(lambda s: not re.search(r"\+0x[0-9a-fA-F]+$", s) and "  " not in s
                        and not s.endswith(")"))
_dso = st.one_of(st.sampled_from(["[kernel.kallsyms]", "[unknown]", "/usr/lib/libc.so.6", "/opt/my app/bin x",
                                  "/tmp/x (deleted)"]),
                 st.from_regex(r"/[A-Za-z0-9_. /-]{1,20}", fullmatch=True).map(str.rstrip))


@st.composite
def frames(draw):
    addr = f"{draw(st.integers(0, 2**64 - 1)):x}"
    kind = draw(st.sampled_from(["full", "full", "nooff", "ipsym", "ip"]))
    if kind == "ip":
        return {"addr": addr, "sym": None, "off": None, "dso": None}
    sym = draw(_sym.filter(bool))
    if kind == "ipsym":
        sym = sym.split(" (")[0].rstrip() or "s"
        return {"addr": addr, "sym": sym, "off": None, "dso": None}
    off = f"0x{draw(st.integers(0, 2**20)):x}" if kind == "full" else None
    return {"addr": addr, "sym": sym, "off": off, "dso": draw(_dso)}


def render_frame(f) -> str:
    s = f"\t{int(f['addr'], 16):16x}"
    if f["sym"] is not None:
        s += " " + f["sym"] + (f"+{f['off']}" if f["off"] else "")
    if f["dso"] is not None:
        s += f" ({f['dso']})"
    return s + "\n"


@st.composite
def perf_files(draw):
    ns = draw(st.booleans())
    pidw = draw(st.sampled_from([5, 7]))
    has_cpu = draw(st.booleans())
    has_time = draw(st.booleans())
    pidtid = draw(st.booleans())
    period = draw(st.booleans())
    header = draw(st.booleans())
    n = draw(st.integers(1, 12))
    recs = []
    for _ in range(n):
        sample = draw(st.booleans())
        ev = draw(_sample if sample else _tp)
        chain = draw(st.lists(frames(), max_size=5)) if draw(st.booleans()) else []
        payload = "" if sample else draw(_payload)
        same_line = False
        if sample and not chain and draw(st.booleans()):
            # -F ...,ip,sym,dso without -g: the sampled frame on the event line
            f = draw(frames().filter(lambda f: f["sym"] is not None))
            chain, payload, same_line = [f], render_frame(f).strip(), True
            f["addr"] = f"{int(f['addr'], 16):x}"
        recs.append(dict(
            comm=draw(_comm), pid=draw(st.integers(0, 4_000_000)), tgid=draw(st.integers(0, 4_000_000)),
            cpu=draw(st.integers(0, 511)), sec=draw(st.integers(0, 10**7)),
            frac=draw(st.integers(0, 10**9 - 1 if ns else 10**6 - 1)), period=draw(st.integers(1, 10**9)),
            ev=ev, sample=sample, payload=payload, chain=chain, same_line=same_line))
    if not has_time:
        # without a timestamp, "abc  123 cycles: 0 sym (dso)" also reads as a space-indented frame whose
        # address is the comm: the parser prefers the frame, so keep comms non-hex here
        for r in recs:
            if re.fullmatch(r"[0-9a-fA-F]+", r["comm"].split(" ")[0]):
                r["comm"] = "x" + r["comm"]
    width = max(len(r["ev"]) for r in recs)
    out = []
    if header:
        out.append("# ========\n# os release : 6.18.0\n# perf version : 6.1.187\n# nrcpus online : 2\n"
                   "# ========\n#\n")
    for r in recs:
        comm = f"{r['comm']} " if r["chain"] and not r["same_line"] else f"{r['comm']:>16} "
        pid = f"{r['tgid']:{pidw}d}/{r['pid']:<{pidw}d} " if pidtid else f"{r['pid']:{pidw}d} "
        cpu = f"[{r['cpu']:03d}] " if has_cpu else ""
        ts = (f"{r['sec']:5d}.{r['frac']:09d}: " if ns else f"{r['sec']:5d}.{r['frac']:06d}: ") if has_time else ""
        per = f"{r['period']:10d} " if period else ""
        line = f"{comm}{pid}{cpu}{ts}{per}{r['ev']:>{width}}: {r['payload']}".rstrip() + "\n"
        out.append(line)
        if r["chain"] and not r["same_line"]:
            out.extend(render_frame(f) for f in r["chain"])
            out.append("\n")
    opts = dict(ns=ns, has_cpu=has_cpu, has_time=has_time, pidtid=pidtid, header=header)
    return "".join(out), recs, opts


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(perf_files(), st.sampled_from([None, 64, 301]))
def test_roundtrip_perf_layouts(case, chunk):
    text, recs, o = case
    rows, stats = parse_text(text, chunk_bytes=chunk)
    assert stats.n_malformed == 0, (stats.malformed_examples, text)
    assert len(rows) == len(recs)
    for row, r in zip(rows, recs):
        assert row["comm"] == r["comm"]
        assert row["pid"] == r["pid"]
        assert row["tgid"] == (r["tgid"] if o["pidtid"] else None)
        assert row["cpu"] == (r["cpu"] if o["has_cpu"] else None)
        if o["has_time"]:
            assert row["ts_ns"] == r["sec"] * 10**9 + r["frac"] * (1 if o["ns"] else 1000)
        else:
            assert row["ts_ns"] is None
        if r["sample"]:
            assert (row["system"], row["event"]) == (None, r["ev"])
        else:
            assert (row["system"], row["event"]) == tuple(r["ev"].split(":"))
        assert row["payload"] == r["payload"]
        assert (row["callchain"] or []) == r["chain"]
    if o["header"]:
        assert stats.meta["kernel"] == "6.18.0" and stats.meta["n_cpus"] == 2
    if o["has_time"]:
        assert stats.meta["ts_resolution_ns"] == (1 if o["ns"] else 1000)


# -- corpus ----------------------------------------------------------------------------------------------

def test_corpus_perf_script(corpus):
    files = sorted((corpus / "perf-script").iterdir())
    assert files
    for f in files:
        src = TraceSource(f)
        assert detect(src.head_text, src.head, str(f)).name == "perf-script", f.name
        stats = ParseStats()
        tbl = pa.concat_tables([conform(t) for t in PerfScriptParser().parse(src, stats)])
        assert stats.n_malformed == 0, (f.name, stats.malformed_examples[:3])
        # every non-frame, non-blank, non-comment line is one event
        lines = f.read_text(errors="replace").splitlines()
        n_frames = sum(len(c) for c in tbl.column("callchain").to_pylist() if c)
        n_blank = sum(1 for ln in lines if not ln.strip() or ln.startswith("#"))
        same_line = sum(1 for p, c in zip(tbl.column("payload").to_pylist(), tbl.column("callchain").to_pylist())
                        if c and p and p.split()[0] == c[0]["addr"])
        assert tbl.num_rows + n_frames - same_line + n_blank == len(lines), f.name


def test_corpus_perf_snippets(corpus):
    for name, n in [("lkml__perf-lock-contention_begin-powerpc.txt", 2),
                    ("lkml__perf-script_uretprobe_raw_syscalls.txt", 9),
                    ("swapper-test-readme__perf-script_sched_raw_syscalls_arm64.txt", 13)]:
        rows, stats = parse_text((corpus / "snippets" / name).read_text())
        assert len(rows) == n and stats.n_malformed == 0, name
    rows, _ = parse_text((corpus / "snippets" / "lkml__perf-lock-contention_begin-powerpc.txt").read_text())
    assert rows[0]["system"] == "lock" and rows[0]["event"] == "contention_begin"
    assert rows[0]["callchain"][1] == {"addr": "0", "sym": "[unknown]", "off": None, "dso": "[unknown]"}

"""The ground-truth generator: model invariants, determinism, exact line layouts, parser round trips."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from ksmtrace.synth import EVIDENCE, FORMATS, Layout, cost_summary, generate, write_demo_pair
from ksmtrace.synth import render as R
from ksmtrace.synth.model import Costs, Simulator, TASKS, migration_pte, present_pte, window_plan

from conftest import run_cli, run_cli_inproc

SMALL = Layout(vmas=8, pages=2, items=4, forks=1, child_items=1)


def model(layout, caller, patched, seed=0, **cost):
    sim = Simulator(layout, patched=patched, costs=Costs(**cost), seed=seed, record_iters=False, traced=frozenset())
    sim.run(4, [TASKS[0]], (caller,))
    return sim


# ---------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("caller", ["try_to_migrate", "remove_migration_ptes", "folio_referenced", "page_idle"])
@pytest.mark.parametrize("patched", [False, True])
@pytest.mark.parametrize("layout", [Layout(vmas=50, pages=2, items=7), Layout(vmas=6, forks=3, pages=2, items=5,
                                                                              child_items=2)])
def test_window_counts_add_up(caller, patched, layout):
    sim = model(layout, caller, patched, p_writer=0.2)
    assert sim.windows
    for w in sim.windows:
        assert w.iterations == w.skip_addr + w.skip_mm + w.invalid + w.rmap_one
        assert w.end_ns >= w.start_ns


def test_split_unpatched_visits_every_vma_patched_one():
    L = Layout(vmas=300, pages=1, items=20)
    for w in model(L, "remove_migration_ptes", False, p_writer=0).windows:
        assert w.iterations == 300 and w.skip_addr == 299
    for w in model(L, "remove_migration_ptes", True, p_writer=0).windows:
        assert w.iterations == 1 and w.skip_addr == 0
    # both passes, K windows each; pass 1 finds nothing in a single mm
    ws = model(L, "remove_migration_ptes", False, p_writer=0).walks[0].windows
    assert len(ws) == 40 and sum(x.rmap_one for x in ws if x.pass_no == 1) == 0


def test_fork_case_unchanged_by_patch():
    L = Layout(vmas=1, forks=10, pages=1, items=8)
    a = model(L, "remove_migration_ptes", False, p_writer=0).windows
    b = model(L, "remove_migration_ptes", True, p_writer=0).windows
    assert [(w.iterations, w.skip_mm, w.rmap_one) for w in a] == [(w.iterations, w.skip_mm, w.rmap_one) for w in b]
    assert all(w.iterations == 11 for w in a)
    first = model(L, "remove_migration_ptes", False, p_writer=0).walks[0].windows
    assert sum(w.rmap_one for w in first if w.pass_no == 1) == 80  # pass 1 handles every child mapping
    # with splits too, the patch removes the address skips but not the mm skips
    L2 = Layout(vmas=20, forks=3, pages=1, items=8)
    c = model(L2, "remove_migration_ptes", True, p_writer=0).windows
    assert all(w.iterations == 4 and w.skip_addr == 0 and w.skip_mm >= 1 for w in c)


def test_early_exit_stops_counting():
    L = Layout(vmas=100, pages=1, items=10)
    w = model(L, "try_to_migrate", False, p_writer=0).walks[0]
    assert w.early_exit and len(w.windows) == 10 and all(x.pass_no == 0 for x in w.windows)
    last = w.windows[-1]
    # the 10th item sits in VMA 9: the loop stops at the 10th chain
    assert last.iterations == 10 and last.rmap_one == 1
    assert sum(x.iterations for x in w.windows) == 9 * 100 + 10
    # forks: the exit comes in pass 1, once every child mapping is replaced
    wf = model(Layout(vmas=1, forks=2, pages=1, items=3), "try_to_migrate", False, p_writer=0).walks[0]
    assert wf.early_exit and wf.windows[-1].pass_no == 1 and sum(x.rmap_one for x in wf.windows) == 9


def test_bailout_only_for_try_lock_callers():
    sim = model(Layout(vmas=4, pages=1, items=6), "folio_referenced", False, p_writer=0.5, p_invalid=0)
    assert any(w.bailout for w in sim.walks)
    assert not any(x.slow for x in sim.windows)
    sim = model(Layout(vmas=4, pages=1, items=6), "page_idle", False, p_writer=0.5)
    assert not any(w.bailout for w in sim.walks) and any(x.slow for x in sim.windows)


def test_window_plan_and_cost_summary():
    L = Layout(vmas=8000, pages=1, items=256)
    it = L.items_of(0)[5]
    assert window_plan(L, it, False) == (8000, [(it.vma + 1, 0, it.vma)])
    s = cost_summary(L, "try_to_migrate")
    assert s["unpatched"]["iterations"] == 255 * 8000 + 256  # ~2.05 M (docs/walk-rules.md, "The walk being measured")
    assert 30e6 < s["unpatched"]["walk_ns"] < 40e6  # ~34 ms at 16.6 ns per iteration
    assert s["patched"]["iterations"] == 256 and s["patched"]["skip_addr"] == 0


def test_pte_encodings_match_formats_md():
    # two real 6.1 set_migration_pte lines: both give PFN 0x128d38
    assert "%x" % migration_pte(0x128D38, young=1, dirty=0, typ=28) == "e7fff7ffdae58e00"
    assert "%x" % present_pte(0x128D38) == "8000000128d38025"


# ---------------------------------------------------------------------------------------------- determinism
def test_deterministic_by_seed():
    a = generate(SMALL, walks=6, evidence="function-graph", seed=7, caller="mixed")
    b = generate(SMALL, walks=6, evidence="function-graph", seed=7, caller="mixed")
    c = generate(SMALL, walks=6, evidence="function-graph", seed=8, caller="mixed")
    assert a.text == b.text
    pd.testing.assert_frame_equal(a.expected_walks, b.expected_walks)
    pd.testing.assert_frame_equal(a.model_windows, b.model_windows)
    assert a.text != c.text


# ---------------------------------------------------------------------------------------------- exact layouts
def test_function_graph_layout_matches_formats_md():
    # function_graph lines as the tracer lays them out, rebuilt from the renderer's pieces
    pre = "%s |   %*d) %s | " % (R.ftrace_ts(458_203_501_000), 1, 1, R.graph_proc("ksm_rmap_repro", 10396))
    d, v = R.graph_duration(180)
    assert pre + R.graph_mark(180) + " " + d + "|  " + "  down_read_trylock();" == \
        "  458.203501 |   1) ksm_rma-10396  |   0.180 us    |    down_read_trylock();"
    assert v == 180
    d, v = R.graph_duration(34_010_004)
    pre = "%s |   %*d) %s | " % (R.ftrace_ts(458_237_510_000), 1, 1, R.graph_proc("ksm_rmap_repro", 10396))
    assert pre + R.graph_mark(34_010_004) + " " + d + "|  } /* rmap_walk_ksm */" == \
        "  458.237510 |   1) ksm_rma-10396  | * 34010.00 us |  } /* rmap_walk_ksm */"
    assert v == 34_010_000
    # as a real function_graph trace prints them: every delay mark and width
    for ns, txt in ((33_998_590, "* 33998.59 us |"), (119_760_200, "@ 119760.2 us |"), (3_594_274_000, "$ 3594274 us  |"),
                    (49_370, "+ 49.370 us   |"), (7_950_321, "# 7950.321 us |")):
        assert R.graph_mark(ns) + " " + R.graph_duration(ns)[0] + "|" == txt
    # task-change banner (as a real function_graph trace prints it)
    assert " %*d) %s => %s" % (1, 0, R.graph_proc("platform", 3210), R.graph_proc("vmstat", 2854)) == \
        " 0)  platfor-3210  =>  vmstat-2854  "


def test_ftrace_and_perf_layouts_match_formats_md():
    row = R.Row(17258_057_760_000, 0, 3, 467, "rmap_benchmark", "rmap_walk_start")
    row.lines = "folio=000000004c2a9e1b rwc=00000000d3f1a07c page_type=ksm locked=false"
    row.f["_flags"] = "....."
    line = R.write_ftrace([row], 4)[-1]
    assert line == ("  rmap_benchmark-467     [003] ..... 17258.057760: rmap_walk_start: folio=000000004c2a9e1b "
                    "rwc=00000000d3f1a07c page_type=ksm locked=false\n")
    # a real perf script line (perf 6.1, event column 37 wide)
    rows = []
    for t, cpu, pid, comm, ev, pl in ((375_395_548_000, 0, 9000, "ksm_rmap_repro", "ksm:ksm_enter", "mm 0xffff88810b1cabc0"),
                                      (375_419_251_000, 0, 37, "ksmd", "ksm:ksm_start_scan", "seq 824 rmap size 2000"),
                                      (375_505_103_000, 1, 9000, "ksm_rmap_repro",
                                       "compaction:mm_compaction_migratepages", "nr_migrated=32 nr_failed=0")):
        r = R.Row(t, 0, cpu, pid, comm, ev)
        r.lines = pl
        rows.append(r)
    out = R.write_perf(rows, nsres=False)
    assert out[0] == ("  ksm_rmap_repro  9000 [000]   375.395548:                         ksm:ksm_enter: "
                      "mm 0xffff88810b1cabc0\n")
    assert out[2] == ("  ksm_rmap_repro  9000 [001]   375.505103: compaction:mm_compaction_migratepages: "
                      "nr_migrated=32 nr_failed=0\n")


FTRACE_RE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d{3})\] [.A-Za-z0-9]{5} +\d+\.\d{6}: (?:\S+: |<stack trace>$)")
FG_RE = re.compile(r"^ +\d+\.\d{6} \|   \d\) .{14} \| (?:(?=.{14}\|)(?: {14}|[ +!#*@$] \d+(?:\.\d+)? us +)\|  "
                   r"|  (?:==========>|<==========) \|$)")
PERF_RE = re.compile(r"^\s*\S.*? +\d+ \[\d{3}\] +\d+\.\d{6,9}: +\w+:\w+: ")


@pytest.mark.parametrize("ev", EVIDENCE)
def test_every_line_has_the_format_layout(ev):
    for fmt in FORMATS[ev]:
        res = generate(SMALL, walks=6, evidence=ev, fmt=fmt, seed=3, caller="mixed", tracepoint_counters=True,
                       loss=True)
        lines = res.text.splitlines()
        assert lines
        in_chain = False
        for ln in lines:
            if fmt == "ftrace":
                ok = ln.startswith("#") or ln.startswith(" => ") or re.match(r"^CPU:\d+ \[LOST \d+ EVENTS\]$", ln) \
                    or FTRACE_RE.match(ln)
            elif fmt == "function-graph":
                ok = ln.startswith("#") or ln == "" or ln == " ------------------------------------------" or \
                    re.match(r"^ \d\) .{14} => .{14}$", ln) or re.match(r"^CPU:\d+ \[LOST \d+ EVENTS\]$", ln) or \
                    FG_RE.match(ln)
            else:
                if ln.startswith("\t"):
                    ok = in_chain and re.match(r"^\t[0-9a-f]{16} \w+\+0x[0-9a-f]+ \(\[kernel\.kallsyms\]\)$", ln)
                elif ln == "":
                    ok, in_chain = in_chain, False
                else:
                    ok = PERF_RE.match(ln)
                    in_chain = True
            assert ok, f"{ev}/{fmt}: {ln!r}"


# ---------------------------------------------------------------------------------------------- expected vs model
def test_funcgraph_expected_matches_model_counts():
    for retval in ("6.13", None, "6.5"):
        res = generate(SMALL, walks=8, evidence="function-graph", seed=2, caller="mixed", retval=retval)
        ew, mw = res.expected_walks, res.model_walks
        assert len(ew) == len(mw) and ew["complete"].all()
        m = ew.merge(mw, on=["pid"], suffixes=("", "_m"))
        m = m[(m.start_ns - m.start_ns_m).abs() < 1000]
        assert len(m) == len(mw)
        for c in ("n_windows", "iterations", "rmap_one", "invalid", "slow_windows", "max_window_iterations"):
            assert (m[c].astype(int) == m[c + "_m"].astype(int)).all(), (retval, c)
        assert ((m.duration_ns - m.duration_ns_m).abs() <= 1000).all()
        assert (m.bailout == m.bailout_m).all() and (m.early_exit == m.early_exit_m).all()


@pytest.mark.parametrize("seed,layout", [(11, Layout(vmas=5, forks=2, pages=3, items=4, child_items=2)),
                                         (12, Layout(vmas=30, pages=1, items=9)),
                                         (13, Layout(vmas=1, forks=6, pages=2, items=3))])
def test_oracles_agree_with_model_under_contention(seed, layout):
    costs = Costs(p_writer=0.25, p_offcpu=0.1, p_offcpu_held=0.1, p_irq=0.3)
    for ev in ("function-graph", "kprobe"):
        res = generate(layout, walks=10, evidence=ev, seed=seed, caller="mixed", costs=costs)
        ew = res.expected_walks.sort_values(["pid", "start_ns"]).reset_index(drop=True)
        mw = res.model_walks.sort_values(["pid", "start_ns"]).reset_index(drop=True)
        assert len(ew) == len(mw)
        for c in ("n_windows", "iterations", "rmap_one", "invalid", "slow_windows", "bailout", "early_exit"):
            assert list(ew[c].astype(object)) == list(mw[c].astype(object)), (ev, c)
        if ev == "kprobe":
            assert list(ew.skip_addr.astype(int)) == list(mw.skip_addr)


def test_kprobe_expected_splits_skips_like_the_model():
    res = generate(Layout(vmas=6, forks=2, pages=1, items=3), walks=4, evidence="kprobe", seed=1, caller="migrate")
    ew, mw = res.expected_walks, res.model_walks
    assert list(ew.skip_addr.astype(int)) == list(mw.sort_values("start_ns").skip_addr)
    assert list(ew.skip_mm.astype(int)) == list(mw.sort_values("start_ns").skip_mm)


def test_counters_expected_hold_exact_and_long_form_quantised():
    short = generate(SMALL, walks=4, evidence="counters", seed=1)
    mw = short.model_windows.sort_values(["end_ns"]).reset_index(drop=True)
    assert sorted(short.expected_windows.hold_ns.astype(int)) == sorted(mw.hold_ns)
    long = generate(SMALL, walks=4, evidence="counters", seed=1, counter_style="long")
    assert all(h % 1000 == 0 for h in long.expected_windows.hold_ns)
    bpf = generate(SMALL, walks=4, evidence="counters", seed=1, counter_style="bpftrace")
    assert len(bpf.expected_walks) == 4 and bpf.expected_walks["caller"].notna().all()


def test_perf_callchain_split_case_one_event_per_window():
    res = generate(Layout(vmas=40, pages=2, items=6), walks=4, evidence="perf-callchain", seed=1, ns=True)
    assert (res.expected_walks.n_events == 6).all()
    assert set(res.expected_walks.caller) == {"try_to_migrate", "remove_migration_ptes"}


def test_lock_waits_roles():
    res = generate(SMALL, walks=60, evidence="lock-contention", seed=2, caller="mixed")
    w = res.expected_waits
    assert {"READ", "WRITE", "SPIN"} <= set(w["flags"])
    assert (w[w["flags"] == "READ"]["caller"] == "rmap_walk_ksm").all()
    assert w[w["flags"] == "READ"].anon_vma_lock.all()
    assert w.interrupted.any() and not w[w.interrupted].anon_vma_lock.any()
    assert (w.wait_ns > 0).all()
    # without stacks the attribution is unknown (NULL), and no caller can be named
    plain = generate(SMALL, walks=60, evidence="lock-contention", fmt="ftrace", seed=2, caller="mixed", stack=False)
    assert plain.expected_waits.anon_vma_lock.isna().all() and plain.expected_waits["caller"].isna().all()


def test_truncation_and_loss_mark_walks_incomplete():
    res = generate(SMALL, walks=6, evidence="function-graph", seed=4, caller="mixed", truncate="both", loss=True)
    ew = res.expected_walks
    assert ew.start_ns.isna().any() and ew.end_ns.isna().any()
    assert "[LOST 17 EVENTS]" in res.text
    complete_pairs = ew[ew.start_ns.notna() & ew.end_ns.notna()]
    assert (~complete_pairs.complete).sum() >= 1
    tp = generate(SMALL, walks=6, evidence="tracepoint-v5", seed=4, truncate="both")
    assert tp.expected_walks.start_ns.isna().any() and tp.expected_walks.end_ns.isna().any()


# ---------------------------------------------------------------------------------------------- parsers
def _parse(path):
    from ksmtrace.ingest import ParseStats, detect
    from ksmtrace.ingest.source import open_source

    src = open_source(path)
    P = detect(src.head_text, open(path, "rb").read(4096), str(path))
    st = ParseStats()
    rows = sum(t.num_rows for t in P().parse(src, st))
    return P.name, st, rows


def test_every_rendering_ingests_without_malformed_lines(tmp_path):
    from ksmtrace.ingest import parsers

    have = set(parsers())
    if not {"ftrace", "function-graph", "perf-script"} <= have:
        pytest.skip("text parsers not available")
    want = {"ftrace": "ftrace", "function-graph": "function-graph", "perf-script": "perf-script"}
    variants = ({}, dict(truncate="both", loss=True, retval=None, tracepoint_counters=True, counter_style="long",
                         ns=False),
                dict(counter_style="bpftrace", retval="6.5", iterators=False, callchain=False, stack=False),
                dict(retaddr=True, tail=False))
    for ev in EVIDENCE:
        for fmt in FORMATS[ev]:
            for i, kw in enumerate(variants):
                res = generate(SMALL, walks=6, evidence=ev, fmt=fmt, seed=3, caller="mixed", **kw)
                p = tmp_path / f"{ev}-{fmt}-{i}.txt"
                p.write_text(res.text)
                name, st, n = _parse(p)
                assert name == want[fmt], (ev, fmt, name)
                assert st.n_malformed == 0, (ev, fmt, kw, st.malformed_examples[:3])
                assert n > 0


# ---------------------------------------------------------------------------------------------- CLI + demo
def test_cli_cost_summary_and_output(tmp_path):
    r = run_cli_inproc("synth", "--vmas", "2000", "--items", "64", "--pages", "1")
    assert r.code == 0 and "unpatched" in r.out and "256000" in r.out  # 2 passes x 64 windows x 2000 VMAs
    out = tmp_path / "t.txt"
    r = run_cli_inproc("synth", "--evidence", "kprobe", "--walks", "3", "--vmas", "10", "--out", str(out))
    assert r.code == 0, r.err
    for f in ("walks", "lock_windows", "lock_waits", "model_walks", "model_windows"):
        assert (tmp_path / "t.txt.truth" / f"{f}.csv").exists()
    assert pd.read_csv(tmp_path / "t.txt.truth" / "walks.csv").shape[0] == 3


def test_cli_bad_input_is_one_line(tmp_path):
    r = run_cli("synth", "--evidence", "kprobe", "--format", "perf-script", "--out", str(tmp_path / "x"))
    assert r.code != 0 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    r = run_cli("synth", "--vmas", "0")
    assert r.code != 0 and "Traceback" not in r.err


def test_demo_pair_is_small(tmp_path):
    files = write_demo_pair(tmp_path, walks=60)
    assert len(files) == 4
    assert sum(f.stat().st_size for f in files) < 1 << 20

"""capture --method function-graph / function-graph-locks / kprobes in a fake tracefs that behaves like 6.1's:
funcgraph-* option files exist only while function_graph is the current tracer, buffer_size_kb reads
"7 (expanded: 1408)" before first use, per_cpu/cpuN/stats report overruns. Plus buffer sizing for the
repro layout, the lock stacktrace trigger flags and the recipes' output paths."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from _capture_helpers import fake_tree, use_fake

FG_OPTS = ("funcgraph-abstime", "funcgraph-proc", "funcgraph-tail")   # 6.1: no retval, no retaddr

STATS = """entries: 1200
overrun: {overrun}
commit overrun: 0
bytes: 65536
oldest event ts:   101.000001
now ts:   140.250000
dropped events: 0
read events: 0
"""


def fake_fg_tracefs(tmp_path, monkeypatch, *, overrun=(0, 0), trace_text="# tracer: function_graph\n"):
    """A fake 6.1 tracefs; returns (tracefs dir, list of (file, value) writes in order)."""
    from ksmtrace.capture import env

    t = fake_tree(tmp_path, tracers="blk function_graph function nop", filter_functions=True, kprobes=True)
    use_fake(monkeypatch, tmp_path)
    (tmp_path / "proc/meminfo").write_text("MemTotal: 3000000 kB\nMemAvailable: 2500000 kB\n")
    for name, v in (("tracing_on", "1"), ("current_tracer", "nop"), ("set_graph_function", "#### all functions "
                    "enabled ####"), ("set_ftrace_filter", "#### all functions enabled ####"),
                    ("max_graph_depth", "0"), ("buffer_size_kb", "7 (expanded: 1408)"), ("trace", trace_text)):
        (t / name).write_text(v + "\n")
    (t / "options").mkdir()
    (t / "options" / "sleep-time").write_text("1\n")
    for i, o in enumerate(overrun):
        (t / "per_cpu" / f"cpu{i}").mkdir(parents=True)
        (t / "per_cpu" / f"cpu{i}" / "stats").write_text(STATS.format(overrun=o))
    writes: list[tuple[str, str]] = []
    real_write = env.write

    def write(path, value):
        path = Path(path)
        rel = str(path.relative_to(t)) if path.is_relative_to(t) else str(path)
        if rel == "buffer_size_kb" and not str(value).strip().isdigit():
            raise env.CaptureError(f"cannot write {value!r} to {path}: Invalid argument")
        if rel.startswith("options/funcgraph-") and not path.exists():
            raise env.CaptureError(f"cannot write {value!r} to {path}: No such file or directory")
        writes.append((rel, str(value).strip()))
        real_write(path, value)
        if rel == "current_tracer":       # the kernel adds/removes the tracer's option files
            for o in FG_OPTS:
                p = t / "options" / o
                if str(value).strip() == "function_graph":
                    if not p.exists():
                        p.write_text("0\n")
                elif p.exists():
                    p.unlink()
    monkeypatch.setattr(env, "write", write)
    return t, writes


def _capture(tmp_path, method, command, **kw):
    from ksmtrace.capture import capture as c

    out = tmp_path / "fg.txt"
    meta = c.run(c.CaptureOptions(out=out, method=method, command=command, **kw))
    return out, meta, json.loads((tmp_path / "fg.txt.meta.json").read_text())


def test_function_graph_option_order_restore_and_stats(tmp_path, monkeypatch, capsys):
    from ksmtrace.capture import tracefs

    t, writes = fake_fg_tracefs(tmp_path, monkeypatch, overrun=(0, 37))
    real = tracefs.per_cpu_stats
    seen = {}

    def spy(d):
        seen["on"] = (t / "tracing_on").read_text().strip() == "1"
        return real(d)
    monkeypatch.setattr(tracefs, "per_cpu_stats", spy)
    out, meta, side = _capture(tmp_path, "function-graph", ["true"])
    side["stats_read_with_tracing_on"] = seen.get("on")
    order = [w for w in writes]
    i_fg = order.index(("current_tracer", "function_graph"))
    i_opt = order.index(("options/funcgraph-abstime", "1"))
    assert i_fg < i_opt, "funcgraph options written before function_graph became the tracer"
    # restored: options put back while function_graph was still current, then the tracer, buffer, filters
    restore = order[order.index(("tracing_on", "1")) + 1:]
    assert restore.index(("options/funcgraph-abstime", "0")) < restore.index(("current_tracer", "nop"))
    assert (t / "current_tracer").read_text().strip() == "nop"
    assert (t / "buffer_size_kb").read_text().strip() == "1408"     # the expanded size, which is writable
    assert "restore_problems" not in side
    # the filter: walk, lock, iterators, rmap_one callbacks, one per write
    assert side["events"][:6] == ["function_graph:rmap_walk_ksm", "function_graph:down_read_trylock",
                                  "function_graph:down_read", "function_graph:up_read",
                                  "function_graph:anon_vma_interval_tree_iter_first",
                                  "function_graph:anon_vma_interval_tree_iter_next"]
    # per-CPU stats, with the key and field names ingest reads
    assert side["per_cpu_stats"] == {
        "0": {"entries": 1200, "overrun": 0, "commit_overrun": 0, "dropped_events": 0, "read_events": 0,
              "oldest_event_ts": "101.000001", "now_ts": "140.250000"},
        "1": {"entries": 1200, "overrun": 37, "commit_overrun": 0, "dropped_events": 0, "read_events": 0,
              "oldest_event_ts": "101.000001", "now_ts": "140.250000"}}
    assert side["lost_events"] == 37
    assert "ring buffer lost 37 events (cpu1: 37)" in capsys.readouterr().err
    # stats were read while tracing was still on (what they say about the end of the run is complete)
    assert side["stats_read_with_tracing_on"] is True


def test_function_graph_locks_traces_no_iterators(tmp_path, monkeypatch):
    fake_fg_tracefs(tmp_path, monkeypatch)
    _, _, side = _capture(tmp_path, "function-graph-locks", ["true"])
    assert side["method"] == "function-graph-locks"
    assert side["events"] == ["function_graph:rmap_walk_ksm", "function_graph:down_read_trylock",
                              "function_graph:down_read", "function_graph:up_read"]
    assert side["lost_events"] == 0


def test_buffer_sized_for_the_repro_layout(tmp_path, monkeypatch, capsys):
    from ksmtrace.capture import capture as c

    assert c.repro_layout(["ksmtrace", "repro", "--vmas", "200", "--trigger", "move-pages"]) == \
        {"vmas": 200, "pages": 200, "forks": 0, "trigger": "move-pages"}
    assert c.repro_layout(["/venv/bin/ksmtrace", "repro", "--vmas=1"])["pages"] == 20000
    assert c.repro_layout(["sleep", "5"]) is None
    small = c.estimate_fg_calls({"vmas": 200, "pages": 200, "forks": 0})
    assert 3 * 200 * 201 <= small < 3 * 200 * 210
    assert c.estimate_fg_calls({"vmas": 200, "pages": 200, "forks": 0}, iterators=False) < 3 * 200 * 10
    # small layouts fit; 2000 VMAs (~1 M iterator calls per walk) exceeds a 3 GiB guest
    kb, want = c.size_buffer_kb(small, 2, 2_500_000)
    assert kb == want and kb >= small * c.FG_BYTES_PER_CALL // 1024
    kb, want = c.size_buffer_kb(c.estimate_fg_calls({"vmas": 2000, "pages": 2000, "forks": 0}), 2, 2_500_000)
    assert kb < want and kb == int(2_500_000 * c.BUFFER_MEM_SHARE) // 2
    t, writes = fake_fg_tracefs(tmp_path, monkeypatch)
    _, _, side = _capture(tmp_path, "function-graph", ["true", "ksmtrace", "repro", "--vmas", "2000"])
    assert side["layout"] is None           # "true" is not ksmtrace: no layout, default buffer
    assert ("buffer_size_kb", str(c.DEFAULT_BUFFER_KB)) in writes


def test_buffer_warning_for_large_layout(tmp_path, monkeypatch, capsys):
    t, writes = fake_fg_tracefs(tmp_path, monkeypatch)
    fake = tmp_path / "bin" / "ksmtrace"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    _, _, side = _capture(tmp_path, "function-graph", [str(fake), "repro", "--vmas", "2000"])
    assert side["layout"]["vmas"] == 2000 and side["buffer_kb_wanted"] > side["tracefs_options"]["buffer_size_kb"]
    assert "more than memory allows" in capsys.readouterr().err


def test_kprobes_definitions_and_arch():
    from ksmtrace.capture import capture as c

    x86 = c.kprobe_defs("x86_64")
    assert "p:ksmp/rmap_walk_ksm rmap_walk_ksm folio=%di rwc=%si" in x86
    arm = c.kprobe_defs("aarch64")
    assert not any(re.search(r"%[a-z]{2}\b", d) for d in arm), "x86-64 registers on another architecture"
    assert "p:ksmp/rmap_walk_ksm rmap_walk_ksm folio=$arg1 rwc=$arg2" in arm
    it = [d for d in x86 if "iter_next" in d][0]
    assert "ret=$retval" in it and "vm_start=+0(+0($retval)):x64" in it and "vm_end=+8(+0($retval)):x64" in it


def test_lock_trigger_keeps_writer_waits():
    from ksmtrace.capture import capture as c, recipes

    # LCB_F_READ = 2, LCB_F_WRITE = 4 (include/trace/events/lock.h): a writer behind a walker has flags 4
    flags = int(c.RWSEM_WAIT_TRIGGER.rsplit("&", 1)[1])
    assert flags & 4 and flags & 2 and not flags & 1
    text = recipes.render("events")
    assert "flags & 2'" not in text and c.RWSEM_WAIT_TRIGGER in text


@pytest.mark.parametrize("method", ["function-graph", "function-graph-locks", "kprobes", "events",
                                    "rmap-tracepoints"])
def test_recipes_never_write_into_tracefs(method, tmp_path):
    """Every output redirection of a printed recipe goes to $OUT (an absolute path taken before any cd)
    or to a tracefs control file; a relative output path after 'cd $T' would land in tracefs."""
    from ksmtrace.capture import recipes

    text = recipes.render(method, out="trace.txt", workload="true")
    assert 'OUT=$(realpath -m -- "trace.txt")' in text or "OUT=$(realpath" in text
    cd = False
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if re.search(r"\bcd \$T\b", code):
            cd = True
        if re.search(r"\bcd -", code):
            cd = False
        for target in re.findall(r">>?\s*(\S+)", code):
            if target.startswith(("$T/", "$I/", "$OUT", '"$OUT', "/dev/null", "&")) or target in ("2", "&2"):
                continue
            if cd:   # tracefs control files only (trace, tracing_on, set_*...): never an output file
                assert not re.search(r"\.(txt|dat|data|bt)$", target) and target != "trace.txt", \
                    f"writes into tracefs: {line!r}"


def test_print_recipes_run_as_printed_in_a_fake_tracefs(tmp_path):
    """The events recipe, run by sh against a fake tracefs directory, leaves the trace in the directory the
    user ran it from (not in tracefs)."""
    from ksmtrace.capture import recipes

    t = tmp_path / "tracefs"
    i = t / "instances" / "ksmtrace"
    (t / "instances").mkdir(parents=True)
    text = recipes.render("events", out="run.txt", workload="true", events=("migrate/set_migration_pte",))
    text = text.replace("T=$(awk", "T=" + str(t) + " #").replace("mkdir $I", "mkdir -p $I/events/migrate/"
                        "set_migration_pte $I/events/lock/contention_begin $I/options $I/per_cpu/cpu0; "
                        "echo 'entries: 0' > $I/per_cpu/cpu0/stats; echo x > $I/trace")
    text = text.replace("rmdir $I", "rm -r $I")
    body = "#" + text.split("## events", 1)[1].split("## bpftrace", 1)[0]
    head = text.split("## 0.", 1)[0]
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run(["sh", "-ec", head + body], cwd=work, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (work / "run.txt").read_text() == "x\n" and (work / "run.txt.bufstats.txt").exists()
    assert not (t / "run.txt").exists()


def test_doctor_says_which_method_fits_which_layout(tmp_path, monkeypatch):
    from ksmtrace.capture import capture as c, doctor

    fake_fg_tracefs(tmp_path, monkeypatch)
    info = doctor.probe()
    rows = {r["method"]: r for r in info["layouts"]}
    assert set(rows) == {"rmap-tracepoints", "function-graph", "function-graph-locks", "kprobes", "bpftrace",
                         "perf-callchain"}
    assert rows["function-graph"]["available"] and rows["function-graph-locks"]["available"]
    big = rows["function-graph"]["max_vmas"]
    # the bound is capture's own estimate: the largest layout fits, one more VMA does not
    cap_kb = int(2_500_000 * c.BUFFER_MEM_SHARE) // info["cpus"]
    fits = lambda v: (c.estimate_fg_calls({"vmas": v, "pages": v, "forks": 0}) * c.FG_BYTES_PER_CALL * 1.25  # noqa
                      <= cap_kb * 1024 and c.estimate_fg_calls({"vmas": v, "pages": v, "forks": 0})
                      * doctor.TEXT_BYTES_PER_CALL <= doctor.MAX_TEXT)
    assert fits(big) and not fits(big + 1) and 200 < big < 20000
    assert "any size" in rows["bpftrace"]["layouts"] and "any size" in rows["function-graph-locks"]["layouts"]
    text = doctor.render(info)
    assert "which method fits which layout" in text and f"up to about {big} VMAs" in text

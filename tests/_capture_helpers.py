"""Shared helpers for the capture/doctor/repro tests: real-system gates and a fake /sys + /proc tree."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

KSM = Path("/sys/kernel/mm/ksm")
KNOBS = ("run", "pages_to_scan", "sleep_millisecs", "max_page_sharing", "smart_scan", "use_zero_pages")


def real_tracefs() -> Path | None:
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            p = line.split()
            if len(p) >= 3 and p[2] == "tracefs":
                return Path(p[1])
    except OSError:
        pass
    return None


def need_root_ksm():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not (KSM / "run").exists():
        pytest.skip("needs KSM (CONFIG_KSM)")
    if not Path("/proc/sys/vm/compact_memory").exists():
        pytest.skip("needs compaction")


def need_tracefs():
    need_root_ksm()
    t = real_tracefs()
    if t is None or not (t / "events" / "migrate" / "set_migration_pte").exists():
        pytest.skip("needs a mounted tracefs with migrate events")
    return t


def need_perf():
    need_tracefs()
    if not shutil.which("perf"):
        pytest.skip("needs perf")


def knob_snapshot() -> dict[str, str]:
    return {k: (KSM / k).read_text() for k in KNOBS if (KSM / k).exists()}


def fake_tree(root: Path, *, tracefs: bool = True, tracers: str = "blk function nop", rmap: bool = False,
              migrate: bool = True, lock: bool = True, filter_functions: bool = False, kprobes: bool = False,
              ksm: bool = True, nodes: str = "0") -> Path:
    """A fake /proc, /sys tree below root; returns the fake tracefs directory."""
    t = root / "sys/kernel/tracing"
    proc = root / "proc"
    (proc / "sys/vm").mkdir(parents=True)
    (proc / "sys/vm/max_map_count").write_text("65530\n")
    (proc / "sys/vm/compact_memory").write_text("")
    (proc / "meminfo").write_text("MemTotal: 1000 kB\nSwapTotal: 0 kB\n")
    (proc / "cmdline").write_text("quiet\n")
    (root / "sys/devices/system/node").mkdir(parents=True)
    (root / "sys/devices/system/node/online").write_text(nodes + "\n")
    if ksm:
        k = root / "sys/kernel/mm/ksm"
        k.mkdir(parents=True)
        for name, v in (("run", "0"), ("pages_to_scan", "100"), ("sleep_millisecs", "20"),
                        ("max_page_sharing", "256"), ("smart_scan", "1"), ("full_scans", "7"),
                        ("pages_sharing", "0"), ("pages_shared", "0"), ("advisor_mode", "[none] scan-time")):
            (k / name).write_text(v + "\n")
    t.mkdir(parents=True)
    if tracefs:
        (proc / "mounts").write_text(f"proc /proc proc rw 0 0\nnodev {t} tracefs rw,relatime 0 0\n")
    else:
        (proc / "mounts").write_text("proc /proc proc rw 0 0\n")
    (t / "available_tracers").write_text(tracers + "\n")
    (t / "trace_clock").write_text("[local] global counter\n")
    (t / "instances").mkdir()
    (t / "README").write_text("tracing mini-HOWTO\n" + ("  p[:[<group>/][<event>]] <place> [<args>]\n"
                                                       if kprobes else ""))
    if filter_functions:
        (t / "available_filter_functions").write_text("rmap_walk_ksm\n")
    if kprobes:
        (t / "kprobe_events").write_text("")
    evs = {"ksm": ["ksm_enter", "ksm_exit"], "compaction": ["mm_compaction_begin", "mm_compaction_end"]}
    if migrate:
        evs["migrate"] = ["set_migration_pte", "remove_migration_pte", "mm_migrate_pages_start", "mm_migrate_pages"]
    if lock:
        evs["lock"] = ["contention_begin", "contention_end"]
    if rmap:
        evs["rmap"] = ["rmap_walk_start", "rmap_walk_end"]
    for sysname, names in evs.items():
        for n in names:
            d = t / "events" / sysname / n
            d.mkdir(parents=True)
            (d / "enable").write_text("0\n")
    return t


def use_fake(monkeypatch, root: Path, *, uid: int = 0, perf: str | None = "perf version 6.1.0"):
    from ksmtrace.capture import env

    monkeypatch.setattr(env, "PATHS", env.Paths.under(root))
    monkeypatch.setattr(env, "euid", lambda: uid)
    monkeypatch.setattr(env, "tool_version", lambda tool: perf if tool == "perf" else None)

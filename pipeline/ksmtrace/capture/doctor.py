"""ksmtrace doctor: what this kernel can record, which evidence kinds follow, what to run next."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import env, ksm, tracefs

CONFIG_KEYS = ("CONFIG_FUNCTION_GRAPH_TRACER", "CONFIG_FUNCTION_GRAPH_RETVAL", "CONFIG_KPROBES",
               "CONFIG_KPROBE_EVENTS", "CONFIG_FPROBE", "CONFIG_FPROBE_EVENTS", "CONFIG_HIST_TRIGGERS",
               "CONFIG_SYNTH_EVENTS", "CONFIG_DEBUG_INFO_BTF", "CONFIG_IDLE_PAGE_TRACKING", "CONFIG_DAMON_PADDR",
               "CONFIG_NUMA_EMU", "CONFIG_MEMORY_HOTREMOVE", "CONFIG_KSM", "CONFIG_COMPACTION",
               "CONFIG_PREEMPT_DYNAMIC", "CONFIG_HZ")
EVIDENCE = {
    "a": "rmap tracepoints (rmap:rmap_walk_start/end, series v4-v7)",
    "b": "function_graph on rmap_walk_ksm",
    "c": "kprobe/fprobe events on rmap_walk_ksm and the rwsem calls",
    "d": "perf callchains on migrate:set_migration_pte / remove_migration_pte",
    "e": "counter lines (livepatch, trace_printk or bpftrace; docs/walk-rules.md (e))",
    "f": "lock contention waits (lock:contention_begin/end)",
}
#: evidence kind -> capture method
METHOD_OF = {"a": "rmap-tracepoints", "b": "function-graph", "c": "kprobes", "d": "perf-callchain"}
METHOD_ORDER = ("rmap-tracepoints", "function-graph", "kprobes", "perf-callchain", "events")


def _probe_tracefs(t: Path) -> dict[str, Any]:
    d: dict[str, Any] = {"path": str(t)}
    d["tracers"] = tracefs.available_tracers(t)
    d["trace_clock"] = tracefs.trace_clock(t)
    try:
        with open(t / "available_filter_functions") as f:
            f.readline()
        d["filter_functions_readable"] = True
    except OSError as e:
        d["filter_functions_readable"] = False
        d["filter_functions_error"] = e.strerror or str(e)
    d["kprobe_events"] = (t / "kprobe_events").exists()
    d["dynamic_events"] = (t / "dynamic_events").exists()
    readme = env.read(t / "README") or ""
    d["fprobe_events"] = "f[:[<group>/][<event>]]" in readme or "f[:[<group>/]" in readme
    d["kprobe_syntax"] = "p[:[<group>/][<event>]]" in readme or d["kprobe_events"]
    d["hist_triggers"] = "hist:" in readme
    d["instances"] = (t / "instances").is_dir()
    d["events"] = {s: tracefs.has_events(t, s) for s in ("rmap", "ksm", "migrate", "compaction", "lock")}
    return d


def probe() -> dict[str, Any]:
    """Everything doctor reports, as a JSON-able dict (works without root, reporting less)."""
    root = env.euid() == 0
    cfg = env.kernel_config()
    info: dict[str, Any] = {
        "root": root,
        "kernel": env.kernel_release(),
        "kernel_version": env.kernel_version(),
        "preemption": env.preemption_model(cfg),
        "cpus": env.cpu_count(),
        "numa_nodes": env.numa_nodes(),
        "swap": _swap_total_kb(),
        "btf": env.PATHS.btf.exists(),
        "lockdown": _lockdown(),
        "config": {k: cfg[k] for k in CONFIG_KEYS if k in cfg},
        "config_readable": bool(cfg),
        "tools": {t: env.tool_version(t) for t in ("perf", "trace-cmd", "bpftrace")},
        "ksm": ksm.state() if ksm.available() else None,
        "compaction": env.PATHS.compact_memory.exists(),
    }
    mount = tracefs.find_mount()
    tf: dict[str, Any] = {"mounted": str(mount) if mount else None}
    if mount is None:
        tf["mountable"] = root and env.PATHS.tracefs_default.is_dir()
        tf["mount_command"] = f"mount -t tracefs nodev {env.PATHS.tracefs_default}"
        if root and tf["mountable"]:  # look inside, then put things back as they were
            try:
                with tracefs.Mounted() as t:
                    tf.update(_probe_tracefs(t))
                tf["mounted_for_probe"] = True
            except env.CaptureError as e:
                tf["mountable"] = False
                tf["mount_error"] = str(e)
    elif root or (mount / "available_tracers").exists():
        tf.update(_probe_tracefs(mount))
    info["tracefs"] = tf
    info["evidence"] = evidence(info)
    info["method"] = best_method(info)
    info["layouts"] = layout_fit(info)
    info["next"] = next_commands(info)
    return info


TEXT_BYTES_PER_CALL = 80
MAX_TEXT = 1 << 30


def max_fg_vmas(buffer_kb: int, iterators: bool = True) -> int:
    """The largest split layout (pages = VMAs, no forks) whose function-graph trace fits a per-CPU ring buffer
    of buffer_kb (capture's own estimate: three passes over every rmap_item, each iterating all VMAs)."""
    from .capture import estimate_fg_calls, FG_BYTES_PER_CALL

    lo, hi = 1, 1_000_000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        calls = estimate_fg_calls({"vmas": mid, "pages": mid, "forks": 0}, iterators)
        # the ring buffer must hold it, and the text (about TEXT_BYTES_PER_CALL a call) stay under MAX_TEXT
        if calls * FG_BYTES_PER_CALL * 1.25 <= buffer_kb * 1024 and calls * TEXT_BYTES_PER_CALL <= MAX_TEXT:
            lo = mid
        else:
            hi = mid - 1
    return lo


def layout_fit(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Which capture method fits which layout size here: per-call tracing of the iterators (function-graph,
    kprobes) costs items x passes x VMAs ring-buffer entries per KSM page, so it only fits small layouts; the
    other methods record a few events per window or per walk and fit any size."""
    from .capture import BUFFER_MEM_SHARE, memavailable_kb

    ev = info.get("evidence", {})
    mem = memavailable_kb()
    cpus = max(info.get("cpus") or 1, 1)
    cap_kb = int(mem * BUFFER_MEM_SHARE) // cpus if mem else None
    big = max_fg_vmas(cap_kb) if cap_kb else None
    size = (f"up to about {big} VMAs (pages = VMAs; {cap_kb // 1024} MiB of ring buffer per CPU here, trace text "
            f"<= 1 GiB)" if big else "small layouts only (a few hundred VMAs)")
    rows = [
        ("rmap-tracepoints", "a", "any size", "walk durations only (one event pair per walk)"),
        ("function-graph", "b", size, "counts: windows, iterations, rmap_one (the iterators inflate hold times)"),
        ("function-graph-locks", "b", "any size (a few calls per lock window)", "hold times and windows, no "
         "iterations"),
        ("kprobes", "c", size.replace("VMAs (pages", "VMAs with the iterator probes (pages"),
         "windows, iterations, rmap_one, address-skip split from the iterators' VMA bounds; lock probes fire "
         "system-wide"),
        ("bpftrace", "e", "any size (counted in the kernel: one line per lock window)", "hold, iterations, "
         "rmap_one and the address/mm skip split per window; needs BTF"),
        ("perf-callchain", "d", "any size (one event per rmap_one call)", "walk spans and gaps (lower bounds)"),
    ]
    return [{"method": m, "available": bool(ev.get(k, {}).get("available")), "layouts": sz, "gives": what,
             "max_vmas": big if m in ("function-graph", "kprobes") else None} for m, k, sz, what in rows]


def _swap_total_kb() -> int | None:
    for line in (env.read(env.PATHS.proc / "meminfo") or "").splitlines():
        if line.startswith("SwapTotal:"):
            return int(line.split()[1])
    return None


def _lockdown() -> str | None:
    s = env.read(env.PATHS.lockdown)
    if not s:
        return None
    for w in s.split():
        if w.startswith("["):
            return w.strip("[]")
    return s


def evidence(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tf = info.get("tracefs", {})
    ev = tf.get("events", {})
    has = lambda sysname, *names: bool(set(names) & set(ev.get(sysname, [])))  # noqa: E731
    perf = bool(info["tools"].get("perf"))
    out: dict[str, dict[str, Any]] = {}

    def put(k, ok, why):
        out[k] = {"available": bool(ok), "what": EVIDENCE[k], "why": why}

    if not tf.get("path"):
        why = "tracefs not readable (" + ("not mounted" if not tf.get("mounted") else "needs root") + ")"
        for k in EVIDENCE:
            put(k, False, why)
        return out
    a = has("rmap", "rmap_walk_start", "rmap_walk")
    put("a", a, "rmap events present" if a else "no rmap:* events (kernel lacks the rmap tracepoint series)")
    fg = "function_graph" in tf.get("tracers", [])
    ff = tf.get("filter_functions_readable")
    put("b", fg and ff, "function_graph listed and available_filter_functions readable" if fg and ff else
        ("function_graph not in available_tracers (CONFIG_FUNCTION_GRAPH_TRACER unset)" if not fg else
         f"available_filter_functions not readable ({tf.get('filter_functions_error', 'EPERM')}; lockdown?)"))
    kp = tf.get("kprobe_events") or tf.get("fprobe_events")
    put("c", kp, "kprobe_events / fprobe syntax present" if kp else
        "no kprobe_events and no fprobe syntax in tracefs README (CONFIG_KPROBE_EVENTS/FPROBE_EVENTS unset)")
    mig = has("migrate", "set_migration_pte")
    put("d", mig and perf, "migrate:set_migration_pte and perf present" if mig and perf else
        ("perf not installed" if mig else "no migrate:set_migration_pte event"))
    bpft = bool(info["tools"].get("bpftrace"))
    e_ok = bpft and info["btf"] and ff
    put("e", e_ok, "bpftrace, BTF and traceable functions present (capture --print shows the script)" if e_ok else
        "needs instrumentation: a livepatch/trace_printk kernel, or bpftrace with BTF and fentry "
        f"(bpftrace {'installed' if bpft else 'missing'}, BTF {'yes' if info['btf'] else 'no'}, "
        f"function tracing {'yes' if ff else 'no'})")
    lk = has("lock", "contention_begin") and has("lock", "contention_end")
    put("f", lk, ("lock:contention_* present" + (" (perf gives callchains)" if perf else
                  " (use a stacktrace trigger for attribution)")) if lk else "no lock:contention_* events")
    return out


def best_method(info: dict[str, Any]) -> str | None:
    ev = info["evidence"]
    for k in ("a", "b", "c", "d"):
        if ev.get(k, {}).get("available"):
            return METHOD_OF[k]
    if info.get("tracefs", {}).get("events", {}).get("migrate"):
        return "events"
    return None


def next_commands(info: dict[str, Any]) -> list[str]:
    pre = "" if info["root"] else "sudo "
    m = info.get("method")
    if not info.get("ksm"):
        return ["# this kernel has no KSM: rebuild with CONFIG_KSM=y, or capture on another machine:",
                "ksmtrace capture --print"]
    if m is None:
        if not info["tracefs"].get("path"):
            return [pre + "ksmtrace doctor     # again as root, to look inside tracefs"]
        return ["# nothing usable for KSM walks here; see the recipes for other kernels:", "ksmtrace capture --print"]
    trig = "" if len(info["numa_nodes"]) < 2 else " --trigger move-pages"
    vm = []
    if not info["evidence"].get("b", {}).get("available"):
        vm = ["# no function_graph/kprobes here: count walks in a guest booted from a kernel that has them",
              "# (Debian's linux-image-amd64; needs qemu-system-x86 and pip install virtme-ng):",
              "ksmtrace vm -- ksmtrace capture --method function-graph --out fg.txt -- ksmtrace repro --vmas 200 "
              "--trigger move-pages"]
    return [f"{pre}ksmtrace capture --method {m} --out split.txt -- ksmtrace repro --vmas 20000{trig}",
            f"{pre}ksmtrace capture --method {m} --out unsplit.txt -- ksmtrace repro --vmas 1 --pages 20000{trig}",
            "ksmtrace ingest --label split split.txt && ksmtrace ingest --label unsplit unsplit.txt"] + vm


def render(info: dict[str, Any], fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(info, indent=2, sort_keys=True, default=str)
    yn = lambda b: "yes" if b else "no"  # noqa: E731
    L = [f"kernel        {info['kernel']}  ({info['kernel_version']})",
         f"preemption    {info['preemption']}",
         f"CPUs          {info['cpus']}    NUMA nodes {len(info['numa_nodes'])} {info['numa_nodes']}    "
         f"swap {'none' if not info['swap'] else str(info['swap']) + ' kB'}",
         f"root          {yn(info['root'])}    lockdown {info['lockdown'] or 'n/a'}    BTF {yn(info['btf'])}"]
    tf = info["tracefs"]
    if tf.get("mounted"):
        L.append(f"tracefs       mounted at {tf['mounted']}")
    elif tf.get("mountable"):
        L.append(f"tracefs       not mounted; can be mounted: {tf['mount_command']}")
    else:
        L.append(f"tracefs       not mounted{'; ' + tf['mount_error'] if tf.get('mount_error') else ''} "
                 f"({tf['mount_command']})")
    if tf.get("path"):
        L.append(f"  tracers     {' '.join(tf['tracers']) or '-'}    trace_clock {tf.get('trace_clock')}")
        L.append(f"  available_filter_functions readable: {yn(tf['filter_functions_readable'])}"
                 + (f" ({tf['filter_functions_error']})" if tf.get("filter_functions_error") else ""))
        L.append(f"  kprobe_events {yn(tf['kprobe_events'])}   fprobes {yn(tf['fprobe_events'])}   "
                 f"instances {yn(tf['instances'])}")
        for s, names in tf["events"].items():
            L.append(f"  {s + ':*':<13} {len(names):3d} events" + (f"  ({', '.join(names[:6])}"
                     + (", ..." if len(names) > 6 else "") + ")" if names else ""))
    for t, v in info["tools"].items():
        L.append(f"{t:<13} {v or 'not installed'}")
    k = info["ksm"]
    if k:
        L.append("KSM           " + " ".join(f"{n}={k[n]}" for n in ("run", "pages_to_scan", "sleep_millisecs",
                                                                      "max_page_sharing", "pages_sharing",
                                                                      "full_scans") if n in k))
    else:
        L.append("KSM           not available (CONFIG_KSM unset)")
    L.append(f"compaction    {'/proc/sys/vm/compact_memory' if info['compaction'] else 'not available'}")
    if info["config"]:
        on = [k.replace("CONFIG_", "") + ("" if v == "y" else f"={v}") for k, v in info["config"].items()
              if v != "n"]
        off = [k.replace("CONFIG_", "") for k, v in info["config"].items() if v == "n"]
        L.append("config set    " + " ".join(on))
        if off:
            L.append("config unset  " + " ".join(off))
    L.append("")
    L.append("evidence (docs/walk-rules.md (a)-(f))")
    for key, e in info["evidence"].items():
        L.append(f"  {key} {'✔' if e['available'] else '✘'} {e['what']}: {e['why']}")
    L.append("")
    L.append("which method fits which layout (repro --vmas N)")
    for r in info.get("layouts", []):
        L.append(f"  {'✔' if r['available'] else '✘'} {r['method']:<21} {r['layouts']}: {r['gives']}")
    L.append("")
    L.append(f"best capture method: {info['method'] or 'none'}")
    L.append("next:")
    L.extend("  " + c for c in info["next"])
    return "\n".join(L)

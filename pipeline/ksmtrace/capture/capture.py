"""ksmtrace capture: record a trace with the best method the kernel offers, then restore everything.

Methods (the evidence kinds of docs/walk-rules.md): ``rmap-tracepoints`` (a), ``function-graph`` (b), ``kprobes`` (c),
``perf-callchain`` (d + f with callchains), ``events`` (tracefs instance, d + f without callchains),
``counters`` (e: the per-lock-window counter lines an instrumented kernel writes with trace_printk, e.g.
kernel/patches/counters.patch, plus the stock events, from the top-level buffer).
The trace text goes to ``--out``; provenance to ``OUT.meta.json``. An interrupted capture keeps
what it recorded as ``NAME.partial.EXT`` with ``"partial": true`` in its sidecar.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import doctor, env, recipes, tracefs

METHODS = ("auto", "counters", "rmap-tracepoints", "function-graph", "function-graph-locks", "kprobes", "bpftrace",
           "perf-callchain", "events")
#: keys of a counter line or walk summary (queries/11_scan.sql, classes 6 and 7); a trace_printk format with one in
#: printk_formats means the kernel is instrumented
COUNTER_KEYS = ("hold_ns=", "Time_ms=", "iterations=", "Nr_iteration_total=", "walk_ns=")
PERF_EVENTS = ("migrate:set_migration_pte", "migrate:remove_migration_pte", "migrate:mm_migrate_pages_start",
               "migrate:mm_migrate_pages", "compaction:mm_compaction_begin", "compaction:mm_compaction_end",
               "lock:contention_begin", "lock:contention_end")
PERF_SCRIPT_FIELDS = "comm,pid,tid,cpu,time,event,trace,ip,sym"
FG_WALK = ("rmap_walk_ksm",)
FG_LOCK = ("down_read_trylock", "down_read", "up_read")
FG_ITER = ("anon_vma_interval_tree_iter_first", "anon_vma_interval_tree_iter_next")
#: rmap_one callbacks (names differ between kernel versions: the ones a kernel lacks are skipped and listed)
FG_RMAP_ONE = ("try_to_migrate_one", "remove_migration_pte", "try_to_unmap_one", "folio_referenced_one",
               "page_idle_clear_pte_refs_one", "damon_folio_mkold_one", "damon_folio_young_one",
               "invalid_folio_referenced_vma")
#: function-graph: walk, lock, iterator and rmap_one functions (counts; the iterators inflate hold times)
FG_FUNCS = FG_WALK + FG_LOCK + FG_ITER + FG_RMAP_ONE
#: function-graph-locks: walk and lock functions only (hold times without per-iteration overhead)
FG_LOCK_FUNCS = FG_WALK + FG_LOCK
FG_OPTIONS = ("funcgraph-abstime", "funcgraph-proc", "funcgraph-tail", "funcgraph-retval", "funcgraph-retaddr")
FG_REQUIRED = ("funcgraph-abstime", "funcgraph-proc")
#: bytes one traced call costs in the ring buffer (entry + return event with headers), for sizing it
FG_BYTES_PER_CALL = 80
#: stay below this share of MemAvailable for all per-CPU buffers together
BUFFER_MEM_SHARE = 0.4
DEFAULT_BUFFER_KB = 16384
COUNTERS_BUFFER_KB = 65536   # counters: no overwrite, so room for every migration event beside the lines
#: lock contention flags (include/trace/events/lock.h): LCB_F_READ 2, LCB_F_WRITE 4. The waiters stuck behind
#: a walker's read hold are writers; the walker's own slow-path waits are readers: keep both.
RWSEM_WAIT_TRIGGER = "stacktrace if flags & 6"


def kprobe_defs(machine: str | None = None) -> tuple[str, ...]:
    """kprobe/kretprobe definitions (evidence c). Register fetchargs such as %di and %si are x86-64 only:
    on other architectures the portable $argN (kernels >= 4.20) names the same arguments. The iterator
    returns fetch the returned chain's VMA bounds (anon_vma_chain.vma at offset 0; vm_start, vm_end at 0 and 8
    of vm_area_struct), which the address-skip split needs."""
    x86 = (machine or platform.machine()) == "x86_64"
    a1, a2 = ("%di", "%si") if x86 else ("$arg1", "$arg2")   # x86-64 registers; $argN elsewhere
    vma = "vm_start=+0(+0($retval)):x64 vm_end=+8(+0($retval)):x64"
    return (f"p:ksmp/rmap_walk_ksm rmap_walk_ksm folio={a1} rwc={a2}", "r:ksmp/rmap_walk_ksm_ret rmap_walk_ksm",
            "r:ksmp/rd_try_ret down_read_trylock ret=$retval", "r:ksmp/rd_slow_ret down_read",
            f"p:ksmp/rd_up up_read sem={a1}",
            f"r:ksmp/it_first_ret anon_vma_interval_tree_iter_first ret=$retval {vma}",
            f"r:ksmp/it_next_ret anon_vma_interval_tree_iter_next ret=$retval {vma}",
            "p:ksmp/mig_one try_to_migrate_one", "p:ksmp/rm_pte remove_migration_pte",
            "p:ksmp/unmap_one try_to_unmap_one", "p:ksmp/ref_one folio_referenced_one")


def repro_layout(command: list[str]) -> dict[str, Any] | None:
    """The layout a ``ksmtrace repro ...`` command builds ({vmas, pages, forks, trigger}), or None."""
    if len(command) >= 2 and Path(command[0]).name == "ksmtrace" and command[1] == "repro":
        i = 1
    elif len(command) >= 4 and command[1:4] == ["-m", "ksmtrace", "repro"]:
        i = 3
    else:
        return None
    args, out = command[i + 1:], {"vmas": None, "pages": None, "forks": 0, "trigger": "compact"}
    for j, a in enumerate(args):
        key, eq, val = a.partition("=")
        if key not in ("--vmas", "--pages", "--forks", "--trigger"):
            continue
        if not eq:
            val = args[j + 1] if j + 1 < len(args) else ""
        k = key[2:]
        if k == "trigger":
            out[k] = val
        else:
            try:
                out[k] = int(val)
            except ValueError:
                return None
    if out["vmas"] is None:
        return None
    if out["pages"] is None:
        out["pages"] = out["vmas"] if out["vmas"] > 1 else 20000
    return out


def estimate_fg_calls(layout: dict[str, Any], iterators: bool = True) -> int:
    """Traced calls one repro run makes under function-graph: each KSM page is walked by try_to_migrate
    (one pass over its rmap_items) and remove_migration_ptes (two passes); every rmap_item's pass queries
    the anon_vma tree, whose VMAs all overlap (iterator calls = VMAs + 1 per query)."""
    forks = layout.get("forks") or 0
    items = layout["pages"] * (1 + forks)
    vmas = layout["vmas"] * (1 + forks)
    passes = 3
    per_query = (vmas + 1) if iterators else 0
    return passes * items * (per_query + 4)     # + trylock, up_read, rmap_one, cond_resched slack


def memavailable_kb() -> int | None:
    for line in (env.read(env.PATHS.proc / "meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def size_buffer_kb(calls: int | None, cpus: int, mem_kb: int | None) -> tuple[int, int | None]:
    """(buffer_size_kb per CPU, the size the layout wants or None). The walks of one task may run on any CPU,
    so each CPU gets the whole estimate, capped by BUFFER_MEM_SHARE of MemAvailable over all CPUs."""
    if calls is None:
        return DEFAULT_BUFFER_KB, None
    want = max(DEFAULT_BUFFER_KB, int(calls * FG_BYTES_PER_CALL * 1.25) // 1024)
    cap = int(mem_kb * BUFFER_MEM_SHARE) // max(cpus, 1) if mem_kb else want
    return max(1024, min(want, cap)), want


def parse_range(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        a, b = text.replace(":", "-").split("-", 1)
        lo, hi = int(a, 16 if not a.startswith("0x") else 0), int(b, 16 if not b.startswith("0x") else 0)
    except ValueError:
        raise env.CaptureError(f"--filter-addr {text!r}: expected START-END in hex, e.g. "
                               f"0x600000000000-0x600004e20000") from None
    if hi <= lo:
        raise env.CaptureError(f"--filter-addr {text!r}: END must be above START")
    return lo, hi


@dataclass
class CaptureOptions:
    out: Path | None
    method: str = "auto"
    duration: float | None = None
    command: list[str] = field(default_factory=list)
    keep_data: bool = True
    filter_addr: tuple[int, int] | None = None
    buffer_kb: int | None = None       # None: sized for the layout (function-graph), else 16384
    perf_mmap: str = "16M"             # perf record -m: ring buffer per CPU (lost chunks otherwise)

    def validate(self, need_out: bool = True) -> "CaptureOptions":
        if self.method not in METHODS:
            raise env.CaptureError(f"--method must be one of {', '.join(METHODS)} (got {self.method!r})")
        if need_out and self.out is None:
            raise env.CaptureError("--out FILE is required (or use --print)")
        if self.command and self.duration is not None:
            raise env.CaptureError("give either --duration or a COMMAND after --, not both")
        if not self.command and self.duration is None and need_out:
            raise env.CaptureError("nothing to record: give a COMMAND after -- (e.g. -- ksmtrace repro --vmas "
                                   "20000) or --duration SECONDS")
        if self.duration is not None and self.duration <= 0:
            raise env.CaptureError(f"--duration must be positive (got {self.duration})")
        if self.buffer_kb is not None and self.buffer_kb < 64:
            raise env.CaptureError(f"--buffer-kb must be at least 64 (got {self.buffer_kb})")
        return self


def print_recipe(opts: CaptureOptions) -> str:
    opts.validate(need_out=False)
    workload = shlex.join(opts.command) if opts.command else (
        f"sleep {opts.duration:g}" if opts.duration else "ksmtrace repro --vmas 20000")
    return recipes.render(opts.method, out=str(opts.out or "trace.txt"), workload=workload,
                          buffer_kb=opts.buffer_kb or DEFAULT_BUFFER_KB, addr_range=opts.filter_addr,
                          events=tracefs.STOCK_EVENTS)


def partial_name(out: Path) -> Path:
    """split.txt -> split.partial.txt (the suffix stays, so format detection still works)."""
    return out.with_name(f"{out.stem}.partial{out.suffix}" if out.suffix else f"{out.name}.partial")


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + ".meta.json")


class _Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Capture:
    def __init__(self, opts: CaptureOptions) -> None:
        self.o = opts.validate()
        self.out = Path(opts.out)
        self.meta: dict[str, Any] = {}
        self.proc: subprocess.Popen | None = None
        self.cleanups: list = []
        self.repro_meta: list[dict] = []
        self.command_output_tail: list[str] = []
        self.interrupted: int | None = None
        self._old: dict[int, Any] = {}

    # ---------------------------------------------------------------- driver
    def run(self) -> dict[str, Any]:
        env.require_root("ksmtrace capture")
        if not self.out.parent.exists():
            raise env.CaptureError(f"{self.out.parent}: no such directory for --out")
        started = time.time()
        self.meta = {
            "ksmtrace_capture": 1, "partial": False, "method_requested": self.o.method,
            "kernel": env.kernel_release(), "kernel_version": env.kernel_version(),
            "preemption": env.preemption_model(), "cpus": env.cpu_count(), "numa_nodes": env.numa_nodes(),
            "command": self.o.command, "duration": self.o.duration,
            "options": {"keep_data": self.o.keep_data, "buffer_kb": self.o.buffer_kb,
                        "filter_addr": [hex(x) for x in self.o.filter_addr] if self.o.filter_addr else None},
            "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
            "tools": {t: env.tool_version(t) for t in ("perf", "trace-cmd")},
        }
        from .. import __version__ as ksmtrace_version  # noqa: F401
        self.meta["tools"]["ksmtrace"] = ksmtrace_version
        self.meta["tools"]["python"] = sys.version.split()[0]
        self._install_handlers()
        mounted = tracefs.Mounted()
        try:
            t = mounted.__enter__()
            self.cleanups.append(lambda: mounted.__exit__(None, None, None) or [])
            method = self._choose(t)
            self.meta["method"] = method
            self.meta["trace_clock"] = tracefs.trace_clock(t)
            self.meta["clocksource"] = env.clocksource()
            self.meta["tracefs"] = str(t)
            getattr(self, "_run_" + method.replace("-", "_"))(t)
        except _Interrupted as i:
            self.interrupted = i.signum
        finally:
            problems = self._cleanup()
            self._restore_handlers()
        self.meta["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.meta["elapsed_s"] = round(time.time() - started, 3)
        self.meta["repro"] = self.repro_meta[-1] if self.repro_meta else None
        self.meta["command_output_tail"] = self.command_output_tail[-40:]
        if problems:
            self.meta["restore_problems"] = problems
            for p in problems:
                print(f"ksmtrace: warning: {p}", file=sys.stderr)
        return self._finish()

    def _finish(self) -> dict[str, Any]:
        out = self.out
        if self.interrupted is not None:
            self.meta["partial"] = True
            self.meta["interrupted_by"] = signal.Signals(self.interrupted).name
            if out.exists():
                part = partial_name(out)
                out.replace(part)
                for key, suffix in (("perf_data", ".perf.data"), ("bufstats", ".bufstats.txt")):
                    p = self.meta.get(key)
                    if p and Path(p).exists():
                        newp = part.with_name(part.name + suffix)
                        Path(p).replace(newp)
                        self.meta[key] = str(newp)
                self.meta["trace"] = str(part)
                meta_path(part).write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str) + "\n")
                raise env.CaptureInterrupted(f"capture interrupted; partial trace kept in {part} "
                                             f"(marked partial in {meta_path(part).name})")
            self.meta["trace"] = None
            meta_path(out).write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str) + "\n")
            raise env.CaptureInterrupted("capture interrupted before any trace was saved")
        self.meta["trace"] = str(out)
        meta_path(out).write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str) + "\n")
        rc = self.meta.get("command_exit")
        size = out.stat().st_size if out.exists() else 0
        print(f"capture: {self.meta['method']} trace {out} ({size / 1e6:.1f} MB); provenance {meta_path(out).name}",
              file=sys.stderr)
        if rc not in (None, 0):
            raise env.CaptureError(f"the command exited with status {rc}; trace kept in {out} "
                                   f"(see {meta_path(out).name})")
        return self.meta

    def _choose(self, t: Path) -> str:
        info = {"tracefs": {"path": str(t), **doctor._probe_tracefs(t)},
                "tools": {"perf": env.tool_version("perf"), "bpftrace": None}, "btf": env.PATHS.btf.exists()}
        ev = doctor.evidence(info)
        ok = {doctor.METHOD_OF[k]: ev[k]["available"] for k in doctor.METHOD_OF}
        ok["events"] = bool(info["tracefs"]["events"].get("migrate"))
        ok["function-graph-locks"] = ok.get("function-graph")
        ok["bpftrace"] = bool(env.PATHS.btf.exists() and info["tracefs"].get("filter_functions_readable"))
        ok["counters"] = bool(counter_formats(t))
        self.meta["evidence_available"] = {k: v["available"] for k, v in ev.items()}
        if self.o.method == "auto":
            if ok["counters"]:  # an instrumented kernel: exact per-window counters beat every inference
                return "counters"
            for m in doctor.METHOD_ORDER:
                if ok.get(m):
                    return m
            raise env.MethodUnavailable("this kernel offers no way to record KSM walks (no rmap/migrate events, "
                                        "no function_graph, no kprobes); see 'ksmtrace capture --print'")
        if not ok.get(self.o.method):
            avail = [m for m in doctor.METHOD_ORDER if ok.get(m)]
            base = "function-graph" if self.o.method == "function-graph-locks" else self.o.method
            key = next((k for k, m in doctor.METHOD_OF.items() if m == base), None)
            why = (ev[key]["why"] if key else "no trace_printk counter format in printk_formats (not an "
                   "instrumented kernel: see kernel/patches/counters.patch)" if self.o.method == "counters"
                   else "no migrate:* events")
            raise env.MethodUnavailable(f"method {self.o.method} is not available on this kernel ({why}); "
                                        f"available: {', '.join(avail) or 'none'}"
                                        + (f"; try --method {avail[0]}" if avail else ""))
        return self.o.method

    # ---------------------------------------------------------------- signals and cleanup
    def _install_handlers(self) -> None:
        def handler(signum, frame):
            if self.interrupted is None:
                self.interrupted = signum
            p = self.proc
            if p is not None and p.poll() is None:  # let the recorder/workload stop and save what it has
                try:
                    p.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
                except OSError:
                    pass
                return
            raise _Interrupted(signum)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                self._old[s] = signal.signal(s, handler)
            except ValueError:
                pass

    def _restore_handlers(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def _cleanup(self) -> list[str]:
        problems: list[str] = []
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                p.send_signal(signal.SIGINT)
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        while self.cleanups:
            fn = self.cleanups.pop()
            try:
                problems.extend(fn() or [])
            except Exception as e:  # noqa: BLE001 - restoring must go on
                problems.append(f"{type(e).__name__}: {e}")
        return problems

    # ---------------------------------------------------------------- running the workload
    def _workload(self) -> list[str]:
        return list(self.o.command) if self.o.command else ["sleep", f"{self.o.duration:g}"]

    def _spawn(self, argv: list[str]) -> int:
        """Run argv, echo its stdout, keep 'repro-meta:' lines; returns its exit status."""
        try:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                         start_new_session=False)
        except OSError as e:
            raise env.CaptureError(f"cannot run {argv[0]}: {e.strerror or e}") from None

        def pump():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                sys.stdout.write(line)
                sys.stdout.flush()
                self.command_output_tail.append(line.rstrip("\n"))
                if len(self.command_output_tail) > 200:
                    del self.command_output_tail[:100]
                if line.startswith("repro-meta: "):
                    try:
                        self.repro_meta.append(json.loads(line[len("repro-meta: "):]))
                    except ValueError:
                        pass
        th = threading.Thread(target=pump, daemon=True)
        th.start()
        while True:
            try:
                rc = self.proc.wait()
                break
            except _Interrupted as i:  # handler already forwarded the signal; wait for the child to finish
                self.interrupted = i.signum
        th.join(timeout=10)
        return rc

    def _check_interrupt(self) -> None:
        if self.interrupted is not None:
            raise _Interrupted(self.interrupted)

    # ---------------------------------------------------------------- methods
    def _run_perf_callchain(self, t: Path) -> None:
        perf = env.require_tool("perf", "install linux-perf / linux-tools, or use --method events")
        data = self.out.with_name(self.out.name + ".perf.data")
        argv = [perf, "record", "-a", "-g", "-m", self.o.perf_mmap, "-o", str(data)]
        flt = self._addr_filter()
        for e in PERF_EVENTS:
            argv += ["-e", e]
            if flt and e in ("migrate:set_migration_pte", "migrate:remove_migration_pte"):
                argv += ["--filter", flt]
        argv += ["--", *self._workload()]
        self.meta["events"] = list(PERF_EVENTS)
        self.meta["recorder"] = shlex.join(argv)
        self.meta["perf_data"] = str(data)
        rc = self._spawn(argv)
        self.meta["command_exit"] = rc
        self.proc = None
        if not data.exists() or data.stat().st_size == 0:
            raise env.CaptureError(f"perf record wrote no data (exit {rc}); is perf allowed to trace "
                                   f"(perf_event_paranoid) and are the events present?")
        script = [perf, "script", "-i", str(data), "--ns", "--show-lost-events", "-F", PERF_SCRIPT_FIELDS]
        self.meta["converter"] = shlex.join(script)
        with open(self.out, "wb") as f:
            p = subprocess.run(script, stdout=f, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise env.CaptureError(f"perf script failed: {p.stderr.decode(errors='replace').strip()[:300]}")
        self.meta["ksm_walk_events"] = count_ksm_walk_events(self.out)
        print(f"capture: {self.meta['ksm_walk_events']} events have rmap_walk_ksm in their callchain"
              + ("" if self.meta["ksm_walk_events"] else " (no KSM walk was triggered or recorded)"),
              file=sys.stderr)
        hdr = subprocess.run([perf, "script", "-i", str(data), "--header-only"], capture_output=True, text=True)
        self.meta["perf_header"] = [ln for ln in hdr.stdout.splitlines()
                                    if any(k in ln for k in ("os release", "perf version", "nrcpus", "cmdline",
                                                             "captured on", "cpudesc", "total memory"))]
        lost = subprocess.run([perf, "report", "-i", str(data), "--stats"], capture_output=True, text=True)
        self.meta["perf_stats"] = [ln.strip() for ln in lost.stdout.splitlines()
                                   if "LOST" in ln or "SAMPLE" in ln or "lost" in ln.lower()][:20]
        if not self.o.keep_data:
            data.unlink(missing_ok=True)
            self.meta["perf_data"] = None
        self._check_interrupt()

    def _addr_filter(self) -> str | None:
        if not self.o.filter_addr:
            return None
        lo, hi = self.o.filter_addr
        return f"addr >= {lo:#x} && addr < {hi:#x}"

    def _instance_capture(self, t: Path, events: tuple[str, ...], stacktrace: bool = True) -> None:
        inst = tracefs.Instance(t).create()
        self.cleanups.append(inst.remove)
        kb = self.o.buffer_kb or DEFAULT_BUFFER_KB
        inst.set("buffer_size_kb", kb)
        enabled = [e for e in events if inst.enable(e)]
        if not enabled:
            raise env.MethodUnavailable("none of the trace events exist on this kernel")
        inst.option("hash-ptr", 0)
        flt = self._addr_filter()
        if flt:
            for e in tracefs.ADDR_FILTERED:
                if e in enabled:
                    inst.filter(e, flt)
        if stacktrace and "lock/contention_begin" in enabled:
            try:
                inst.trigger("lock/contention_begin", RWSEM_WAIT_TRIGGER)
            except env.CaptureError:
                pass  # no trigger support: waits stay unattributed
        self.meta["events"] = enabled
        self.meta["tracefs_instance"] = str(inst.dir)
        self.meta["tracefs_options"] = {"hash-ptr": 0, "buffer_size_kb": kb,
                                        "filter": flt, "stacktrace_trigger": bool(inst.triggers)}
        inst.set("tracing_on", 1)
        try:
            self.meta["command_exit"] = self._spawn(self._workload())
            self.proc = None
        finally:
            self._buffer_stats(inst.dir)
            inst.set("tracing_on", 0)
            inst.dump(self.out)
            stats = self.out.with_name(self.out.name + ".bufstats.txt")
            stats.write_text(inst.cpu_stats())
            self.meta["bufstats"] = str(stats)
            self.meta["overrun"] = _overruns(stats.read_text())
        self._check_interrupt()

    def _run_events(self, t: Path) -> None:
        self._instance_capture(t, tracefs.STOCK_EVENTS)

    def _run_rmap_tracepoints(self, t: Path) -> None:
        self._instance_capture(t, tracefs.RMAP_EVENTS + tracefs.STOCK_EVENTS)

    def _run_counters(self, t: Path) -> None:
        """trace_printk writes only into the top-level buffer: nop tracer there, the stock events beside
        the counter lines (they place the walks among migrations), no overwrite (losses are counted in
        the header's entries-in-buffer/entries-written and in per_cpu stats, not silently overwritten)."""
        events = [e for e in tracefs.STOCK_EVENTS if (t / "events" / e / "enable").exists()]
        st = tracefs.SavedState(t)
        st.save("tracing_on", "current_tracer", "buffer_size_kb", "options/overwrite", "options/hash-ptr",
                *[f"events/{e}/enable" for e in events])
        self.cleanups.append(st.restore)
        env.write(t / "tracing_on", 0)
        env.write(t / "current_tracer", "nop")
        kb = self.o.buffer_kb or COUNTERS_BUFFER_KB
        env.write(t / "buffer_size_kb", kb)
        for o, v in (("overwrite", 0), ("hash-ptr", 0)):
            if (t / "options" / o).exists():
                env.write(t / "options" / o, v)
        for e in events:
            env.write(t / "events" / e / "enable", 1)
        self.meta["events"] = ["trace_printk:" + f for f in counter_formats(t)] + events
        self.meta["tracefs_options"] = {"overwrite": 0, "hash-ptr": 0, "buffer_size_kb": kb}
        try:
            self._record_top_level(t)
        finally:
            for e in events:
                env.write(t / "events" / e / "enable", 0)
        self._check_interrupt()


    def _fg_buffer_kb(self, iterators: bool) -> int:
        """--buffer-kb, or a size for the repro layout the command builds (capped by free memory)."""
        layout = repro_layout(self.o.command)
        if self.o.buffer_kb is not None:
            kb, want = self.o.buffer_kb, None
        else:
            calls = estimate_fg_calls(layout, iterators) if layout else None
            kb, want = size_buffer_kb(calls, env.cpu_count(), memavailable_kb())
            if want and kb < want:
                print(f"capture: warning: the layout wants about {want // 1024} MiB of ring buffer per CPU, more "
                      f"than memory allows ({kb // 1024} MiB); early walks will be overwritten. Use a smaller "
                      f"layout (--vmas) with function-graph, or the bpftrace counters (ksmtrace doctor)",
                      file=sys.stderr)
        self.meta["layout"] = layout
        self.meta["buffer_kb_wanted"] = want
        return kb

    def _run_function_graph(self, t: Path, locks_only: bool = False) -> None:
        funcs = FG_LOCK_FUNCS if locks_only else FG_FUNCS
        if "function_graph" not in tracefs.available_tracers(t):
            raise env.MethodUnavailable("this kernel has no function_graph tracer (CONFIG_FUNCTION_GRAPH_TRACER)")
        st = tracefs.SavedState(t)
        st.save("tracing_on", "current_tracer", "set_graph_function", "set_ftrace_filter", "max_graph_depth",
                "buffer_size_kb")
        self.cleanups.append(st.restore)
        env.write(t / "tracing_on", 0)
        env.write(t / "current_tracer", "nop")
        env.write(t / "set_graph_function", FG_WALK[0])
        env.write(t / "set_ftrace_filter", FG_WALK[0])
        missing = []
        for f in funcs[1:]:  # one name per write: an unknown name fails its write only
            try:
                env.append(t / "set_ftrace_filter", f)
            except OSError:
                missing.append(f)
        env.write(t / "max_graph_depth", 0)
        kb = self._fg_buffer_kb(iterators=not locks_only)
        env.write(t / "buffer_size_kb", kb)
        # the funcgraph-* option files exist only once function_graph is the current tracer; they are
        # restored first (cleanups run last-in first-out), while it still is
        env.write(t / "current_tracer", "function_graph")
        ost = tracefs.SavedState(t)
        ost.save(*[f"options/{o}" for o in FG_OPTIONS])
        self.cleanups.append(ost.restore)
        opts = {}
        for o in FG_OPTIONS:
            p = t / "options" / o
            if p.exists():
                env.write(p, 1)
                opts[o] = 1
        lacking = [o for o in FG_REQUIRED if o not in opts]
        if lacking:
            raise env.MethodUnavailable(f"function_graph lacks the options {', '.join(lacking)} (needed for "
                                        f"per-task nesting and window times)")
        self.meta["events"] = ["function_graph:" + f for f in funcs if f not in missing]
        self.meta["not_traceable"] = missing
        self.meta["tracefs_options"] = {**opts, "buffer_size_kb": kb, "max_graph_depth": 0}
        self._record_top_level(t)
        self._check_interrupt()

    def _record_top_level(self, t: Path) -> None:
        """Run the workload with the top-level buffer of tracefs ``t`` recording (cleared first), then stop
        it, keep its per-CPU stats and copy its ``trace`` to ``--out``, also when the workload fails."""
        env.write(t / "trace", "")
        env.write(t / "tracing_on", 1)
        try:
            self.meta["command_exit"] = self._spawn(self._workload())
            self.proc = None
        finally:
            self._buffer_stats(t)
            env.write(t / "tracing_on", 0)
            with open(t / "trace", "rb") as src, open(self.out, "wb") as dst:
                while b := src.read(1 << 20):
                    dst.write(b)

    def _run_function_graph_locks(self, t: Path) -> None:
        self._run_function_graph(t, locks_only=True)

    def _buffer_stats(self, buffer_dir: Path) -> None:
        """per_cpu/cpuN/stats into the sidecar ("per_cpu_stats"), read while tracing is still on; tells the
        user when the ring buffer lost events (the function_graph text itself does not say so)."""
        stats = tracefs.per_cpu_stats(buffer_dir)
        self.meta["per_cpu_stats"] = stats
        lost = tracefs.lost_events(stats)
        self.meta["lost_events"] = lost
        if lost:
            worst = ", ".join(f"cpu{c}: {(s.get('overrun') or 0) + (s.get('dropped_events') or 0)}"
                              for c, s in stats.items() if (s.get("overrun") or 0) + (s.get("dropped_events") or 0))
            print(f"capture: warning: the ring buffer lost {lost} events ({worst}): the earliest walks are "
                  f"missing or incomplete (ingest marks walks cut by the loss). Give --buffer-kb more, use a "
                  f"smaller layout, or count in the kernel (bpftrace counters)", file=sys.stderr)

    def _run_kprobes(self, t: Path) -> None:
        kp = t / "kprobe_events"
        added: list[str] = []

        def remove() -> list[str]:
            probs = []
            try:
                env.write(t / "events" / "ksmp" / "enable", 0)
            except env.CaptureError:
                pass
            for d in reversed(added):
                try:
                    env.append(kp, "-:" + d.split()[0].split(":", 1)[1])
                except OSError as e:
                    probs.append(f"cannot remove kprobe {d.split()[0]}: {e.strerror}")
            return probs
        self.cleanups.append(remove)
        for d in kprobe_defs():
            try:
                env.append(kp, d)
                added.append(d)
            except OSError as e:
                self.meta.setdefault("probe_errors", []).append(f"{d}: {e.strerror}")
        if not added:
            raise env.MethodUnavailable("no kprobe could be placed (first: "
                                        f"{self.meta.get('probe_errors', ['?'])[0]})")
        self.meta["probes"] = added
        self._instance_capture(t, ("ksmp",) + tracefs.STOCK_EVENTS[5:], stacktrace=True)
        self.meta["kprobe_profile"] = (env.read(t / "kprobe_profile") or "").splitlines()


    def _run_bpftrace(self, t: Path) -> None:
        """In-kernel counting (evidence e): the bpftrace program of capture/bpftrace.py writes one counter line per
        lock window into OUT while the workload runs."""
        from . import bpftrace as bt

        exe = env.require_tool("bpftrace", "Debian package bpftrace")
        if not env.PATHS.btf.exists():
            raise env.MethodUnavailable(f"bpftrace counting needs BTF ({env.PATHS.btf}; CONFIG_DEBUG_INFO_BTF)")
        version = bt.bpftrace_version(exe)
        # kfunc needs each function traceable (and in BTF): keep the rmap_one callbacks this kernel has
        traceable = _traceable_functions(t, bt.CALLBACKS)
        cbs = tuple(c for c in bt.CALLBACKS if c in traceable) if traceable else bt.CALLBACKS
        self.meta["not_traceable"] = [c for c in bt.CALLBACKS if c not in cbs]
        prog = bt.program(version, env.kernel_release(), callbacks=cbs)
        script = self.out.with_name(self.out.name + ".bt")
        script.write_text(prog)
        self.meta["bpftrace_version"] = ".".join(map(str, version)) if version else None
        self.meta["bpftrace_program"] = str(script)
        self.meta["events"] = ["bpftrace:ksm_window", "bpftrace:ksm_walk"]
        err = self.out.with_name(self.out.name + ".bpftrace.err")
        with open(self.out, "wb") as fout, open(err, "wb") as ferr:
            bp = subprocess.Popen([exe, str(script)], stdout=fout, stderr=ferr, stdin=subprocess.DEVNULL,
                                  start_new_session=True)

            def stop() -> list[str]:
                if bp.poll() is None:
                    bp.send_signal(signal.SIGINT)
                    try:
                        bp.wait(timeout=600)   # END and exit take minutes under TCG at 20,000 VMAs
                    except subprocess.TimeoutExpired:
                        bp.kill()
                        bp.wait()
                return []
            self.cleanups.append(stop)
            # wait for BEGIN's line (attaching all trampolines takes up to a minute under QEMU TCG)
            deadline = time.monotonic() + 600
            while bp.poll() is None and time.monotonic() < deadline:
                if _bpftrace_attached(bp.pid, self.out):
                    break
                time.sleep(0.5)
            if bp.poll() is not None:
                msg = [ln for ln in err.read_bytes().decode(errors="replace").splitlines() if ln.strip()]
                first = next((ln for ln in msg if "ERROR" in ln or "FATAL" in ln), msg[-1] if msg else "")
                raise env.MethodUnavailable(f"bpftrace failed ({script.name} kept): "
                                            + (first.strip() or f"exit {bp.returncode}"))
            self.meta["command_exit"] = self._spawn(self._workload())
            self.proc = None
            stop()
        self.meta["bpftrace_exit"] = bp.returncode
        self.meta["bpftrace_stderr"] = err.read_bytes().decode(errors="replace").splitlines()[-20:]
        err.unlink(missing_ok=True)
        self._check_interrupt()


def _traceable_functions(t: Path, wanted: tuple[str, ...]) -> set[str]:
    """Which of ``wanted`` are listed in available_filter_functions (empty set when it cannot be read)."""
    want, found = set(wanted), set()
    try:
        with open(t / "available_filter_functions", "rb") as f:
            for line in f:
                name = line.split(None, 1)[0].decode(errors="replace") if line.strip() else ""
                if name in want:
                    found.add(name)
    except OSError:
        return set()
    return found


def _bpftrace_attached(pid: int, out: Path) -> bool:
    """True once the program's BEGIN probe printed its line: bpftrace runs BEGIN after attaching every probe."""
    from .bpftrace import ATTACHED

    try:
        with open(out, "rb") as f:
            return ATTACHED.encode() in f.read(4096)
    except OSError:
        return False


def counter_formats(t: Path) -> list[str]:
    """The trace_printk formats in ``printk_formats`` that write counter lines (an instrumented kernel)."""
    text = env.read(t / "printk_formats") or ""
    out = []
    for line in text.splitlines():
        fmt = line.split(" : ", 1)[-1].strip().strip('"')
        if any(k in fmt for k in COUNTER_KEYS):
            out.append(fmt.replace("\\n", "").strip())
    return out


def count_ksm_walk_events(path: Path) -> int:
    """perf script text: records whose callchain has an rmap_walk_ksm frame."""
    n, seen = 0, False
    with open(path, "rb") as f:
        for line in f:
            if line.startswith((b"\t", b" ")) and not line.lstrip().startswith(b"#") and b":" not in line[:60]:
                if not seen and (line.rstrip().endswith(b" rmap_walk_ksm") or b" rmap_walk_ksm+" in line):
                    n += 1
                    seen = True
            elif line.strip():
                seen = False
    return n


def _overruns(stats_text: str) -> dict[str, int]:
    out, cpu = {}, None
    for line in stats_text.splitlines():
        if line.startswith("== "):
            cpu = line[3:].strip()
        elif line.startswith("overrun:") and cpu:
            out[cpu] = int(line.split()[1])
    return out


def run(opts: CaptureOptions) -> dict[str, Any]:
    return Capture(opts).run()

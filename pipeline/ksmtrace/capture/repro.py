"""The reproducer: KSM pages whose rmap_items point at one anon_vma with many VMAs.

Pure Python (mmap through ctypes, os.fork). Layout (the one the patch series targets: docs/walk-rules.md,
"The walk being measured"):

* one private anonymous region of ``pages`` identical non-zero pages, ``MADV_MERGEABLE``;
* ``mprotect(PROT_READ)`` on every other page of the first ``vmas`` pages, so the region
  becomes about ``vmas`` VMAs sharing one anon_vma (``--vmas 1`` is the unsplit control);
* optionally ``forks`` children that ``pause()``;
* KSM driven through /sys/kernel/mm/ksm until the pages are merged;
* a trigger that makes the kernel walk the KSM pages' rmap: ``move_pages(2)`` to another
  NUMA node with ``MPOL_MF_MOVE_ALL`` (needs two nodes) or compaction (one node is enough,
  but only pages below the point where compaction's scanners meet move: compaction's migration scanner
  walks up from the zone's start, its free scanner down from its end, and it stops where they meet).

Every KSM knob and ``vm.max_map_count`` it changed is restored, and every child is killed
and reaped, on normal exit, on error, and on SIGINT/SIGTERM/SIGHUP.
"""
from __future__ import annotations

import ctypes
import json
import mmap as _mmap
import os
import platform
import signal
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from . import env, ksm

PAGE = _mmap.PAGESIZE
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
MAP_FIXED_NOREPLACE = 0x100000
MADV_MERGEABLE = 12
MPOL_MF_MOVE_ALL = 1 << 2
PR_SET_NAME, PR_SET_PDEATHSIG = 15, 1
SYS_MOVE_PAGES = {"x86_64": 279, "aarch64": 239, "riscv64": 239, "ppc64le": 301, "s390x": 310}
TRIGGERS = ("compact", "move-pages", "none")
FILL = 0x5A
COMM = b"ksm_rmap_repro"


@dataclass
class ReproOptions:
    vmas: int
    pages: int | None = None          # default: vmas (or 20000 for the unsplit control --vmas 1)
    forks: int = 0
    trigger: str = "compact"
    hold: float = 0.0
    compact_passes: int = 1           # compaction passes per attempt while no KSM page moved
    attempts: int = 1                 # rebuild the region (new physical pages) while compaction moved none
    pages_to_scan: int = 5000
    sleep_millisecs: int = 10
    merge_timeout: float = 180.0
    move_ksm_pages: int | None = None  # move-pages: move only the first N KSM pages (default: all)
    addr: int | None = None           # fixed address hint for the region (lets perf/tracefs filter by addr)

    def validate(self) -> "ReproOptions":
        if self.vmas < 1:
            raise env.CaptureError(f"--vmas must be at least 1 (got {self.vmas})")
        if self.pages is None:
            self.pages = self.vmas if self.vmas > 1 else 20000
        if self.pages < 1:
            raise env.CaptureError(f"--pages must be at least 1 (got {self.pages})")
        if self.vmas > self.pages:
            raise env.CaptureError(f"--vmas {self.vmas} needs at least as many pages (--pages {self.pages})")
        if self.forks < 0 or self.forks > 4096:
            raise env.CaptureError(f"--forks must be between 0 and 4096 (got {self.forks})")
        if self.trigger not in TRIGGERS:
            raise env.CaptureError(f"--trigger must be one of {', '.join(TRIGGERS)} (got {self.trigger!r})")
        if self.hold < 0:
            raise env.CaptureError(f"--hold must be >= 0 seconds (got {self.hold})")
        if self.move_ksm_pages is not None and self.move_ksm_pages < 1:
            raise env.CaptureError(f"--move-ksm-pages must be at least 1 (got {self.move_ksm_pages})")
        if self.compact_passes < 1:
            raise env.CaptureError(f"--compact-passes must be at least 1 (got {self.compact_passes})")
        if self.attempts < 1:
            raise env.CaptureError(f"--attempts must be at least 1 (got {self.attempts})")
        if self.pages_to_scan < 1 or self.sleep_millisecs < 0:
            raise env.CaptureError("--pages-to-scan must be >= 1 and --sleep-ms >= 0")
        return self


def split_offsets(pages: int, vmas: int) -> list[int]:
    """Page indices to mprotect so that a region of ``pages`` pages becomes about ``vmas`` VMAs."""
    if vmas <= 1:
        return []
    return list(range(1, min(vmas, pages), 2))


def count_vmas(offsets: list[int], pages: int) -> int:
    """VMAs the split produces (runs of equal protection), for checking /proc/PID/maps."""
    prot = [False] * pages
    for i in offsets:
        prot[i] = True
    return 1 + sum(1 for i in range(1, pages) if prot[i] != prot[i - 1])


# --------------------------------------------------------------------------- libc
class _Libc:
    def __init__(self) -> None:
        c = ctypes.CDLL(None, use_errno=True)
        c.mmap.restype = ctypes.c_void_p
        c.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        for fn in (c.mprotect, c.madvise, c.munmap):
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int] if fn is not c.munmap \
                else [ctypes.c_void_p, ctypes.c_size_t]
        c.syscall.restype = ctypes.c_long
        c.prctl.restype = ctypes.c_int
        c.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        self.c = c

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            e = ctypes.get_errno()
            raise env.CaptureError(f"{what} failed: {os.strerror(e)}")

    def mmap(self, size: int, hint: int | None, prot: int = PROT_READ | PROT_WRITE) -> int:
        flags = MAP_PRIVATE | MAP_ANONYMOUS | (MAP_FIXED_NOREPLACE if hint else 0)
        p = self.c.mmap(hint or None, size, prot, flags, -1, 0)
        if p in (None, ctypes.c_void_p(-1).value):
            raise env.CaptureError(f"mmap of {size >> 20} MiB failed: {os.strerror(ctypes.get_errno())}")
        return p


# --------------------------------------------------------------------------- helpers
def region_vmas(pid: int | str, start: int, end: int) -> tuple[int, int]:
    """(VMAs inside [start, end), all VMAs) from /proc/PID/maps."""
    inside = total = 0
    with open(env.PATHS.proc / str(pid) / "maps") as f:
        for line in f:
            total += 1
            a, b = line.split(" ", 1)[0].split("-")
            if int(a, 16) >= start and int(b, 16) <= end:
                inside += 1
    return inside, total


def region_neighbours(pid: int | str, start: int, end: int) -> list[str]:
    """The /proc/PID/maps lines just below and just above the region (what could share its anon_vma)."""
    below = above = None
    with open(env.PATHS.proc / str(pid) / "maps") as f:
        for line in f:
            a, b = (int(x, 16) for x in line.split(" ", 1)[0].split("-"))
            if b <= start:
                below = line.rstrip("\n")
            elif a >= end and above is None:
                above = line.rstrip("\n")
    return [x for x in (below, above) if x]


def region_pfns(start: int, pages: int, pid: int | str = "self") -> list[int]:
    """PFN of every page of the region (0 when not present; PFNs read as 0 without root)."""
    with open(env.PATHS.proc / str(pid) / "pagemap", "rb") as f:
        f.seek((start // PAGE) * 8)
        data = f.read(pages * 8)
    out = []
    for (v,) in struct.iter_unpack("<Q", data):
        out.append(v & ((1 << 55) - 1) if v >> 63 else 0)
    return out


STALL_SCANS = 12                       # full scans without a newly merged page before repro goes on
KPF_KSM = 21                           # /proc/kpageflags bit (include/uapi/linux/kernel-page-flags.h)
KPAGEFLAGS_MAX_LOOKUPS = 4096


def merged_pages(pfns: list[int], kpageflags=None) -> int:
    """Pages of the region that KSM merged: pages sharing their PFN with another page of the region
    (identical pages merge onto one KSM page), plus pages alone on a PFN flagged KSM in /proc/kpageflags
    (looked up only while few are alone, so a poll stays cheap). Raises OSError when PFNs cannot be read
    (no root: the kernel reports them as 0)."""
    from collections import Counter

    count = Counter(p for p in pfns if p)
    if not count:
        if not pfns:
            return 0
        raise OSError("pagemap shows no PFNs (not root?)")
    merged = sum(c for c in count.values() if c > 1)
    alone = [p for p, c in count.items() if c == 1]
    if alone and len(alone) <= KPAGEFLAGS_MAX_LOOKUPS:
        try:
            f = kpageflags or open(env.PATHS.proc / "kpageflags", "rb")
        except OSError:
            return merged
        try:
            for p in alone:
                f.seek(p * 8)
                b = f.read(8)
                if len(b) == 8 and (struct.unpack("<Q", b)[0] >> KPF_KSM) & 1:
                    merged += 1
        finally:
            if kpageflags is None:
                f.close()
    return merged


@dataclass
class ReproResult:
    pid: int
    comm: str
    kernel: str
    pages: int
    vmas_requested: int
    forks: int
    trigger: str
    region_start: str = ""
    region_end: str = ""
    vmas_in_region: int = 0
    anon_vma_vmas: int = 0             # VMAs on the region's anon_vma: the region's, and each child's copies
    maps_total: int = 0
    ksm_rmap_items: int = 0
    ksm_merging_pages: int = 0
    ksm_pages: int = 0                 # K: distinct physical pages backing the region after merging
    ksm_pages_expected: int = 0        # ceil(pages / max_page_sharing)
    max_page_sharing: int = 0
    merge_seconds: float = 0.0
    full_scans: int = 0
    trigger_passes: int = 0
    attempts: int = 1
    ksm_pages_moved: int | None = None
    pages_moved: int | None = None
    trigger_seconds: float = 0.0
    neighbours: list[str] = field(default_factory=list)
    moved_page_mappings: list[int] = field(default_factory=list)   # region pages mapping each moved KSM page
    notes: list[str] = field(default_factory=list)


class _Stop(BaseException):
    """Raised by the signal handler so that every finally block runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Repro:
    def __init__(self, opts: ReproOptions, say: Callable[[str], None] | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.o = opts.validate()
        self.say = say or (lambda s: print(s, flush=True))
        self.progress = progress or (lambda s: print(s, file=sys.stderr, flush=True))
        self.children: list[int] = []
        self.base = 0
        self.size = 0
        self.knobs: ksm.Knobs | None = None
        self.saved_max_map_count: str | None = None
        self.lib: _Libc | None = None
        self._old_handlers: dict[int, object] = {}

    # ---------------------------------------------------------------- life cycle
    def run(self) -> ReproResult:
        env.require_root("ksmtrace repro")
        ksm.require()
        if self.o.trigger == "compact" and not env.PATHS.compact_memory.exists():
            raise env.MethodUnavailable(f"--trigger compact needs {env.PATHS.compact_memory} (CONFIG_COMPACTION)")
        if self.o.trigger == "move-pages" and len(env.numa_nodes()) < 2:
            raise env.MethodUnavailable("--trigger move-pages needs at least two NUMA nodes; this machine has "
                                        f"{len(env.numa_nodes())}; use --trigger compact")
        self._install_handlers()
        try:
            return self._run()
        except (_Stop, KeyboardInterrupt) as s:
            name = signal.Signals(s.signum).name if isinstance(s, _Stop) else "SIGINT"
            self._interrupted = name
            raise env.CaptureInterrupted(f"repro interrupted by {name}; children reaped, KSM knobs restored") \
                from None
        finally:
            self.cleanup()
            self._restore_handlers()

    def _install_handlers(self) -> None:
        def handler(signum, frame):
            raise _Stop(signum)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                self._old_handlers[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread
                pass

    def _restore_handlers(self) -> None:
        for s, h in self._old_handlers.items():
            signal.signal(s, h)
        self._old_handlers.clear()

    def cleanup(self) -> None:
        """Kill and reap children, unmap, restore knobs. Safe to call twice; signals are held off."""
        old = {}
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                old[s] = signal.signal(s, signal.SIG_IGN)
            except ValueError:
                pass
        try:
            if self.lib:
                self._teardown_region()
            else:
                self.children.clear()
            problems = self.knobs.restore() if self.knobs else []
            if self.saved_max_map_count is not None:
                try:
                    env.write(env.PATHS.max_map_count, self.saved_max_map_count)
                except env.CaptureError as e:
                    problems.append(str(e))
                self.saved_max_map_count = None
            for p in problems:
                print(f"ksmtrace: warning: {p}", file=sys.stderr)
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # ---------------------------------------------------------------- the workload
    def _run(self) -> ReproResult:
        o = self.o
        lib = self.lib = _Libc()
        lib.c.prctl(PR_SET_NAME, ctypes.cast(ctypes.c_char_p(COMM), ctypes.c_void_p).value, 0, 0, 0)
        offsets = split_offsets(o.pages, o.vmas)
        want_vmas = count_vmas(offsets, o.pages) if o.pages <= 2_000_000 else o.vmas
        r = ReproResult(pid=os.getpid(), comm=COMM.decode(), kernel=platform.release(), pages=o.pages,
                        vmas_requested=o.vmas, forks=o.forks, trigger=o.trigger)

        # vm.max_map_count caps the split; raise it (and restore it) when needed
        cur = int(env.read(env.PATHS.max_map_count, "65530"))
        need = want_vmas * (1 + o.forks) + 2000
        if need > cur:
            self.saved_max_map_count = str(cur)
            env.write(env.PATHS.max_map_count, need)
            self.say(f"repro: raised vm.max_map_count {cur} -> {need} (restored on exit)")

        self.knobs = ksm.Knobs()
        self.knobs.set("pages_to_scan", o.pages_to_scan)
        self.knobs.set("sleep_millisecs", o.sleep_millisecs)
        self.knobs.set("run", 1)
        r.max_page_sharing = int(ksm.read_knob("max_page_sharing") or 256)
        attempts = o.attempts if o.trigger == "compact" else 1
        for attempt in range(1, attempts + 1):
            r.attempts = attempt
            pfns = self._build(r, offsets)
            # pause ksmd (run=0 keeps every merged page): a scanning ksmd holds transient references to the
            # pages, so migration fails with EBUSY and retries, and each retry walks the rmap again
            self.knobs.set("run", 0)
            t1 = time.monotonic()
            if o.trigger == "compact":
                self._compact(r, pfns)
                if not r.ksm_pages_moved and attempt < attempts:
                    self.say(f"repro: attempt {attempt}: no KSM page moved; rebuilding the region on new pages")
                    self._teardown_region()
                    self.knobs.set("run", 1)
                    continue
            elif o.trigger == "move-pages":
                self._move_pages(r, pfns)
            break
        for n in r.notes:
            self.say("repro: note: " + n)
        r.trigger_seconds = round(time.monotonic() - t1, 3)
        self.say("repro-meta: " + json.dumps(asdict(r), sort_keys=True))
        if o.hold:
            self.say(f"repro: holding the layout for {o.hold:g} s")
            time.sleep(o.hold)
        return r

    def _teardown_region(self) -> None:
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.children.clear()
        if self.base:
            self.lib.c.munmap(self.base, self.size)
            self.base = 0

    def _build(self, r: ReproResult, offsets: list[int]) -> list[int]:
        """Map, fill, split and merge the region (and fork); returns the PFN of every page."""
        o, lib = self.o, self.lib
        self.size = o.pages * PAGE
        # an unmapped page on either side: a VMA next to the region could otherwise lend it its anon_vma
        # (anon_vma reuse ignores protections), adding VMAs the walks iterate that the region does not show.
        # Mapped PROT_NONE first: a read-write mapping placed right below an anonymous read-write VMA is merged
        # into it by mmap itself, and cutting the guard page out afterwards leaves both halves on that VMA's
        # anon_vma (seen at 2,000 and 4,000 VMAs: one VMA more on the anon_vma than the region has)
        outer = lib.mmap(self.size + 2 * PAGE, o.addr - PAGE if o.addr else None, prot=PROT_NONE)
        lib.c.munmap(outer, PAGE)
        lib.c.munmap(outer + PAGE + self.size, PAGE)
        self.base = outer + PAGE
        lib.check(lib.c.mprotect(self.base, self.size, PROT_READ | PROT_WRITE), "mprotect of the region")
        r.region_start, r.region_end = hex(self.base), hex(self.base + self.size)
        ctypes.memset(self.base, FILL, self.size)
        lib.check(lib.c.madvise(self.base, self.size, MADV_MERGEABLE), "madvise(MADV_MERGEABLE)")
        for i in offsets:
            lib.check(lib.c.mprotect(self.base + i * PAGE, PAGE, PROT_READ), f"mprotect of page {i}")
        r.vmas_in_region, r.maps_total = region_vmas("self", self.base, self.base + self.size)
        self.say(f"repro: pid {r.pid} region {r.region_start}-{r.region_end} pages {o.pages} "
                 f"VMAs {r.vmas_in_region} (maps total {r.maps_total})")
        t0 = time.monotonic()
        self._wait_merged(o.pages, t0)
        if o.forks:
            self._fork(o.forks)
            self._wait_scans(2, "children scanned")
        r.merge_seconds = round(time.monotonic() - t0, 3)
        st = ksm.proc_ksm_stat()
        r.ksm_rmap_items = int(st.get("ksm_rmap_items", 0))
        pfns = region_pfns(self.base, o.pages)
        try:
            r.ksm_merging_pages = merged_pages(pfns)
        except OSError:
            r.ksm_merging_pages = int(st.get("ksm_merging_pages", 0))
        r.full_scans = ksm.counters().get("full_scans", 0)
        r.ksm_pages = len({p for p in pfns if p})
        r.ksm_pages_expected = -(-o.pages // max(r.max_page_sharing, 1))
        r.vmas_in_region, r.maps_total = region_vmas("self", self.base, self.base + self.size)
        r.anon_vma_vmas = r.vmas_in_region * (1 + len(self.children))
        r.neighbours = region_neighbours("self", self.base, self.base + self.size)
        self.say(f"repro: merged: ksm_merging_pages {r.ksm_merging_pages}/{o.pages} ksm_rmap_items "
                 f"{r.ksm_rmap_items} KSM pages (K) {r.ksm_pages} (expected ~{r.ksm_pages_expected}) "
                 f"in {r.merge_seconds:.1f} s")
        return pfns

    def _merged_now(self, n: int) -> tuple[int, str]:
        """(pages of the region KSM has merged, how it was told), read from the page tables: holds on 6.1
        (whose /proc/PID/ksm_stat has no ksm_merging_pages) and on current kernels alike."""
        try:
            return merged_pages(region_pfns(self.base, n)), "pagemap"
        except OSError:
            pass
        st = ksm.proc_ksm_stat()
        if "ksm_merging_pages" in st:
            return int(st["ksm_merging_pages"]), "ksm_stat"
        v = env.read(env.PATHS.proc / "self" / "ksm_merging_pages")
        return (int(v) if v and v.isdigit() else 0), "ksm_merging_pages"

    def _wait_merged(self, n: int, t0: float) -> None:
        start_scans = ksm.counters().get("full_scans", 0)
        last_print = 0.0
        stable_since = None
        last_merging = -1
        while True:
            merging, how = self._merged_now(n)
            c = ksm.counters()
            scans = c.get("full_scans", 0) - start_scans
            now = time.monotonic()
            if now - last_print >= 1.0 or merging >= n:
                self.progress(f"repro: ksm full_scans +{scans} pages_sharing {c.get('pages_sharing', 0)} "
                              f"merged pages {merging}/{n} ({how})")
                last_print = now
            if merging >= n:
                return
            # give up waiting for stragglers once STALL_SCANS more scans did not merge anything new: merging
            # pauses for a few scans each time a KSM page reaches max_page_sharing (its next duplicate starts
            # from the unstable tree again), so three scans gave up at 13,312 of 20,000 pages on 6.1
            if merging != last_merging:
                last_merging, stable_since = merging, c.get("full_scans", 0)
            elif merging > 0 and stable_since is not None and c.get("full_scans", 0) - stable_since >= STALL_SCANS:
                self.progress(f"repro: warning: only {merging}/{n} pages merged after {scans} full scans")
                return
            if now - t0 > self.o.merge_timeout:
                if merging == 0:
                    raise env.CaptureError(f"KSM merged nothing in {self.o.merge_timeout:g} s "
                                           f"(full_scans +{scans}, pages_sharing {c.get('pages_sharing', 0)}); "
                                           f"is ksmd running?")
                self.progress(f"repro: warning: merge timeout, {merging}/{n} pages merged")
                return
            time.sleep(0.5)

    def _wait_scans(self, k: int, why: str) -> None:
        s0 = ksm.counters().get("full_scans", 0)
        t0 = time.monotonic()
        while ksm.counters().get("full_scans", 0) < s0 + k:
            if time.monotonic() - t0 > self.o.merge_timeout:
                self.progress(f"repro: warning: timeout waiting for {k} full scans ({why})")
                return
            time.sleep(0.2)
        st = ksm.proc_ksm_stat()
        self.progress(f"repro: {why}: full_scans +{k}, rmap_items {st.get('ksm_rmap_items', 0)}")

    def _fork(self, m: int) -> None:
        for _ in range(m):
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # child: die with the parent, never run the parent's cleanup
                try:
                    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                        signal.signal(s, signal.SIG_DFL)
                    self.lib.c.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                    if os.getppid() == 1:
                        os._exit(0)
                    while True:
                        signal.pause()
                finally:
                    os._exit(0)
            self.children.append(pid)
        self.say(f"repro: forked {m} children: {' '.join(map(str, self.children))}")

    def _compact(self, r: ReproResult, before: list[int]) -> None:
        ksm_before = {p for p in before if p}
        moved_ksm = 0
        passes = 0
        for passes in range(1, self.o.compact_passes + 1):
            env.write(env.PATHS.compact_memory, 1)
            after = region_pfns(self.base, self.o.pages)
            moved_ksm = len(ksm_before - set(after))
            self.say(f"repro: compaction pass {passes}: {moved_ksm} of {len(ksm_before)} KSM pages moved")
            if moved_ksm:
                break
        r.trigger_passes = passes
        r.ksm_pages_moved = moved_ksm
        r.pages_moved = sum(1 for a, b in zip(before, after) if a and a != b)
        r.notes = [n for n in r.notes if not n.startswith("compaction moved")]
        if not moved_ksm:
            r.notes.append("compaction moved no KSM page (only pages below the scanners' meeting point move). Failed migration attempts still walk the rmap: check the trace for "
                           "set_migration_pte bursts with rmap_walk_ksm; or retry with --attempts 3 "
                           "--compact-passes 2")
        else:
            r.notes.append(f"compaction moved {moved_ksm} of {len(ksm_before)} KSM pages (not guaranteed: "
                           "only pages below the scanners' meeting point move)")

    def _move_pages(self, r: ReproResult, before: list[int]) -> None:
        nr = SYS_MOVE_PAGES.get(platform.machine())
        if nr is None:
            raise env.MethodUnavailable(f"move_pages syscall number unknown on {platform.machine()}")
        # one address per physical page: moving one mapping of a KSM page migrates the whole page (and walks
        # all its rmap_items); --move-ksm-pages N moves only the first N KSM pages (shared PFNs, region order)
        seen: dict[int, int] = {}
        for i, pfn in enumerate(before):
            if pfn and pfn not in seen:
                seen[pfn] = i
        from collections import Counter

        shared = {p for p, c in Counter(before).items() if p and c > 1}
        idx = [i for p, i in seen.items() if p in shared]
        if self.o.move_ksm_pages is not None:
            idx = idx[:self.o.move_ksm_pages]
        if not idx:
            raise env.CaptureError("no KSM page to move (nothing merged?)")
        n = len(idx)
        pages = (ctypes.c_void_p * n)(*[self.base + i * PAGE for i in idx])
        status = (ctypes.c_int * n)()
        rc = self.lib.c.syscall(nr, 0, ctypes.c_ulong(n), pages, None, status, MPOL_MF_MOVE_ALL)
        if rc < 0:
            raise env.CaptureError(f"move_pages query failed: {os.strerror(ctypes.get_errno())}")
        # every page goes to a node other than its own: move_pages to the current node moves nothing
        # (and walks nothing)
        nodes_online = env.numa_nodes()
        cur = [status[i] for i in range(n)]
        want = [pick_target(c, nodes_online) for c in cur]
        nodes = (ctypes.c_int * n)(*want)
        rc = self.lib.c.syscall(nr, 0, ctypes.c_ulong(n), pages, nodes, status, MPOL_MF_MOVE_ALL)
        if rc < 0:
            raise env.CaptureError(f"move_pages to other nodes failed: {os.strerror(ctypes.get_errno())}")
        busy = sum(1 for i in range(n) if status[i] == -16)    # -EBUSY: KSM pages report it now and then
        if busy:
            r.notes.append(f"move_pages: {busy} of {n} KSM pages reported EBUSY (not moved)")
        r.trigger_passes = 1
        r.pages_moved = sum(1 for i in range(n) if status[i] == want[i])
        after = region_pfns(self.base, self.o.pages)
        r.ksm_pages_moved = len({before[i] for i in idx} - set(after))
        count = Counter(before)
        r.moved_page_mappings = [count[before[i]] for i in idx]
        moves = sorted({(c, w) for c, w in zip(cur, want) if c >= 0})
        self.say(f"repro: move_pages {', '.join(f'node {c} -> {w}' for c, w in moves) or 'to node ' + str(want[0])}: "
                 f"{r.ksm_pages_moved} of {n} KSM pages moved (of {len(shared)})")


def pick_target(current: int, nodes: list[int]) -> int:
    """The node to move a page to: the next online node after its current one (never its own)."""
    others = [x for x in nodes if x != current]
    if not others:
        raise env.MethodUnavailable("move_pages needs a second NUMA node to move pages to")
    later = [x for x in others if x > current]
    return later[0] if later else others[0]


def run(opts: ReproOptions, **kw) -> ReproResult:
    return Repro(opts, **kw).run()

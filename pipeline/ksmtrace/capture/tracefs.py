"""tracefs: find or mount it, private instances, and saving/restoring global settings."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from . import env

#: events the 'events' method enables, as system/name: KSM's own, migration and compaction (docs/walk-rules.md
#: (d)), and lock contention (docs/walk-rules.md (f))
STOCK_EVENTS = (
    "ksm/ksm_enter", "ksm/ksm_exit", "ksm/ksm_start_scan", "ksm/ksm_stop_scan", "ksm/ksm_merge_with_ksm_page",
    "migrate/mm_migrate_pages_start", "migrate/mm_migrate_pages",
    "migrate/set_migration_pte", "migrate/remove_migration_pte",
    "compaction/mm_compaction_begin", "compaction/mm_compaction_end", "compaction/mm_compaction_migratepages",
    "lock/contention_begin", "lock/contention_end",
)
RMAP_EVENTS = ("rmap/rmap_walk_start", "rmap/rmap_walk_end", "rmap/rmap_walk")
ADDR_FILTERED = ("migrate/set_migration_pte", "migrate/remove_migration_pte")


def find_mount() -> Path | None:
    """Where tracefs is mounted (first tracefs line of /proc/mounts), or None."""
    text = env.read(env.PATHS.mounts) or ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tracefs":
            return Path(parts[1].replace("\\040", " "))
    return None


class Mounted:
    """Context manager yielding the tracefs directory; mounts it if needed and unmounts it afterwards."""

    def __init__(self, mount: bool = True) -> None:
        self.mount = mount
        self.mounted_here: Path | None = None

    def __enter__(self) -> Path:
        t = find_mount()
        if t is not None:
            return t
        target = env.PATHS.tracefs_default
        if not self.mount:
            raise env.NoTracefs("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")
        try:
            p = subprocess.run(["mount", "-t", "tracefs", "nodev", str(target)], capture_output=True, text=True,
                               timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise env.NoTracefs(f"tracefs is not mounted and mounting it failed: {e}") from None
        if p.returncode != 0:
            raise env.NoTracefs(f"tracefs is not mounted and 'mount -t tracefs nodev {target}' failed: "
                                f"{(p.stderr or p.stdout).strip() or 'exit ' + str(p.returncode)}")
        self.mounted_here = target
        return target

    def __exit__(self, *exc) -> None:
        if self.mounted_here is not None:
            subprocess.run(["umount", str(self.mounted_here)], capture_output=True, timeout=30)
            self.mounted_here = None


def has_events(t: Path, system: str) -> list[str]:
    d = t / "events" / system
    try:
        return sorted(p.name for p in d.iterdir() if p.is_dir())
    except OSError:
        return []


def available_tracers(t: Path) -> list[str]:
    return (env.read(t / "available_tracers") or "").split()


def trace_clock(t: Path) -> str | None:
    s = env.read(t / "trace_clock")
    if not s:
        return None
    for w in s.split():
        if w.startswith("["):
            return w.strip("[]")
    return s


#: per_cpu/cpuN/stats lines -> keys of the sidecar's "per_cpu_stats" (integers; the two timestamps as text)
CPU_STATS_KEYS = {"entries": "entries", "overrun": "overrun", "commit overrun": "commit_overrun",
                  "dropped events": "dropped_events", "read events": "read_events",
                  "oldest event ts": "oldest_event_ts", "now ts": "now_ts"}


def parse_cpu_stats(text: str) -> dict:
    """One ``per_cpu/cpuN/stats`` file as a dict with every key of :data:`CPU_STATS_KEYS` (missing -> None)."""
    out: dict = {v: None for v in CPU_STATS_KEYS.values()}
    for line in (text or "").splitlines():
        k, sep, v = line.partition(":")
        key = CPU_STATS_KEYS.get(k.strip())
        if not sep or key is None:
            continue
        v = v.strip()
        if key.endswith("_ts"):
            out[key] = v or None
        else:
            try:
                out[key] = int(v)
            except ValueError:
                out[key] = None
    return out


def per_cpu_stats(buffer_dir: Path) -> dict[str, dict]:
    """{"<cpu>": parse_cpu_stats(...)} for every per_cpu/cpuN of a tracefs buffer (top level or instance)."""
    out: dict[str, dict] = {}
    pc = Path(buffer_dir) / "per_cpu"
    try:
        cpus = sorted((c for c in pc.iterdir() if c.name[3:].isdigit()), key=lambda c: int(c.name[3:]))
    except OSError:
        return out
    for c in cpus:
        text = env.read(c / "stats")
        if text is not None:
            out[c.name[3:]] = parse_cpu_stats(text)
    return out


def lost_events(stats: dict[str, dict]) -> int:
    """Events the ring buffer lost (overwritten or dropped), summed over CPUs."""
    return sum((s.get("overrun") or 0) + (s.get("dropped_events") or 0) for s in stats.values())


def buffer_size_value(text: str) -> str:
    """What to write back into ``buffer_size_kb``: it reads ``7 (expanded: 1408)`` before first use, which
    is not writable as it is; the expanded size is what tracing would get."""
    m = re.search(r"expanded:\s*(\d+)", text)
    if m:
        return m.group(1)
    m = re.match(r"\s*(\d+)", text)
    return m.group(1) if m else text.strip()


class SavedState:
    """Snapshot of tracefs control files, written back in reverse order by :meth:`restore`.

    Files that hold lists (``set_ftrace_filter``, ``set_graph_function``, ``kprobe_events``...)
    are cleared and refilled line by line; a selection file such as ``current_tracer`` or
    ``trace_clock`` gets its selected word back.
    """

    LIST_FILES = {"set_ftrace_filter", "set_graph_function", "set_event", "set_ftrace_pid", "set_event_pid"}

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.saved: list[tuple[Path, str]] = []

    def save(self, *rel: str) -> None:
        for r in rel:
            p = self.root / r
            if any(q == p for q, _ in self.saved):
                continue
            text = env.read(p)
            if text is None:
                continue
            self.saved.append((p, text))

    def restore(self) -> list[str]:
        problems = []
        for p, text in reversed(self.saved):
            try:
                self._write_back(p, text)
            except OSError as e:
                problems.append(f"cannot restore {p}: {e.strerror or e}")
            except env.CaptureError as e:
                problems.append(f"cannot restore {p}: {str(e).rsplit(': ', 1)[-1]}")
        self.saved.clear()
        return problems

    def _write_back(self, p: Path, text: str) -> None:
        name = p.name
        if name in self.LIST_FILES:
            with open(p, "w") as f:  # O_TRUNC clears the list
                f.write("")
            lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
            for ln in lines:
                env.append(p, ln)
            return
        if name in ("buffer_size_kb", "buffer_total_size_kb"):
            env.write(p, buffer_size_value(text))
            return
        if name in ("current_tracer",):
            env.write(p, text.split()[0])
            return
        if "[" in text:  # a selection like trace_clock
            env.write(p, text[text.index("[") + 1:text.index("]")])
            return
        env.write(p, text)


class Instance:
    """A private tracefs instance (instances/NAME): its own buffer, events and options."""

    def __init__(self, t: Path, name: str = "ksmtrace") -> None:
        self.t = Path(t)
        self.name = name
        self.dir = self.t / "instances" / name
        self.created = False
        self.triggers: list[tuple[Path, str]] = []

    def create(self) -> "Instance":
        if self.dir.exists():
            raise env.CaptureError(f"tracefs instance {self.dir} already exists (another capture running? "
                                   f"remove it with: rmdir {self.dir})")
        try:
            os.mkdir(self.dir)
        except OSError as e:
            raise env.CaptureError(f"cannot create tracefs instance {self.dir}: {e.strerror or e}") from None
        self.created = True
        return self

    def set(self, rel: str, value: str | int) -> None:
        env.write(self.dir / rel, value)

    def enable(self, event: str) -> bool:
        p = self.dir / "events" / event / "enable"
        if not p.exists():
            return False
        env.write(p, 1)
        return True

    def filter(self, event: str, expr: str) -> None:
        env.write(self.dir / "events" / event / "filter", expr)

    def trigger(self, event: str, spec: str) -> None:
        env.write(self.dir / "events" / event / "trigger", spec)
        self.triggers.append((self.dir / "events" / event / "trigger", spec))

    def option(self, name: str, value: int) -> bool:
        p = self.dir / "options" / name
        if not p.exists():
            return False
        env.write(p, value)
        return True

    def cpu_stats(self) -> str:
        out = []
        pc = self.dir / "per_cpu"
        for c in sorted(pc.glob("cpu*"), key=lambda x: int(x.name[3:]) if x.name[3:].isdigit() else 0):
            out.append(f"== {c.name}\n{env.read(c / 'stats') or ''}")
        return "\n".join(out) + "\n"

    def dump(self, dest: Path) -> int:
        """Copy ``trace`` to dest; returns bytes written."""
        n = 0
        with open(self.dir / "trace", "rb") as src, open(dest, "wb") as out:
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                out.write(b)
                n += len(b)
        return n

    def remove(self) -> list[str]:
        """Disable everything and rmdir the instance (which drops its buffer and settings)."""
        if not self.created:
            return []
        problems = []
        for p, spec in reversed(self.triggers):
            try:
                env.write(p, "!" + spec)
            except env.CaptureError as e:
                problems.append(str(e))
        self.triggers.clear()
        for rel, v in (("tracing_on", 0), ("events/enable", 0)):
            try:
                env.write(self.dir / rel, v)
            except env.CaptureError as e:
                problems.append(str(e))
        try:
            os.rmdir(self.dir)
        except OSError as e:
            problems.append(f"cannot remove tracefs instance {self.dir}: {e.strerror or e}")
        self.created = False
        return problems

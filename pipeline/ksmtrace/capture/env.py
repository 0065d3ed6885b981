"""Where the kernel interfaces live, and small facts about the running system.

Every path the capture code touches goes through :data:`PATHS`, so tests can point it
at a fake tree (``monkeypatch.setattr(env, "PATHS", env.Paths.under(tmp_path))``), and
root checks go through :func:`euid`, which tests can monkeypatch as well.
"""
from __future__ import annotations

import gzip
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import KsmtraceError, MissingTool


# --------------------------------------------------------------------------- errors
class CaptureError(KsmtraceError):
    """Capture, doctor or repro cannot go on (the message says what to do)."""


class NotRoot(CaptureError):
    """The command needs root."""


class NoTracefs(CaptureError):
    """tracefs is not mounted and cannot be mounted."""


class NoKsm(CaptureError):
    """The kernel has no KSM (CONFIG_KSM unset)."""


class MethodUnavailable(CaptureError):
    """The kernel lacks what the requested capture method needs."""


class CaptureInterrupted(CaptureError):
    """The capture was interrupted; a partial trace was kept."""

    exit_code = 130


# --------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class Paths:
    mounts: Path = Path("/proc/mounts")
    tracefs_default: Path = Path("/sys/kernel/tracing")
    tracefs_legacy: Path = Path("/sys/kernel/debug/tracing")
    ksm: Path = Path("/sys/kernel/mm/ksm")
    btf: Path = Path("/sys/kernel/btf/vmlinux")
    nodes: Path = Path("/sys/devices/system/node")
    max_map_count: Path = Path("/proc/sys/vm/max_map_count")
    compact_memory: Path = Path("/proc/sys/vm/compact_memory")
    lockdown: Path = Path("/sys/kernel/security/lockdown")
    config_gz: Path = Path("/proc/config.gz")
    boot: Path = Path("/boot")
    sched_preempt: Path = Path("/sys/kernel/debug/sched/preempt")
    cmdline: Path = Path("/proc/cmdline")
    page_idle: Path = Path("/sys/kernel/mm/page_idle/bitmap")
    proc: Path = Path("/proc")
    clocksource: Path = Path("/sys/devices/system/clocksource/clocksource0")

    @classmethod
    def under(cls, root: Path) -> "Paths":
        """The same layout below ``root`` (for tests with a fake /sys and /proc)."""
        root = Path(root)
        base = cls()
        return replace(base, **{k: root / str(getattr(base, k)).lstrip("/") for k in base.__dataclass_fields__})


PATHS = Paths()


def euid() -> int:
    return os.geteuid()


def require_root(what: str) -> None:
    if euid() != 0:
        raise NotRoot(f"{what} needs root (tracefs, KSM and perf -a are root-only); run it with sudo")


def read(path: Path, default: str | None = None) -> str | None:
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return default


def write(path: Path, value: str | int) -> None:
    """Write one value to a kernel file; an error names the file and the value."""
    try:
        with open(path, "w") as f:
            f.write(f"{value}\n")
    except OSError as e:
        raise CaptureError(f"cannot write {value!r} to {path}: {e.strerror or e}") from None


def append(path: Path, line: str) -> None:
    """Add one line to a tracefs list file (kprobe_events, set_ftrace_filter...) with O_APPEND and no seek:
    Python's open(..., "a") seeks to the end, which kprobe_events refuses (EINVAL) when opened write-only.
    Raises OSError (the kernel's answer to that one line)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- system facts
def kernel_release() -> str:
    return platform.release()


def kernel_version() -> str:
    return platform.version()


def clocksource() -> str | None:
    """The kernel's current clocksource (tsc, kvm-clock, hpet...): with hpet or acpi_pm the TSC was found
    unusable, and the trace clock may run on a coarser, tick-clamped sched_clock."""
    return read(PATHS.clocksource / "current_clocksource")


def cpu_count() -> int:
    return os.cpu_count() or 0


def kernel_config() -> dict[str, str]:
    """CONFIG_* values from /proc/config.gz or /boot/config-RELEASE ({} when neither is readable)."""
    text = None
    try:
        text = gzip.decompress(PATHS.config_gz.read_bytes()).decode(errors="replace")
    except OSError:
        text = read(PATHS.boot / f"config-{kernel_release()}")
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        m = re.match(r"(CONFIG_\w+)=(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
        else:
            m = re.match(r"# (CONFIG_\w+) is not set", line)
            if m:
                out[m.group(1)] = "n"
    return out


def preemption_model(config: dict[str, str] | None = None) -> str:
    """``none``/``voluntary``/``full``/``lazy``/``rt``, with where it came from, e.g. ``none (config default)``."""
    s = read(PATHS.sched_preempt)
    if s:  # "none (voluntary) full lazy": the active one is in parentheses
        m = re.search(r"\((\w+)\)", s)
        if m:
            return f"{m.group(1)} (sched/preempt)"
    cmd = read(PATHS.cmdline) or ""
    m = re.search(r"(?:^|\s)preempt=(\w+)", cmd)
    if m:
        return f"{m.group(1)} (preempt= on the command line)"
    cfg = kernel_config() if config is None else config
    for key, name in (("CONFIG_PREEMPT_RT", "rt"), ("CONFIG_PREEMPT_LAZY", "lazy"), ("CONFIG_PREEMPT", "full"),
                      ("CONFIG_PREEMPT_VOLUNTARY", "voluntary"), ("CONFIG_PREEMPT_NONE", "none")):
        if cfg.get(key) == "y":
            dyn = " dynamic" if cfg.get("CONFIG_PREEMPT_DYNAMIC") == "y" else ""
            return f"{name} (config default{dyn})"
    v = kernel_version()
    for tok, name in (("PREEMPT_RT", "rt"), ("PREEMPT_DYNAMIC", "dynamic (model unknown)"), ("PREEMPT", "full")):
        if tok in v:
            return f"{name} (uname -v)"
    return "unknown"


def numa_nodes() -> list[int]:
    s = read(PATHS.nodes / "online")
    nodes: list[int] = []
    for part in (s or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            nodes.extend(range(int(a), int(b) + 1))
        else:
            nodes.append(int(part))
    return nodes or [0]


def tool_version(tool: str) -> str | None:
    """``perf version 6.1.187`` style first line, or None when the tool is not installed."""
    exe = shutil.which(tool)
    if not exe:
        return None
    args = {"perf": ["--version"], "trace-cmd": ["--version"], "bpftrace": ["--version"]}.get(tool, ["--version"])
    try:
        p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (p.stdout + p.stderr).strip()
    for line in text.splitlines():
        if "version" in line.lower():
            return line.strip()
    return text.splitlines()[0].strip() if text else exe


def require_tool(tool: str, hint: str) -> str:
    exe = shutil.which(tool)
    if not exe:
        raise MissingTool(f"{tool} is not installed ({hint})")
    return exe

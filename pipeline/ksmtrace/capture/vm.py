"""ksmtrace vm: run a command as root inside a QEMU guest booted from a real kernel (virtme-ng).

The guest uses the host's root filesystem read-only (virtme-ng), so the installed ksmtrace runs inside
unchanged; the working directory is shared read-write, so a capture's trace and sidecar land in it.

* :func:`find_kernel` picks the kernel image: the newest ``/boot/vmlinuz-*`` by default, or a given
  ``bzImage`` (or a kernel build tree holding ``arch/x86/boot/bzImage``).
* :func:`run_in_vm` boots it with ``vng --run`` and returns the command's exit code and the tail of the
  console. Every boot has a timeout; KVM is used only when it can work (``/dev/kvm`` usable and a
  ``vmx``/``svm`` CPU flag), else QEMU's TCG emulation: a KVM guest on a host without those flags hangs
  at early boot instead of failing.

Under TCG the guest boots with ``tsc=reliable`` (:data:`TCG_BOOT_OPTIONS`): QEMU's emulated CPU (``-cpu
max``, no invariant-TSC flag, not an Intel vendor) makes the kernel assume the TSCs of two vCPUs are not
synchronised ("tsc: Marking TSC unstable due to TSCs unsynchronized"), although under TCG every vCPU reads
one host counter. The kernel then falls back to the HPET clocksource, marks sched_clock unstable and
switches the default trace clock to ``global``, whose sched_clock_cpu() never runs more than one tick
past the last tick's time: when a tick is late (an emulated vCPU, a host that deschedules it) the trace
clock stands still until the next tick, and milliseconds of ring-buffer records share one timestamp.
With ``tsc=reliable`` the TSC stays the clocksource, sched_clock stays stable and the trace clock is
``local`` (the TSC, ns resolution). Under KVM the guest keeps its defaults (kvm-clock).

The command runs through a small ``sh`` wrapper that prints a start marker and its exit status on the
console and into a status file in a private shared directory, so a command failure is told apart from
a guest that never booted.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import env

START_MARK = "ksmtrace-vm: command starting"
EXIT_MARK = "ksmtrace-vm: command exit status "
TAIL_LINES = 40
KVM_MODES = ("auto", "on", "off")
#: kernel command-line options of a TCG guest (see the module docstring: a trace clock that never stalls)
TCG_BOOT_OPTIONS = ("tsc=reliable",)


class VmError(env.CaptureError):
    """The guest could not be started or did not finish (the message says what to do)."""


class NoQemu(VmError):
    """qemu-system-x86_64 is not installed."""


class NoVirtmeNg(VmError):
    """virtme-ng (vng) is not installed."""


class NoKernel(VmError):
    """No kernel image to boot."""


class BootFailed(VmError):
    """The guest did not reach the command, or was killed at the timeout."""


class VmInterrupted(VmError):
    """Ctrl-C (or SIGTERM): the guest was killed."""

    exit_code = 130


@dataclass
class VmResult:
    returncode: int        # CMD's exit code inside the guest
    console_tail: str      # last ~40 lines of guest console/stdout+stderr
    elapsed_s: float


# --------------------------------------------------------------------------- kernel image
def _version_key(name: str) -> tuple:
    """Natural sort key: vmlinuz-6.12.1-amd64 > vmlinuz-6.1.0-57-amd64."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def find_kernel(kernel: str | os.PathLike | None = "auto") -> Path:
    """The kernel image to boot: the newest installed ``/boot/vmlinuz-*`` for ``auto``/None, else the given
    image (a ``bzImage``), or a kernel build tree's ``arch/x86/boot/bzImage``."""
    if kernel is None or str(kernel) == "auto":
        boot = env.PATHS.boot
        found = sorted((p for p in boot.glob("vmlinuz-*") if p.is_file()), key=lambda p: _version_key(p.name))
        if not found:
            raise NoKernel(f"no kernel image in {boot} (vmlinuz-*): install one with 'apt-get install "
                           f"linux-image-amd64', or pass --kernel path/to/arch/x86/boot/bzImage")
        image = found[-1]
    else:
        image = Path(kernel).expanduser()
        if image.is_dir():
            cand = image / "arch" / "x86" / "boot" / "bzImage"
            if not cand.is_file():
                raise NoKernel(f"{image} is a directory without arch/x86/boot/bzImage: build it with "
                               f"'make -j$(nproc) bzImage', or pass the image file")
            image = cand
        elif not image.exists():
            raise NoKernel(f"kernel image {image} does not exist (give a bzImage, or --kernel auto for the "
                           f"newest /boot/vmlinuz-*; 'apt-get install linux-image-amd64' installs one)")
    if not os.access(image, os.R_OK):
        raise NoKernel(f"kernel image {image} is not readable (run as root, or copy it somewhere readable)")
    return image


# --------------------------------------------------------------------------- tools and KVM
def _bindir() -> Path:
    """The bin directory of the environment ksmtrace runs from (its vng and ksmtrace live there)."""
    return Path(sys.executable).parent


def find_qemu() -> str:
    exe = shutil.which("qemu-system-x86_64")
    if not exe:
        raise NoQemu("qemu-system-x86_64 is not installed (Debian package qemu-system-x86: "
                     "apt-get install qemu-system-x86)")
    return exe


def find_vng() -> str:
    here = _bindir() / "vng"   # the venv ksmtrace runs from, even when it is not activated
    exe = shutil.which("vng") or (str(here) if here.is_file() and os.access(here, os.X_OK) else None)
    if not exe:
        raise NoVirtmeNg("virtme-ng is not installed ('pip install virtme-ng' into ksmtrace's environment, "
                         "or pip install 'ksmtrace[vm]'; it provides the vng command)")
    return exe


def cpu_has_virt(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU flags show hardware virtualisation (vmx or svm)."""
    text = env.read(cpuinfo) or ""
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            if flags & {"vmx", "svm"}:
                return True
    return False


def kvm_usable(dev: Path = Path("/dev/kvm"), cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[bool, str]:
    """(usable, why): KVM needs /dev/kvm read-write and a vmx/svm flag. Without the flag a KVM guest on a
    nested host can hang at early boot instead of failing, so the flag is required."""
    if not dev.exists():
        return False, f"{dev} does not exist"
    if not os.access(dev, os.R_OK | os.W_OK):
        return False, f"{dev} is not read-write for this user"
    if not cpu_has_virt(cpuinfo):
        return False, "no vmx/svm flag in /proc/cpuinfo (a KVM guest would hang at early boot)"
    return True, "KVM available"


def resolve_kvm(kvm: str | bool | None) -> bool:
    if kvm in (True, "on"):
        ok, why = kvm_usable()
        if not ok:
            raise VmError(f"--kvm on: KVM cannot work here ({why}); use --kvm off (TCG emulation, slower)")
        return True
    if kvm in (False, "off"):
        return False
    if kvm in (None, "auto"):
        return kvm_usable()[0]
    raise VmError(f"--kvm must be one of {', '.join(KVM_MODES)} (got {kvm!r})")


# --------------------------------------------------------------------------- command line
def parse_memory_mb(memory: str | int) -> int:
    """'3G' -> 3072, '1536M' -> 1536, '2048' -> 2048 (MiB)."""
    s = str(memory).strip()
    m = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", s, flags=re.I)
    if not m:
        raise VmError(f"--memory {memory!r}: expected a size like 3G or 1536M")
    n, unit = int(m.group(1)), m.group(2).upper()
    mb = {"": n, "K": n // 1024, "M": n, "G": n * 1024, "T": n * 1024 * 1024}[unit]
    if mb < 256:
        raise VmError(f"--memory {memory!r}: the guest needs at least 256M")
    return mb


def numa_args(memory_mb: int, cpus: int, nodes: int) -> list[str]:
    """vng --numa options: memory split evenly, CPUs in contiguous blocks (a node may get none)."""
    if nodes <= 1:
        return []
    per = memory_mb // nodes
    args = []
    for n in range(nodes):
        lo, hi = n * cpus // nodes, (n + 1) * cpus // nodes - 1
        spec = f"{per}M" + ("" if hi < lo else f",cpus={lo}" if hi == lo else f",cpus={lo}-{hi}")
        args += ["--numa", spec]
    return args


def _resolve_cmd(cmd: list[str]) -> list[str]:
    """Run the host's ksmtrace (the same venv) inside the guest, even with a bare 'ksmtrace'."""
    if cmd and cmd[0] == "ksmtrace":
        here = _bindir() / "ksmtrace"
        exe = str(here) if here.is_file() else shutil.which("ksmtrace")
        if exe:
            return [exe, *cmd[1:]]
    return list(cmd)


def guest_script(cmd: list[str], cwd: Path, status_file: Path) -> str:
    """The shell line the guest runs: cd, PATH with this environment's bin first, the command, its status."""
    bindir = str(_bindir())
    run = shlex.join(_resolve_cmd(cmd))
    return (f"cd {shlex.quote(str(cwd))} || exit 125; export PATH={shlex.quote(bindir)}:$PATH; "
            f"echo '{START_MARK}'; {run}; rc=$?; echo $rc > {shlex.quote(str(status_file))}; "
            f"echo '{EXIT_MARK}'$rc; exit $rc")


def boot_options(use_kvm: bool) -> list[str]:
    """The kernel command-line options ksmtrace adds to a guest's boot (virtme-ng adds its own)."""
    return [] if use_kvm else list(TCG_BOOT_OPTIONS)


def vng_argv(vng: str, image: Path, script: str, *, memory_mb: int, cpus: int, numa_nodes: int, use_kvm: bool,
             rwdirs: list[Path]) -> list[str]:
    argv = [vng, "--run", str(image), "--user", "root", "--memory", f"{memory_mb}M", "--cpus", str(cpus)]
    argv += numa_args(memory_mb, cpus, numa_nodes)
    for d in rwdirs:
        argv += ["--rwdir", str(d)]
    if not use_kvm:
        argv.append("--disable-kvm")
    for opt in boot_options(use_kvm):
        argv += ["--append", opt]
    argv += ["--", script]
    return argv


# --------------------------------------------------------------------------- running
def _kill_group(p: subprocess.Popen) -> None:
    """End the guest: vng and its QEMU run in their own process group (started by us, killed by its id)."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        p.wait(timeout=30)


def run_in_vm(cmd: list[str], *, kernel=None, memory="3G", cpus=2, numa_nodes=2, kvm="auto", timeout=900.0,
              cwd: Path | None = None, on_output: Callable[[str], None] | None = None) -> VmResult:
    """Run CMD as root in a guest booted from ``kernel``; ``cwd`` (default: the current directory) is shared
    read-write and is CMD's working directory. Returns CMD's exit code; raises :class:`VmError` when the
    guest cannot start, does not reach CMD, or is still running at ``timeout`` seconds (then it is killed)."""
    if not cmd:
        raise VmError("nothing to run: give a COMMAND after --, e.g. ksmtrace vm -- ksmtrace doctor")
    if cpus < 1:
        raise VmError(f"--cpus must be at least 1 (got {cpus})")
    if numa_nodes < 1 or numa_nodes > 8:
        raise VmError(f"--numa-nodes must be between 1 and 8 (got {numa_nodes})")
    if timeout is None or timeout <= 0:
        raise VmError(f"--timeout must be positive seconds (got {timeout})")
    mem = parse_memory_mb(memory)
    if mem // max(numa_nodes, 1) < 128:
        raise VmError(f"--memory {memory} is too small for {numa_nodes} NUMA nodes")
    use_kvm = resolve_kvm(kvm)
    find_qemu()
    vng = find_vng()
    image = find_kernel(kernel)
    cwd = Path(cwd or os.getcwd()).resolve()
    if not cwd.is_dir():
        raise VmError(f"{cwd}: no such directory to share with the guest")
    state = Path(tempfile.mkdtemp(prefix="ksmtrace-vm-", dir=os.environ.get("KSMTRACE_VM_TMP", "/var/tmp")))
    status_file = state / "status"
    argv = vng_argv(vng, image, guest_script(cmd, cwd, status_file), memory_mb=mem, cpus=cpus,
                    numa_nodes=numa_nodes, use_kvm=use_kvm, rwdirs=[cwd, state])
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    started = {"cmd": False, "rc": None}
    t0 = time.monotonic()
    e = dict(os.environ)
    e["PATH"] = e.get("PATH", "") + os.pathsep + str(_bindir())
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True, env=e, cwd=str(cwd))
    except OSError as ex:
        shutil.rmtree(state, ignore_errors=True)
        raise VmError(f"cannot run {vng}: {ex.strerror or ex}") from None

    def pump() -> None:
        assert p.stdout is not None
        for raw in p.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            if START_MARK in line:
                started["cmd"] = True
                continue
            if line.startswith(EXIT_MARK):
                try:
                    started["rc"] = int(line[len(EXIT_MARK):].strip())
                except ValueError:
                    pass
                continue
            tail.append(line)
            if on_output is not None:
                try:
                    on_output(line)
                except Exception:  # noqa: BLE001 - progress display must not kill the guest reader
                    pass

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    timed_out = False
    try:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(p)
    except BaseException:  # Ctrl-C, SIGTERM unwinding: never leave a guest behind
        _kill_group(p)
        th.join(timeout=5)
        shutil.rmtree(state, ignore_errors=True)
        raise VmInterrupted("interrupted; the guest was killed") from None
    th.join(timeout=10)
    elapsed = time.monotonic() - t0
    rc = started["rc"]
    if rc is None:
        try:
            rc = int(status_file.read_text().strip())
        except (OSError, ValueError):
            rc = None
    shutil.rmtree(state, ignore_errors=True)
    text = "\n".join(tail)
    last = _last_lines(text, 8)
    if timed_out:
        where = "while CMD was running" if started["cmd"] else "before CMD started (boot did not finish)"
        raise BootFailed(f"guest killed after the {timeout:g} s timeout {where}; console tail: {last}")
    if rc is None:
        if not started["cmd"]:
            raise BootFailed(f"the guest did not boot (vng exit {p.returncode}); console tail: {last}")
        raise BootFailed(f"the guest stopped before CMD finished (vng exit {p.returncode}); console tail: {last}")
    return VmResult(returncode=rc, console_tail=text, elapsed_s=round(elapsed, 3))


def _last_lines(text: str, n: int) -> str:
    """The console's last lines on one line (for a one-line error), control characters made harmless."""
    from ..safe_text import terminal

    lines = [ln.strip() for ln in text.splitlines() if ln.strip()][-n:]
    return terminal(" | ".join(lines)) if lines else "(no output)"

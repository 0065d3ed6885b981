"""KSM knobs (/sys/kernel/mm/ksm): read, change, and put back exactly as found."""
from __future__ import annotations

import re
from pathlib import Path

from . import env

#: the knobs ksmtrace may change, in the order they are restored (``run`` last, so the
#: other knobs are back before ksmd resumes with the user's settings)
KNOBS = ("max_page_sharing", "pages_to_scan", "sleep_millisecs", "smart_scan", "use_zero_pages",
         "merge_across_nodes", "run")
#: counters shown as progress
COUNTERS = ("full_scans", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
            "stable_node_chains", "stable_node_dups")


def ksm_dir() -> Path:
    return env.PATHS.ksm


def available() -> bool:
    return (ksm_dir() / "run").exists()


def require() -> None:
    if not available():
        raise env.NoKsm(f"this kernel has no KSM ({ksm_dir()}/run is missing; needs CONFIG_KSM=y)")


def _value(text: str | None) -> str | None:
    """Knob text as written back: ``[none] scan-time`` selections give the selected word."""
    if text is None:
        return None
    m = re.search(r"\[(\S+)\]", text)
    return m.group(1) if m else text.strip()


def read_knob(name: str) -> str | None:
    return _value(env.read(ksm_dir() / name))


def counters() -> dict[str, int]:
    out = {}
    for c in COUNTERS:
        v = env.read(ksm_dir() / c)
        if v is not None and v.lstrip("-").isdigit():
            out[c] = int(v)
    return out


def state() -> dict[str, str | int | None]:
    d: dict[str, str | int | None] = {k: read_knob(k) for k in KNOBS if (ksm_dir() / k).exists()}
    d.update(counters())
    return d


class Knobs:
    """Changes KSM knobs and restores every one it changed (use as a context manager).

    ``max_page_sharing`` can only change while no page is shared; :meth:`set` raises
    a clear error then. Restoring writes the original values back in :data:`KNOBS` order.
    """

    def __init__(self) -> None:
        require()
        self.saved: dict[str, str] = {}

    def set(self, name: str, value: str | int) -> None:
        path = ksm_dir() / name
        if not path.exists():
            raise env.CaptureError(f"KSM knob {name} does not exist on this kernel ({path})")
        cur = read_knob(name)
        if cur == str(value):
            return
        if name not in self.saved:
            self.saved[name] = cur if cur is not None else ""
        try:
            env.write(path, value)
        except env.CaptureError as e:
            if name == "max_page_sharing":
                raise env.CaptureError(f"cannot set KSM max_page_sharing to {value}: it can only change while no "
                                       f"pages are shared (pages_sharing={env.read(ksm_dir() / 'pages_sharing')})"
                                       ) from None
            raise e

    def restore(self) -> list[str]:
        """Write back every changed knob; returns the problems (empty when all went back)."""
        problems = []
        for name in sorted(self.saved, key=lambda n: KNOBS.index(n) if n in KNOBS else -1):
            try:
                env.write(ksm_dir() / name, self.saved[name])
            except env.CaptureError as e:
                problems.append(str(e))
        self.saved.clear()
        return problems

    def __enter__(self) -> "Knobs":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


def proc_ksm_stat(pid: int | str = "self") -> dict[str, int | str]:
    """/proc/PID/ksm_stat as a dict (``ksm_rmap_items``, ``ksm_merging_pages``, ...)."""
    out: dict[str, int | str] = {}
    text = env.read(env.PATHS.proc / str(pid) / "ksm_stat") or ""
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2:
            out[parts[0]] = int(parts[1]) if parts[1].lstrip("-").isdigit() else parts[1]
    return out

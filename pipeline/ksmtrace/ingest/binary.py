"""Binary inputs: trace-cmd ``trace.dat`` and ``perf.data``.

Each is converted by its own tool, run as a subprocess whose stdout is streamed
into the matching text parser (nothing is written to disk):

* ``trace-dat`` (magic ``\\x17\\x08Dtracing`` + ``6``/``7``): ``trace-cmd report -t -i FILE``
  -> the ``trace-cmd-report`` parser; ``trace-cmd report --uname`` gives the kernel.
* ``perf-data`` (magic ``PERFILE2``, also perf's zstd-compressed and pipe-mode files):
  ``perf script --header-only`` for provenance and sample types, then
  ``perf script --ns --show-lost-events -F <fields the samples carry, callchain included>``
  -> the ``perf-script`` parser (both looked up in the registry, ``ksmtrace.ingest.get``).

The run's sha256 is that of the binary file; the converter command and the tool's
version go into ``runs.meta``.  A missing tool raises ``MissingTool`` naming the
Debian package; a converter that fails (unreadable, unsupported or truncated file)
raises ``BadInput`` with the converter's last stderr line, so nothing is stored.
"""
from __future__ import annotations

import collections
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from typing import Iterator

import pyarrow as pa

from ..errors import BadInput, MissingTool
from . import get
from .base import Parser, ParseStats
from .source import PERF_MAGIC, TRACE_DAT_MAGIC, TraceSource


PACKAGES = {"perf": "linux-perf", "trace-cmd": "trace-cmd"}

#: stderr lines of trace-cmd that mean the file could not be read completely (it still exits 0)
TRACECMD_FAIL_RE = re.compile(r"possibly truncated|cannot read|failed to (?:read|init|open|load the data)|"
                              r"unable to (?:read|open)|not a trace", re.I)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingTool(f"{name}: not installed; install the Debian package {PACKAGES[name]}")
    return path


def _env() -> dict:
    e = dict(os.environ)
    e.update(LC_ALL="C", PAGER="cat")
    return e


def _run_small(cmd: list[str], timeout: float = 120) -> tuple[int, str, str]:
    p = subprocess.run(cmd, capture_output=True, env=_env(), timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rc_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


class _Converter:
    """A converter subprocess whose stdout is read as a TraceSource and whose stderr is kept (last lines)."""

    def __init__(self, cmd: list[str], name: str):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     env=_env())
        self.err: collections.deque[str] = collections.deque(maxlen=200)
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()
        self.source = TraceSource(stream=self.proc.stdout, name=name)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self.err.append(line)

    def finish(self) -> int:
        rc = self.proc.wait()
        self._t.join(timeout=10)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._t.join(timeout=10)

    def last_err(self, pattern: re.Pattern | None = None) -> str | None:
        lines = list(self.err)
        if pattern is not None:
            lines = [ln for ln in lines if pattern.search(ln)]
        return lines[-1] if lines else None


class _BinaryParser(Parser):
    """Shared plumbing: locate the file on disk (spooling stdin / compressed input), hash it."""

    magic: bytes = b""
    tool_name = ""

    @classmethod
    def sniff(cls, head_text: str, head_bytes: bytes) -> int:
        return 100 if cls.magic and head_bytes.startswith(cls.magic) else 0

    def _file(self, source: TraceSource) -> tuple[str, str, str | None]:
        """(path to convert, sha256, temporary path to delete or None)."""
        name = source.name
        if source.compression is None and name not in ("-", "<stream>") and os.path.isfile(name):
            return name, file_sha256(name), None
        fd, tmp = tempfile.mkstemp(prefix="ksmtrace-", suffix=".bin")
        with os.fdopen(fd, "wb") as f:
            for block in source.raw_blocks():  # the bytes as they are: no line rules on binary data
                f.write(block)
        return tmp, source.sha256, tmp

    def _stream(self, conv: _Converter, text_parser: Parser, stats: ParseStats, fail_re: re.Pattern | None,
                shown: str) -> Iterator[pa.Table]:
        n = 0
        try:
            for t in text_parser.parse(conv.source, stats):
                n += t.num_rows
                yield t
        except BaseException:
            conv.kill()
            raise
        rc = conv.finish()
        stats.meta["n_lines"] = getattr(conv.source, "n_lines", 0)
        if rc != 0:
            why = conv.last_err() or _rc_text(rc)
            raise BadInput(f"{shown}: cannot be read by {self.tool_name} ({_rc_text(rc)}): {why}; nothing stored")
        bad = conv.last_err(fail_re) if fail_re is not None else None
        if bad:
            raise BadInput(f"{shown}: {self.tool_name} could not read the whole file: {bad}; nothing stored")
        if n == 0:
            why = conv.last_err()
            raise BadInput(f"{shown}: {self.tool_name} printed no events" + (f" ({why})" if why else "")
                           + "; nothing stored")


class TraceDatParser(_BinaryParser):
    name = "trace-dat"
    description = "trace-cmd trace.dat (v6/v7), converted with trace-cmd report -t"
    tool_name = "trace-cmd"

    magic = TRACE_DAT_MAGIC

    def parse(self, source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
        exe = tool("trace-cmd")
        path, sha, tmp = self._file(source)
        try:
            stats.meta["sha256"] = sha
            ver = source.head[len(TRACE_DAT_MAGIC):len(TRACE_DAT_MAGIC) + 1].decode("ascii", "replace")
            stats.meta["trace_dat_version"] = ver
            rc, out, err = _run_small([exe, "--version"])
            m = re.search(r"trace-cmd version (\S+)", out + err)
            stats.meta["converter_version"] = m.group(1) if m else None
            rc, out, _ = _run_small([exe, "report", "--uname", "-i", path])
            if rc == 0:
                for ln in out.splitlines():
                    parts = ln.split()
                    if len(parts) >= 3 and parts[0] == "Linux":
                        stats.meta["kernel"] = parts[2]
                        stats.meta["uname"] = ln.strip()
                        break
            rc, out, _ = _run_small([exe, "report", "--stat", "-i", path])
            if rc == 0 and (pcs := tracecmd_buffer_stats(out)):
                stats.meta["per_cpu_stats"] = pcs  # queries/02_coverage.sql
            cmd = [exe, "report", "-t", "-i", path]
            stats.meta["converter"] = " ".join(["trace-cmd", "report", "-t", "-i", source.name])
            conv = _Converter(cmd, f"{source.name} (trace-cmd report)")
            yield from self._stream(conv, get("trace-cmd-report")(), stats, TRACECMD_FAIL_RE, source.name)
            stats.meta["tracer"] = "trace-cmd"
        finally:
            if tmp:
                os.unlink(tmp)


_STAT_LINE_RE = re.compile(r"^\s*(entries|overrun|commit overrun|dropped events|read events|oldest event ts|now ts):"
                           r"\s*(\S+)\s*$")


def tracecmd_buffer_stats(text: str) -> dict | None:
    """The kernel ring-buffer statistics ``trace-cmd report --stat`` prints (``CPU: N`` blocks, per buffer),
    as per_cpu_stats {"<cpu>": {"overrun": int, ...}}. A file can list several buffers (the top one and
    instances) without saying which one holds the data: per CPU the largest count of any buffer is kept, so a
    loss in any of them counts."""
    out: dict[str, dict] = {}
    cpu = None
    for ln in text.splitlines():
        if m := re.match(r"^\s*CPU:\s*(\d+)\s*$", ln):
            cpu = out.setdefault(m.group(1), {})
            continue
        if ln.strip().startswith("Buffer:"):
            cpu = None
        if cpu is None or not (m := _STAT_LINE_RE.match(ln)):
            continue
        k = m.group(1).replace(" ", "_")
        v = m.group(2)
        if k in ("oldest_event_ts", "now_ts"):
            cpu.setdefault(k, v)
        elif v.isdigit():
            cpu[k] = max(cpu.get(k, 0), int(v))
    return out or None


_SAMPLE_TYPE_RE = re.compile(r"sample_type = ([A-Z_|]+)")
_EVNAME_RE = re.compile(r"name = ([^,]+)")


def perf_fields(header_text: str) -> list[str] | None:
    """``-F`` arguments for the sample types in a ``perf script --header-only`` text; None if unknown.

    Tracepoints get their payload (``trace``) and, when recorded, callchain frames; hardware and
    software samples get the sampled ``ip sym+off (dso)`` (on the event line, or as callchain frames).
    Without callchains the tracepoint list has no ``ip``: perf would append the frame to the payload.
    """
    types = []
    for ln in header_text.splitlines():
        if not ln.startswith("# event :"):
            continue
        m, n = _SAMPLE_TYPE_RE.search(ln), _EVNAME_RE.search(ln)
        if not m:
            continue
        if n and n.group(1).strip().startswith("dummy"):
            continue
        types.append(set(m.group(1).split("|")))
    if not types:
        return None
    every = set.intersection(*types)
    anyt = set.union(*types)
    base = ["comm"]
    if "TID" in every:
        base += ["pid", "tid"]
    if "CPU" in every:
        base.append("cpu")
    if "TIME" in every:
        base.append("time")
    if "PERIOD" in anyt:
        base.append("period")
    base.append("event")
    frame = ["ip", "sym", "symoff", "dso"]
    trace = base + ["trace"] + (frame if "CALLCHAIN" in anyt else [])
    sample = base + (frame if "IP" in every or "CALLCHAIN" in anyt else [])
    return ["-F", "trace:" + ",".join(trace), "-F", "hw:" + ",".join(sample), "-F", "sw:" + ",".join(sample)]


class PerfDataParser(_BinaryParser):
    name = "perf-data"
    description = "perf.data (also -z compressed and pipe mode), converted with perf script --ns"
    tool_name = "perf"

    magic = PERF_MAGIC

    def parse(self, source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
        exe = tool("perf")
        path, sha, tmp = self._file(source)
        try:
            stats.meta["sha256"] = sha
            rc, out, err = _run_small([exe, "--version"])
            m = re.search(r"perf version (\S+)", out)
            stats.meta["converter_version"] = m.group(1) if m else None
            rc, hdr, herr = _run_small([exe, "script", "--header-only", "-i", path])
            if rc != 0:
                last = [ln for ln in herr.splitlines() if ln.strip()]
                raise BadInput(f"{source.name}: cannot be read by perf ({_rc_text(rc)}): "
                               f"{last[-1].strip() if last else 'no message'}; nothing stored")
            text_parser = get("perf-script")()  # the registry's: formats never import each other
            text_parser.header([ln for ln in hdr.splitlines() if ln.startswith("#")], stats)
            stats.meta["perf_version_recorded"] = stats.meta.pop("perf_version", None)
            fields = perf_fields(hdr)
            cmd = [exe, "script", "--ns", "--show-lost-events"] + (fields or []) + ["-i", path]
            stats.meta["converter"] = " ".join(["perf"] + cmd[1:-1] + [source.name])
            conv = _Converter(cmd, f"{source.name} (perf script)")
            yield from self._stream(conv, text_parser, stats, None, source.name)
            stats.meta["tracer"] = "perf"
        finally:
            if tmp:
                os.unlink(tmp)


PARSERS = [TraceDatParser, PerfDataParser]

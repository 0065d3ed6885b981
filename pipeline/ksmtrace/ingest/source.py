"""Reading an input as a stream of complete-line chunks.

Opening (regular files, pipes and FIFOs, stdin), decompression (.gz .xz .zst .bz2,
detected by magic bytes), sha256 of the decompressed bytes, byte-based progress,
truncation detection and the line rules live here, so that every parser sees the
same thing: ``Chunk(data, first_line_no)`` where ``data`` is bytes holding whole
lines.

Rules every parser relies on (the README's "Input formats" says the same):

* **Line cap.** A line longer than ``MAX_LINE_BYTES`` (1 MiB) is never held in
  memory: it is streamed past and replaced by one *marker line* (``OVERLONG_MARK``,
  its length and its first bytes) that every parser counts as one malformed line.
  A run of NUL bytes without a newline (a file preallocated and never written, a
  crash tail) is such a line too, however long: it costs one read pass, no memory.
* **Line endings.** LF and CRLF as they are; a file whose head has more lone CRs
  than LFs is a CR-only file (old Mac, some serial-console captures) and is split
  at every CR.
* **Compression.** Decoded incrementally with a bound on the output of every step
  (a 300 KB .gz that expands to a 300 MB line never exists in memory whole).
  Concatenated members/streams/frames are read as ``gzip -dc`` / ``xz -dc`` /
  ``zstd -dc`` / ``bzip2 -dc`` read them; bytes after the last gzip member that are
  not a member are ignored with a warning (``gzip -dc``: "trailing garbage
  ignored"). A truncated or corrupt stream is refused (``TruncatedInput``) unless
  ``partial``: then everything decoded up to the damage is kept, and a last line cut
  by the truncation is replaced by a marker line (counted malformed, never an event
  with a cut payload).
* **Opening.** Permission and other OS errors are ``BadInput`` (one line). Pipes and
  FIFOs are read as streams (``ksmtrace ingest <(zcat x.gz)`` works); a FIFO that has
  no writer yet gets ``waiting for a writer on FIFO ...`` on stderr after half a
  second instead of a silent hang. Character and block devices are refused.
"""
from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import os
import stat
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..errors import BadInput, TruncatedInput

CHUNK_BYTES = 8 << 20
#: longest line kept (bytes, without the newline); longer lines become one OVERLONG_MARK line
MAX_LINE_BYTES = 1 << 20
#: bytes of decompressed output one decoding step may produce (bounds memory on decompression bombs)
_DECODE_STEP = 1 << 20
#: raw bytes fed to a decoder per step (zstd has no output bound, so it gets small inputs)
_RAW_STEP = 1 << 16
_ZSTD_RAW_STEP = 1 << 10
HEAD_BYTES = 256 << 10
#: seconds to wait on a FIFO without a writer before saying so on stderr
FIFO_WAIT_NOTICE_S = 0.5

#: marker lines the source puts in place of lines it cannot hand over (see base.junk_reason)
OVERLONG_MARK = b"\x00ksmtrace:overlong\x00"
CUT_MARK = b"\x00ksmtrace:cut\x00"

#: the binary trace files ksmtrace converts with their own tools (ksmtrace.ingest.binary)
TRACE_DAT_MAGIC = b"\x17\x08Dtracing"
PERF_MAGIC = b"PERFILE2"


def is_binary_trace(head: bytes) -> bool:
    """A trace-cmd trace.dat or a perf.data file (not text: the text parsers leave it to binary.py)."""
    return head.startswith((PERF_MAGIC, TRACE_DAT_MAGIC))


MAGICS = {
    b"\x1f\x8b": "gz",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zst",
    b"BZh": "bz2",
}


#: bytes after "BZh" + block-size digit: a compressed block's or the end-of-stream's magic (bzip2's format)
_BZ2_NEXT = (b"1AY&SY", b"\x17rE8P\x90")


def compression_of(head: bytes) -> str | None:
    """The compression whose header ``head`` (its first 10 bytes or more) starts with, or None.

    The whole fixed header is checked, not only the magic: a text file may start with "BZh" (bzip2's magic is
    printable), and gzip's magic is followed by the deflate method byte 8."""
    if head.startswith(b"\x1f\x8b"):
        return "gz" if head[2:3] == b"\x08" else None
    if head.startswith(b"BZh"):
        return "bz2" if head[3:4] in tuple(b"123456789"[i:i + 1] for i in range(9)) and \
            head[4:10] in _BZ2_NEXT else None
    for magic, name in MAGICS.items():
        if head.startswith(magic):
            return name
    return None


class _CorruptData(Exception):
    """Raised by a decoder on data it cannot decode (the message says why)."""


class _Decoder:
    """Incremental, output-bounded decoder of one compressed input (all its members/streams/frames)."""

    MAGIC = {"gz": b"\x1f\x8b", "xz": b"\xfd7zXZ\x00", "bz2": b"BZh", "zst": b"\x28\xb5\x2f\xfd"}

    def __init__(self, raw: BinaryIO, kind: str):
        self.raw = raw
        self.kind = kind
        self.warnings: list[str] = []
        self._in = b""  # raw bytes not yet given to the decoder
        self._raw_eof = False
        self._errors: tuple = (zlib.error, lzma.LZMAError, OSError, ValueError, EOFError)
        if kind == "zst":
            import zstandard

            self._errors += (zstandard.ZstdError,)
        self._d = self._new()
        self._started = False  # the current member has consumed input
        self._done = False
        self._n_members = 0
        self._error: Exception | None = None

    def _new(self):
        if self.kind == "gz":
            return zlib.decompressobj(wbits=31)
        if self.kind == "xz":
            return lzma.LZMADecompressor()
        if self.kind == "bz2":
            return bz2.BZ2Decompressor()
        if self.kind == "zst":
            import zstandard

            return zstandard.ZstdDecompressor().decompressobj()
        raise BadInput(f"unsupported compression {self.kind}")

    def _fill(self, n: int) -> None:
        while len(self._in) < n and not self._raw_eof:
            b = self.raw.read(n - len(self._in))
            if not b:
                self._raw_eof = True
            self._in += b

    def read(self) -> bytes:
        """Up to about _DECODE_STEP decoded bytes; b"" at the end. Raises EOFError (truncated) or _CorruptData."""
        if self._error is not None:
            raise self._error
        out: list[bytes] = []
        size = 0
        while size < _DECODE_STEP and not self._done:
            try:
                piece = self._step(_DECODE_STEP - size)
            except EOFError as e:
                self._error = e
            except self._errors as e:
                self._error = _CorruptData(str(e) or type(e).__name__)
            else:
                if piece:
                    out.append(piece)
                    size += len(piece)
            if self._error is not None:
                if out:  # hand over what was decoded; the error comes with the next read
                    break
                raise self._error
        return b"".join(out)

    def _step(self, room: int) -> bytes:
        d, kind = self._d, self.kind
        if kind in ("xz", "bz2") and self._started and not d.eof and not d.needs_input:
            piece = d.decompress(b"", room)  # output still waiting inside the decoder
        else:
            if not self._in:
                self._fill(_ZSTD_RAW_STEP if kind == "zst" else _RAW_STEP)
            if not self._in:
                if self._started:
                    if kind == "gz":
                        rest = d.flush()
                        if rest:
                            return rest
                    raise EOFError(f"{kind} data ends early")
                self._done = True
                return b""
            self._started = True
            if kind == "gz":
                piece = d.decompress(self._in, room)
                self._in = d.unused_data if d.eof else d.unconsumed_tail
            elif kind == "zst":
                step = _ZSTD_RAW_STEP
                feed, self._in = self._in[:step], self._in[step:]
                piece = d.decompress(feed)
                if d.eof:
                    self._in = d.unused_data + self._in
            else:
                piece = d.decompress(self._in, room)
                self._in = d.unused_data if d.eof else b""
        if d.eof:
            try:
                self._end_of_member()
            except _CorruptData as e:  # after this member's output, which is handed over first
                self._error = e
                self._done = True
        return piece

    def _end_of_member(self) -> None:
        self._n_members += 1
        self._started = False
        self._d = self._new()
        magic = self.MAGIC[self.kind]
        # what follows a complete member: another member, zero padding, or trailing garbage
        self._fill(len(magic))
        if not self._in or self._in.startswith(magic):
            return
        if self.kind in ("gz", "xz") and self._in == bytes(len(self._in)) and self._rest_is_zero():
            self._in = b""
            self._done = True  # zero padding (gzip and xz accept it)
            return
        if self.kind in ("gz", "bz2"):
            prog = {"gz": "gzip", "bz2": "bzip2"}[self.kind]
            self.warnings.append(f"trailing garbage after the {self.kind} data ignored (as {prog} -dc does)")
            self._in = b""
            self._done = True
            return
        raise _CorruptData(f"bytes after the end of the {self.kind} data are not {self.kind} data")

    def _rest_is_zero(self) -> bool:
        while not self._raw_eof:
            b = self.raw.read(1 << 20)
            if not b:
                self._raw_eof = True
            elif b != bytes(len(b)):
                self._in = b
                return False
        return True


@dataclass
class Chunk:
    data: bytes  # whole lines, each ending in b"\n" except possibly the very last of the input
    first_line_no: int  # 1-based number of the first line in data


class _CountingReader(io.RawIOBase):
    """Counts bytes read from the underlying (compressed) file for progress."""

    def __init__(self, f: BinaryIO, on_bytes: Callable[[int], None] | None):
        self._f = f
        self._on = on_bytes
        self._prefix = b""

    def magic(self, n: int = 8) -> bytes:
        """The first ``n`` bytes (fewer only at EOF), kept for the readers: a pipe may deliver them one by one."""
        while len(self._prefix) < n:
            b = self._f.read(n - len(self._prefix))
            if not b:
                break
            self._prefix += b
        return self._prefix

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            if self._on:
                self._on(n)
            return n
        # readinto1 where the stream has it: sys.stdin.buffer is itself buffered, and its readinto() would
        # block until the whole buffer (1 MiB) is filled, so a pipe's head would wait for a writer's EOF
        into = getattr(self._f, "readinto1", None) or getattr(self._f, "readinto", None)
        if into is not None:
            n = into(b) or 0
        else:
            data = self._f.read(len(b))
            n = len(data)
            b[:n] = data
        if self._on and n:
            self._on(n)
        return n


def _open_path(p: str) -> tuple[BinaryIO, int | None]:
    """Open a path given on the command line: (binary file, size or None for a stream)."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise BadInput(f"{p}: no such file") from None
    except OSError as e:
        raise BadInput(f"{p}: cannot open: {e.strerror or e}") from None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise BadInput(f"{p}: is a directory, not a trace file")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "character" if stat.S_ISCHR(mode) else "block"
        raise BadInput(f"{p}: is a {kind} device, not a trace file (use '-' to read stdin)")
    fifo = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
    done = threading.Event()
    timer = None
    if fifo:
        def notice() -> None:
            if not done.is_set():
                from ..safe_text import terminal

                sys.stderr.write(f"ksmtrace: waiting for a writer on FIFO {terminal(p)} (Ctrl-C to stop)\n")
                sys.stderr.flush()

        timer = threading.Timer(FIFO_WAIT_NOTICE_S, notice)
        timer.daemon = True
        timer.start()
    try:
        f = open(p, "rb", buffering=0)
    except OSError as e:
        raise BadInput(f"{p}: cannot open: {e.strerror or e}") from None
    finally:
        done.set()
        if timer is not None:
            timer.cancel()
    return f, (None if fifo else st.st_size)  # type: ignore[return-value]


class TraceSource:
    """One input: a path, ``-`` for stdin, or an already open binary stream.

    ``head`` holds the first decompressed bytes (for format detection) without
    consuming them; ``chunks()`` then streams the whole input once (``raw_blocks()``
    streams it without any line processing, for binary formats).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, stream: BinaryIO | None = None,
                 name: str | None = None, partial: bool = False,
                 on_bytes: Callable[[int], None] | None = None):
        self.partial_allowed = partial
        self.truncated = False
        self.sha = hashlib.sha256()
        self.n_bytes = 0
        self.n_lines = 0
        #: over-long lines seen: number, bytes of the longest
        self.n_overlong = 0
        self.warnings: list[str] = []
        if stream is None:
            p = str(path)
            if p == "-":
                raw: BinaryIO = sys.stdin.buffer
                self.name = "-"
                self.size = None
            else:
                raw, self.size = _open_path(p)
                self.name = p
        else:
            raw = stream
            self.name = name or "<stream>"
            self.size = None
        self._raw = raw
        reader = _CountingReader(raw, on_bytes)
        try:
            magic = reader.magic(10)
        except OSError as e:
            self.close()
            raise BadInput(f"{self.name}: read error: {e.strerror or e}") from None
        counted = io.BufferedReader(reader, buffer_size=1 << 20)
        self._counted = counted
        self.compression = compression_of(magic)
        self._dec = _Decoder(counted, self.compression) if self.compression else None
        self._eof = False
        head = []
        size = 0
        while size < HEAD_BYTES:
            b = self._read(HEAD_BYTES - size)
            if not b:
                break
            head.append(b)
            size += len(b)
        self.head = b"".join(head)
        self._pending = self.head
        n_lf = self.head.count(b"\n")
        n_crlf = self.head.count(b"\r\n")
        #: CR-only line endings (decided on the head's line endings alone: a CR-only trace with NUL runs is split
        #: as the same trace with LF endings is; the bytes of a trace.dat / perf.data are never rewritten)
        self.cr_only = self.head.count(b"\r") - n_crlf > n_lf and not is_binary_trace(self.head)
        if self.cr_only:
            self.head = self.head.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    @property
    def head_text(self) -> str:
        return self.head.decode("utf-8", "replace")

    def _read(self, n: int | None = None) -> bytes:
        """Next block of decompressed bytes (about ``n`` at most; hashed and counted here), b"" at the end."""
        if self._eof:
            return b""
        n = n or CHUNK_BYTES
        try:
            if self._dec is None:
                data = self._counted.read(n)
            else:
                data = self._dec.read()
        except (EOFError, _CorruptData) as e:
            if not self.partial_allowed:
                raise TruncatedInput(
                    f"{self.name}: truncated or corrupt {self.compression} data ({e}); "
                    f"use --partial to keep what was readable"
                ) from None
            self.truncated = True
            self._eof = True
            return b""
        except OSError as e:
            raise BadInput(f"{self.name}: read error: {e.strerror or e}") from None
        if not data:
            self._eof = True
            if self._dec is not None:
                self.warnings.extend(self._dec.warnings)
            return b""
        self.sha.update(data)
        self.n_bytes += len(data)
        return data

    def raw_blocks(self) -> Iterator[bytes]:
        """The decompressed bytes exactly as they are (no line rules), head first."""
        pending, self._pending = self._pending, b""
        if pending:
            yield pending
        while True:
            b = self._read()
            if not b:
                return
            yield b

    def _blocks(self) -> Iterator[bytes]:
        """Decompressed blocks with CR-only line endings turned into LF."""
        if not self.cr_only:
            yield from self.raw_blocks()
            return
        hold = b""
        for b in self.raw_blocks():
            b = hold + b
            hold = b""
            if b.endswith(b"\r"):  # may be the first half of a CRLF split across blocks
                b, hold = b[:-1], b"\r"
            yield b.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if hold:
            yield b"\n"

    def chunks(self, chunk_bytes: int | None = None) -> Iterator[Chunk]:
        """Whole-line chunks of about ``chunk_bytes`` (over-long lines replaced by marker lines)."""
        chunk_bytes = chunk_bytes or CHUNK_BYTES
        cap = MAX_LINE_BYTES
        line_no = 1
        last_nl = True
        buf: list[bytes] = []
        buf_len = 0
        skip: _Overlong | None = None  # the over-long line being streamed past
        for block in self._blocks():
            if skip is not None:
                nl = block.find(b"\n")
                if nl < 0:
                    skip.add(block)
                    continue
                skip.add(block[:nl])
                buf, buf_len = [skip.marker(), b"\n"], 0
                self.n_overlong += 1
                skip = None
                block = block[nl + 1:]
            buf.append(block)
            buf_len += len(block)
            if buf_len < chunk_bytes:
                continue
            data = b"".join(buf)
            cut = data.rfind(b"\n") + 1
            done, tail = data[:cut], data[cut:]
            buf, buf_len = ([tail], len(tail)) if tail else ([], 0)
            if len(tail) > cap:
                skip = _Overlong(tail)
                buf, buf_len = [], 0
            if done:
                out = self._capped(done)
                yield Chunk(out, line_no)
                line_no += out.count(b"\n")
        if skip is not None:
            buf = [skip.marker()]
            self.n_overlong += 1
        data = b"".join(buf)
        if data:
            if self.truncated and not data.endswith(b"\n"):
                # the last line was cut by the truncation: never an event with half a payload
                cut = data.rfind(b"\n") + 1
                data = data[:cut] + CUT_MARK + data[cut:cut + 200]
            data = self._capped(data)
            last_nl = data.endswith(b"\n")
            yield Chunk(data, line_no)
            line_no += data.count(b"\n")
        self.n_lines = line_no - 1 + (0 if last_nl else 1)

    def _capped(self, data: bytes) -> bytes:
        """``data`` (whole lines) with every line longer than MAX_LINE_BYTES replaced by a marker line.

        Any line longer than the cap contains a whole aligned window of cap/2 bytes without a newline,
        so only such windows (one ``find`` each) need a closer look.
        """
        cap = MAX_LINE_BYTES
        if len(data) <= cap:
            return data
        w = cap // 2
        spans = []
        pos = 0
        n = len(data)
        while pos + w <= n:
            if data.find(b"\n", pos, pos + w) < 0:
                s = data.rfind(b"\n", 0, pos) + 1
                e = data.find(b"\n", pos + w)
                e = n if e < 0 else e
                if e - s > cap and (not spans or spans[-1][0] != s):
                    spans.append((s, e))
                pos = max(e + 1, pos + w)
                continue
            pos += w
        if not spans:
            return data
        out = []
        prev = 0
        for s, e in spans:
            out.append(data[prev:s])
            ov = _Overlong(data[s:e])
            out.append(ov.marker())
            self.n_overlong += 1
            prev = e
        out.append(data[prev:])
        return b"".join(out)

    def lines(self) -> Iterator[tuple[int, str]]:
        """Line-at-a-time view for small or stateful parsers: (line_no, text without newline)."""
        for chunk in self.chunks():
            text = chunk.data.decode("utf-8", "replace")
            parts = text.split("\n")
            if parts and parts[-1] == "":
                parts.pop()
            for i, line in enumerate(parts):
                yield chunk.first_line_no + i, line.rstrip("\r")

    @property
    def sha256(self) -> str:
        return self.sha.hexdigest()

    def close(self) -> None:
        try:
            if self._raw is not sys.stdin.buffer:
                self._raw.close()
        except Exception:
            pass


class _Overlong:
    """An over-long line streamed past: its length, whether it is all NUL, its first bytes."""

    def __init__(self, first: bytes):
        self.n = 0
        self.all_nul = True
        self.prefix = first[:max(0, min(120, MAX_LINE_BYTES // 2 - 80))]  # the marker stays under the cap
        self.add(first)

    def add(self, b: bytes) -> None:
        self.n += len(b)
        if self.all_nul and b != bytes(len(b)):  # a compare with zeros: the cheapest NUL test
            self.all_nul = False

    def marker(self) -> bytes:
        what = b"a run of %d NUL bytes" % self.n if self.all_nul else \
            b"%d bytes, over the %d-byte line cap: " % (self.n, MAX_LINE_BYTES) + self.prefix.replace(b"\x00", b"")
        return OVERLONG_MARK + what


def open_source(path: str | os.PathLike, **kw) -> TraceSource:
    return TraceSource(path, **kw)


def is_probably_binary(head: bytes) -> bool:
    """Binary unless most lines of the first 64 KiB are text.

    A line is binary when it holds a NUL byte or when more than a tenth of it is other control
    bytes. A few NUL lines in a text trace (a crash, a bad copy) do not make it binary; they are
    counted as malformed lines by the parser.
    """
    if not head:
        return False
    sample = head[: 64 << 10]
    lines = sample.split(b"\n")
    if len(lines) > 1 and len(head) > len(sample):
        lines.pop()  # cut by the sample
    lines = [ln for ln in lines if ln.strip(b" \t\r")]
    if not lines:
        return False
    bad = 0
    total = 0
    for ln in lines:
        w = min(len(ln), 4096)
        total += w
        part = ln[:4096]
        if b"\x00" in part or sum(1 for b in part if b < 9 or (13 < b < 32) or b == 127) * 10 > len(part):
            bad += w
    return bad * 2 > total


def file_head(path: str | os.PathLike, n: int = 64) -> bytes:
    if str(path) == "-":
        return b""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


__all__ = ["Chunk", "TraceSource", "open_source", "compression_of", "is_probably_binary", "file_head", "Path",
           "MAX_LINE_BYTES", "OVERLONG_MARK", "CUT_MARK"]

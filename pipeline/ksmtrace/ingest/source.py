"""Reading an input as a stream of complete-line chunks.

Decompression (.gz .xz .zst .bz2, detected by magic bytes), sha256 of the
decompressed bytes, byte-based progress and truncation detection live here, so
that every parser sees the same thing: ``Chunk(data, first_line_no)`` where
``data`` is bytes holding whole lines.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..errors import BadInput, TruncatedInput

CHUNK_BYTES = 8 << 20

MAGICS = {
    b"\x1f\x8b": "gz",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zst",
    b"BZh": "bz2",
}


def compression_of(head: bytes) -> str | None:
    for magic, name in MAGICS.items():
        if head.startswith(magic):
            return name
    return None


def _open_decompressed(raw: BinaryIO, kind: str | None) -> BinaryIO:
    if kind is None:
        return raw
    if kind == "gz":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if kind == "zst":
        import zstandard

        return _ZstdStream(raw, zstandard)  # type: ignore[return-value]
    raise BadInput(f"unsupported compression {kind}")


class _ZstdStream:
    """Multi-frame zstd reader that raises EOFError on a truncated frame
    (zstandard's own stream_reader just stops)."""

    def __init__(self, raw: BinaryIO, zstandard):
        self._raw = raw
        self._z = zstandard
        self._obj = zstandard.ZstdDecompressor().decompressobj()
        self._buf = b""
        self._in_frame = False

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            block = self._raw.read(1 << 20)
            if not block:
                if self._in_frame and not self._obj.eof:
                    raise EOFError("zstd frame ends early")
                break
            while block:
                self._in_frame = True
                try:
                    self._buf += self._obj.decompress(block)
                except self._z.ZstdError as e:
                    raise EOFError(str(e)) from None
                if self._obj.eof:
                    block = self._obj.unused_data
                    self._obj = self._z.ZstdDecompressor().decompressobj()
                    self._in_frame = False
                else:
                    block = b""
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


@dataclass
class Chunk:
    data: bytes  # whole lines, each ending in b"\n" except possibly the very last of the input
    first_line_no: int  # 1-based number of the first line in data


class _CountingReader(io.RawIOBase):
    """Counts bytes read from the underlying (compressed) file for progress."""

    def __init__(self, f: BinaryIO, on_bytes: Callable[[int], None] | None):
        self._f = f
        self._on = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        if self._on and n:
            self._on(n)
        return n


class TraceSource:
    """One input: a path, ``-`` for stdin, or an already open binary stream.

    ``head`` holds the first decompressed bytes (for format detection) without
    consuming them; ``chunks()`` then streams the whole input once.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, stream: BinaryIO | None = None,
                 name: str | None = None, partial: bool = False,
                 on_bytes: Callable[[int], None] | None = None):
        self.partial_allowed = partial
        self.truncated = False
        self.sha = hashlib.sha256()
        self.n_bytes = 0
        if stream is None:
            p = str(path)
            if p == "-":
                raw: BinaryIO = sys.stdin.buffer
                self.name = "-"
                self.size = None
            else:
                if not os.path.exists(p):
                    raise BadInput(f"{p}: no such file")
                if os.path.isdir(p):
                    raise BadInput(f"{p}: is a directory, not a trace file")
                raw = open(p, "rb")
                self.name = p
                self.size = os.path.getsize(p)
        else:
            raw = stream
            self.name = name or "<stream>"
            self.size = None
        self._raw = raw
        counted = io.BufferedReader(_CountingReader(raw, on_bytes), buffer_size=1 << 20)
        magic = counted.peek(8)[:8]
        self.compression = compression_of(magic)
        self._f = _open_decompressed(counted, self.compression)
        self._pending = b""
        self.head = self._read(256 << 10)
        self._pending = self.head

    @property
    def head_text(self) -> str:
        return self.head.decode("utf-8", "replace")

    def _read(self, n: int) -> bytes:
        try:
            data = self._f.read(n)
        except (EOFError, lzma.LZMAError, OSError, ValueError) as e:
            if self.compression is None:
                raise BadInput(f"{self.name}: read error: {e}") from None
            if not self.partial_allowed:
                raise TruncatedInput(
                    f"{self.name}: truncated or corrupt {self.compression} data ({e}); "
                    f"use --partial to keep what was readable"
                ) from None
            self.truncated = True
            return b""
        return data

    def chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
        line_no = 1
        last_nl = True
        carry = self._pending
        self._pending = b""
        eof = False
        while not eof:
            block = self._read(chunk_bytes) if not self.truncated else b""
            if not block:
                eof = True
                data = carry
                carry = b""
            else:
                buf = carry + block
                cut = buf.rfind(b"\n")
                if cut < 0:
                    carry = buf
                    continue
                data, carry = buf[: cut + 1], buf[cut + 1:]
            if not data:
                continue
            self.sha.update(data)
            self.n_bytes += len(data)
            last_nl = data.endswith(b"\n")
            yield Chunk(data, line_no)
            line_no += data.count(b"\n")
        self.n_lines = line_no - 1 + (0 if last_nl else 1)

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


def open_source(path: str | os.PathLike, **kw) -> TraceSource:
    return TraceSource(path, **kw)


def is_probably_binary(head: bytes) -> bool:
    if not head:
        return False
    sample = head[:4096]
    if b"\x00" in sample:
        return True
    bad = sum(1 for b in sample if b < 9 or (13 < b < 32))
    return bad > len(sample) // 20


def file_head(path: str | os.PathLike, n: int = 64) -> bytes:
    if str(path) == "-":
        return b""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


__all__ = ["Chunk", "TraceSource", "open_source", "compression_of", "is_probably_binary", "file_head", "Path"]

"""The compiled function_graph path (ingest/native/funcgraph.c) gives exactly the rows, malformed lines and
facts of the pure Python path: on generated function_graph text of every column layout with hostile pieces,
cut into chunks of every size, and on every real function_graph capture of sample_traces/ and the corpus."""
from __future__ import annotations

import io
from unittest import mock

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import ROOT, examples
from ksmtrace.ingest import _native, source
from ksmtrace.ingest.base import ParseStats, conform
from ksmtrace.ingest.funcgraph import FuncGraphParser
from ksmtrace.ingest.source import TraceSource

pytestmark = pytest.mark.skipif("funcgraph" not in _native.built(),
                                reason="the compiled function_graph parser is not built (no C compiler)")


def parse(blob: bytes, native: bool, chunk: int | None = None):
    prev = _native.use(native)
    try:
        with mock.patch.object(source, "CHUNK_BYTES", chunk or source.CHUNK_BYTES):
            stats = ParseStats()
            tabs = [conform(t) for t in FuncGraphParser().parse(TraceSource(stream=io.BytesIO(blob), name="t"), stats)]
    finally:
        _native.use(prev)
    return (pa.concat_tables(tabs) if tabs else None), stats


def assert_same(blob: bytes, chunk: int | None = None) -> pa.Table | None:
    (ta, sa), (tb, sb) = parse(blob, True, chunk), parse(blob, False, chunk)
    assert (ta is None) == (tb is None)
    if ta is not None:
        assert ta.schema == tb.schema
        assert ta.to_pylist() == tb.to_pylist()
    assert (sa.n_malformed, sa.malformed_examples, list(sa.meta.items()), sa.n_lost_events, sa.lost_unknown) == \
        (sb.n_malformed, sb.malformed_examples, list(sb.meta.items()), sb.n_lost_events, sb.lost_unknown)
    return ta


# ---------------------------------------------------------------- generated text

FUNCS = ["f", "g", "rmap_walk_ksm", "lock.isra.0", "a|b", "x[y]"]
ABS = ["", " 297.939733 |", "297.9 |", "  1191.254990 |", " 99999999999.000001 |", " 9223372036.854775807 |",
       " 9223372036.854775808 |", " 1.2|", " 0000000000000000000012.5 |", " 12 |", " 1.5  |"]
REL = ["", "", "", "  12 us  |", " 3 us|"]
CPU = ["   0) ", " 12) ", "   1) ", " 99999999999) ", "0)", " 007) ", "", " 2147483648) ", " 2147483647) "]
PROC = ["", "  ksm_rma-269   |", " kworker/0:1-12 |", " a-b-12 |", " -12 |", " x--1 |", "  a b -3 |",
        " p-99999999999 |", " p-1x |", " <...>-7 |", " p-2147483647 |", " ksmd-37|"]
LFLAGS = ["", "", " d..1 |", " dNh2. |", " abc |", " abcdefgh |", " 1234 |", " d..1|"]
DCOL = ["               |", " + 46.457 us   |", "   5.476 us    |", " ! 8147.120 us |", "  3594274 us |",
        " 1. us |", " ++ 1.0 us |", "  ==========> |", "  <========== |", " 99999999999999999.5 us |",
        " 9223372036854775.807 us |", " 9223372036854.775 us |", "1.0 us|", " 1.0us |", "", " $ 1.23456 us |",
        " + 46.457 us   x|"]
IND = ["", " ", "  ", "   ", "    ", "          "]
TEXT = ["{f}() {{", "{f}();", "}}", "}}", "}} /* {f} */", "}} /* {f}() */", "}} /* {f} = -22 */", "}} /* {f} ret=0x1 */",
        "}} /* {f} =  1 */", "}} /**/", "}} /* */", "}} /*/", "{f}(a=1) {{", "{f} [mod]() {{", "{f}(); /* = 0x0 */",
        "/* comment */", "/* ev: a=1 */", "", "{f}()  {{", "{f}(){{", "}}  /* {f} */  ", "}} /* a */ b */",
        "}} /* a=b */", "}}}}", "{f}();;", "}} /* {f}(x) */", "}} /* {f} ret= */", "() {{", "}}/*{f}*/",
        "{f}(); /* <-try_to_migrate+0x8e/0xc0 */", "{f}() {{ /* <-c+0x1/0x2 */", "{f}(); /* <-c+0x1/0x2 ret=0x0 */",
        "{f}(); /* <-c+0x1/0x2 = -22 */", "{f}(); /* <-a= = 1 */", "{f}(); /* <-x= ret=1 */", "{f}(); /* = */",
        "{f}(); /* ret=0x1 y */", "{f}(); /* <- */", "{f}();/**/", "{f}() ; /* = 1 */", "{f}(); /* ret=0x1 */",
        "{f}(); /* <-a b */", "{f}(); /*  =  1 */", "{f}(); /* x */", "{f}() {{ /* = 0x0 */", "{f}(); /* <-aret=1 */"]
TAIL = ["", "", "", " ", "\t", "  \x0b", "\x0c"]
WHOLE = [" 1)  bash-9  =>  kcompact-33", " ------------------------------------------", " (Overruns: 12)",
         "# tracer: function_graph", "#", "", " ksm_rma-269  =>  <idle>-0", "  => foo+0x1/0x2", " => bar",
         "   bash-1     [000] ....  1.000000: <stack trace>", "   bash-1     [000] ....  1.000001: kfree: ptr=0x1",
         "CPU:1 [LOST 3 EVENTS]", " 0)  a-1  =>  b-99999999999", "    1)  bash-9  =>  ksmd-37", "prose words",
         " 0)  b\u00e4sh-9  =>  k\u00f6d-37", " 12)  a b-9  =>  c d -10", " 0)  x-1  =>  y-1x", "   0)  a-1"]
HOSTILE = ["\x00", "\u00e9", "\x1b[31m", "\u00a0", "\ufffd", "|", ")", "-", "\t", "\r", "1", "{", "}", ";"]


@st.composite
def graph_line(draw) -> str:
    f = draw(st.sampled_from(FUNCS))
    parts = [draw(st.sampled_from(ABS)), draw(st.sampled_from(REL)), draw(st.sampled_from(CPU)),
             draw(st.sampled_from(PROC)), draw(st.sampled_from(LFLAGS)), draw(st.sampled_from(DCOL)),
             draw(st.sampled_from(IND)), draw(st.sampled_from(TEXT)).format(f=f), draw(st.sampled_from(TAIL))]
    return "".join(parts)


@st.composite
def layout_line(draw, layout) -> str:
    """A line of one common layout (the shape of a real capture), with a random text."""
    a, c, p, fl = layout
    f = draw(st.sampled_from(FUNCS))
    text = draw(st.sampled_from(TEXT[:8]) | st.sampled_from(TEXT))  # the common texts, then any
    return "".join([a, c, p, fl, draw(st.sampled_from(DCOL[:5])), draw(st.sampled_from(IND[1:])), text.format(f=f)])


@st.composite
def fg_text(draw) -> bytes:
    layout = (draw(st.sampled_from(ABS[:4])), draw(st.sampled_from(CPU[:3])), draw(st.sampled_from(PROC[:3])),
              draw(st.sampled_from(LFLAGS[:3])))
    lines = []
    for _ in range(draw(st.integers(1, 80))):
        k = draw(st.integers(0, 19))
        if k < 9:
            lines.append(draw(layout_line(layout)))
        elif k < 13:
            lines.append(draw(graph_line()))
        elif k < 16:
            lines.append(draw(st.sampled_from(WHOLE)))
        elif k < 18:  # one byte of a line changed, inserted or removed
            base = draw(st.one_of(layout_line(layout), graph_line()))
            pos = draw(st.integers(0, len(base)))
            lines.append(base[:pos] + draw(st.sampled_from(HOSTILE + [""])) + base[pos + draw(st.integers(0, 1)):])
        elif k == 18:
            base = draw(layout_line(layout))
            lines.append(base[: draw(st.integers(0, len(base)))])
        else:
            lines.append(draw(st.text(max_size=40)).replace("\n", " "))
    end = draw(st.sampled_from(["\n", "", "\r\n"]))
    return ("\n".join(lines) + end).encode("utf-8", "surrogatepass")


REAL_HEAD = (b"# tracer: function_graph\n#\n"
             b"  297.939733 |   0)  ksm_rma-269   |               |  rmap_walk_ksm() {\n"
             b"  297.940084 |   0)  ksm_rma-269   | + 46.457 us   |    down_read_trylock();\n"
             b"  297.940090 |   0)  ksm_rma-269   |   1.000 us    |  }\n"
             b"  297.940091 |   0)  ksm_rma-269   |   1.000 us    |  } /* rmap_walk_ksm */\n")


@settings(max_examples=examples(300), deadline=None)
@given(blob=fg_text(), chunk=st.sampled_from([None, 1, 64, 200, 1000]))
@example(blob=REAL_HEAD, chunk=None)
@example(blob=REAL_HEAD, chunk=1)
@example(blob=REAL_HEAD.rstrip(b"\n"), chunk=64)
@example(blob=b"   0)   1.000 us    |  }\n 1)  bash-9  =>  ksmd-37\n   1)   1.0 us |  }\n", chunk=None)
@example(blob=b"   0)  a-1   |               |  f() {\n   0)  a-1   |   1.0 us  |  } /* g */\n", chunk=None)
@example(blob=b"   0)  a-1  |  |  f() {\n   0)  a-1  |  |  g() {\n   0)  a-1  |  |  } /* f */\n"
              b"   0)  a-1  |  |  }\n", chunk=None)
@example(blob=b"   0)   |  f() {\n   bash-1 [000] .... 1.0: <stack trace>\n => a\n   0)   |  }\n", chunk=40)
def test_compiled_path_equals_pure_path(blob, chunk):
    assert_same(blob, chunk)


def test_compiled_path_takes_the_common_lines():
    """The compiled path is not a no-op: the real capture's graph lines are its rows (none goes to Python)."""
    prev = _native.use(True)
    try:
        mod = _native.load("funcgraph")
    finally:
        _native.use(prev)
    rows, n_rows, n_abs, rest, nos = mod.parse(REAL_HEAD, 1)
    assert (n_rows, n_abs) == (4, 4)
    assert rest == b"# tracer: function_graph\n#\n\n"  # one empty line stands for the run of taken lines
    assert list(memoryview(nos).cast("q")) == [1, 2, -1]


# ---------------------------------------------------------------- real captures

def _zst(path):
    import zstandard

    return zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=1 << 30)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "sample_traces").glob("*.funcgraph.txt.zst")))
def test_sample_traces_equal(name):
    blob = _zst(ROOT / "sample_traces" / name)
    t = assert_same(blob)
    assert t is not None and t.num_rows > 0
    if len(blob) > 1 << 21:  # chunk boundaries everywhere in the big one
        assert_same(blob, 1 << 20)
    else:
        assert_same(blob, 4096)


def test_corpus_function_graph_files_equal(corpus):
    paths = sorted(p for p in (corpus / "function-graph").iterdir() if p.is_file())
    assert paths
    for p in paths:
        blob = p.read_bytes()
        for chunk in (None, 200, 4096):
            assert_same(blob, chunk)

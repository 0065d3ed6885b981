"""The walk views on hand-written text traces (laid out as the tracers print them, or real lines) through the real
parsers."""
from __future__ import annotations

from ksmtrace import api
from ksmtrace.store import Store

from walks_support import query

# function_graph (filtered to lock functions and callbacks, retval 6.13+, one slow window),
# with abstime + proc + tail; completed with the rest of the slow window
FG_TEXT = """\
# tracer: function_graph
#
#     TIME        CPU  TASK/PID         DURATION                  FUNCTION CALLS
#      |          |     |    |           |   |                     |   |   |   |
  458.300000 |   1) ksm_rma-10396  |               |  rmap_walk_ksm() { /* <-try_to_migrate+0x8e/0xc0 */
  458.300001 |   1) ksm_rma-10396  |   0.191 us    |    down_read_trylock(); /* ret=0x1 */
  458.300132 |   1) ksm_rma-10396  |   2.410 us    |    try_to_migrate_one(); /* ret=0x1 */
  458.300132 |   1) ksm_rma-10396  |   0.110 us    |    folio_not_mapped(); /* ret=0x0 */
  458.300133 |   1) ksm_rma-10396  |   0.168 us    |    up_read();
  458.300133 |   1) ksm_rma-10396  |   0.175 us    |    down_read_trylock(); /* ret=0x0 */
  458.300134 |   1) ksm_rma-10396  |               |    down_read() {
  458.300134 |   1) ksm_rma-10396  | # 7950.321 us |      rwsem_down_read_slowpath();
  458.308085 |   1) ksm_rma-10396  | # 7951.002 us |    } /* down_read */
  458.308090 |   1) ksm_rma-10396  |   1.000 us    |    try_to_migrate_one(); /* ret=0x1 */
  458.308092 |   1) ksm_rma-10396  |   0.100 us    |    up_read();
  458.334020 |   1) ksm_rma-10396  | * 34020.00 us |  } /* rmap_walk_ksm ret=0xffffea0004a35e40 */
"""

# perf script of perf record -g -e migrate:set_migration_pte, and real perf lock lines
PERF_TEXT = """\
ksm_rmap_repro  9000 [001]   375.500000: compaction:mm_compaction_begin: zone_start=0x1 migrate_pfn=0x1 free_pfn=0xe00 zone_end=0x1000, mode=sync
\tffffffff815d2dca __compact_zone+0x1a ([kernel.kallsyms])

ksm_rmap_repro  9000 [001]   375.507736: migrate:set_migration_pte: addr=5643534d7000, pte=f7ffe7ffde460600 order=0
\tffffffff81604e91 try_to_migrate_one+0x6a1 ([kernel.kallsyms])
\tffffffff8166ad11 rmap_walk_ksm+0x121 ([kernel.kallsyms])
\tffffffff816051fe try_to_migrate+0x8e ([kernel.kallsyms])
\tffffffff8166c877 migrate_pages_batch+0x3f7 ([kernel.kallsyms])

ksm_rmap_repro  9000 [001]   375.507900: migrate:set_migration_pte: addr=5643534d8000, pte=f7ffe7ffde460600 order=0
\tffffffff81604e91 try_to_migrate_one+0x6a1 ([kernel.kallsyms])
\tffffffff8166ad11 rmap_walk_ksm+0x121 ([kernel.kallsyms])
\tffffffff816051fe try_to_migrate+0x8e ([kernel.kallsyms])
\tffffffff8166c877 migrate_pages_batch+0x3f7 ([kernel.kallsyms])

ksm_rmap_repro 11216 [001]   516.827366: lock:contention_begin: 0xffff88811c022d70 (flags=READ)
\tffffffff821ff2a5 rwsem_down_read_slowpath+0x1a5 ([kernel.kallsyms])
\tffffffff821ff4f4 down_read+0x44 ([kernel.kallsyms])
\tffffffff8166aca1 rmap_walk_ksm+0xb1 ([kernel.kallsyms])
\tffffffff816051fe try_to_migrate+0x8e ([kernel.kallsyms])

ksm_rmap_repro 11216 [001]   516.830000: lock:contention_end: 0xffff88811c022d70 (ret=0)
\tffffffff821ff2a5 rwsem_down_read_slowpath+0x1a5 ([kernel.kallsyms])

ksm_rmap_repro  9000 [001]   517.000000: compaction:mm_compaction_end: zone_start=0x1 migrate_pfn=0x1 free_pfn=0xe00 zone_end=0x1000, mode=sync status=complete
\tffffffff815d2dca __compact_zone+0x1a ([kernel.kallsyms])

"""


def _ingest(tmp_path, name, text) -> Store:
    p = tmp_path / name
    p.write_text(text)
    store = Store(tmp_path / "store")
    api.ingest([str(p)], store=store, label="t")
    return store


def test_funcgraph_text_slow_path(tmp_path):
    store = _ingest(tmp_path, "fg.txt", FG_TEXT)
    (w,) = query(store, "SELECT * FROM walks")
    # walk id = line 5 (its entry line); duration printed 34020.00 us
    # window 1: 458.300001 + 0.191 us = 458300001191 -> up_read 458300133000: 131809 ns
    # window 2 (slow): down_read returns at 458308085000 -> up_read 458308092000: 7000 ns
    assert (w["walk_id"], w["comm"], w["cpu"], w["duration_ns"], w["complete"], w["caller"], w["n_windows"],
            w["max_hold_ns"], w["total_hold_ns"], w["rmap_one"], w["slow_windows"], w["iterations"]) == (
        5, "ksm_rma", 1, 34020000, True, "try_to_migrate", 2, 131809, 138809, 2, 1, None)


def test_perf_text_callchain_walk_and_lock_wait(tmp_path):
    store = _ingest(tmp_path, "perf.txt", PERF_TEXT)
    w = query(store, "SELECT * FROM walks WHERE evidence = 'perf-callchain'")
    # one walk of two set_migration_pte events: 375.507900 - 375.507736 = 164 us (a lower bound)
    assert [(x["pid"], x["caller"], x["n_events"], x["duration_ns"], x["max_hold_ns"], x["complete"]) for x in w] == [
        (9000, "try_to_migrate", 2, 164000, 164000, True)]
    (lw,) = query(store, "SELECT * FROM lock_waits")
    # 516.830000 - 516.827366 = 2634 us; the lock is seen under rmap_walk_ksm -> anon_vma lock
    assert (lw["pid"], lw["flags"], lw["wait_ns"], lw["anon_vma_lock"], lw["caller"], lw["ret"]) == (
        11216, "READ", 2634000, True, "rmap_walk_ksm", 0)


def test_corpus_perf_lock_begins_without_ends_are_counted_not_paired(tmp_path, corpus):
    """Real powerpc perf lock lines: contention_begin only; with the [unknown] frame."""
    src = corpus / "snippets" / "lkml__perf-lock-contention_begin-powerpc.txt"
    store = Store(tmp_path / "store")
    api.ingest([str(src)], store=store, label="real")
    n_begin = sum(1 for line in src.read_text().splitlines() if "lock:contention_begin" in line)
    assert n_begin > 0
    assert query(store, "SELECT count(*) AS n FROM lock_waits")[0]["n"] == 0
    (u,) = query(store, "SELECT unpaired_begins, unpaired_ends FROM _lock_waits_unpaired")
    assert (u["unpaired_begins"], u["unpaired_ends"]) == (n_begin, 0)
    assert query(store, "SELECT count(*) AS n FROM walks")[0]["n"] == 0

"""lock_waits.anon_vma_lock: only a walker's own READ wait on the rwsem marks an anon_vma lock.

A spinlock contended deeper inside a walk (the page-table lock in try_to_migrate_one) also has
rmap_walk_ksm in its callchain; its address must not be taken for the anon_vma root rwsem.
"""
from __future__ import annotations

import json

from conftest import run_cli

# perf script text (perf 6.1 widths): a walker READ wait on rwsem A, a writer WRITE wait on A,
# a PTL spin wait on B inside the walk, and an unrelated WRITE wait on C.
PERF = """\
ksm_rmap_repro 11216 [001]   516.827366: lock:contention_begin: 0xffff88811c022d70 (flags=READ)
\tffffffff821ff2a5 rwsem_down_read_slowpath+0x1a5 ([kernel.kallsyms])
\tffffffff821ff4f4 down_read+0x44 ([kernel.kallsyms])
\tffffffff8166aca1 rmap_walk_ksm+0xb1 ([kernel.kallsyms])
\tffffffff816051fe try_to_migrate+0x8e ([kernel.kallsyms])

ksm_rmap_repro 11216 [001]   516.827466: lock:contention_end: 0xffff88811c022d70 (ret=0)
\tffffffff821ff2a5 rwsem_down_read_slowpath+0x2a5 ([kernel.kallsyms])

    mprotect-toggle 11217 [000]   516.827400: lock:contention_begin: 0xffff88811c022d70 (flags=WRITE)
\tffffffff821fe111 rwsem_down_write_slowpath+0x111 ([kernel.kallsyms])
\tffffffff821fe222 down_write+0x22 ([kernel.kallsyms])
\tffffffff81633333 vma_prepare+0x8e ([kernel.kallsyms])

    mprotect-toggle 11217 [000]   516.835400: lock:contention_end: 0xffff88811c022d70 (ret=0)
\tffffffff821fe111 rwsem_down_write_slowpath+0x311 ([kernel.kallsyms])

ksm_rmap_repro 11216 [001]   516.840000: lock:contention_begin: 0xffff888100aabb00 (flags=SPIN)
\tffffffff821f0001 __pv_queued_spin_lock_slowpath+0x61 ([kernel.kallsyms])
\tffffffff821f0002 _raw_spin_lock+0x22 ([kernel.kallsyms])
\tffffffff81510003 __pte_offset_map_lock+0x83 ([kernel.kallsyms])
\tffffffff81600004 page_vma_mapped_walk+0x94 ([kernel.kallsyms])
\tffffffff81604e91 try_to_migrate_one+0x6a1 ([kernel.kallsyms])
\tffffffff8166ad11 rmap_walk_ksm+0x121 ([kernel.kallsyms])

ksm_rmap_repro 11216 [001]   516.840010: lock:contention_end: 0xffff888100aabb00 (ret=0)
\tffffffff821f0001 __pv_queued_spin_lock_slowpath+0x161 ([kernel.kallsyms])

    mprotect-toggle 11217 [000]   516.850000: lock:contention_begin: 0xffff8881000c0c00 (flags=WRITE)
\tffffffff821fe111 rwsem_down_write_slowpath+0x111 ([kernel.kallsyms])
\tffffffff821fe222 down_write+0x22 ([kernel.kallsyms])
\tffffffff81644444 do_mprotect_pkey+0xc7 ([kernel.kallsyms])

    mprotect-toggle 11217 [000]   516.850100: lock:contention_end: 0xffff8881000c0c00 (ret=-4)
\tffffffff821fe111 rwsem_down_write_slowpath+0x311 ([kernel.kallsyms])

"""


def test_only_the_walkers_rwsem_is_the_anon_vma_lock(tmp_path):
    p = tmp_path / "lock.perf.txt"
    p.write_text(PERF)
    store = str(tmp_path / "store")
    r = run_cli("ingest", str(p), "--store", store)
    assert r.code == 0, r.err
    assert "0 malformed" in r.out
    r = run_cli("sql", "SELECT pid, flags, lock_addr, wait_ns, anon_vma_lock, caller, interrupted FROM lock_waits "
                "ORDER BY start_ns", "--store", store, "-f", "json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert [(w["flags"], w["wait_ns"], w["anon_vma_lock"], w["caller"], w["interrupted"]) for w in rows] == [
        ("READ", 100_000, True, "rmap_walk_ksm", False),        # 516.827466 - 516.827366
        ("WRITE", 8_000_000, True, "vma_prepare", False),       # a writer queued behind the walker's hold
        ("SPIN", 10_000, False, "__pte_offset_map_lock", False),  # PTL inside the walk: not the anon_vma lock
        ("WRITE", 100_000, False, "do_mprotect_pkey", True),    # ret=-4: interrupted
    ]

"""In-kernel counting with bpftrace (evidence e, counter lines): one line per anon_vma lock window of every
rmap_walk_ksm() walk, at any layout size (nothing per iteration leaves the kernel).

The program attaches BTF trampolines (``kfunc:``/``kretfunc:`` in bpftrace 0.17-0.19, ``fentry:``/``fexit:``
from 0.20) to rmap_walk_ksm, the rwsem read-lock calls, the interval-tree iterators and the rmap_one
callbacks, and prints each window as an ftrace-style line, so ``ksmtrace ingest`` reads it with the ftrace
parser and queries/16_counter_windows.sql turns it into a lock window::

    ksm_rmap_repro-263     [001] ..... 1234.567890: ksm_window: hold_ns=81234 iterations=201 rmap_one=1 skip_addr=199 skip_mm=1 walk=3 window=1

and after each walk one ``ksm_walk:`` summary line (walk_ns, windows, cb = the rmap_one callback, which
names the walk's caller).

The address/mm skip split follows the walk's own loop (mm/ksm.c): window k of a walk holds the lock for
the k-th rmap_item of the stable node's hlist (the list is walked twice: pass 0, then pass 1 looking for
new forks), so the program steps through that list itself and applies the loop's two tests to every
chain the iterator returns: ``addr`` outside [vm_start, vm_end) is an address skip, else
``(item->mm == vma->vm_mm) == pass`` is an mm skip. Stepping needs the rmap_item's layout: the hlist node
sits ``HLIST_OFFSET`` bytes into the item (64-bit, 6.1 to 6.18); the program checks ``item->head`` (the
item's stable node) on every step and prints ``skip_addr=-1 skip_mm=-1`` for a window when that check fails,
which ingest reads as unknown. ``invalid_vma`` rejections (folio_referenced only) would count as neither.
"""
from __future__ import annotations

import re
import shutil
import subprocess

from . import env

HLIST_OFFSET = 48
#: rmap_one callbacks probed (the ones missing from a kernel are left out when the program is built)
CALLBACKS = ("try_to_migrate_one", "remove_migration_pte", "try_to_unmap_one", "folio_referenced_one",
             "page_idle_clear_pte_refs_one")


def bpftrace_version(exe: str | None = None) -> tuple[int, int] | None:
    exe = exe or shutil.which("bpftrace")
    if not exe:
        return None
    try:
        p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"v?(\d+)\.(\d+)", p.stdout + p.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else None


def struct_names(kernel: str | None = None) -> tuple[str, str]:
    """(rmap item, stable node) struct names: ksm_rmap_item / ksm_stable_node from 6.2 on."""
    rel = kernel or env.kernel_release()
    m = re.match(r"(\d+)\.(\d+)", rel)
    old = bool(m) and (int(m.group(1)), int(m.group(2))) < (6, 2)
    return ("rmap_item", "stable_node") if old else ("ksm_rmap_item", "ksm_stable_node")


def program(version: tuple[int, int] | None = (0, 17), kernel: str | None = None,
            callbacks: tuple[str, ...] = CALLBACKS, comm: str | None = None) -> str:
    """The bpftrace program text for this bpftrace version and kernel."""
    new = version is None or version >= (0, 20)
    ent, ret = ("fentry", "fexit") if new else ("kfunc", "kretfunc")
    arg = "args." if new else "args->"
    item, node = struct_names(kernel)
    only = f' && comm == "{comm}"' if comm else ""
    start = f"""  @lk[tid] = nsecs; @win[tid]++; @itw[tid] = 0; @onew[tid] = 0; @sa[tid] = 0; @sm[tid] = 0;
  // the rmap_item of this window: the next one on the stable node's hlist (wrapping = pass 1)
  if (@item[tid] == 0) {{
    $h = (uint64)((struct {node} *)@node[tid])->hlist.first;
  }} else {{
    $h = *(uint64 *)(@item[tid] + {HLIST_OFFSET});
    if ($h == 0) {{
      @pass[tid] = 1;
      $h = (uint64)((struct {node} *)@node[tid])->hlist.first;
    }}
  }}
  @item[tid] = $h == 0 ? 0 : $h - {HLIST_OFFSET};
  if (@item[tid] == 0) {{ @ok[tid] = 0; }}
  else if ((uint64)((struct {item} *)@item[tid])->head != @node[tid]) {{ @ok[tid] = 0; }}"""
    cb_probes = "\n".join(f"{ent}:{c} /@t0[tid]/ {{ @one[tid]++; @onew[tid]++; @cb[tid] = {i + 1}; }}"
                           for i, c in enumerate(callbacks))
    summary = "\n".join(
        f"""  {"if" if i == 0 else "else if"} (@cb[tid] == {i + 1}) {{ printf("%16s-%-7d [%03d] ..... %llu.%06llu: ksm_walk: walk_ns=%llu windows=%llu iters=%llu rmap_one=%llu hold_max_ns=%llu cb={c}\\n", comm, tid, cpu, $n / 1000000000, ($n % 1000000000) / 1000, $n - @t0[tid], @win[tid], @it[tid], @one[tid], @maxh[tid]); }}"""
        for i, c in enumerate(callbacks))
    summary += """
  else { printf("%16s-%-7d [%03d] ..... %llu.%06llu: ksm_walk: walk_ns=%llu windows=%llu iters=%llu rmap_one=%llu hold_max_ns=%llu cb=none\\n", comm, tid, cpu, $n / 1000000000, ($n % 1000000000) / 1000, $n - @t0[tid], @win[tid], @it[tid], @one[tid], @maxh[tid]); }"""
    maps = ("t0", "node", "it", "item", "pass", "win", "one", "maxh", "cb", "ok", "lk", "itw", "onew", "sa", "sm")
    dels = " ".join(f"delete(@{m}[tid]);" for m in maps)
    clears = " ".join(f"clear(@{m});" for m in maps + ("walks",))
    return f"""\
// ksmtrace: rmap_walk_ksm lock windows counted in the kernel (evidence e). Generated for bpftrace
// {'>= 0.20' if new else '0.17-0.19'} and struct {item}; see ksmtrace/capture/bpftrace.py.
{ent}:rmap_walk_ksm /@t0[tid] == 0{only}/ {{
  @t0[tid] = nsecs; @walks[tid]++;
  @node[tid] = (uint64){arg}folio->mapping & ~(uint64)3;
  @it[tid] = 0; @item[tid] = 0; @pass[tid] = 0; @win[tid] = 0; @one[tid] = 0; @maxh[tid] = 0; @cb[tid] = 0;
  @ok[tid] = 1;
}}
{ret}:down_read_trylock /@t0[tid] && (uint64)retval != 0/ {{
{start}
}}
{ret}:down_read /@t0[tid]/ {{
{start}
}}
{ret}:anon_vma_interval_tree_iter_first, {ret}:anon_vma_interval_tree_iter_next
    /@t0[tid] && @lk[tid] && (uint64)retval != 0/ {{
  @it[tid]++; @itw[tid]++;
  if (@ok[tid]) {{
    $vma = ((struct anon_vma_chain *)retval)->vma;
    $ri = (struct {item} *)@item[tid];
    $addr = $ri->address & ~(uint64)4095;
    if ($addr < $vma->vm_start || $addr >= $vma->vm_end) {{
      @sa[tid]++;
    }} else {{
      if ((((uint64)$ri->mm == (uint64)$vma->vm_mm) ? 1 : 0) == @pass[tid]) {{ @sm[tid]++; }}
    }}
  }}
}}
{cb_probes}
{ent}:up_read /@t0[tid] && @lk[tid]/ {{
  $n = nsecs; $h = $n - @lk[tid]; @lk[tid] = 0;
  if ($h > @maxh[tid]) {{ @maxh[tid] = $h; }}
  if (@ok[tid]) {{ $sa = (int64)@sa[tid]; $sm = (int64)@sm[tid]; }} else {{ $sa = -1; $sm = -1; }}
  printf("%16s-%-7d [%03d] ..... %llu.%06llu: ksm_window: hold_ns=%llu iterations=%llu rmap_one=%llu skip_addr=%lld skip_mm=%lld walk=%llu window=%llu\\n", comm, tid, cpu, $n / 1000000000, ($n % 1000000000) / 1000, $h, @itw[tid], @onew[tid], $sa, $sm, @walks[tid], @win[tid]);
}}
{ret}:rmap_walk_ksm /@t0[tid]/ {{
  $n = nsecs;
{summary}
  {dels}
}}
END {{ {clears} }}
"""


def recipe() -> str:
    """The ``capture --print`` section: the same program, written out and run as printed."""
    prog = program((0, 17), kernel="6.1")
    prog20 = program((0, 20), kernel="6.2")
    return f"""\
## bpftrace counters (evidence e; needs BPF trampolines and BTF: /sys/kernel/btf/vmlinux). One counter line
## per lock window at any layout size. bpftrace 0.17-0.19 (Debian 12) and kernels before 6.2 (struct rmap_item):
cat > ksm_windows.bt <<'BT'
{prog}BT
# bpftrace >= 0.20 spells the probes fentry:/fexit: and arguments args.x; kernels >= 6.2 name the structs
# ksm_rmap_item / ksm_stable_node: 'ksmtrace capture --method bpftrace' writes the right variant. E.g.:
#   {prog20.splitlines()[2]}
bpftrace ksm_windows.bt > "$OUT" & BT=$!
sleep 5                                         # attaching takes a while (a minute under QEMU TCG)
$W; kill -INT $BT; wait $BT
"""

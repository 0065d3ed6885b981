"""ksmtrace repro / doctor / capture: thin wrappers over ksmtrace.api (and so ksmtrace.capture)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def repro(
    vmas: int = typer.Option(..., "--vmas", help="VMAs to split the region into (mprotect on every other page); "
                             "1 = the unsplit control."),
    pages: Optional[int] = typer.Option(None, "--pages", help="Pages in the region (default: --vmas, or 20000 "
                                        "with --vmas 1)."),
    forks: int = typer.Option(0, "--forks", help="Children forked after merging; they pause() until the end."),
    trigger: str = typer.Option("compact", "--trigger", help="What makes the kernel walk the KSM pages: compact, "
                                "move-pages (needs 2 NUMA nodes) or none."),
    hold: float = typer.Option(0.0, "--hold", help="Keep the layout alive this many seconds after the trigger."),
    compact_passes: int = typer.Option(1, "--compact-passes", help="Compaction passes per attempt while no KSM "
                                       "page moved."),
    attempts: int = typer.Option(1, "--attempts", help="Rebuild the region on new pages while compaction moved "
                                 "no KSM page."),
    pages_to_scan: int = typer.Option(5000, "--pages-to-scan", help="KSM pages_to_scan while merging (restored)."),
    sleep_ms: int = typer.Option(10, "--sleep-ms", help="KSM sleep_millisecs while merging (restored)."),
    merge_timeout: float = typer.Option(180.0, "--merge-timeout", help="Seconds to wait for KSM merging."),
    move_ksm_pages: Optional[int] = typer.Option(None, "--move-ksm-pages", help="With --trigger move-pages: "
                                                 "move only the first N KSM pages (default: all)."),
    addr: Optional[str] = typer.Option(None, "--addr", help="Map the region at this address (e.g. 0x600000000000), "
                                       "so a capture can filter on it."),
) -> None:
    """Build the KSM split-VMA layout, merge it, and trigger rmap walks (needs root).

    Prints run metadata (pid, pages, VMAs, ksm_rmap_items, K KSM pages) and a 'repro-meta: {json}' line
    that 'ksmtrace capture' keeps in its sidecar. Restores every KSM knob and vm.max_map_count it changed,
    and reaps its children, also on Ctrl-C.
    """
    from .. import api

    api.repro(vmas=vmas, pages=pages, forks=forks, trigger=trigger, hold=hold, compact_passes=compact_passes,
              attempts=attempts, pages_to_scan=pages_to_scan, sleep_ms=sleep_ms, merge_timeout=merge_timeout,
              move_ksm_pages=move_ksm_pages, addr=addr)


def doctor(
    fmt: str = typer.Option("text", "--format", "-f", help="text or json."),
) -> None:
    """Report what this kernel can record for ksmtrace, and the next command to run."""
    from .. import api

    print(api.doctor(fmt))


def capture(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Trace text file to write (FILE.meta.json "
                                       "beside it records provenance)."),
    method: str = typer.Option("auto", "--method", "-m", help="auto, counters (trace_printk counter lines of "
                               "an instrumented kernel, e.g. kernel/patches/counters.patch), rmap-tracepoints, "
                               "function-graph, function-graph-locks, kprobes, perf-callchain or events."),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", help="Seconds to record when no COMMAND "
                                             "is given."),
    print_only: bool = typer.Option(False, "--print", help="Print the commands for capturing by hand instead of "
                                    "running them (no root needed)."),
    keep_data: bool = typer.Option(True, "--keep-data/--no-keep-data", help="Keep perf.data / trace.dat beside "
                                   "the text."),
    filter_addr: Optional[str] = typer.Option(None, "--filter-addr", help="START-END: record only migration "
                                              "PTE events of this address range."),
    buffer_kb: Optional[int] = typer.Option(None, "--buffer-kb", help="tracefs buffer per CPU (KiB); default: sized "
                                            "for the repro layout (function-graph), else 16384."),
    command: Optional[List[str]] = typer.Argument(None, help="Workload to run while recording (after --)."),
) -> None:
    """Record a trace ksmtrace ingests, with the best method this kernel offers (needs root).

    Example: ksmtrace capture --out split.txt -- ksmtrace repro --vmas 20000
    """
    from .. import api

    got = api.capture(out=out, method=method, duration=duration, print_only=print_only, keep_data=keep_data,
                      filter_addr=filter_addr, buffer_kb=buffer_kb, command=command)
    if print_only:
        print(got, end="")


def register(app: typer.Typer) -> None:
    app.command("repro")(repro)
    app.command("doctor")(doctor)
    app.command("capture", context_settings={"allow_interspersed_args": False})(capture)

"""ksmtrace ab: a thin wrapper over ksmtrace.api.ab."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def ab(
    before: str = typer.Option(..., "--before", "-b", help="Kernel image of the 'before' side (a bzImage, a "
                               "kernel build tree, or a /boot/vmlinuz-*)."),
    after: str = typer.Option(..., "--after", "-a", help="Kernel image of the 'after' side."),
    runs: int = typer.Option(6, "--runs", "-n", help="Boots per side (one run each; interleaved A B A B). Two or "
                             "more per side make the run the statistical unit of the report; 6 is the fewest "
                             "that give it a 95% confidence interval over runs."),
    vmas: int = typer.Option(2000, "--vmas", help="repro --vmas: VMAs on the one anon_vma."),
    pages: Optional[int] = typer.Option(None, "--pages", help="repro --pages (default: repro's)."),
    forks: int = typer.Option(0, "--forks", help="repro --forks."),
    trigger: str = typer.Option("move-pages", "--trigger", help="repro --trigger: move-pages or compact."),
    method: str = typer.Option("auto", "--method", "-m", help="capture --method in the guest: auto (counters on "
                               "an instrumented kernel, else the best the kernel offers), counters, "
                               "rmap-tracepoints, function-graph, kprobes, perf-callchain or events."),
    label_before: str = typer.Option("before", "--label-before", help="Label of the before runs."),
    label_after: str = typer.Option("after", "--label-after", help="Label of the after runs."),
    out: Path = typer.Option(Path("ksmtrace-ab"), "--out", "-o", help="Folder for the traces, the store and the "
                             "report (must not hold an earlier ab run)."),
    memory: str = typer.Option("3G", "--memory", help="Guest memory (split over the NUMA nodes)."),
    cpus: int = typer.Option(2, "--cpus", help="Guest CPUs."),
    kvm: str = typer.Option("auto", "--kvm", help="auto, on or off (TCG emulation)."),
    timeout: float = typer.Option(1800.0, "--timeout", help="Seconds per boot before the guest is killed."),
    buffer_kb: Optional[int] = typer.Option(None, "--buffer-kb", help="capture --buffer-kb: tracefs buffer per "
                                            "CPU (KiB) [default: capture's sizing for the method and layout]."),
    page_type: str = typer.Option("ksm", "--page-type", help="Walks to compare: ksm, anon, file or all."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Echo every line of the guests' output."),
) -> None:
    """Boot two kernels in turn (A B A B ...), run the reproducer under capture in each boot, ingest each boot
    as one run under its side's label and print the before/after report.

    Example: ksmtrace ab --before bzImage-unpatched --after bzImage-patched --runs 5 --vmas 2000 --out ab-1

    Traces, the store (DIR/store) and the report (DIR/report.*) stay in --out. A boot that fails is reported and retried once; a second failure stops with an error. Needs root in the guest only (virtme-ng boots it as root), qemu-system-x86 and virtme-ng. Under TCG (no KVM) expect minutes per boot: see the README.
    """  # noqa: E501 (one line per paragraph: typer keeps the line breaks)
    from .. import api

    res = api.ab(before, after, runs=runs, vmas=vmas, pages=pages, forks=forks, trigger=trigger, method=method,
                 label_before=label_before, label_after=label_after, out=out, memory=memory, cpus=cpus, kvm=kvm,
                 timeout=timeout, buffer_kb=buffer_kb, page_type=page_type, verbose=verbose)
    sys.stdout.write(res.report_text.rstrip("\n") + "\n")
    for p in res.report_files:
        print(f"wrote {p}", file=sys.stderr)
    print(f"ab: traces in {res.out / 'traces'}, store {res.store} (ksmtrace report --store {res.store} "
          f"--before {label_before} --after {label_after})", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("ab")(ab)

"""ksmtrace ab: boot two kernels in turn (A B A B ...), record the reproducer in each boot, compare.

One boot = one run: the guest runs ``ksmtrace capture --out TRACE --method M -- ksmtrace repro --vmas N
--trigger move-pages`` (the host's ksmtrace, through the shared root filesystem), the host ingests TRACE
as one run under the side's label, and at the end ``ksmtrace report`` compares the two labels with the
run as the statistical unit. Everything stays in ``--out DIR``::

    DIR/ab.json             options, kernel images (size, sha256), how guests boot (KVM/TCG, added kernel
                            options), every boot (attempts, status, times)
    DIR/traces/LABEL-NN.txt one trace per boot (+ .meta.json provenance, .bufstats.txt); a failed
                            attempt's files are renamed LABEL-NN.failed-K.*
    DIR/store/              the ksmtrace store the report reads (ksmtrace report --store DIR/store ...)
    DIR/report.{txt,lkml.txt,md,html,json}

The boots alternate A B A B so that slow drift of the host (other load, thermal) hits both sides alike.
A boot that fails (the guest does not boot or times out, the command fails, or the trace holds no KSM
walk) is reported and retried once; a second failure stops the run with an error, keeping everything
recorded so far.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import KsmtraceError

TRIGGERS = ("move-pages", "compact")
METHODS = ("auto", "counters", "rmap-tracepoints", "function-graph", "kprobes", "perf-callchain", "events")
REPORT_FILES = (("text", "report.txt"), ("lkml", "report.lkml.txt"), ("markdown", "report.md"),
                ("html", "report.html"), ("json", "report.json"))


class AbError(KsmtraceError):
    """ksmtrace ab cannot start, or a boot failed twice."""


@dataclass
class AbOptions:
    before: str | os.PathLike
    after: str | os.PathLike
    runs: int = 6                     # boots per side (6: what the report needs for a 95% CI over runs)
    vmas: int = 2000
    pages: int | None = None          # repro --pages (default: repro's)
    forks: int = 0
    trigger: str = "move-pages"
    method: str = "auto"
    label_before: str = "before"
    label_after: str = "after"
    out: str | os.PathLike = "ksmtrace-ab"
    memory: str = "3G"
    cpus: int = 2
    numa_nodes: int = 2
    kvm: str = "auto"
    timeout: float = 1800.0           # per boot, boot included
    buffer_kb: int | None = None      # capture --buffer-kb (default: capture's own sizing)
    page_type: str = "ksm"
    verbose: bool = False             # echo every guest line

    def validate(self) -> "AbOptions":
        if self.runs < 1:
            raise AbError(f"--runs must be at least 1 (got {self.runs}); 2 or more per side make the run the "
                          f"statistical unit")
        if self.vmas < 1:
            raise AbError(f"--vmas must be at least 1 (got {self.vmas})")
        if self.trigger not in TRIGGERS:
            raise AbError(f"--trigger must be one of {', '.join(TRIGGERS)} (got {self.trigger!r})")
        if self.method not in METHODS:
            raise AbError(f"--method must be one of {', '.join(METHODS)} (got {self.method!r})")
        for opt, lab in (("--label-before", self.label_before), ("--label-after", self.label_after)):
            if not lab or not lab.strip() or any(c in lab for c in "/\\\0\n") or lab.startswith("."):
                raise AbError(f"{opt} {lab!r}: give a non-empty label without slashes or newlines")
        if self.label_before == self.label_after:
            raise AbError(f"--label-before and --label-after are both {self.label_before!r}; they must differ "
                          f"(an A/A run of one kernel still uses two labels)")
        if self.trigger == "move-pages" and self.numa_nodes < 2:
            raise AbError("--trigger move-pages needs two NUMA nodes in the guest (--numa-nodes 2)")
        from .report import PAGE_TYPES

        if self.page_type not in PAGE_TYPES:
            raise AbError(f"--page-type must be one of {', '.join(PAGE_TYPES)} (got {self.page_type!r})")
        if self.timeout <= 0:
            raise AbError(f"--timeout must be positive seconds (got {self.timeout})")
        return self


@dataclass
class Boot:
    """One boot of one side: the run it became, or why it failed."""

    seq: int                          # 1-based position in the A B A B order
    side: str                         # "before" or "after"
    label: str
    index: int                        # 1-based boot number within the side
    trace: str
    attempts: list[dict] = field(default_factory=list)   # {"attempt", "ok", "error", "elapsed_s", ...}
    run_id: str | None = None
    ksm_walks: int | None = None
    elapsed_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.run_id is not None


@dataclass
class AbResult:
    out: Path
    store: Path
    boots: list[Boot]
    report_files: list[Path]
    report_text: str
    manifest: Path


def image_info(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return {"path": str(path), "size": path.stat().st_size, "sha256": h.hexdigest()}


def guest_command(opts: AbOptions, trace: Path) -> list[str]:
    """What one boot runs in the guest: the capture around the reproducer."""
    repro = ["ksmtrace", "repro", "--vmas", str(opts.vmas), "--trigger", opts.trigger]
    if opts.pages is not None:
        repro += ["--pages", str(opts.pages)]
    if opts.forks:
        repro += ["--forks", str(opts.forks)]
    buf = ["--buffer-kb", str(opts.buffer_kb)] if opts.buffer_kb else []
    return ["ksmtrace", "capture", "--out", str(trace), "--method", opts.method, *buf, "--", *repro]


def order(runs: int) -> list[tuple[str, int]]:
    """A B A B ...: (side, index within side)."""
    return [(side, i) for i in range(1, runs + 1) for side in ("before", "after")]


class _Progress:
    """Turns guest lines into the boot / merge / capture progress lines of one attempt."""

    def __init__(self, say: Callable[[str], None], prefix: str, verbose: bool) -> None:
        self.say, self.prefix, self.verbose = say, prefix, verbose
        self.t0 = time.monotonic()
        self.booted = False
        self.last_error: str | None = None

    def line(self, raw: str) -> None:
        from .safe_text import terminal

        text = terminal(raw.strip())
        if self.verbose:
            self.say(f"{self.prefix}   | {text}")
        if not self.booted and (text.startswith(("repro:", "capture:", "ksmtrace:")) or self.verbose):
            self.booted = True
            self.say(f"{self.prefix} boot: guest up, command running after {time.monotonic() - self.t0:.0f} s")
        if self.verbose:
            return
        if text.startswith("repro: merged:") or text.startswith("repro: warning"):
            self.say(f"{self.prefix} merge: {text[len('repro: '):]}")
        elif text.startswith(("repro: move_pages", "repro: compaction pass")):
            self.say(f"{self.prefix} trigger: {text[len('repro: '):]}")
        elif text.startswith("capture:"):
            self.say(f"{self.prefix} capture: {text[len('capture: '):]}")
        elif text.startswith("ksmtrace: error:"):
            self.last_error = text
            self.say(f"{self.prefix} guest {text}")


def _guest_boot(kvm) -> dict:
    """ab.json's record of how the guests boot: the accelerator and the kernel options ksmtrace adds."""
    from .capture import vm

    try:
        use_kvm = vm.resolve_kvm(kvm)
    except KsmtraceError as e:  # --kvm on where KVM cannot work: the first boot reports it
        return {"accelerator": "kvm", "boot_options": vm.boot_options(True), "problem": str(e)}
    return {"accelerator": "kvm" if use_kvm else "tcg", "boot_options": vm.boot_options(use_kvm)}


def _rename_failed(trace: Path, attempt: int) -> list[str]:
    """Keep a failed attempt's files beside the good ones: LABEL-NN.failed-K.txt (+ sidecars)."""
    kept = []
    base = trace.name[:-len(".txt")] if trace.name.endswith(".txt") else trace.name
    for p in sorted(trace.parent.glob(trace.name + "*")) + sorted(trace.parent.glob(base + ".partial*")):
        rest = p.name[len(base):]
        newp = p.with_name(f"{base}.failed-{attempt}{rest}")
        p.replace(newp)
        kept.append(newp.name)
    return kept


def _ksm_walks(store: Path, run_id: str, page_type: str) -> int:
    from . import api

    pt = "" if page_type == "all" else f" AND page_type = '{page_type}'"
    df = api.sql(f"SELECT count(*) AS n FROM walks WHERE run_id = '{run_id}'{pt}", store)
    return int(df["n"].iloc[0])


def run(opts: AbOptions, *, run_in_vm: Callable | None = None, say: Callable[[str], None] | None = None) -> AbResult:
    """Boot, capture, ingest each side ``opts.runs`` times, interleaved; then the before/after report."""
    from . import api
    from .capture import vm
    from .report import build_report, render, write

    opts.validate()
    say = say or (lambda s: print(s, file=sys.stderr, flush=True))
    runner = run_in_vm or vm.run_in_vm
    images = {"before": vm.find_kernel(opts.before), "after": vm.find_kernel(opts.after)}
    labels = {"before": opts.label_before, "after": opts.label_after}
    out = Path(opts.out).expanduser().resolve()
    manifest_p = out / "ab.json"
    if manifest_p.exists():
        raise AbError(f"{out} already holds a ksmtrace ab run ({manifest_p.name}); give another --out or remove it")
    traces, store = out / "traces", out / "store"
    try:
        traces.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AbError(f"--out {out}: {e.strerror or e}") from None
    plan = order(opts.runs)
    boots = [Boot(seq=n + 1, side=side, label=labels[side], index=i,
                  trace=str(traces / f"{labels[side]}-{i:02d}.txt")) for n, (side, i) in enumerate(plan)]
    manifest = {
        "ksmtrace_ab": 1,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in asdict(opts).items()},
        "kernels": {side: {"label": labels[side], **image_info(images[side])} for side in ("before", "after")},
        "host": {"cpus": os.cpu_count(), "kernel": os.uname().release, "kvm": vm.kvm_usable()[1]},
        "guest_command": guest_command(opts, Path("TRACE")),
        # how the guests boot: KVM or TCG emulation, and the kernel options ksmtrace adds (tsc=reliable under
        # TCG keeps the trace clock from stalling); the trace sidecars record the clocksource each boot had
        "guest": _guest_boot(opts.kvm),
        "order": [f"{b.label}#{b.index}" for b in boots],
        "boots": [],
    }

    def save_manifest() -> None:
        manifest["boots"] = [asdict(b) for b in boots]
        manifest_p.write_text(json.dumps(manifest, indent=2, default=str) + "\n")

    save_manifest()
    same = manifest["kernels"]["before"]["sha256"] == manifest["kernels"]["after"]["sha256"]
    say(f"ab: {opts.runs} boot(s) per side, order {' '.join('A' if s == 'before' else 'B' for s, _ in plan)}; "
        f"A = {labels['before']} ({images['before']}), B = {labels['after']} ({images['after']})"
        + ("; same image on both sides (A/A run)" if same else ""))
    say(f"ab: each boot runs: {' '.join(guest_command(opts, Path('TRACE')))}")
    t_all = time.monotonic()
    for b in boots:
        prefix = f"ab: [{b.seq}/{len(boots)}] {b.label} #{b.index}"
        trace = Path(b.trace)
        for attempt in (1, 2):
            if attempt == 2:
                say(f"{prefix} retrying once")
            say(f"{prefix} boot: {images[b.side].name}")
            prog = _Progress(say, prefix, opts.verbose)
            rec: dict = {"attempt": attempt, "ok": False}
            t0 = time.monotonic()
            error = None
            try:
                res = runner(guest_command(opts, trace), kernel=str(images[b.side]), memory=opts.memory,
                             cpus=opts.cpus, numa_nodes=opts.numa_nodes, kvm=opts.kvm, timeout=opts.timeout,
                             cwd=out, on_output=prog.line)
                rec["vm_elapsed_s"] = res.elapsed_s
                rec["returncode"] = res.returncode
                if res.returncode != 0:
                    error = f"the command exited with status {res.returncode}" + (
                        f" ({prog.last_error})" if prog.last_error else "")
                    rec["console_tail"] = res.console_tail.splitlines()[-15:]
                elif not trace.is_file() or trace.stat().st_size == 0:
                    error = f"no trace written ({trace.name} missing or empty)"
            except KeyboardInterrupt:
                raise
            except KsmtraceError as e:  # infrastructure: no boot, timeout, no qemu/vng
                if isinstance(e, vm.VmInterrupted):
                    rec["error"] = str(e)
                    b.attempts.append(rec)
                    save_manifest()
                    raise
                error = str(e)
            if error is None:
                say(f"{prefix} ingest: {trace.name} as label {b.label!r}")
                try:
                    ir = api.ingest([str(trace)], store, label=b.label)[0]
                    n = _ksm_walks(store, ir.run_id, opts.page_type)
                    rec.update(run_id=ir.run_id, events=ir.n_events, malformed=ir.n_malformed,
                               lost=ir.n_lost_events, ksm_walks=n)
                    if n == 0:
                        from .store import Store

                        Store(store).remove_run(ir.run_id)
                        error = (f"the trace holds no {opts.page_type} walk (did KSM merge and the trigger move "
                                 f"pages? see {trace.name}.meta.json)")
                    else:
                        b.run_id, b.ksm_walks = ir.run_id, n
                        say(f"{prefix} ingest: run {ir.run_id}: {ir.n_events} events, {n} {opts.page_type} walks, "
                            f"{ir.n_malformed} malformed, {ir.n_lost_events} lost")
                except KsmtraceError as e:
                    error = f"ingest failed: {e}"
            rec["elapsed_s"] = round(time.monotonic() - t0, 1)
            b.elapsed_s = rec["elapsed_s"]
            if error is None:
                rec["ok"] = True
                b.attempts.append(rec)
                save_manifest()
                say(f"{prefix} done in {rec['elapsed_s']:.0f} s")
                break
            rec["error"] = error
            rec["kept"] = _rename_failed(trace, attempt)
            b.attempts.append(rec)
            save_manifest()
            say(f"{prefix} FAILED (attempt {attempt} of 2): {error}")
        else:
            done = sum(1 for x in boots if x.ok)
            raise AbError(f"{b.label} boot #{b.index} failed twice (last: {b.attempts[-1]['error']}); "
                          f"{done} boot(s) done and kept in {out} (see {manifest_p.name})")
    manifest["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest["elapsed_s"] = round(time.monotonic() - t_all, 1)
    save_manifest()
    say(f"ab: {len(boots)} boots in {manifest['elapsed_s']:.0f} s; report")
    written: list[Path] = []
    with api.connect(store) as con:
        rep = build_report(con, opts.label_before, opts.label_after, opts.page_type)
    text = render(rep, "text")
    for fmt, name in REPORT_FILES:
        if fmt == "html":      # figures embedded
            written += write(rep, fmt, out=out / name)
        elif fmt == "markdown":  # figures as PNG files it links
            written += write(rep, fmt, out=out / name, plots_dir=out / "figures")
        else:
            (out / name).write_text(text if fmt == "text" else render(rep, fmt))
            written.append(out / name)
    manifest["report"] = [str(p) for p in written]
    save_manifest()
    return AbResult(out=out, store=store, boots=boots, report_files=written, report_text=text, manifest=manifest_p)

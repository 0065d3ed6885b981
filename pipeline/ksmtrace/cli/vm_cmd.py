"""ksmtrace vm: a thin wrapper over ksmtrace.api.vm (ksmtrace.capture.vm.run_in_vm)."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer


def vm(
    kernel: str = typer.Option("auto", "--kernel", "-k", help="Kernel image to boot: auto (the newest "
                               "/boot/vmlinuz-*) or a bzImage / kernel build tree."),
    memory: str = typer.Option("3G", "--memory", help="Guest memory (split evenly over the NUMA nodes)."),
    cpus: int = typer.Option(2, "--cpus", help="Guest CPUs."),
    numa_nodes: int = typer.Option(2, "--numa-nodes", help="Emulated NUMA nodes (2 lets repro --trigger "
                                   "move-pages move pages)."),
    kvm: str = typer.Option("auto", "--kvm", help="auto (KVM only when /dev/kvm works and the CPU has "
                            "vmx/svm, else TCG emulation), on or off."),
    timeout: float = typer.Option(900.0, "--timeout", help="Seconds before the guest is killed (boot included)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not echo the guest's output."),
    command: Optional[List[str]] = typer.Argument(None, help="Command to run as root in the guest (after --)."),
) -> None:
    """Run COMMAND as root in a QEMU guest booted from a real kernel (virtme-ng; the host's root
    filesystem read-only, the current directory shared read-write).

    Example: ksmtrace vm -- ksmtrace capture --method function-graph --out fg.txt -- ksmtrace repro
    --vmas 200 --trigger move-pages

    Exits with COMMAND's exit status. Needs qemu-system-x86 (Debian package) and virtme-ng (pip).
    """
    from .. import api
    from ..safe_text import terminal

    def echo(line: str) -> None:
        sys.stdout.write(terminal(line) + "\n")
        sys.stdout.flush()

    res = api.vm(kernel=kernel, memory=memory, cpus=cpus, numa_nodes=numa_nodes, kvm=kvm, timeout=timeout,
                 quiet=quiet, command=command, on_output=echo)
    print(f"vm: command exited with status {res.returncode} after {res.elapsed_s:.1f} s", file=sys.stderr)
    if res.returncode != 0:
        raise typer.Exit(res.returncode)


def register(app: typer.Typer) -> None:
    app.command("vm", context_settings={"allow_interspersed_args": False})(vm)

"""ksmtrace vm without booting anything: kernel lookup, KVM detection, vng command line, and the error paths
(no qemu, no virtme-ng, no kernel, boot failure, timeout, Ctrl-C), driven through a fake ``vng`` on PATH.

The fake vng runs the guest script with the host's sh (so the exit status and working directory are real),
or plays a guest that never boots / hangs, and records the QEMU-like child it starts so the tests can check
it was killed."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from ksmtrace.capture import env, vm


def _exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


FAKE_VNG = r"""#!/bin/sh
# fake vng: record argv, then behave as $FAKE_VNG_MODE says
printf '%s\n' "$@" > "$FAKE_VNG_LOG"
for last; do :; done
case "$FAKE_VNG_MODE" in
  run)     echo "[    0.000000] Linux version 6.1.0-fake"; sh -c "$last"; exit $? ;;
  noboot)  echo "[    0.000000] Linux version 6.1.0-fake"; echo "Kernel panic - not syncing: VFS: Unable to mount root fs"; exit 1 ;;
  hang)    echo "Probing EDD (edd=off to disable)... ok"; sleep 1000 & echo $! > "$FAKE_VNG_CHILD"; wait ;;
  cmdhang) sleep 1000 & echo $! > "$FAKE_VNG_CHILD"; echo "ksmtrace-vm: command starting"; wait ;;
esac
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A bin dir with fake qemu-system-x86_64 and vng first on PATH, and a fake kernel image."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _exe(bindir / "qemu-system-x86_64", "#!/bin/sh\nexit 0\n")
    _exe(bindir / "vng", FAKE_VNG)
    for tool in ("sh", "sleep", "cat"):     # PATH holds only this dir: no real qemu or vng can be found
        (bindir / tool).symlink_to(subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                                                  text=True).stdout.strip())
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"MZ fake kernel")
    work = tmp_path / "work"
    work.mkdir()
    e = {"PATH": str(bindir), "FAKE_VNG_LOG": str(tmp_path / "vng.argv"),
         "FAKE_VNG_CHILD": str(tmp_path / "child.pid"), "FAKE_VNG_MODE": "run",
         "KSMTRACE_VM_TMP": str(tmp_path)}
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(vm, "_bindir", lambda: bindir)
    return type("Fake", (), {"bin": bindir, "kernel": kernel, "work": work, "env": e, "tmp": tmp_path})


def _cli(fake, *args, mode="run", cwd=None):
    e = dict(fake.env, FAKE_VNG_MODE=mode)
    full = dict(os.environ, **e)
    full["PYTHONPATH"] = str(ROOT / "pipeline")
    return subprocess.run([sys.executable, "-m", "ksmtrace", "vm", *args], capture_output=True, text=True,
                          env=full, cwd=cwd or fake.work, timeout=120)


# --------------------------------------------------------------------------- kernel image
def test_find_kernel_picks_newest_by_version(tmp_path, monkeypatch):
    boot = tmp_path / "boot"
    boot.mkdir()
    for n in ("vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-57-amd64", "vmlinuz-5.10.0-30-amd64", "config-9.9"):
        (boot / n).write_bytes(b"x")
    monkeypatch.setattr(env, "PATHS", env.Paths.under(tmp_path))
    assert vm.find_kernel("auto").name == "vmlinuz-6.1.0-57-amd64"
    assert vm.find_kernel(None).name == "vmlinuz-6.1.0-57-amd64"
    (boot / "vmlinuz-6.12.48-amd64").write_bytes(b"x")
    assert vm.find_kernel().name == "vmlinuz-6.12.48-amd64"


def test_find_kernel_errors_say_how_to_get_one(tmp_path, monkeypatch):
    (tmp_path / "boot").mkdir()
    monkeypatch.setattr(env, "PATHS", env.Paths.under(tmp_path))
    with pytest.raises(vm.NoKernel, match="apt-get install linux-image-amd64"):
        vm.find_kernel("auto")
    with pytest.raises(vm.NoKernel, match="does not exist"):
        vm.find_kernel(tmp_path / "nope" / "bzImage")
    tree = tmp_path / "linux"
    tree.mkdir()
    with pytest.raises(vm.NoKernel, match="arch/x86/boot/bzImage"):
        vm.find_kernel(tree)
    (tree / "arch" / "x86" / "boot").mkdir(parents=True)
    (tree / "arch" / "x86" / "boot" / "bzImage").write_bytes(b"x")
    assert vm.find_kernel(tree) == tree / "arch" / "x86" / "boot" / "bzImage"


# --------------------------------------------------------------------------- KVM
def test_kvm_needs_device_and_cpu_flag(tmp_path):
    info = tmp_path / "cpuinfo"
    dev = tmp_path / "kvm"
    info.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n")
    assert vm.kvm_usable(dev, info) == (False, f"{dev} does not exist")
    dev.write_text("")
    ok, why = vm.kvm_usable(dev, info)
    assert not ok and "vmx/svm" in why
    info.write_text("processor\t: 0\nflags\t\t: fpu vme vmx sse2\n")
    assert vm.kvm_usable(dev, info)[0]
    info.write_text("flags\t\t: fpu svm\n")
    assert vm.cpu_has_virt(info)
    info.write_text("flags\t\t: fpu svm_lock\n")       # a flag that merely starts with svm is not svm
    assert not vm.cpu_has_virt(info)


def test_resolve_kvm(monkeypatch):
    monkeypatch.setattr(vm, "kvm_usable", lambda *a: (False, "no vmx/svm flag"))
    assert vm.resolve_kvm("auto") is False
    assert vm.resolve_kvm("off") is False
    with pytest.raises(vm.VmError, match="--kvm on: KVM cannot work here .*--kvm off"):
        vm.resolve_kvm("on")
    with pytest.raises(vm.VmError, match="--kvm must be one of"):
        vm.resolve_kvm("maybe")
    monkeypatch.setattr(vm, "kvm_usable", lambda *a: (True, "ok"))
    assert vm.resolve_kvm("auto") is True and vm.resolve_kvm("on") is True


# --------------------------------------------------------------------------- command line
def test_memory_and_numa_args():
    assert vm.parse_memory_mb("3G") == 3072 and vm.parse_memory_mb("1536M") == 1536
    assert vm.parse_memory_mb("2048") == 2048
    with pytest.raises(vm.VmError):
        vm.parse_memory_mb("lots")
    assert vm.numa_args(3072, 2, 2) == ["--numa", "1536M,cpus=0", "--numa", "1536M,cpus=1"]
    assert vm.numa_args(4096, 4, 2) == ["--numa", "2048M,cpus=0-1", "--numa", "2048M,cpus=2-3"]
    assert vm.numa_args(3072, 1, 2) == ["--numa", "1536M", "--numa", "1536M,cpus=0"]
    assert vm.numa_args(3072, 2, 1) == []


def test_vng_argv_tcg_without_kvm(tmp_path):
    a = vm.vng_argv("vng", Path("/boot/vmlinuz-x"), "true", memory_mb=3072, cpus=2, numa_nodes=2, use_kvm=False,
                    rwdirs=[tmp_path])
    assert a[:3] == ["vng", "--run", "/boot/vmlinuz-x"] and "--disable-kvm" in a
    assert a[a.index("--rwdir") + 1] == str(tmp_path) and a[-2:] == ["--", "true"]
    kvm = vm.vng_argv("vng", Path("k"), "true", memory_mb=3072, cpus=2, numa_nodes=2, use_kvm=True, rwdirs=[])
    assert "--disable-kvm" not in kvm
    # TCG: the guest keeps the TSC (one host counter) as its clock, so the trace clock never stalls at a tick;
    # KVM guests keep their defaults
    assert a[a.index("--append") + 1] == "tsc=reliable" and "--append" not in kvm


# --------------------------------------------------------------------------- running (fake vng)
def test_run_returns_exit_code_cwd_and_tail(fake):
    lines = []
    r = vm.run_in_vm(["sh", "-c", "pwd; echo made > made.txt; echo to-stderr >&2; exit 7"], kernel=fake.kernel,
                     kvm="off", timeout=60, cwd=fake.work, on_output=lines.append)
    assert r.returncode == 7
    assert (fake.work / "made.txt").read_text() == "made\n"
    assert str(fake.work) in r.console_tail.splitlines() and "to-stderr" in r.console_tail
    assert lines[-2:] == [str(fake.work), "to-stderr"]
    argv = Path(fake.env["FAKE_VNG_LOG"]).read_text().splitlines()
    assert argv[:4] == ["--run", str(fake.kernel), "--user", "root"] and "--disable-kvm" in argv
    rw = [argv[i + 1] for i, a in enumerate(argv) if a == "--rwdir"]
    assert str(fake.work) in rw
    assert not [p for p in fake.tmp.glob("ksmtrace-vm-*")], "private status dir left behind"


def test_bare_ksmtrace_runs_this_environments_ksmtrace(fake):
    _exe(fake.bin / "ksmtrace", "#!/bin/sh\necho this-ksmtrace \"$@\"\n")
    r = vm.run_in_vm(["ksmtrace", "doctor"], kernel=fake.kernel, kvm="off", timeout=60, cwd=fake.work)
    assert r.returncode == 0 and "this-ksmtrace doctor" in r.console_tail


def test_cli_exit_status_is_the_commands(fake):
    p = _cli(fake, "--kernel", str(fake.kernel), "--kvm", "off", "--", "sh", "-c", "echo hello; exit 5")
    assert p.returncode == 5, p.stderr
    assert "hello" in p.stdout and "status 5" in p.stderr and "Traceback" not in p.stderr
    p = _cli(fake, "--kernel", str(fake.kernel), "--kvm", "off", "--", "true")
    assert p.returncode == 0


@pytest.mark.parametrize("drop, needle", [("qemu-system-x86_64", "Debian package qemu-system-x86"),
                                          ("vng", "pip install virtme-ng")])
def test_cli_missing_tool_is_one_line(fake, monkeypatch, drop, needle):
    (fake.bin / drop).unlink()
    if drop == "vng":
        # the venv running the tests may carry a real vng: run from a copy of python's dir without it
        monkeypatch.setattr(vm, "_bindir", lambda: fake.bin)
        with pytest.raises(vm.NoVirtmeNg, match="pip install virtme-ng"):
            vm.run_in_vm(["true"], kernel=fake.kernel, kvm="off", timeout=30, cwd=fake.work)
        return
    p = _cli(fake, "--kernel", str(fake.kernel), "--kvm", "off", "--", "true")
    assert p.returncode == 2 and needle in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("ksmtrace: error: ")


def test_cli_no_kernel_and_no_command(fake):
    p = _cli(fake, "--kernel", str(fake.tmp / "missing-bzImage"), "--kvm", "off", "--", "true")
    assert p.returncode == 2 and "does not exist" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = _cli(fake, "--kernel", str(fake.kernel), "--kvm", "off")
    assert p.returncode == 2 and "nothing to run" in p.stderr


def test_cli_boot_failure_shows_console_tail(fake):
    p = _cli(fake, "--kernel", str(fake.kernel), "--kvm", "off", "--", "true", mode="noboot")
    assert p.returncode == 2, p.stderr
    assert "did not boot" in p.stderr and "Unable to mount root fs" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("mode, where", [("hang", "before CMD started"), ("cmdhang", "while CMD was running")])
def test_timeout_kills_the_guest(fake, mode, where):
    t0 = time.monotonic()
    p = _cli(fake, "--kernel", str(fake.kernel), "--kvm", "off", "--timeout", "3", "--", "true", mode=mode)
    assert time.monotonic() - t0 < 60
    assert p.returncode == 2 and "timeout" in p.stderr and where in p.stderr
    child = int(Path(fake.env["FAKE_VNG_CHILD"]).read_text())
    _gone(child)


def _gone(pid: int) -> None:
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"guest process {pid} still running")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_kills_the_guest(fake, sig):
    e = dict(os.environ, **dict(fake.env, FAKE_VNG_MODE="cmdhang"))
    e["PYTHONPATH"] = str(ROOT / "pipeline")
    child_file = Path(fake.env["FAKE_VNG_CHILD"])
    p = subprocess.Popen([sys.executable, "-m", "ksmtrace", "vm", "--kernel", str(fake.kernel), "--kvm", "off",
                          "--", "true"], env=e, cwd=fake.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    for _ in range(200):
        if child_file.exists() and child_file.read_text().strip():
            break
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "guest was killed" in err and "Traceback" not in err
    _gone(int(child_file.read_text()))
    assert not [q for q in fake.tmp.glob("ksmtrace-vm-*")]


def test_bad_options_are_one_line(fake):
    for args, needle in ((["--cpus", "0"], "--cpus"), (["--numa-nodes", "0"], "--numa-nodes"),
                         (["--memory", "x"], "--memory"), (["--timeout", "0"], "--timeout"),
                         (["--kvm", "perhaps"], "--kvm")):
        p = _cli(fake, "--kernel", str(fake.kernel), *args, "--", "true")
        assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)

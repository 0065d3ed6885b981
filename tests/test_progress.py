"""A long ingest shows a progress bar on a terminal (checked in a real tmux pane)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT

LINE = ("  ksm_rmap_repro-10396   [001] ...1.   {s}.{us:06d}: set_migration_pte: addr=7f956e0b2000, "
        "pte=e7fff7ffdae58e00 order=0\n")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_progress_bar_on_a_terminal(tmp_path):
    big = tmp_path / "big.trace"
    with open(big, "w") as f:  # ~60 MB: above the 32 MiB threshold, a few seconds of ingest
        block = "".join(LINE.format(s=458 + i // 1_000_000, us=i % 1_000_000) for i in range(20000))
        for _ in range(int(60e6 // len(block)) + 1):
            f.write(block)
    session = f"ksmtrace-test-{os.getpid()}"
    cmd = (f"PYTHONPATH={ROOT / 'pipeline'} {sys.executable} -m ksmtrace ingest {big} --store {tmp_path / 's'}; "
           f"sleep 30")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "10", cmd], check=True)
    try:
        seen = ""
        deadline = time.time() + 60
        while time.time() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            if "MB" in screen and "ingest big.trace" in screen:
                seen = screen
                break
            if "events from" in screen:  # finished before we looked
                break
            time.sleep(0.1)
        assert "ingest big.trace" in seen and "/" in seen, f"no progress bar seen; last screen:\n{screen}"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)

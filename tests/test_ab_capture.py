"""capture --method counters (what ksmtrace ab runs on the counters kernels), on a fake tracefs: the method is
found from printk_formats, records the top-level buffer while the command runs, and restores every setting."""
from __future__ import annotations

import pytest

from _capture_helpers import fake_tree, use_fake

LINE = ("  ksm_rmap_repro-77  [001] ...1.  12.000100: rmap_walk_ksm: Time_ms=0.812345 Nr_iteration_total=2000 "
        "Skip_addr_out_of_range=1999 Skip_mm_mismatch=0 rmap_one=1 invalid=0 pass=0\n")
FORMATS = ('0xffffffff8a2b3c40 : "Time_ms=%llu.%06llu Nr_iteration_total=%lu Skip_addr_out_of_range=%lu '
           'Skip_mm_mismatch=%lu rmap_one=%lu invalid=%lu pass=%d\\n"\n'
           '0xffffffff8a2b3c88 : "walk_ns=%llu windows=%lu iters=%lu rmap_one=%lu hold_max_ns=%llu cb=%ps\\n"\n'
           '0xffffffff8a2b3cd0 : "unrelated %d\\n"\n')


def _tree(tmp_path, formats: str | None):
    root = tmp_path / "root"
    t = fake_tree(root, tracers="function_graph function nop")
    for name, v in (("tracing_on", "1"), ("current_tracer", "function"), ("buffer_size_kb", "1408"),
                    ("trace", "old contents\n")):
        (t / name).write_text(v + "\n" if not v.endswith("\n") else v)
    (t / "options").mkdir()
    (t / "options" / "overwrite").write_text("1\n")
    (t / "options" / "hash-ptr").write_text("1\n")
    (t / "per_cpu" / "cpu0").mkdir(parents=True)
    (t / "per_cpu" / "cpu0" / "stats").write_text("entries: 2\noverrun: 0\ndropped events: 0\n")
    if formats is not None:
        (t / "printk_formats").write_text(formats)
    return root, t


def test_auto_picks_counters_on_an_instrumented_kernel_and_restores(monkeypatch, tmp_path):
    from ksmtrace.capture import capture

    root, t = _tree(tmp_path, FORMATS)
    use_fake(monkeypatch, root)
    seen = tmp_path / "seen"
    # the workload sees the settings of the capture, and 'writes' a counter line into the buffer
    cmd = ["sh", "-c", f"cat {t}/current_tracer {t}/options/overwrite {t}/tracing_on "
                       f"{t}/events/migrate/set_migration_pte/enable > {seen}; printf '%s' '{LINE}' >> {t}/trace"]
    meta = capture.run(capture.CaptureOptions(out=tmp_path / "t.txt", command=cmd))
    assert meta["method"] == "counters"
    assert seen.read_text().split() == ["nop", "0", "1", "1"]
    assert (tmp_path / "t.txt").read_text().strip() == LINE.strip()   # the buffer was cleared first
    assert [e for e in meta["events"] if e.startswith("trace_printk:")] == [
        "trace_printk:Time_ms=%llu.%06llu Nr_iteration_total=%lu Skip_addr_out_of_range=%lu Skip_mm_mismatch=%lu "
        "rmap_one=%lu invalid=%lu pass=%d", "trace_printk:walk_ns=%llu windows=%lu iters=%lu rmap_one=%lu "
        "hold_max_ns=%llu cb=%ps"]
    assert meta["tracefs_options"]["buffer_size_kb"] == capture.COUNTERS_BUFFER_KB
    # every setting is back
    assert (t / "current_tracer").read_text().split() == ["function"]
    assert (t / "buffer_size_kb").read_text().strip() == "1408"
    assert (t / "options" / "overwrite").read_text().strip() == "1"
    assert (t / "options" / "hash-ptr").read_text().strip() == "1"
    assert (t / "tracing_on").read_text().strip() == "1"
    assert (t / "events/migrate/set_migration_pte/enable").read_text().strip() == "0"


def test_counters_on_a_stock_kernel_says_what_is_missing(monkeypatch, tmp_path):
    from ksmtrace.capture import capture, env

    root, t = _tree(tmp_path, '0xffffffff8a2b3cd0 : "unrelated %d\\n"\n')
    use_fake(monkeypatch, root)
    with pytest.raises(env.MethodUnavailable, match="no trace_printk counter format.*counters.patch"):
        capture.run(capture.CaptureOptions(out=tmp_path / "t.txt", command=["true"], method="counters"))
    assert not (tmp_path / "t.txt").exists()
    meta = capture.run(capture.CaptureOptions(out=tmp_path / "t.txt", command=["true"], method="auto"))
    assert meta["method"] != "counters"

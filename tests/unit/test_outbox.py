from __future__ import annotations

import time

from apiary.drone.outbox import Outbox


def fill(box: Outbox, job: str, n: int) -> None:
    for _ in range(n):
        seq = box.next_seq(job)
        box.keep(job, seq, f"{job}:{seq}".encode())


def test_events_are_numbered_per_job_and_kept_until_acked() -> None:
    box = Outbox(resend_after=10)
    fill(box, "a", 3)
    fill(box, "b", 2)
    assert list(box.all_frames()) == [b"a:1", b"a:2", b"a:3", b"b:1", b"b:2"]
    box.ack("a", 2)
    assert list(box.all_frames()) == [b"a:3", b"b:1", b"b:2"]
    assert sorted(box.held()) == ["a", "b"]


def test_a_finished_job_is_forgotten_once_fully_acked() -> None:
    box = Outbox(resend_after=10)
    fill(box, "a", 2)
    box.finish("a")
    assert box.held() == ["a"]
    box.ack("a", 2)
    assert box.held() == [] and box.unacked_count() == 0


def test_overdue_events_are_resent_with_growing_waits() -> None:
    box = Outbox(resend_after=0.2, resend_max=0.8)
    fill(box, "a", 2)
    assert list(box.overdue()) == []
    time.sleep(0.25)
    assert list(box.overdue()) == [b"a:1", b"a:2"]
    time.sleep(0.25)
    assert list(box.overdue()) == []  # now it waits 0.4 s
    time.sleep(0.2)
    assert list(box.overdue()) == [b"a:1", b"a:2"]
    box.ack("a", 1)  # progress resets the wait to 0.2 s
    time.sleep(0.25)
    assert list(box.overdue()) == [b"a:2"]


def test_past_its_memory_limit_a_job_spills_to_disk_and_reads_back_in_order(tmp_path) -> None:
    box = Outbox(resend_after=10, memory_limit=30, spill_dir=tmp_path)
    fill(box, "a", 12)  # frames of 3-4 bytes: a:1..a:9 fit in 30 bytes, the rest spill
    fill(box, "b", 2)
    assert box.memory == 30 and box.spilled == 4  # b:1 still fitted; b:2 did not
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.spill", "b.spill"]
    assert list(box.all_frames()) == [f"a:{i}".encode() for i in range(1, 13)] + [b"b:1", b"b:2"]
    box.ack("a", 11)
    assert list(box.all_frames()) == [b"a:12", b"b:1", b"b:2"]
    box.ack("a", 12)
    assert not (tmp_path / "a.spill").exists() and box.memory == 3  # b:1
    fill(box, "a", 1)  # with memory free again, frames stay in memory
    assert box.spilled == 4 and list(box.all_frames())[0] == b"a:13"
    box.finish("b")
    box.ack("b", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []

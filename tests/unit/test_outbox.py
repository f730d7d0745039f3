from __future__ import annotations

import time

import pytest

from apiary.drone.outbox import Outbox, window_take


def fill(box: Outbox, job: str, n: int, size: int = 0) -> None:
    """Keep `n` more frames of `job`: ``job:seq``, padded with dots to `size` bytes."""
    for _ in range(n):
        seq = box.next_seq(job)
        box.keep(job, seq, f"{job}:{seq}".encode().ljust(size, b"."))


def unacked(box: Outbox) -> list[bytes]:
    """Every frame the box still holds, as a reconnect would send them (window permitting)."""
    box.rewind()
    return list(box.ready())


@pytest.mark.parametrize(("in_flight", "sizes", "window", "take"), [
    (0, [], 100, 0),  # nothing to send
    (0, [40, 40, 40], 100, 2),  # as many as fit
    (0, [50, 50, 1], 100, 2),  # exactly full
    (60, [40, 1], 100, 1),  # room for what is left
    (60, [41], 100, 0),  # the next does not fit: it waits for acks
    (100, [1], 100, 0),  # full
    (0, [500, 1], 100, 1),  # larger than the window: alone, when nothing is in flight (never a stall)
    (1, [500], 100, 0),  # ... and not beside anything
    (0, [100, 0], 100, 2),  # an empty frame fits a full window
])
def test_which_frames_may_go_now(in_flight: int, sizes: list[int], window: int, take: int) -> None:
    assert window_take(in_flight, sizes, window) == take


def test_events_are_numbered_per_job_and_kept_until_acked() -> None:
    box = Outbox(resend_after=10)
    fill(box, "a", 3)
    fill(box, "b", 2)
    assert list(box.ready()) == [b"a:1", b"a:2", b"a:3", b"b:1", b"b:2"]
    assert list(box.ready()) == []  # sent: they wait for acks, not sent twice
    box.ack("a", 2)
    assert unacked(box) == [b"a:3", b"b:1", b"b:2"]
    assert sorted(box.held()) == ["a", "b"]


def test_a_finished_job_is_forgotten_once_fully_acked() -> None:
    box = Outbox(resend_after=10)
    fill(box, "a", 2)
    box.finish("a")
    assert box.held() == ["a"]
    box.ack("a", 2)
    assert box.held() == [] and box.unacked_count() == 0


def test_a_job_sends_within_its_window_and_each_ack_lets_more_go() -> None:
    box = Outbox(resend_after=10, window=30)
    fill(box, "a", 5, size=10)
    fill(box, "b", 1, size=10)
    assert [f[:3] for f in box.ready("a")] == [b"a:1", b"a:2", b"a:3"]  # 30 bytes in flight
    assert box.in_flight("a") == 30 and list(box.ready("a")) == []
    assert [f[:3] for f in box.ready()] == [b"b:1"]  # each job has a window of its own
    box.ack("a", 1)
    assert [f[:3] for f in box.ready("a")] == [b"a:4"]
    box.ack("a", 4)
    assert [f[:3] for f in box.ready("a")] == [b"a:5"]
    assert box.unacked_count() == 2  # a:5, b:1


def test_an_event_larger_than_the_window_goes_once_nothing_else_is_in_flight() -> None:
    box = Outbox(resend_after=10, window=30)
    fill(box, "a", 1, size=10)
    fill(box, "a", 1, size=100)
    fill(box, "a", 1, size=10)
    assert [f[:3] for f in box.ready()] == [b"a:1"]
    box.ack("a", 1)
    assert [f[:3] for f in box.ready()] == [b"a:2"]  # alone
    box.ack("a", 2)
    assert [f[:3] for f in box.ready()] == [b"a:3"]


def test_after_a_reconnect_unacked_events_go_again_in_order_within_the_window() -> None:
    box = Outbox(resend_after=10, window=20)
    fill(box, "a", 4, size=10)
    assert [f[:3] for f in box.ready()] == [b"a:1", b"a:2"]
    box.rewind()  # a:1 and a:2 may be lost
    assert [f[:3] for f in box.ready()] == [b"a:1", b"a:2"]
    # The queen had them before the rewind, and a:3 too (sent before a reconnect): it acks up to 3.
    box.ack("a", 3)
    assert [f[:3] for f in box.ready()] == [b"a:4"]
    assert box.unacked_count() == 1


def test_a_send_that_fails_leaves_the_rest_queued_and_overdue_sends_it() -> None:
    box = Outbox(resend_after=0.2, window=100)
    fill(box, "a", 2)
    fill(box, "b", 2)
    for frame in box.ready():
        assert frame == b"a:1"  # the caller's send fails: it stops there
        break
    # b has frames queued and none in flight: nothing would ever send them but this.
    assert list(box.overdue()) == [b"b:1", b"b:2"]
    assert list(box.overdue()) == []  # a:1 counts as in flight until its deadline
    time.sleep(0.25)
    assert list(box.overdue()) == [b"a:1", b"a:2", b"b:1", b"b:2"]


def test_overdue_events_are_resent_within_the_window_with_growing_waits() -> None:
    box = Outbox(resend_after=0.2, resend_max=0.8, window=8)
    fill(box, "a", 3)
    assert list(box.ready()) == [b"a:1", b"a:2"]
    assert list(box.overdue()) == []
    time.sleep(0.25)
    assert list(box.overdue()) == [b"a:1", b"a:2"]  # a:3 still waits for room
    time.sleep(0.25)
    assert list(box.overdue()) == []  # now it waits 0.4 s
    time.sleep(0.2)
    assert list(box.overdue()) == [b"a:1", b"a:2"]
    box.ack("a", 1)  # progress resets the wait to 0.2 s
    assert list(box.ready()) == [b"a:3"]
    time.sleep(0.25)
    assert list(box.overdue()) == [b"a:2", b"a:3"]


def test_a_new_attempt_drops_what_the_old_one_left_unacked(tmp_path) -> None:
    box = Outbox(resend_after=10, memory_limit=8, spill_dir=tmp_path, window=6)
    box.begin("a", 1, attempt=1)
    fill(box, "a", 4)
    assert list(box.ready()) == [b"a:1", b"a:2"]
    box.begin("a", 5, attempt=2)
    assert box.unacked_count() == 0 and box.memory == 0 and box.in_flight("a") == 0
    assert list(tmp_path.iterdir()) == []
    fill(box, "a", 1)
    box.ack("a", 4, attempt=1)  # an ack of the old attempt is not the new one's
    assert unacked(box) == [b"a:5"]


def test_past_its_memory_limit_a_job_spills_to_disk_and_reads_back_in_order(tmp_path) -> None:
    box = Outbox(resend_after=10, memory_limit=30, spill_dir=tmp_path)
    fill(box, "a", 12)  # frames of 3-4 bytes: a:1..a:9 fit in 30 bytes, the rest spill
    fill(box, "b", 2)
    assert box.memory == 30 and box.spilled == 4  # b:1 still fitted; b:2 did not
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.spill", "b.spill"]
    assert unacked(box) == [f"a:{i}".encode() for i in range(1, 13)] + [b"b:1", b"b:2"]
    box.ack("a", 11)
    assert unacked(box) == [b"a:12", b"b:1", b"b:2"]
    box.ack("a", 12)
    assert not (tmp_path / "a.spill").exists() and box.memory == 3  # b:1
    fill(box, "a", 1)  # with memory free again, frames stay in memory
    assert box.spilled == 4 and unacked(box)[0] == b"a:13"
    box.finish("b")
    box.ack("b", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_spilled_frames_are_read_back_as_the_window_lets_them_go(tmp_path) -> None:
    box = Outbox(resend_after=10, memory_limit=10, spill_dir=tmp_path, window=20)
    fill(box, "a", 6, size=10)  # a:1 in memory, a:2.. on disk
    sent = [f[:3] for f in box.ready()]
    while box.unacked_count():
        box.ack("a", int(sent[-1][2:]))
        sent += [f[:3] for f in box.ready()]
    assert sent == [f"a:{i}".encode() for i in range(1, 7)]
    assert list(tmp_path.iterdir()) == [] and box.memory == 0

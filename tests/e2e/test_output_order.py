"""A command's stdout and stderr are stored in the order it wrote them, as far as the kernel tells it."""

from __future__ import annotations

import shlex
import sys

from tests.cluster import Cluster, output_lines

# Writes line i to stdout (even i) or stderr (odd i), then waits until the drone has read that pipe empty
# (FIONREAD on the write end counts the bytes still in the pipe): each write is then the only one in
# flight, and its place among the others is what the kernel can tell the drone. `parts` splits each
# write in two (to the same stream), the other stream writing in between.
ALTERNATE = r"""
import fcntl, os, struct, sys, termios, time
def drained(fd):
    while struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]:
        time.sleep(0.0001)
for i in range(int(sys.argv[1])):
    os.write(1 + i % 2, b"line-%d\n" % i)
    drained(1 + i % 2)
"""

SPLIT = r"""
import fcntl, os, struct, sys, termios, time
def say(fd, text):
    os.write(fd, text.encode())
    while struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]:
        time.sleep(0.0001)
    time.sleep(0.05)  # past the drone's coalescing: each write an event of its own
token, cut = os.environ["TOKEN"], int(sys.argv[1])
say(1, "token=" + token[:cut])
say(2, "warning\n")
say(1, token[cut:] + " used\n")
"""


def script(code: str, *args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-c", code, *args))


def in_order(events: list[dict]) -> list[tuple[str, str]]:
    """(stream, text) of the commands' output events in stored order."""
    return [(e["type"].rsplit(":", 1)[1], e["text"]) for e in events if e["type"] in ("job:cmd:stdout",
                                                                                         "job:cmd:stderr")]


async def test_a_thousand_lines_alternating_between_the_streams_are_stored_in_order(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("alternate", ("print", [script(ALTERNATE, "1000")]))
    job = await queen.trigger("alternate")
    done = await queen.wait_job(job["id"])
    assert done["status"] == "passed", in_order(await queen.events(job["id"]))[:3]

    lines = [(stream, line) for stream, text in in_order(await queen.events(job["id"]))
             for line in text.splitlines()]
    assert lines == [("stdout" if i % 2 == 0 else "stderr", f"line-{i}") for i in range(1000)]


async def test_order_holds_while_a_secret_may_be_cut_between_two_writes(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("split", ("print", [script(SPLIT, "5"), script(SPLIT, "3")]))
    await queen.request("PUT", "/repos/split/secrets/TOKEN", {"value": "zebra-horse-42"}, expect=200)
    job = await queen.trigger("split")
    assert (await queen.wait_job(job["id"]))["status"] == "passed"

    events = await queen.events(job["id"])
    assert "horse" not in "".join(e.get("text", "") for e in events)
    stored = [joined(in_order([e for e in events if e.get("num") == num])) for num in (1, 2)]
    # What may start the secret is not held back behind the warning written after it: four characters or
    # more are shown as a mask, fewer as they are; the rest of the secret is masked when it comes.
    assert stored[0] == [("stdout", "token=********"), ("stderr", "warning\n"), ("stdout", " used\n")]
    assert stored[1] == [("stdout", "token=zeb"), ("stderr", "warning\n"), ("stdout", "******** used\n")]


def joined(chunks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Neighbouring chunks of one stream as one (how the drone coalesced them depends on timing)."""
    out: list[tuple[str, str]] = []
    for stream, text in chunks:
        if out and out[-1][0] == stream:
            out[-1] = (stream, out[-1][1] + text)
        else:
            out.append((stream, text))
    return out


async def test_a_step_asking_for_one_stream_keeps_the_exact_order_of_a_fast_writer(queen: Cluster) -> None:
    # ../shared/cases/stdout-stderr-order-lost: `set -x` traces (stderr) and output (stdout) written as fast as
    # the shell goes. Two pipes cannot order writes that wait in both; with merge_output there is one pipe.
    await queen.add_drone("d1")
    fast = "; ".join(f"echo out-{i}; echo err-{i} >&2" for i in range(200))
    await queen.create_pipeline_repo("merged", f"""stages: [{{name: s, steps: [
  {{run: 'set -x; echo compiling a; echo compiling b; ls /no-such-file; echo compiling c', merge_output: true}},
  {{run: {fast!r}, merge_output: true}}]}}]""")
    job = await queen.wait_job((await queen.trigger("merged"))["id"])
    events = await queen.events(job["id"])
    lines = output_lines(events, "job:cmd:stdout")
    assert output_lines(events, "job:cmd:stderr") == []  # one stream
    traced = lines[:lines.index("+ echo compiling c") + 2]
    assert [t for t in traced if "compiling" in t] == ["+ echo compiling a", "compiling a", "+ echo compiling b",
                                                        "compiling b", "+ echo compiling c", "compiling c"]
    assert lines[-400:] == [f"{s}-{i}" for i in range(200) for s in ("out", "err")]
    print("\nmerge_output: 6 set -x lines and 400 fast alternating lines stored in the exact order written")

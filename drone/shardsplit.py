"""``python -m apiary.drone.shardsplit LIST COUNT PREFIX``: a sharded stage's tests split for ``apiary run``.

Reads the list a tests command printed (the file LIST, read as apiary.core.shards.parse_tests reads it),
splits it over COUNT shards as the queen does with no history (every test taken to last the same) and
writes shard i's part to PREFIX-i.txt, one name a line. Prints what it did; exits 1 with the reason when
the list cannot be used. Run by the listing stage `apiary.core.shards.here` makes; nothing else.
"""

from __future__ import annotations

import sys
from pathlib import Path

from apiary.core.shards import MAX_OUTPUT_BYTES, ShardsError, parse_tests, plan, shard_file


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit():
        print("usage: python -m apiary.drone.shardsplit LIST COUNT PREFIX", file=sys.stderr)
        return 2
    listed, count, prefix = Path(argv[0]), int(argv[1]), argv[2]
    try:
        with listed.open("rb") as f:
            tests = parse_tests(f.read(MAX_OUTPUT_BYTES + 1))
    except (OSError, ShardsError) as exc:
        print(f"apiary: {exc}", file=sys.stderr)
        return 1
    shards = plan(tests, {}, count)
    for shard in shards:
        Path(f"{prefix}-{shard['index']}.txt").write_bytes(shard_file(shard["tests"]))
    print(f"{len(tests)} tests in {count} shards: {', '.join(str(len(s['tests'])) for s in shards)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

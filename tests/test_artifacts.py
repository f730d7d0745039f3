"""Artifacts: declared globs uploaded after the job, stored in GridFS, listed and downloaded."""

from __future__ import annotations

import hashlib

from tests.cluster import Cluster


async def test_declared_artifacts_are_stored_listed_and_downloadable(queen: Cluster) -> None:
    await queen.add_drone("d1")
    # 9 MiB of pseudo-random bytes: three parts on the wire.
    make = ("mkdir -p out/deep && echo report > out/report.txt && echo nested > out/deep/n.txt && "
            "head -c 9437184 /dev/urandom > out/big.bin && echo skip > other.log")
    await queen.create_pipeline_repo("arts", f"""
artifacts: ["out/*.txt", "out/**/*.bin", "out/deep/*", "missing/*"]
stages: [{{name: build, steps: ["{make}", "sha256sum out/big.bin"]}}]
""")
    job = await queen.wait_job((await queen.trigger("arts"))["id"])
    assert job["status"] == "passed"

    listed = (await queen.get(f"/jobs/{job['id']}/artifacts"))["artifacts"]
    assert [(a["name"], a["parts"]) for a in listed] == [("out/big.bin", 3), ("out/deep/n.txt", 1),
                                                         ("out/report.txt", 1)]
    assert queen.http is not None
    async with queen.http.get(queen.api + f"/jobs/{job['id']}/artifacts/out/report.txt") as resp:
        assert resp.status == 200 and await resp.read() == b"report\n"
    async with queen.http.get(queen.api + f"/jobs/{job['id']}/artifacts/out/big.bin") as resp:
        big = await resp.read()
    events = await queen.events(job["id"])
    printed = next(e["text"] for e in events if e["type"] == "job:cmd:stdout" and "big.bin" in e["text"])
    assert len(big) == 9437184 and hashlib.sha256(big).hexdigest() == printed.split()[0]
    assert any("no file matches missing/*" in e.get("text", "") for e in events)

    status, _ = await queen.request("GET", f"/jobs/{job['id']}/artifacts/nope.txt")
    assert status == 404

"""Artifacts: declared globs uploaded after the job, stored in GridFS, listed and downloaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from apiary.core.pipeline import parse_pipeline
from apiary.core.protocol import Msg
from apiary.drone import artifacts
from apiary.drone.executor import JobRun
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


async def test_an_artifact_pattern_through_a_link_to_the_root_leaves_the_job_and_drone_well(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("links", """
artifacts: ["dirlink/**", "ok.txt", "escape.txt"]
stages: [{name: build, steps: ["ln -s / dirlink && ln -s /etc/hostname escape.txt && echo ok > ok.txt"]}]
""")
    job = await queen.wait_job((await queen.trigger("links"))["id"])
    assert (job["status"], job.get("error")) == ("passed", None), job
    listed = (await queen.get(f"/jobs/{job['id']}/artifacts"))["artifacts"]
    assert [a["name"] for a in listed] == ["ok.txt"]
    text = "".join(e.get("text", "") for e in await queen.events(job["id"]))
    assert "no file matches dirlink/**" in text and "escape.txt: 1 link(s) to outside the workspace" in text


async def test_artifacts_that_cannot_be_sent_fail_the_job_saying_why(tmp_path: Path) -> None:
    events: list[tuple[Msg, dict]] = []
    workspace = tmp_path / "ws"
    workspace.mkdir()

    async def collect(root: Path, globs: list[str]) -> None:
        raise artifacts.ArtifactError("report.txt: Input/output error")

    job = {"id": "job1", "number": 1, "type": "TEST", "repo": {"name": "r"}, "ref": {"branch": "main"},
           "pipeline": parse_pipeline({"artifacts": ["*.txt"], "stages": [{"name": "s", "steps": ["true"]}]})}
    run = JobRun(job, workspace, lambda msg, fields: events.append((msg, fields)), {"PATH": os.environ["PATH"]},
                 flush_after=0.005, chunk_bytes=65536, private_dir=None, collect=collect)
    assert await run.run() == "failed"
    done = next(f for m, f in events if m is Msg.JOB_DONE)
    assert done["error"] == "artifacts: report.txt: Input/output error"

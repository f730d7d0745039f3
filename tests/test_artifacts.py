"""Artifacts: declared globs uploaded after the job, stored in GridFS, listed and downloaded."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from apiary.drone import artifacts
from apiary.drone.executor import JobRun
from apiary.core.pipeline import parse_pipeline
from apiary.core.protocol import Msg
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


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("out/*.txt", "out/a.txt", True),
    ("out/*.txt", "out/deep/a.txt", False),
    ("out/**/*.txt", "out/a.txt", True),
    ("out/**/*.txt", "out/x/y/a.txt", True),
    ("**/*.xml", "reports/unit.xml", True),
    ("**", "any/thing", True),
    ("?.log", "a.log", True),
    ("?.log", "ab.log", False),
    ("[ab].txt", "b.txt", True),
    ("[!ab].txt", "b.txt", False),
    ("dist/*.whl", "dist/pkg-1.0-py3-none-any.whl", True),
    ("a.txt", "a_txt", False),
])
def test_patterns_match_as_globs_do(pattern: str, path: str, matches: bool) -> None:
    assert bool(artifacts.pattern_regex(pattern).match(path)) is matches


def test_a_symlinked_folder_is_never_walked_and_links_out_of_the_workspace_are_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (ws / "out" / "ok.txt").write_text("ok\n")
    (ws / "rootlink").symlink_to("/")  # a pattern through it would walk the whole machine
    (ws / "escape.txt").symlink_to("/etc/hostname")
    (ws / "inner.txt").symlink_to(ws / "out" / "ok.txt")
    started = time.monotonic()
    found, notes = artifacts.match(ws, ["rootlink/**", "**/*.txt", "../*", "/etc/*"])
    assert time.monotonic() - started < 5
    assert [f.name for f in found] == ["inner.txt", "out/ok.txt"]
    assert found[0].path == (ws / "out" / "ok.txt").resolve()
    assert "artifacts: no file matches rootlink/**" in notes
    assert any("1 link(s) to outside the workspace" in n for n in notes)
    assert sum("patterns stay inside the workspace" in n for n in notes) == 2


async def test_a_file_swapped_for_a_link_after_matching_fails_the_upload(tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("mine\n")
    sent: list[tuple[Msg, dict]] = []
    found, _ = artifacts.match(tmp_path, ["*.txt"])
    (tmp_path / "report.txt").unlink()
    (tmp_path / "report.txt").symlink_to("/etc/hostname")
    with pytest.raises(artifacts.ArtifactError):
        await artifacts._send_found(found, lambda m, f: sent.append((m, f)), 10**9)
    assert not [f for m, f in sent if m is Msg.JOB_ARTIFACT]


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

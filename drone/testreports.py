"""Reads a job's test reports after its stages and sends them to the queen as ``job:report`` events.

The files are the job's, so hostile: they are found by the pipeline's
``reports.junit`` globs and the plugins' ``reports()`` the way artifacts are
(apiary.drone.artifacts: no symlinked folder entered, a link out of the
workspace refused), opened without following a link, and read to at most
MAX_FILE_BYTES each and MAX_TOTAL_BYTES together, MAX_FILES of them; each is
parsed by apiary.core.junit in a thread (the drone's other jobs go on). A file
that is too large or no report is named in the job's output and skipped:
reports never fail the job and never take the drone down. Names, messages and
texts are masked like the job's output before they leave.

What a plugin's files hold also becomes that plugin's figures (``job:plugin``,
the job's ``plugins.NAME``): tests, passed, failed, errors, skipped, seconds
and the first FAILED_NAMED failed tests' names (the python plugin's counts).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apiary.core.globs import matcher
from apiary.core.junit import JunitError, JunitReport, parse_junit
from apiary.core.protocol import Msg
from apiary.core.reports import MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES, glob_problem, report_bodies

from .artifacts import resolved, workspace_files

log = logging.getLogger(__name__)

EmitFn = Callable[[Msg, dict[str, Any]], None]
FAILED_NAMED = 20  # failed tests a plugin's figures name


@dataclasses.dataclass
class _Read:
    """What the files gave: the job's report, each file's line for the queen, each file's own report."""

    report: JunitReport = dataclasses.field(default_factory=JunitReport)
    files: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    by_file: dict[str, JunitReport] = dataclasses.field(default_factory=dict)
    said: list[tuple[Msg, str]] = dataclasses.field(default_factory=list)


async def send_reports(workspace: Path, pipeline: Mapping[str, Any], plugin_globs: Mapping[str, list[str]],
                       emit: EmitFn, mask: Callable[[str], str], parent: bool = False) -> None:
    """Read the reports the pipeline (``reports.junit``) and the plugins name; emit ``job:report`` parts,
    each plugin's figures, and a line per file. Never raises but for a cancel. `parent`: the job runs stages
    as child jobs (apiary.core.spread), where its tests (a sharded stage's) mostly run and report."""
    globs = list((pipeline.get("reports") or {}).get("junit") or [])
    # A glob of the pipeline's that matches nothing is said (not in a parent: its tests report in its children);
    # a plugin's report may not be there.
    told = set() if parent else set(globs)
    for own in plugin_globs.values():
        globs.extend(g for g in own if g not in globs)
    if not globs:
        return
    try:
        read = await asyncio.to_thread(_read_all, workspace, globs, told)
    except Exception as exc:  # a report must not take the drone down, nor fail the job
        log.exception("reading the test reports of %s", workspace)
        emit(Msg.JOB_STDERR, {"text": f"reports: could not be read: {type(exc).__name__}\n"})
        return
    for msg, text in read.said:
        emit(msg, {"text": mask(text)})
    if read.files:
        for body in report_bodies(read.report, read.files):
            emit(Msg.JOB_REPORT, _masked(body, mask))
    for plugin, own in plugin_globs.items():
        matchers = [matcher(g) for g in own]
        mine = JunitReport()
        found = False
        for path, report in read.by_file.items():
            if any(m(path) for m in matchers):
                mine.add(report)
                found = True
        if found:
            emit(Msg.JOB_PLUGIN, {"plugin": plugin, "data": _masked(figures(mine), mask)})


def figures(report: JunitReport) -> dict[str, Any]:
    """A plugin's figures from its report: the counts, and ``failed_tests`` (names) when any failed."""
    out: dict[str, Any] = dict(report.counts)
    failed = [r.test for r in report.results if r.status in ("failed", "error")][:FAILED_NAMED]
    if failed:
        out["failed_tests"] = failed
    return out


def _read_all(workspace: Path, globs: list[str], told: set[str]) -> _Read:
    out = _Read()
    root = workspace.resolve()
    listed = workspace_files(root)
    paths: list[str] = []
    for glob in globs:
        if glob_problem(glob):
            out.said.append((Msg.JOB_STDERR, f"reports: {glob}: ignored: {glob_problem(glob)}\n"))
            continue
        matches = matcher(glob)
        hits = [p for p in listed if matches(p)]
        if not hits and glob in told:
            out.said.append((Msg.JOB_STDOUT, f"reports: no file matches {glob}\n"))
        paths.extend(p for p in hits if p not in paths)
    if len(paths) > MAX_FILES:
        out.said.append((Msg.JOB_STDERR, f"reports: {len(paths)} files match; the first {MAX_FILES} are read\n"))
        paths = paths[:MAX_FILES]
    total = 0
    for path in paths:
        try:
            data = _read_one(root, path, MAX_TOTAL_BYTES - total)
            total += len(data)
            report = parse_junit(data)
        except (JunitError, _Skip) as exc:
            out.files.append({"path": path, "error": str(exc)})
            out.said.append((Msg.JOB_STDERR, f"reports: {path} skipped: {exc}\n"))
            continue
        except OSError as exc:
            out.files.append({"path": path, "error": f"cannot be read: {exc.strerror or exc}"})
            out.said.append((Msg.JOB_STDERR, f"reports: {path} skipped: cannot be read: {exc.strerror or exc}\n"))
            continue
        out.by_file[path] = report
        out.report.add(report)
        out.files.append({"path": path, "tests": report.counts["tests"]})
        c = report.counts
        bad = ", ".join(f"{c[k]} {'error' if k == 'errors' and c[k] == 1 else k}" for k in ("failed", "errors", "skipped")
                        if c[k])
        out.said.append((Msg.JOB_STDOUT, f"reports: {path}: {c['tests']} tests" + (f" ({bad})" if bad else "") + "\n"))
    return out


class _Skip(Exception):
    """A report file not read, saying why (too large, not a file, outside the workspace)."""


def _read_one(root: Path, path: str, room: int) -> bytes:
    """The bytes of report `path`, only if it is a regular file inside `root` within the caps."""
    real = resolved(root, path)
    if real is None:
        raise _Skip("a link that loops or leads nowhere")
    if not real.is_relative_to(root):
        raise _Skip("a link to outside the workspace")
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block the drone
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Skip("not a regular file")
        most = min(MAX_FILE_BYTES, room)
        if st.st_size > most:
            limit = "per file" if most == MAX_FILE_BYTES else "left for this job's reports"
            raise _Skip(f"{st.st_size:,} bytes, over the {most:,} bytes {limit}")
        data = f.read(most + 1)
    if len(data) > most:
        raise _Skip(f"grew beyond {most:,} bytes while being read")
    return data


def _masked(value: Any, mask: Callable[[str], str]) -> Any:
    """`value` with every string masked (a test's name or message may print a secret)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [_masked(v, mask) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v, mask) for k, v in value.items()}
    return value
